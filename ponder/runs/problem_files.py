"""Loading problem files (JSONL, a JSON array, or YAML) into `Problem`s, refusing bad input.

Every bad row is reported before any model call, one line per error naming the file, the line
and the field. Rows in the shapes of the common data sets load as they are: HumanEval's
`task_id` / `prompt` become `id` / `problem`, a GSM8K answer written as a worked solution
ending in `#### 18` yields the gold `18`, and fields ponder does not know (a GSM8K `solution`,
HumanEval's `canonical_solution`) go into `metadata`, which no prompt ever renders.

A problem file is data, and a hostile one must neither run code nor exhaust the machine:
- a row's `verifier` may name a registered verifier only; `module:attr` and `file.py:func`
  would import or run code, and need `allow_code_verifiers=True` (`--allow-code-verifiers`);
- each field holds at most `max_field_bytes` (default 1 MiB, `--max-field-bytes`); a JSONL
  line, or a whole JSON-array or YAML file, over 16 times that is refused before it is parsed,
  and a JSONL file is read a line at a time;
- YAML aliases are refused (a few hundred bytes of them expand to gigabytes), and so is
  nesting deeper than 100 levels;
- a YAML key given twice in one mapping is refused, not settled silently for the last;
- text that is not text is refused here, not when the run sends it: a lone surrogate
  (`"\\ud800"` in JSON) anywhere in a row, and a NUL in an id.

>>> problems = load_problems("examples/math_problems.jsonl")
>>> problems[0].id, problems[0].answer
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import yaml
from pydantic import ValidationError

from ponder.core.errors import ProblemFileError
from ponder.core.types import Problem
from ponder.verifiers import VerifierChoice
from ponder.verifiers.registry import REGISTRY, is_code_spec

KNOWN_FIELDS = frozenset(Problem.model_fields)
# Other data sets' names for ponder's fields: (their name, ours).
ALIASES = (("task_id", "id"), ("prompt", "problem"), ("question", "problem"))
_GSM8K_MARK = "####"

MAX_FIELD_BYTES = 1 << 20
# What is refused unparsed, in fields' worth: a row of the known fields at their largest fits.
UNPARSED_FACTOR = 16
MAX_DEPTH = 100  # nesting levels a row may have; deeper ones would overflow the stack later
# Half of a UTF-16 pair on its own: JSON's `\ud800` escape decodes to one, and no encoding,
# UTF-8 included, can write it, so a row holding one fails only once the run sends it.
_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True)
class _Rules:
    allow_code_verifiers: bool
    max_field_bytes: int

    @property
    def max_unparsed_bytes(self) -> int:
        return UNPARSED_FACTOR * self.max_field_bytes


def load_problems(path: str | Path, verifiers: VerifierChoice | None = None, *,
                  allow_code_verifiers: bool = False,
                  max_field_bytes: int = MAX_FIELD_BYTES) -> list[Problem]:
    """The problems in `path`; raises `ProblemFileError` listing every bad row.

    With `verifiers`, each row's verifier is loaded too, so an unknown one is refused here. A
    row naming code as its verifier (`module:attr`, `file.py:func`) is refused, before anything
    is imported, unless `allow_code_verifiers`. Fields over `max_field_bytes` are refused.
    """
    path = Path(path)
    if max_field_bytes < 1:
        raise ValueError(f"max_field_bytes must be at least 1, got {max_field_bytes}")
    rules = _Rules(allow_code_verifiers, max_field_bytes)
    errors: list[str] = []
    problems: list[Problem] = []
    first_line: dict[str, int] = {}
    try:
        file = path.open("rb")
    except OSError as exc:
        raise ProblemFileError([f"{path}: cannot read: {exc.strerror or exc}"]) from None
    with file:
        try:
            for line, default_id, row in _rows(path, file, rules, errors):
                problem = _to_problem(row, default_id, f"{path}:{line}", rules, errors)
                if problem is None:
                    continue
                if problem.id in first_line:
                    errors.append(f"{path}:{line}: field 'id': duplicate id {problem.id!r} "
                                  f"(first on line {first_line[problem.id]})")
                    continue
                first_line[problem.id] = line
                problems.append(problem)
        except OSError as exc:
            raise ProblemFileError([f"{path}: cannot read: {exc.strerror or exc}"]) from None
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


def problem_from_row(row: Any, default_id: str, *, where: str = "row",
                     allow_code_verifiers: bool = False,
                     max_field_bytes: int = MAX_FIELD_BYTES) -> Problem:
    """One row of a data set that is not a file (a Ray Dataset's) as a `Problem`, under a
    problem file's rules: field sizes, nesting, aliases, and no code verifier unless allowed.
    Raises `ProblemFileError` with one line per thing wrong, each beginning with `where`."""
    errors: list[str] = []
    problem = _to_problem(row, default_id, where, _Rules(allow_code_verifiers, max_field_bytes),
                          errors)
    if problem is None:
        raise ProblemFileError(errors)
    return problem


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


def _to_problem(row: Any, default_id: str, where: str, rules: _Rules,
                errors: list[str]) -> Problem | None:
    if not isinstance(row, dict):
        errors.append(f"{where}: expected an object with a 'problem' field, "
                      f"got {type(row).__name__}")
        return None
    if _too_deep(row):
        errors.append(f"{where}: nested more than {MAX_DEPTH} levels deep")
        return None
    oversized = [(str(key), size) for key, value in row.items()
                 if (size := _size(value)) > rules.max_field_bytes]
    if oversized:
        errors.extend(f"{where}: field {key!r}: {size:,} bytes, over the limit of "
                      f"{rules.max_field_bytes:,} (raise it with --max-field-bytes)"
                      for key, size in oversized)
        return None
    surrogates = [(str(key), char) for key, value in row.items()
                  if (char := _lone_surrogate(key) or _lone_surrogate(value))]
    if surrogates:
        errors.extend(f"{where}: field {key!r}: holds a lone surrogate (\\u{ord(char):04x}), "
                      "half of a UTF-16 pair, which is not text" for key, char in surrogates)
        return None
    verifier = row.get("verifier")
    if isinstance(verifier, str) and not rules.allow_code_verifiers and is_code_spec(verifier):
        # Checked on the raw row, before anything is imported: a data file must not run code.
        errors.append(f"{where}: field 'verifier': {verifier!r} would run code; a problem file "
                      f"may name a registered verifier ({', '.join(REGISTRY.names())}), or "
                      "pass --allow-code-verifiers if you trust this file")
        return None
    fields = normalize_row(row, default_id)
    if isinstance(fields.get("id"), str) and "\0" in fields["id"]:
        # A NUL ends the id early wherever it meets C (a file name, a log, a terminal).
        key = next((theirs for theirs, ours in ALIASES if ours == "id" and theirs in row
                    and "id" not in row), "id")
        errors.append(f"{where}: field {key!r}: holds a NUL character (\\x00), which an id "
                      "may not")
        return None
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


def _size(value: Any) -> int:
    """A field's size in bytes: its UTF-8 text, or its JSON for anything else."""
    if isinstance(value, str):
        return len(value.encode("utf-8", "surrogatepass"))
    if isinstance(value, int | float | bool) or value is None:
        return 8
    text = json.dumps(value, default=str, ensure_ascii=False)  # `_too_deep` bounded its depth
    return len(text.encode("utf-8", "surrogatepass"))


def _lone_surrogate(value: Any) -> str | None:
    """The first lone surrogate in `value`'s text, keys included, found without recursion."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if found := _SURROGATE.search(item):
                return found.group()
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return None


def _too_deep(value: Any) -> bool:
    """Whether `value` nests more than `MAX_DEPTH` levels, found without recursion."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            return True
        if isinstance(item, dict):
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
    return False


def _rows(path: Path, file: IO[bytes], rules: _Rules,
          errors: list[str]) -> Iterator[tuple[int, str, Any]]:
    """(line, default id, raw row) for each row; syntax errors go to `errors`."""
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml"):
        text = _read_whole(path, file, rules, "a YAML", errors)
        if text is not None:
            yield from _yaml_rows(path, text, errors)
    elif suffix == ".json" or (suffix not in (".jsonl", ".ndjson") and _first_char(file) == b"["):
        text = _read_whole(path, file, rules, "a JSON-array", errors)
        if text is not None:
            yield from _json_array_rows(path, text, errors)
    else:
        yield from _jsonl_rows(path, file, rules, errors)


def _first_char(file: IO[bytes]) -> bytes:
    """The file's first non-blank byte; the file is left at its start."""
    try:
        while chunk := file.read(1 << 16):
            if stripped := chunk.lstrip():
                return stripped[:1]
        return b""
    finally:
        file.seek(0)


def _read_whole(path: Path, file: IO[bytes], rules: _Rules, kind: str,
                errors: list[str]) -> str | None:
    """The text of a file parsed as a whole, refused unread when it is over the limit."""
    limit = rules.max_unparsed_bytes
    data = file.read(limit + 1)
    if len(data) > limit:
        errors.append(f"{path}: larger than {limit:,} bytes, the most {kind} file may hold "
                      f"({UNPARSED_FACTOR} x --max-field-bytes); write it as JSONL, which is "
                      "read a line at a time, or raise --max-field-bytes")
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        errors.append(f"{path}: not UTF-8 text: {exc.reason}")
        return None


def _jsonl_rows(path: Path, file: IO[bytes], rules: _Rules,
                errors: list[str]) -> Iterator[tuple[int, str, Any]]:
    limit = rules.max_unparsed_bytes
    for number, (raw, size) in enumerate(_bounded_lines(file, limit), start=1):
        if raw is None:
            errors.append(f"{path}:{number}: line of {size:,} bytes, over the limit of "
                          f"{limit:,} ({UNPARSED_FACTOR} x --max-field-bytes); not parsed")
            continue
        if not raw.strip():
            continue
        try:
            line = raw.removesuffix(b"\n").removesuffix(b"\r").decode("utf-8")
        except UnicodeDecodeError as exc:
            errors.append(f"{path}:{number}: not UTF-8 text: {exc.reason}")
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            errors.append(f"{path}:{number}: malformed JSON: {exc.msg} (column {exc.colno})")
            continue
        except ValueError as exc:  # an integer of more digits than Python converts
            errors.append(f"{path}:{number}: malformed JSON: {_reason(exc)}")
            continue
        except RecursionError:
            errors.append(f"{path}:{number}: malformed JSON: nested too deeply "
                          f"(at most {MAX_DEPTH} levels are allowed)")
            continue
        yield number, str(number), row


def _bounded_lines(file: IO[bytes], limit: int) -> Iterator[tuple[bytes | None, int]]:
    """Each line of `file` with its size; a line over `limit` bytes comes as None, its bytes
    skipped rather than held, so a huge line costs neither memory nor parsing."""
    while line := file.readline(limit + 1):
        if len(line) <= limit or line.endswith(b"\n"):
            yield line, len(line)
            continue
        size = len(line)
        while (more := file.readline(1 << 20)) and not more.endswith(b"\n"):
            size += len(more)
        yield None, size + len(more)


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
        except ValueError as exc:  # an integer of more digits than Python converts
            line = text.count("\n", 0, pos) + 1
            errors.append(f"{path}:{line}: malformed JSON: {_reason(exc)}")
            return
        except RecursionError:
            line = text.count("\n", 0, pos) + 1
            errors.append(f"{path}:{line}: malformed JSON: nested too deeply "
                          f"(at most {MAX_DEPTH} levels are allowed)")
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


# libyaml where it is installed: the pure-Python parser takes seconds a megabyte.
_YAML_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _yaml_rows(path: Path, text: str, errors: list[str]) -> Iterator[tuple[int, str, Any]]:
    """A YAML list of problems (or a mapping with a `problems:` list), with each item's line."""
    loader = _YAML_LOADER(text)
    try:
        node = loader.get_single_node()
        if node is not None and (alias := _first_alias(node)) is not None:
            errors.append(f"{path}:{alias.start_mark.line + 1}: malformed YAML: the value "
                          "anchored here is repeated by an alias (*name); aliases are not "
                          "allowed in problem files, write the value out")
            return
        if node is not None and (twice := _duplicate_key(node)) is not None:
            again, first = twice
            errors.append(f"{path}:{again.start_mark.line + 1}: malformed YAML: key "
                          f"{again.value!r} given twice in one mapping (first on line "
                          f"{first.start_mark.line + 1}); keep one")
            return
        data = None if node is None else loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        reason = getattr(exc, "problem", None) or str(exc)
        errors.append(f"{path}{line}: malformed YAML: {reason}")
        return
    except ValueError as exc:  # an integer of more digits than Python converts
        errors.append(f"{path}: malformed YAML: {_reason(exc)}")
        return
    except RecursionError:
        errors.append(f"{path}: malformed YAML: nested too deeply "
                      f"(at most {MAX_DEPTH} levels are allowed)")
        return
    finally:
        loader.dispose()
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


def _first_alias(root: yaml.Node) -> yaml.Node | None:
    """A node reached twice, which only an alias makes: the composer shares the anchored
    node, and building it out would copy it once per path (a "billion laughs")."""
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            return node
        seen.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
        elif isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                stack.extend((key, value))
    return None


def _duplicate_key(root: yaml.Node) -> tuple[yaml.Node, yaml.Node] | None:
    """A key given twice in one mapping, and its first: YAML forbids it, and the parser would
    keep the last silently (a second `problems:` list would replace the first). Keys compare
    by tag and text, as they are built: `1` and `"1"` differ. Walked without recursion, after
    `_first_alias` made sure the nodes form a tree."""
    stack = [root]
    while stack:
        node = stack.pop()
        if isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
        elif isinstance(node, yaml.MappingNode):
            seen: dict[tuple[str, str], yaml.Node] = {}
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and \
                        (first := seen.setdefault((key.tag, key.value), key)) is not key:
                    return key, first
                stack.extend((key, value))
    return None


def _reason(exc: ValueError) -> str:
    # Python's own advice after the ';' (set_int_max_str_digits) is not the user's to follow.
    return str(exc).split(";")[0]
