"""One run at a time writes a results file: `RunLock` holds it (and its trace) from before a
resumed run reads it until the run ends, and a second run is refused, naming the first's pid.

Ponder writes and removes only files it made: the lock is a hidden `.<name>.ponder-lock` that
no other tool uses, and a file at that name which is not one of ponder's locks is refused and
left alone.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import stat
from pathlib import Path

from ponder.core.appending import is_own_file
from ponder.core.errors import OutputError, PonderError


class ResultsLocked(PonderError):
    """Another run holds the file: two writers would duplicate and lose rows."""


LOCK_SUFFIX = ".ponder-lock"
# What a lock file of ponder's holds: its holder's pid, or nothing yet.
_LOCK_TEXT = re.compile(rb"[0-9]{0,20}\n?")


def lock_path(path: str | Path) -> Path:
    """Where the lock of the results (or trace) file `path` lives: hidden beside it, under a
    name no other tool uses; `<name>.lock` would be `uv.lock` for `-o uv`, and that of poetry,
    Gemfile and flake for theirs."""
    path = Path(path)
    return path.with_name(f".{path.name}{LOCK_SUFFIX}")


class RunLock:
    """An exclusive lock on a results (or trace) file for the length of a run, taken before
    the file is read, cut or rewritten. It lives in `.<name>.ponder-lock` (`lock_path`), made
    by the run that holds it and naming its pid; the kernel drops it when the holder exits,
    however it exits, and the next run clears the file a killed one left. A file at that name
    that is not a ponder lock is refused and left as it is.

    >>> with RunLock("results.jsonl"):  # doctest: +SKIP
    ...     todo, previous, changed = resume_plan(problems, "results.jsonl")
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.lock_path = lock_path(self.path)
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock at once, or raise `ResultsLocked` naming the holder's pid (an
        `OutputError` when the lock file cannot be made, as on a full disk)."""
        try:
            self.lock_path.parent.mkdir(parents=True, exist_ok=True)
            while (fd := self._take()) is None:
                pass
        except OSError as exc:
            raise OutputError(f"{self.path}: cannot make its lock file {self.lock_path}: "
                              f"{exc.strerror or exc}", exc.errno) from None
        self._fd = fd

    def _take(self) -> int | None:
        """The lock file, made by this run, locked and holding its pid; None when the file
        at the path changed meanwhile, to try again."""
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            made = True
        except FileExistsError:
            try:
                # O_NOFOLLOW: a link there is no lock of ponder's, and its target no business.
                fd = os.open(self.lock_path, os.O_RDONLY | os.O_NOFOLLOW)
            except FileNotFoundError:
                return None  # its holder let go meanwhile
            made = False
        kept = False
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_pid(fd)
                raise ResultsLocked(
                    f"{self.path} is being written by another ponder run "
                    f"({f'pid {holder}' if holder else 'pid not yet recorded'}; see "
                    f"{self.lock_path}); wait for it to finish, or write elsewhere with -o"
                ) from None
            # Only the file still at the path counts: one its holder removed as it let go (or
            # a killed holder's, cleared by another run) is a file no later run would find.
            if not _is_at(fd, self.lock_path):
                return None
            if not made:
                # Unlocked: its holder is gone, killed before it let go. Cleared (while locked,
                # so no run takes it meanwhile) and made afresh, so that this run writes to and
                # later removes a file of its own; anything but such a lock is not ponder's.
                if not _is_lock_text(fd):
                    raise PonderError(
                        f"{self.lock_path} is in the way of {self.path}'s lock and is not a "
                        "lock ponder made; it was left untouched: move it, or write elsewhere "
                        "with -o")
                with contextlib.suppress(FileNotFoundError):  # its maker gave it up meanwhile
                    os.unlink(self.lock_path)
                return None
            os.write(fd, f"{os.getpid()}\n".encode())
            kept = True
            return fd
        finally:
            if not kept:
                if made and _is_at(fd, self.lock_path):  # ours, and this run will not hold it
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(self.lock_path)
                os.close(fd)

    def release(self) -> None:
        if self._fd is None:
            return
        # Removed while still held, so no other run can lock this file and then lose it; and
        # only while it is the file this run made.
        if _is_at(self._fd, self.lock_path):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.lock_path)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _is_at(fd: int, path: Path) -> bool:
    """Whether `fd` is the file at `path` (not one removed or replaced since it was opened)."""
    held = os.fstat(fd)
    return is_own_file(path, (held.st_dev, held.st_ino))


def _is_lock_text(fd: int) -> bool:
    """Whether the file holds what a ponder lock does: a pid, or nothing."""
    info = os.fstat(fd)
    return stat.S_ISREG(info.st_mode) and info.st_size <= 21 and \
        _LOCK_TEXT.fullmatch(os.pread(fd, 32, 0)) is not None


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
