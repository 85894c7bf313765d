"""Reading a results file back: its rows as `Result`s, for `ponder show`, a resumed run, and
a bench's scores. Reading takes no lock and needs no event loop; a torn last line (a run still
writing, or one killed) is skipped, and a line that is no result row is an error naming it.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from ponder.core.errors import PonderError
from ponder.core.types import Result

# Fields every row ponder writes has. A problem file's rows (`id`, `answer`) also parse as a
# `Result`; these keep one from being taken for a results file and rewritten.
ROW_FIELDS = frozenset({"id", "answer", "usage", "stop_reason"})


def read_results(path: str | Path) -> list[Result]:
    """Every row in a results file, in the order written. A torn last line is skipped (it is
    cut for good when a run resumes); a bad line elsewhere is an error naming it."""
    path = Path(path)
    # The piece after the last newline is empty, or a torn line that was never finished.
    complete = path.read_bytes().split(b"\n")[:-1]
    rows: list[Result] = []
    for number, line in enumerate(complete, start=1):
        if not line.strip():
            continue
        try:
            row = Result.model_validate_json(line)
        except ValidationError as exc:
            raise PonderError(f"{path}:{number}: not a result row: {_first_error(exc)}") from None
        if missing := ROW_FIELDS - row.model_fields_set:
            raise PonderError(f"{path}:{number}: not a result row: no field "
                              f"{', '.join(repr(f) for f in sorted(missing))}")
        rows.append(row)
    return rows


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(part) for part in err["loc"])
    return f"{where}: {err['msg']}" if where else str(err["msg"])
