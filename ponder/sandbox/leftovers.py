"""Killing whatever a sandbox run left behind, so that no process of a run outlives its
result: its session, then what is still in its cgroups, then any process that carries the
run's marker in its environment (found by a `/proc` scan)."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Sequence
from pathlib import Path

MARKER_ENV = "PONDER_SANDBOX"  # marks a run's processes, for the /proc scan


def kill_leftovers(pgid: int, cgroups: Sequence[Path], run_id: str) -> int:
    """SIGKILL the session (in a PID namespace that ends every process in it), give the
    kernel a moment to tear it down, then SIGKILL what is left in the cgroups and any
    process still carrying the run's marker. Returns how many such escapees there were."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
    settled = time.monotonic() + 0.2
    while time.monotonic() < settled and any(_cgroup_pids(p) for p in cgroups):
        time.sleep(0.005)
    killed: set[int] = set()
    deadline = time.monotonic() + 5.0
    for path in cgroups:
        while (pids := _cgroup_pids(path)) and time.monotonic() < deadline:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                    killed.add(pid)
            time.sleep(0.01)
    return len(killed) + kill_marked(run_id)


def kill_marked(run_id: str) -> int:
    """SIGKILL every process whose environment carries `run_id`'s marker; how many there were."""
    marker = f"{MARKER_ENV}={run_id}".encode()
    killed = 0
    for _ in range(20):
        found = [pid for pid in _pids() if marker in _environ(pid)]
        if not found:
            break
        for pid in found:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
                killed += 1
        time.sleep(0.02)
    return killed


def _cgroup_pids(path: Path) -> list[int]:
    try:
        return [int(line) for line in (path / "cgroup.procs").read_text().split()]
    except OSError:
        return []


def _pids() -> list[int]:
    me = os.getpid()
    return [int(name) for name in os.listdir("/proc") if name.isdigit() and int(name) != me]


def _environ(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return f.read()
    except OSError:
        return b""
