"""Loading problem files (JSONL, a JSON array, or YAML) into `Problem`s, refusing bad input.

Every bad row is reported before any model call, one line per error naming the file, the line
and the field. Rows in the shapes of the common data sets load as they are: HumanEval's
`task_id` / `prompt` become `id` / `problem`, a GSM8K answer written as a worked solution
ending in `#### 18` yields the gold `18`, and fields ponder does not know (a GSM8K `solution`,
HumanEval's `canonical_solution`) go into `metadata`, which no prompt ever renders.

>>> problems = load_problems("examples/math_problems.jsonl")
>>> problems[0].id, problems[0].answer
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from ponder.errors import ProblemFileError
from ponder.types import Problem
from ponder.verifiers import VerifierChoice

KNOWN_FIELDS = frozenset(Problem.model_fields)
# Other data sets' names for ponder's fields: (their name, ours).
ALIASES = (("task_id", "id"), ("prompt", "problem"), ("question", "problem"))
_GSM8K_MARK = "####"


def load_problems(path: str | Path, verifiers: VerifierChoice | None = None) -> list[Problem]:
    """The problems in `path`; raises `ProblemFileError` listing every bad row.

    With `verifiers`, each row's verifier is loaded too, so an unknown one is refused here.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ProblemFileError([f"{path}: cannot read: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError as exc:
        raise ProblemFileError([f"{path}: not UTF-8 text: {exc.reason}"]) from None
    errors: list[str] = []
    problems: list[Problem] = []
    first_line: dict[str, int] = {}
    for line, default_id, row in _rows(path, text, errors):
        problem = _to_problem(row, default_id, f"{path}:{line}", errors)
        if problem is None:
            continue
        if problem.id in first_line:
            errors.append(f"{path}:{line}: field 'id': duplicate id {problem.id!r} "
                          f"(first on line {first_line[problem.id]})")
            continue
        first_line[problem.id] = line
        problems.append(problem)
    if not problems and not errors:
        errors.append(f"{path}: empty: no problems found")
    if verifiers is not None:
        errors.extend(_verifier_errors(path, problems, first_line, verifiers))
    if errors:
        raise ProblemFileError(errors)
    return problems


def _verifier_errors(path: Path, problems: list[Problem], lines: dict[str, int],
                     verifiers: VerifierChoice) -> list[str]:
    """One line per row naming a verifier that does not load; a verifier chosen from the gold
    fields (not named by the row) is reported once, on its first row."""
    errors: list[str] = []
    reported: set[str] = set()
    for problem in problems:
        try:
            verifiers.for_problem(problem)
        except Exception as exc:
            spec = verifiers.spec_for(problem)
            where = f"{path}:{lines[problem.id]}"
            if problem.verifier is not None:
                errors.append(f"{where}: field 'verifier': {exc}")
            elif spec not in reported:
                reported.add(spec or "")
                errors.append(f"{where}: verifier {spec!r}, chosen for this row's gold fields, "
                              f"cannot be loaded: {exc}")
    return errors


def normalize_row(row: dict[str, Any], default_id: str) -> dict[str, Any]:
    """A data set's row in ponder's field names, with unknown fields moved into `metadata`."""
    row = dict(row)
    for theirs, ours in ALIASES:
        if theirs in row and ours not in row:
            row[ours] = row.pop(theirs)
    row.setdefault("id", default_id)
    metadata = row.get("metadata")
    metadata = dict(metadata) if isinstance(metadata, dict) else metadata
    extras = {key: row.pop(key) for key in list(row) if key not in KNOWN_FIELDS}
    answer = row.get("answer")
    if isinstance(answer, str) and _GSM8K_MARK in answer:
        # GSM8K's own format: the worked solution, then `#### <number>`. Only the number is
        # gold; the solution is kept as metadata, which no prompt renders.
        solution, _, final = answer.rpartition(_GSM8K_MARK)
        row["answer"] = final.strip().replace(",", "")
        extras.setdefault("solution", solution.strip())
    if extras:
        if metadata is None:
            metadata = {}
        if isinstance(metadata, dict):
            metadata = {**extras, **metadata}
    if metadata is not None:
        row["metadata"] = metadata
    return row


