"""The results file: one JSON line per problem, appended and made durable as each finishes.

A line is written with a single `write` on an append-only descriptor, then fsync'd, so a run
killed at any moment leaves whole lines plus at most one torn last line, which
`drop_torn_tail` cuts away before a resumed run appends again. A row is a `Result` without its
trace (the trace goes to its own file).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from pydantic import ValidationError

from ponder.errors import PonderError
from ponder.types import Result


def result_line(result: Result) -> str:
    """`result` as one JSON line, trace left out."""
    return result.model_dump_json(exclude={"trace"}, fallback=str) + "\n"


def drop_torn_tail(path: str | Path) -> int:
    """Cut a last line that lacks its newline (a write the process died in); returns how many
    bytes went. A missing file is left missing."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return 0
    if size == 0:
        return 0
    with path.open("rb+") as file:
        # Read backwards in blocks to the last newline; the file may be large.
        end = size
        block = 1 << 16
        keep = 0
        while end > 0:
            start = max(0, end - block)
            file.seek(start)
            chunk = file.read(end - start)
            if end == size and chunk.endswith(b"\n"):
                return 0
            cut = chunk.rfind(b"\n")
            if cut >= 0:
                keep = start + cut + 1
                break
            end = start
        file.truncate(keep)
        file.flush()
        os.fsync(file.fileno())
    return size - keep


def rewrite_results(path: str | Path, rows: list[Result]) -> None:
    """Replace the file's rows with `rows`, atomically: a kill leaves the old file or the new."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.rewrite")
    with ResultsWriter(tmp) as writer:
        for row in rows:
            writer.append(row)
    os.replace(tmp, path)


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
            rows.append(Result.model_validate_json(line))
        except ValidationError as exc:
            raise PonderError(f"{path}:{number}: not a result row: {_first_error(exc)}") from None
    return rows


def done_ids(path: str | Path) -> set[str]:
    """The ids a results file already holds (empty when there is no file)."""
    path = Path(path)
    return {row.id for row in read_results(path)} if path.is_file() else set()


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(part) for part in err["loc"])
    return f"{where}: {err['msg']}" if where else str(err["msg"])


class ResultsWriter:
    """Appends result rows to `path`, each made durable with fsync (`write`, or `append` then
    `await sync()` inside an event loop); `close` syncs whatever is left.

    >>> with ResultsWriter("results.jsonl") as out:  # doctest: +SKIP
    ...     out.write(result)
    """

    def __init__(self, path: str | Path, *, fsync: bool = True) -> None:
        self.path = Path(path)
        self.fsync = fsync
        self._fd: int | None = None

    def write(self, result: Result) -> None:
        """Append `result`'s line and fsync it."""
        self.append(result)
        if self.fsync and self._fd is not None:
            os.fsync(self._fd)

    async def sync(self) -> None:
        """fsync in a thread, so an event loop goes on meanwhile (concurrent calls overlap, and
        each covers every line appended before it)."""
        if self.fsync and self._fd is not None:
            await asyncio.to_thread(os.fsync, self._fd)

    def append(self, result: Result) -> None:
        """Append `result`'s line in one write: readers (and a resumed run) see it at once,
        and lines never interleave. It is on disk for good after `sync`."""
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        data = result_line(result).encode("utf-8")
        written = os.write(self._fd, data)
        while written < len(data):  # only on a full disk or a signal; finish the line
            written += os.write(self._fd, data[written:])

    def close(self) -> None:
        if self._fd is not None:
            if self.fsync:
                os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> ResultsWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
