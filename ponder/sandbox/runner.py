"""Running untrusted Python in a separate, limited process that cannot get out.

Each layer is used when this machine allows it; `Sandbox.isolation()` says which are, and
every `SandboxResult` records them:

- namespaces, through util-linux `unshare`: network (a downed loopback only, so no socket
  reaches anything), PID (the program cannot see or signal our processes, and when the
  namespace's first process ends the kernel kills every process in it, `setsid()` or not),
  mount (a private `/proc`, and fresh tmpfs over the world-writable `/tmp`, `/var/tmp`,
  `/dev/shm`, so files written outside the run's directory vanish with it);
- a pids cgroup and a memory cgroup per run: the only caps on process count that bind root,
  and they find children that left the process group;
- ids of the run's own when we are root (from a range no account uses; the candidate and a
  unit-test judge each get one): RLIMIT_NPROC binds again and counts only the run, nothing
  outside the run's directory is writable or signallable, and no capability survives;
- rlimits: CPU seconds, address space, file size, open files, no core dumps;
- a wall-clock limit that kills the whole session, then whatever is left in the cgroups, then
  any process that still carries the run's marker in its environment (a `/proc` scan), so no
  process of a run outlives its result.

Without `unshare` there is no network isolation and no private `/tmp`; without cgroups and
a uid to drop to (not root, no user namespaces) a fork bomb meets only RLIMIT_NPROC, which
counts all the user's processes. The result's `isolation` says so. What the probe finds is
checked by running a program; when that fails the sandbox refuses (`SandboxUnavailable`)
rather than run with less, and as root it refuses when it cannot drop to ids of its own.
`Isolation.none()` runs without a sandbox, for trusted code, only when chosen by name.

This module holds the `Sandbox`. `isolation.py` finds which layers this machine allows;
`run.py` is one run (its directory, cgroups and process tree); inside the namespaces
`boot.py` sets each run up before the program starts; `leftovers.py` kills what a run leaves
behind.
"""

from __future__ import annotations

import asyncio
import functools
import os
import sys
import weakref

from ponder.core.errors import ConfigError, SandboxUnavailable
from ponder.sandbox.isolation import Isolation, ids_in_use, probe_isolation
from ponder.sandbox.limits import Limits, SandboxResult
from ponder.sandbox.run import Run

SANDBOX_ENV = "PONDER_SANDBOX_MODE"  # "isolated" (the default) or "none"; `--sandbox` sets it


class Sandbox:
    """Runs Python programs in isolation, at most `max_concurrency` at once per event loop.

    >>> result = await Sandbox().run({"main.py": "print(2 + 2)"}, "main.py")
    >>> result.exit_code, result.output
    (0, '4\\n')
    """

    def __init__(self, *, max_concurrency: int | None = None, cgroup_parent: str | None = None,
                 namespaces: bool = True, cgroups: bool = True,
                 drop_privileges: bool = True, isolation: Isolation | None = None) -> None:
        """`namespaces`, `cgroups` and `drop_privileges` switch layers off by name;
        `isolation` skips the probe (`Isolation.none()`: no sandbox, for trusted code)."""
        self.max_concurrency = max_concurrency or os.cpu_count() or 1
        self.cgroup_parent = cgroup_parent
        self.namespaces = namespaces
        self.cgroups = cgroups
        self.drop_privileges = drop_privileges
        self._isolation: Isolation | None = isolation
        # Per event loop, since asyncio primitives belong to the loop that first waits on them
        # and one sandbox may serve many `asyncio.run`s.
        self._probe_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )
        self._gates: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
            weakref.WeakKeyDictionary()
        )

    async def isolation(self) -> Isolation:
        """Probe which mechanisms work here, then check they work together by running a
        trivial program. A probe that succeeds is kept; one that fails raises
        `SandboxUnavailable` and the next run probes again."""
        if self._isolation is None:
            # Concurrent first runs in a loop probe once. Loops in other threads may each
            # probe too; they find the same answer, so that costs time, not correctness.
            lock = self._probe_locks.setdefault(asyncio.get_running_loop(), asyncio.Lock())
            async with lock:
                if self._isolation is None:
                    self._isolation = await self._probe()
        return self._isolation

    async def _probe(self) -> Isolation:
        probed = await asyncio.to_thread(
            probe_isolation, namespaces=self.namespaces, cgroups=self.cgroups,
            drop_privileges=self.drop_privileges, cgroup_parent=self.cgroup_parent,
        )
        if self.drop_privileges and os.geteuid() == 0 and not probed.own_ids:
            owners = await asyncio.to_thread(ids_in_use)
            why = (f"accounts own ids of its range ({', '.join(owners[:3])})" if owners else
                   f"no interpreter of Python {sys.version_info[0]}.{sys.version_info[1]} "
                   "runs as an unprivileged id (ours may sit in a directory others cannot "
                   "enter)")
            raise SandboxUnavailable(
                "the sandbox would run model-written code as root: it cannot drop to ids of "
                f"its own because {why}; install Python where any user can run it, or opt "
                "out for trusted code with Isolation.none() / --sandbox none")
        # Each layer was probed alone; a program must run under all of them together. A
        # failure may be passing (a cgroup not yet released, a loaded machine), so try again
        # before refusing, and never run with fewer layers than were found.
        reason = ""
        for attempt in range(3):
            if attempt:
                await asyncio.sleep(0.25 * attempt)
            reason = await Run(probed, Limits(timeout_s=60), 1).trial()
            if not reason:
                return probed
        raise SandboxUnavailable(f"the sandbox's isolation ({probed.summary()}) did not run a "
                                 f"test program in 3 tries: {reason}; opt out for trusted code "
                                 "with Isolation.none() / --sandbox none")

    async def run(self, files: dict[str, str], entry: str, *, limits: Limits | None = None,
                  args: tuple[str, ...] = (), secret: bytes = b"",
                  peer: tuple[str, ...] | None = None) -> SandboxResult:
        """Write `files` into a fresh temporary directory and run `python -I -B entry` there.

        `secret` never touches the run's filesystem: the program reads it from the file
        descriptor named in `PONDER_SANDBOX_SECRET_FD` (an unlinked file of ours).

        `peer` (a script and its arguments) runs beside the program as a process of its own,
        joined to it by two pipes (`PONDER_PEER_IN_FD`, `PONDER_PEER_OUT_FD`, its pid in
        `PONDER_PEER_PID`): the untrusted half of a pair, such as the unit-test candidate
        beside its judge. It never holds the secret or report descriptors, runs as another
        id than the program where we are root, and works in a directory of its own
        (`candidate/` in the run's): where we are root it cannot write the program's files or
        its working directory."""
        limits = limits or Limits()
        isolation = await self.isolation()
        loop = asyncio.get_running_loop()
        gate = self._gates.setdefault(loop, asyncio.Semaphore(self.max_concurrency))
        async with gate:
            return await Run(isolation, limits, self.max_concurrency).execute(
                files, entry, args, secret, peer)


@functools.cache
def shared_sandbox() -> Sandbox:
    """The process-wide sandbox: its concurrency gate is a machine resource (the cores), so
    every verifier in the process shares it. `PONDER_SANDBOX_MODE=none` (what `ponder solve
    --sandbox none` sets for its process) makes it no sandbox at all, for trusted code."""
    choice = os.environ.get(SANDBOX_ENV, "isolated")
    if choice == "none":
        return Sandbox(isolation=Isolation.none())
    if choice != "isolated":
        raise ConfigError(f"{SANDBOX_ENV} must be 'isolated' or 'none', got {choice!r}")
    return Sandbox()
