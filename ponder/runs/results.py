"""The results file: one JSON line per problem, appended and made durable as each finishes.

A line is written with a single `write` on an append-only descriptor, and fsync'd with the
lines around it within about 50 ms (`ResultsWriter`), so a run killed at any moment leaves
every line it had written, whole, plus at most one torn last line, which
`torn_tail.drop_torn_tail` cuts away before a resumed run appends again. A row is a `Result`
without its trace (the trace goes to its own file), with a hash of the problem it answers
(`problem_hash`), so that a resumed run can tell a problem edited since.

A write that fails (a full disk) is an `OutputError` naming the file, with the rows before it
whole. Reading the rows back is `results_reader`'s; the lock that keeps a second run from
writing the same file is `run_lock`'s.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import stat
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ponder.core.appending import is_own_file, open_append, write_error, write_whole
from ponder.core.errors import OutputError
from ponder.core.types import Problem, Result
from ponder.runs.torn_tail import drop_torn_tail

if TYPE_CHECKING:  # only `sync` awaits: appending rows needs no event loop
    import asyncio

log = logging.getLogger(__name__)


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


def rewrite_results(path: str | Path, rows: list[Result]) -> None:
    """Replace the file's rows with `rows`, atomically: a kill leaves the old file or the new.
    A failure (a full disk) leaves the old file, and is an `OutputError`."""
    path = Path(path)
    tmp: Path | None = None
    try:
        # A name of its own (made with O_EXCL): a fixed one could be a file of the user's,
        # which would be appended to and then moved over the results.
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".ponder-rewrite",
                                    dir=path.parent)
        tmp = Path(name)
        try:
            os.fchmod(fd, stat.S_IMODE(path.stat().st_mode))  # the results' mode, not 0600
        finally:
            os.close(fd)
        with ResultsWriter(tmp) as writer:
            for row in rows:
                writer.append(row)
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        if isinstance(exc, OSError):
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
            raise OutputError(f"{path}: cannot rewrite it without the rows to drop: {reason}; "
                              "it was left as it was: make room, then run again",
                              exc.errno) from exc
        raise


# How long a row may wait to reach the disk: one fsync covers every row appended in this long,
# so a run pays one fsync (and one hand-off to a thread) per 50 ms, not one per row.
COMMIT_INTERVAL_S = 0.05


class ResultsWriter:
    """Appends result rows to `path`: each with a single `write` the moment it is appended, so
    a killed process (Ctrl-C, SIGKILL, out of memory) never loses a row appended before, and
    fsync'd in groups, so that a crash of the machine itself loses none older than about
    `commit_interval` (50 ms) plus the time of one fsync (longer only when one fsync takes
    longer than that). The group commit is a thread of the writer's own: the first row
    appended after an fsync starts the next one, at the earliest `commit_interval` after it,
    and every row appended by then shares it. `await sync()` returns once every row appended
    before it is on disk (it starts the next fsync at once, or as soon as the one under way
    ends); `write` appends and fsyncs at once; `close` fsyncs the rest. An fsync
    that fails is raised by the next `append`, `sync` or `close`. A row that cannot be written
    (a full disk) is an `OutputError` at once, and leaves the file ending with the row before.

    Each row goes to the file at `path` now, not to the one opened first: a file swapped in
    under a running writer (`git stash`/`checkout`, a sync tool, an editor's save) would
    otherwise take every later row into a file no name reaches any more. Costs a `stat` a row.

    >>> with ResultsWriter("results.jsonl") as out:  # doctest: +SKIP
    ...     out.append(result)  # in the file now, on disk within ~50 ms
    ...     await out.sync()    # on disk now
    """

    def __init__(self, path: str | Path, *, fsync: bool = True,
                 commit_interval: float = COMMIT_INTERVAL_S) -> None:
        self.path = Path(path)
        self.fsync = fsync
        self.commit_interval = commit_interval
        self._fd: int | None = None
        self._retired: list[int] = []  # files swapped out from under `path`; closed last
        self._made: tuple[int, int] | None = None  # (device, inode) of the file it made
        # Rows appended, and rows an fsync that has finished covers; both only grow.
        self._appended = 0
        self._durable = 0
        self._changed = threading.Condition()
        self._closing = False
        self._urgent = False  # a `sync` waits: the next fsync need not wait out the interval
        self._failure: OSError | None = None
        self._waiters: list[tuple[int, asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._committer: threading.Thread | None = None

    def write(self, result: Result) -> None:
        """Append `result`'s line and fsync it (and every row before it) now."""
        covered = self._write_line(result)
        if self.fsync:
            self._fsync(covered)

    async def sync(self) -> None:
        """Wait until every row appended before this call is on disk. Concurrent callers share
        one fsync, made in the writer's thread while the event loop goes on."""
        import asyncio  # here, not above: appending rows needs no event loop

        if not self.fsync or self._fd is None:
            return
        loop = asyncio.get_running_loop()
        with self._changed:
            self._raise_failure()
            if self._durable >= self._appended:
                return
            done: asyncio.Future[None] = loop.create_future()
            self._waiters.append((self._appended, loop, done))
            self._urgent = True
            self._changed.notify_all()
        await done

    def append(self, result: Result) -> None:
        """Append `result`'s line in one write: readers (and a resumed run) see it at once,
        lines never interleave, and a kill of this process cannot lose it. It reaches the disk
        with the next group fsync (within about `commit_interval`), or `sync` / `close`."""
        appended = self._write_line(result)
        if not self.fsync:
            return
        with self._changed:
            if self._committer is None:
                self._closing = False  # a writer closed and appended to again
                self._committer = threading.Thread(target=self._commit_forever, daemon=True,
                                                   name=f"fsync {self.path.name}")
                self._committer.start()
            elif appended == self._durable + 1:
                self._changed.notify_all()  # the committer may be waiting for a row

    @property
    def rows(self) -> int:
        """How many rows this writer has written, whole."""
        with self._changed:
            return self._appended

    def _write_line(self, result: Result) -> int:
        """Write `result`'s line in one write; how many rows have been written now."""
        if self._failure is not None:
            self._raise_failure()
        data = result_line(result).encode("utf-8")
        try:
            if self._fd is None:
                self._fd = self._open()
            elif self._swapped():
                log.warning("%s was replaced or removed while this run wrote to it; its rows "
                            "go on in the file now there", self.path)
                # As a resume does: a torn row of ours is cut, and a last line that is not one
                # of ours is refused, so no row is joined onto it.
                drop_torn_tail(self.path)
                fd = self._open()
                # The old file stays open until `close`: the committer thread may be fsyncing
                # it, and it reads `_fd` once, so it sees the old file or the new, never none.
                self._retired.append(self._fd)
                self._fd = fd
            write_whole(self._fd, data)
        except OutputError:
            raise
        except OSError as exc:
            raise write_error(self.path, exc) from exc
        with self._changed:
            self._appended += 1
            return self._appended

    def _open(self) -> int:
        """The file at `path`, for appending; made, with its folder, where it is missing."""
        fd, made = open_append(self.path)
        self._made = made or self._made
        return fd

    def discard_if_empty(self) -> bool:
        """Remove the file, once closed, when this writer made it and it holds nothing: what
        a run that stopped before its first row leaves. A file it did not make stays."""
        if self._fd is not None or not is_own_file(self.path, self._made):
            return False
        if self.path.stat().st_size:
            return False
        self.path.unlink()
        return True

    def _swapped(self) -> bool:
        """Whether the file open is no longer the one at `path`."""
        assert self._fd is not None
        try:
            now = os.stat(self.path)
        except FileNotFoundError:
            return True
        held = os.fstat(self._fd)
        return (now.st_dev, now.st_ino) != (held.st_dev, held.st_ino)

    def close(self) -> None:
        """fsync every row not yet on disk and close the file; raises an fsync's failure."""
        committer = self._committer
        with self._changed:
            self._closing = True
            self._changed.notify_all()
        if committer is not None:
            committer.join()
            self._committer = None
        try:
            if self._fd is not None and self.fsync and self._failure is None:
                with self._changed:
                    covered = self._appended
                    pending = self._durable < covered
                if pending:
                    self._fsync(covered)
        finally:
            for fd in [*self._retired, *([] if self._fd is None else [self._fd])]:
                os.close(fd)
            self._retired, self._fd = [], None
            with self._changed:
                self._release_waiters()
        self._raise_failure()

    def _commit_forever(self) -> None:
        """The group commit: an fsync whenever rows wait for one, at most one per interval."""
        last = -math.inf
        while True:
            with self._changed:
                # Rows appended within the interval after the last fsync began share the next.
                while not self._closing and (
                        self._durable >= self._appended
                        or (time.monotonic() < last + self.commit_interval and not self._urgent)):
                    wait = last + self.commit_interval - time.monotonic()
                    self._changed.wait(wait if self._durable < self._appended else None)
                if self._closing:
                    return  # `close` fsyncs what is left, after this thread is gone
                covered = self._appended
                self._urgent = False
            last = time.monotonic()
            try:
                self._fsync(covered)
            except OSError:
                return  # kept in `_failure`; the next append, sync or close raises it

    def _fsync(self, covered: int) -> None:
        """fsync the file, then count the first `covered` rows as on disk."""
        fd = self._fd  # once: a swap may replace it meanwhile
        assert fd is not None
        try:
            os.fsync(fd)
        except OSError as exc:
            with self._changed:
                self._failure = self._failure or exc
                self._release_waiters()
            raise self._failure_error() from exc
        with self._changed:
            self._durable = max(self._durable, covered)
            self._release_waiters()

    def _release_waiters(self) -> None:
        """Wake every `sync` whose rows are on disk, or all of them after a failure or once the
        file is closed. Called holding `_changed`."""
        closed = self._fd is None
        failure = None if self._failure is None else self._failure_error()
        keep = []
        for rows, loop, done in self._waiters:
            if rows <= self._durable or failure is not None or closed:
                with contextlib.suppress(RuntimeError):  # its event loop is closed: none waits
                    loop.call_soon_threadsafe(_settle, done, failure)
            else:
                keep.append((rows, loop, done))
        self._waiters = keep

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure_error() from self._failure

    def _failure_error(self) -> OutputError:
        assert self._failure is not None
        return OutputError(f"{self.path}: fsync failed, so rows written since the last one may "
                           f"not be on disk: {self._failure.strerror}", self._failure.errno)

    def __enter__(self) -> ResultsWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _settle(done: asyncio.Future[None], failure: OSError | None) -> None:
    if done.done():  # its `sync` was cancelled
        return
    if failure is None:
        done.set_result(None)
    else:
        done.set_exception(failure)
