"""One row of a data set (a mapping of fields) as a `Problem`: the rules every row meets,
whether it comes from a problem file, a Ray Dataset, or a dict given to `ponder.solve_many`.

Rows in the shapes of the common data sets load as they are: HumanEval's `task_id` / `prompt`
(and a `question`) become `id` / `problem`, a GSM8K answer written as a worked solution ending
in `#### 18` yields the gold `18`, and fields ponder does not know (a GSM8K `solution`,
HumanEval's `canonical_solution`) go into `metadata`, which no prompt ever renders.

A row is data, and a hostile one must neither run code nor exhaust the machine:
- `verifier` may name a registered verifier only; `module:attr` and `file.py:func` would
  import or run code, and need `allow_code_verifiers=True` (`--allow-code-verifiers`);
- each field holds at most `max_field_bytes` (default 1 MiB, `--max-field-bytes`), and a row
  nests at most `MAX_DEPTH` levels;
- text that is not text is refused here, not when the run sends it: a lone surrogate
  (`"\\ud800"` in JSON) anywhere in a row, and a NUL in an id.

A row that breaks a rule is a `ProblemRowError` (a `ConfigError`) whose message is one line
naming the field, and the row's place (`file.jsonl:12`) when given; never pydantic's own.

>>> problem = as_problem({"id": "q1", "question": "2 + 2?", "answer": 4, "solution": "2+2=4"})
>>> problem.problem, problem.answer, problem.metadata
('2 + 2?', '4', {'solution': '2+2=4'})
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from ponder.core.errors import ConfigError, ProblemFileError
from ponder.core.types import Problem
from ponder.verifiers.registry import REGISTRY, is_code_spec

KNOWN_FIELDS = frozenset(Problem.model_fields)
# Other data sets' names for ponder's fields: (their name, ours).
ALIASES = (("task_id", "id"), ("prompt", "problem"), ("question", "problem"))
_GSM8K_MARK = "####"

MAX_FIELD_BYTES = 1 << 20
MAX_DEPTH = 100  # nesting levels a row may have; deeper ones would overflow the stack later
# Half of a UTF-16 pair on its own: JSON's `\ud800` escape decodes to one, and no encoding,
# UTF-8 included, can write it, so a row holding one fails only once the run sends it.
_SURROGATE = re.compile("[\ud800-\udfff]")


class ProblemRowError(ProblemFileError, ConfigError):
    """A row breaks the rules. `errors` holds one line per thing wrong, each beginning with the
    row's place when one was given; the message is those on one line. A `ProblemFileError`
    too, so that code collecting a file's (or a data set's) bad rows catches it as one."""

    def __init__(self, errors: list[str], message: str) -> None:
        ConfigError.__init__(self, message)
        self.errors = errors

    def __reduce__(self) -> tuple[type[ProblemRowError], tuple[list[str], str]]:
        # Pickling rebuilds an exception from `args`, the message alone; a worker process
        # (Ray, multiprocessing) sending one back would fail to rebuild it, losing the error.
        return type(self), (self.errors, str(self))


@dataclass(frozen=True)
class _Rules:
    allow_code_verifiers: bool
    max_field_bytes: int


def as_problem(obj: Problem | str | Mapping[str, Any], *, where: str | None = None,
               allow_code_verifiers: bool = False,
               max_field_bytes: int = MAX_FIELD_BYTES) -> Problem:
    """`obj` as a `Problem`: a `Problem` as it is, text as the problem it asks, and a mapping
    as `problem_from_row` reads it. Raises `ProblemRowError` (a `ConfigError`) otherwise."""
    if isinstance(obj, Problem):
        return obj
    if isinstance(obj, str):
        obj = {"problem": obj}
    elif not isinstance(obj, Mapping):
        message = (f"expected a Problem, its text, or a mapping with a 'problem' field, "
                   f"got {type(obj).__name__}")
        raise _refusal(where, [message])
    return problem_from_row(obj, where=where, allow_code_verifiers=allow_code_verifiers,
                            max_field_bytes=max_field_bytes)


def problem_from_row(row: Mapping[str, Any], default_id: str | None = None, *,
                     where: str | None = None, allow_code_verifiers: bool = False,
                     max_field_bytes: int = MAX_FIELD_BYTES) -> Problem:
    """One row as a `Problem`, under the rules above; `default_id` is its id when the row has
    none (without one, `Problem`'s default). `where` (`"file.jsonl:12"`) begins each error.

    Raises `ProblemRowError`, a `ConfigError`, naming each field that is wrong.
    """
    if max_field_bytes < 1:
        raise ValueError(f"max_field_bytes must be at least 1, got {max_field_bytes}")
    rules = _Rules(allow_code_verifiers, max_field_bytes)
    problem, errors = _to_problem(row, default_id, rules)
    if problem is None:
        raise _refusal(where, errors)
    return problem


def _refusal(where: str | None, errors: list[str]) -> ProblemRowError:
    if where is None:
        return ProblemRowError(errors, "; ".join(errors))
    return ProblemRowError([f"{where}: {error}" for error in errors],
                           f"{where}: {'; '.join(errors)}")


def normalize_row(row: Mapping[str, Any], default_id: str | None) -> dict[str, Any]:
    """A data set's row in ponder's field names, with unknown fields moved into `metadata`."""
    row = dict(row)
    for theirs, ours in ALIASES:
        if theirs in row and ours not in row:
            row[ours] = row.pop(theirs)
    if default_id is not None:
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


def _to_problem(row: Any, default_id: str | None,
                rules: _Rules) -> tuple[Problem | None, list[str]]:
    """The problem, or None and one line per thing wrong (the checks stop at the first kind
    that fails: a later one may not be safe to run on such a row)."""
    if not isinstance(row, Mapping):
        return None, [f"expected an object with a 'problem' field, got {type(row).__name__}"]
    row = dict(row)  # the depth and text walks below descend into dicts only
    if _too_deep(row):
        return None, [f"nested more than {MAX_DEPTH} levels deep"]
    oversized = [(str(key), size) for key, value in row.items()
                 if (size := _size(value)) > rules.max_field_bytes]
    if oversized:
        return None, [f"field {key!r}: {size:,} bytes, over the limit of "
                      f"{rules.max_field_bytes:,} (raise it with --max-field-bytes)"
                      for key, size in oversized]
    surrogates = [(str(key), char) for key, value in row.items()
                  if (char := _lone_surrogate(key) or _lone_surrogate(value))]
    if surrogates:
        return None, [f"field {key!r}: holds a lone surrogate (\\u{ord(char):04x}), half of "
                      "a UTF-16 pair, which is not text" for key, char in surrogates]
    verifier = row.get("verifier")
    if isinstance(verifier, str) and not rules.allow_code_verifiers and is_code_spec(verifier):
        # Checked on the raw row, before anything is imported: a data file must not run code.
        return None, [f"field 'verifier': {verifier!r} would run code; a problem file may "
                      f"name a registered verifier ({', '.join(REGISTRY.names())}), or pass "
                      "--allow-code-verifiers if you trust this file"]
    fields = normalize_row(row, default_id)
    if isinstance(fields.get("id"), str) and "\0" in fields["id"]:
        # A NUL ends the id early wherever it meets C (a file name, a log, a terminal).
        key = next((theirs for theirs, ours in ALIASES if ours == "id" and theirs in row
                    and "id" not in row), "id")
        return None, [f"field {key!r}: holds a NUL character (\\x00), which an id may not"]
    problem_text = fields.get("problem")
    if problem_text is None:
        return None, ["field 'problem': missing"]
    if not isinstance(problem_text, str) or not problem_text.strip():
        return None, ["field 'problem': must be non-empty text"]
    try:
        return Problem.model_validate(fields), []
    except ValidationError as exc:
        # One line per field: a union field's alternatives each add an error of their own.
        by_field: dict[str, list[str]] = {}
        for err in exc.errors():
            field = str(err["loc"][0]) if err["loc"] else "row"
            if err["msg"] not in by_field.setdefault(field, []):
                by_field[field].append(err["msg"])
        return None, [f"field {field!r}: {' or '.join(messages)}"
                      for field, messages in by_field.items()]


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
