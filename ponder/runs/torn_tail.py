"""A torn last line: what a process killed mid-write leaves at the end of a results (or trace)
file, and what must be cut before a resumed run appends again, or its first row would be
joined onto the torn one.

Only a line that begins as ponder's rows do is cut: a file ending otherwise is not one ponder
wrote (a wrong `-o`), and is refused rather than destroyed.
"""

from __future__ import annotations

import os
from pathlib import Path

from ponder.core.errors import PonderError

# How a row, and a trace event, begin as ponder writes them; a torn last line that begins
# otherwise is not one of ours, and a file holding it is left as it is.
ROW_START = b'{"id":'
TRACE_ROW_START = b'{"kind":'


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
