"""The results file: one JSON line per problem, appended and made durable as each finishes.

A line is written with a single `write` on an append-only descriptor, then fsync'd, so a run
killed at any moment leaves whole lines plus at most one torn last line, which
`drop_torn_tail` cuts away before a resumed run appends again. A row is a `Result` without its
trace (the trace goes to its own file), with a hash of the problem it answers (`problem_hash`),
so that a resumed run can tell a problem edited since.

One run at a time writes a results file: `RunLock` holds it (and its trace) from before a
resumed run reads it until the run ends, and a second run is refused, naming the first's pid.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from pathlib import Path

from pydantic import ValidationError

from ponder.errors import PonderError
from ponder.types import Problem, Result

# How a row, and a trace event, begin as ponder writes them; a torn last line that begins
# otherwise is not one of ours, and a file holding it is left as it is.
ROW_START = b'{"id":'
TRACE_ROW_START = b'{"kind":'
# Fields every row ponder writes has. A problem file's rows (`id`, `answer`) also parse as a
# `Result`; these keep one from being taken for a results file and rewritten.
ROW_FIELDS = frozenset({"id", "answer", "usage", "stop_reason"})


def result_line(result: Result) -> str:
    """`result` as one JSON line, trace left out."""
    return result.model_dump_json(exclude={"trace"}, fallback=str) + "\n"


def problem_hash(problem: Problem) -> str:
    """A digest of what a problem asks and how it is judged: its text, gold fields, verifier
    and metadata, not its id nor the order of keys. Fields left at their defaults do not count,
    so that a field ponder adds later does not make every earlier row look stale."""
    content = problem.model_dump(mode="json", exclude={"id"}, exclude_defaults=True)
    text = json.dumps(content, sort_keys=True, ensure_ascii=False, separators=(",", ":"),
                      default=str)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _torn_tail(path: Path) -> tuple[int, int, bytes]:
    """(size, where the torn last line starts, its first bytes); the start is the size when
    the file ends with a newline (or is missing or empty)."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return 0, 0, b""
    with path.open("rb") as file:
        # Read backwards in blocks to the last newline; the file may be large.
        end = size
        block = 1 << 16
        keep = 0
        while end > 0:
            start = max(0, end - block)
            file.seek(start)
            chunk = file.read(end - start)
            if end == size and chunk.endswith(b"\n"):
                return size, size, b""
            cut = chunk.rfind(b"\n")
            if cut >= 0:
                keep = start + cut + 1
                break
            end = start
        file.seek(keep)
        return size, keep, file.read(64)


def check_torn_tail(path: str | Path, row_start: bytes = ROW_START) -> tuple[int, int]:
    """(size, where a torn last line starts) of `path`; raises `PonderError` when the file ends
    in a line that lacks its newline and does not begin the way ponder's rows do: that is no
    torn write of ours, and cutting it would destroy it."""
    path = Path(path)
    size, keep, head = _torn_tail(path)
    if keep < size and not (head.startswith(row_start) or row_start.startswith(head)):
        raise PonderError(f"{path}: its last line ({size - keep:,} bytes, no newline) is not "
                          f"a row ponder wrote; is this the right file? It was left untouched")
    return size, keep


def drop_torn_tail(path: str | Path, row_start: bytes = ROW_START) -> int:
    """Cut a last line that lacks its newline (a write the process died in); returns how many
    bytes went. A missing file is left missing; a last line that does not begin as ponder's
    rows do (`row_start`) is refused (`check_torn_tail`), not cut."""
    path = Path(path)
    size, keep = check_torn_tail(path, row_start)
    if keep == size:
        return 0
    with path.open("rb+") as file:
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
            row = Result.model_validate_json(line)
        except ValidationError as exc:
            raise PonderError(f"{path}:{number}: not a result row: {_first_error(exc)}") from None
        if missing := ROW_FIELDS - row.model_fields_set:
            raise PonderError(f"{path}:{number}: not a result row: no field "
                              f"{', '.join(repr(f) for f in sorted(missing))}")
        rows.append(row)
    return rows


def done_ids(path: str | Path) -> set[str]:
    """The ids a results file already holds (empty when there is no file)."""
    path = Path(path)
    return {row.id for row in read_results(path)} if path.is_file() else set()


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(part) for part in err["loc"])
    return f"{where}: {err['msg']}" if where else str(err["msg"])


class ResultsLocked(PonderError):
    """Another run holds the file: two writers would duplicate and lose rows."""


class RunLock:
    """An exclusive lock on a results (or trace) file for the length of a run, taken before
    the file is read, cut or rewritten. It lives in `<path>.lock`, which names the holder's
    pid; the kernel drops it when the holder exits, however it exits.

    >>> with RunLock("results.jsonl"):  # doctest: +SKIP
    ...     todo, previous, changed = resume_plan(problems, "results.jsonl")
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(f"{self.path.name}.lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock at once, or raise `ResultsLocked` naming the holder's pid."""
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_pid(fd)
                os.close(fd)
                raise ResultsLocked(
                    f"{self.path} is being written by another ponder run "
                    f"({f'pid {holder}' if holder else 'pid not yet recorded'}; see "
                    f"{self.lock_path}); wait for it to finish, or write elsewhere with -o"
                ) from None
            # A holder that let go removes the lock file; one we opened before that is a file
            # no later run would find, so only the one still at the path counts.
            try:
                current = os.stat(self.lock_path)
            except FileNotFoundError:
                current = None
            mine = os.fstat(fd)
            if current is not None and (current.st_ino, current.st_dev) == \
                    (mine.st_ino, mine.st_dev):
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        # Removed while still held, so no other run can lock this file and then lose it.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.lock_path)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


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
        import asyncio  # here, not above: `ponder show` reads results and needs no event loop

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