def _to_problem(row: Any, default_id: str, where: str, errors: list[str]) -> Problem | None:
    if not isinstance(row, dict):
        errors.append(f"{where}: expected an object with a 'problem' field, "
                      f"got {type(row).__name__}")
        return None
    fields = normalize_row(row, default_id)
    problem_text = fields.get("problem")
    if problem_text is None:
        errors.append(f"{where}: field 'problem': missing")
        return None
    if not isinstance(problem_text, str) or not problem_text.strip():
        errors.append(f"{where}: field 'problem': must be non-empty text")
        return None
    try:
        return Problem.model_validate(fields)
    except ValidationError as exc:
        # One line per field: a union field's alternatives each add an error of their own.
        by_field: dict[str, list[str]] = {}
        for err in exc.errors():
            field = str(err["loc"][0]) if err["loc"] else "row"
            if err["msg"] not in by_field.setdefault(field, []):
                by_field[field].append(err["msg"])
        errors.extend(f"{where}: field {field!r}: {' or '.join(messages)}"
                      for field, messages in by_field.items())
        return None


def _rows(path: Path, text: str, errors: list[str]) -> Iterator[tuple[int, str, Any]]:
    """(line, default id, raw row) for each row; syntax errors go to `errors`."""
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml"):
        yield from _yaml_rows(path, text, errors)
    elif suffix == ".json" or (suffix not in (".jsonl", ".ndjson") and text.lstrip()[:1] == "["):
        yield from _json_array_rows(path, text, errors)
    else:
        yield from _jsonl_rows(path, text, errors)


def _jsonl_rows(path: Path, text: str, errors: list[str]) -> Iterator[tuple[int, str, Any]]:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            errors.append(f"{path}:{number}: malformed JSON: {exc.msg} (column {exc.colno})")
            continue
        yield number, str(number), row


def _json_array_rows(path: Path, text: str, errors: list[str]) -> Iterator[tuple[int, str, Any]]:
    """Each item of a JSON array with the line it starts on (decoded item by item for that)."""
    decoder = json.JSONDecoder()
    start = len(text) - len(text.lstrip())
    if text[start : start + 1] != "[":
        errors.append(f"{path}:1: malformed JSON: expected an array of problems")
        return
    pos, index = start + 1, 0
    while True:
        pos = _skip_space(text, pos)
        if text[pos : pos + 1] == "]":
            return
        try:
            row, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            errors.append(f"{path}:{exc.lineno}: malformed JSON: {exc.msg} (column {exc.colno})")
            return
        index += 1
        yield text.count("\n", 0, pos) + 1, str(index), row
        pos = _skip_space(text, end)
        if text[pos : pos + 1] == ",":
            pos += 1
        elif text[pos : pos + 1] != "]":
            line = text.count("\n", 0, pos) + 1
            errors.append(f"{path}:{line}: malformed JSON: expected ',' or ']' after item {index}")
            return


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def _yaml_rows(path: Path, text: str, errors: list[str]) -> Iterator[tuple[int, str, Any]]:
    """A YAML list of problems (or a mapping with a `problems:` list), with each item's line."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        reason = getattr(exc, "problem", None) or str(exc)
        errors.append(f"{path}{line}: malformed YAML: {reason}")
        return
    if data is None:
        return
    if isinstance(data, dict) and isinstance(data.get("problems"), list):
        assert isinstance(node, yaml.MappingNode)
        node = next(value for key, value in node.value if key.value == "problems")
        data = data["problems"]
    if not isinstance(data, list) or not isinstance(node, yaml.SequenceNode):
        errors.append(f"{path}:1: expected a list of problems (or a 'problems:' list)")
        return
    for index, (item, item_node) in enumerate(zip(data, node.value, strict=True), start=1):
        yield item_node.start_mark.line + 1, str(index), item
