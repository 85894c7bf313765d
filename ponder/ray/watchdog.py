"""Stops the Ray processes a `ponder solve --ray local` driver started, once the driver is
gone, however it went (SIGKILL and out-of-memory included).

Why it is needed: `ray.init()` starts the cluster as the driver's children. Ray ties the GCS
server and the raylet to the driver's life (they die with it), and the workers die with the
raylet within seconds, but the raylet's agents (`ray::DashboardAgent`,
`ray::RuntimeEnvAgent`) outlive a SIGKILLed driver by up to a minute. This watchdog, started
by the driver in a session of its own (so that neither a Ctrl-C to the terminal nor a kill of
the driver's process group reaches it), notes every Ray process below the driver while the
driver lives; when the pipe from the driver closes it stops those still running: SIGTERM,
then SIGKILL after `GRACE_S`. Processes that were the driver's before Ray started, and
processes that are not Ray's, are left alone.

    python -m ponder.ray.watchdog DRIVER_PID    # stdin: a pipe the driver holds open

The driver writes a line to the pipe to ask for a scan at once (after `ray.init`). Only the
standard library: it starts in milliseconds and holds a few MiB.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import time

SCAN_S = 0.5  # how often the process table is read while the driver lives
GRACE_S = 2.0  # between SIGTERM and SIGKILL


def process_table() -> dict[int, tuple[int, int, str]]:
    """Every process: pid -> (parent pid, start time in clock ticks, state letter)."""
    table: dict[int, tuple[int, int, str]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as file:
                stat = file.read().decode("ascii", "replace")
        except OSError:  # gone since the listing
            continue
        # The command name (field 2) may hold spaces and parentheses; the rest follows the last.
        fields = stat.rsplit(")", 1)[1].split()
        table[int(name)] = (int(fields[1]), int(fields[19]), fields[0])
    return table


def descendants(roots: set[int], table: dict[int, tuple[int, int, str]]) -> set[int]:
    """The processes below any of `roots` (the roots themselves left out)."""
    children: dict[int, list[int]] = {}
    for pid, (parent, _, _) in table.items():
        children.setdefault(parent, []).append(pid)
    found: set[int] = set()
    todo = list(roots)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def is_ray(pid: int) -> bool:
    """Whether `pid` runs Ray: its binaries, its Python entry points, or a `ray::` worker."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as file:
            cmdline = file.read().replace(b"\0", b" ")
    except OSError:
        return False
    return cmdline.startswith(b"ray::") or b"/ray/" in cmdline


def alive(pid: int, started: int, table: dict[int, tuple[int, int, str]]) -> bool:
    """Whether the process that had `pid` at `started` still runs (not reused, not a zombie)."""
    entry = table.get(pid)
    return entry is not None and entry[1] == started and entry[2] not in ("Z", "X")


def stop(seen: dict[int, int]) -> None:
    """SIGTERM each process in `seen` (pid -> start time) still running, then SIGKILL those
    still there after `GRACE_S`."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        table = process_table()
        left = [pid for pid, started in seen.items() if alive(pid, started, table)]
        if not left:
            return
        for pid in left:
            with contextlib.suppress(ProcessLookupError):  # it ended meanwhile
                os.kill(pid, sig)
        if sig == signal.SIGTERM:
            deadline = time.monotonic() + GRACE_S
            while time.monotonic() < deadline:
                time.sleep(0.05)
                table = process_table()
                if not any(alive(pid, seen[pid], table) for pid in left):
                    return


def watch(driver: int) -> None:
    """Note the Ray processes below `driver` until stdin closes, then stop them."""
    me = os.getpid()
    table = process_table()
    # What the driver ran before Ray started is not ours to stop.
    before = {pid: table[pid][1] for pid in descendants({driver}, table)}
    seen: dict[int, int] = {}

    def scan(roots: set[int]) -> None:
        table = process_table()
        for pid in descendants(roots, table):
            if pid != me and before.get(pid) != table[pid][1] and pid not in seen \
                    and is_ray(pid):
                seen[pid] = table[pid][1]

    while True:
        readable, _, _ = select.select([sys.stdin.fileno()], [], [], SCAN_S)
        if readable and not os.read(sys.stdin.fileno(), 4096):
            break  # the driver closed the pipe, or died and the kernel closed it
        scan({driver})
    # The driver is gone and its children were handed to init; what they started since the
    # last scan still hangs below them.
    scan(set(seen))
    stop(seen)


def main() -> None:
    # A Ctrl-C or hang-up is the driver's to act on; this process must outlive it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    watch(int(sys.argv[1]))


if __name__ == "__main__":
    main()
