"""Appending to a file ponder writes row by row (results, traces): whole lines or nothing,
a one-line error when the disk is full, and a record of which files ponder made, since it
removes no file it did not make."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path

from ponder.core.errors import OutputError

FileId = tuple[int, int]  # (device, inode): the file itself, whatever is at its path later


def open_append(path: Path) -> tuple[int, FileId | None]:
    """`path` opened for appending, made (with its folder) where it is missing; and the id of
    the file when this call made it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        # O_CREAT still: a dangling link's target is made, as it always was.
        return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644), None
    info = os.fstat(fd)
    return fd, (info.st_dev, info.st_ino)


def write_whole(fd: int, data: bytes) -> None:
    """Append `data` in one write where the OS allows, finishing a short one (a full disk, a
    signal). When a write fails part way, what it wrote is cut, so that the file ends with the
    last whole line; a torn line would break the next append, and `--resume` would have to cut
    it. The caller holds the file's lock, so the bytes at its end are this write's."""
    written = 0
    try:
        while written < len(data):
            count = os.write(fd, data[written:])
            if count == 0:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # no progress
            written += count
    except OSError:
        if written:
            with contextlib.suppress(OSError):
                info = os.fstat(fd)
                if stat.S_ISREG(info.st_mode):
                    os.ftruncate(fd, max(0, info.st_size - written))
        raise


def write_error(path: Path, exc: OSError) -> OutputError:
    """The one-line error for a file that could not be written."""
    return OutputError(f"{path}: cannot write: {exc.strerror or exc}; what was written before "
                       "is kept whole: make room, then run again with --resume", exc.errno)


def is_own_file(path: Path, made: FileId | None) -> bool:
    """Whether the file at `path` (itself, not a link's target) is the one with `made`'s
    (device, inode): one ponder made, not one put there since."""
    if made is None:
        return False
    try:
        now = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return (now.st_dev, now.st_ino) == made
