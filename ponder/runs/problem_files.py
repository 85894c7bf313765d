"""Loading a problem file (JSONL, a JSON array, or YAML) into `Problem`s, refusing bad input.

Every bad row is reported before any model call, one line per error naming the file, the line
and the field. The formats are parsed, with bounds a hostile file cannot get past, in
`problem_formats`; each row then becomes a `Problem` under the rules every row meets, wherever
it comes from (`problem_rows.problem_from_row`: aliases such as HumanEval's `task_id` /
`prompt`, unknown fields kept in `metadata`, field sizes, no code verifier unless allowed).
What only a whole file can get wrong is checked here: ids given twice, no rows at all, and
verifiers that do not load.

>>> problems = load_problems("examples/math_problems.jsonl")
>>> problems[0].id, problems[0].answer
"""

from __future__ import annotations

from pathlib import Path

from ponder.core.errors import ProblemFileError
from ponder.core.types import Problem
from ponder.runs.problem_formats import read_rows
from ponder.runs.problem_rows import MAX_FIELD_BYTES, ProblemRowError, problem_from_row
from ponder.verifiers import VerifierChoice


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
    errors: list[str] = []
    problems: list[Problem] = []
    first_line: dict[str, int] = {}
    try:
        file = path.open("rb")
    except OSError as exc:
        raise ProblemFileError([f"{path}: cannot read: {exc.strerror or exc}"]) from None
    with file:
        try:
            for line, default_id, row in read_rows(path, file, max_field_bytes, errors):
                try:
                    problem = problem_from_row(row, default_id, where=f"{path}:{line}",
                                               allow_code_verifiers=allow_code_verifiers,
                                               max_field_bytes=max_field_bytes)
                except ProblemRowError as exc:
                    errors.extend(exc.errors)
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
