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

`isolation.py` finds which layers this machine allows; inside the namespaces
`boot.py` sets each run up before the program starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ponder.core.errors import ConfigError, SandboxUnavailable
from ponder.sandbox.isolation import (
    SANDBOX_PATH,
    Isolation,
    RootView,
    ids_in_use,
    memory_limit_file,
    probe_isolation,
)

log = logging.getLogger(__name__)

MARKER_ENV = "PONDER_SANDBOX"  # marks a run's processes, for the /proc scan
SANDBOX_ENV = "PONDER_SANDBOX_MODE"  # "isolated" (the default) or "none"; `--sandbox` sets it
REPORT_FD_ENV = "PONDER_SANDBOX_REPORT_FD"
SECRET_FD_ENV = "PONDER_SANDBOX_SECRET_FD"
_BOOT = Path(__file__).with_name("boot.py")
_BOOT_FAILED = 125  # boot.py's exit code when it could not set the run up
_PRIVATE_TMP = ("/tmp", "/var/tmp", "/dev/shm")
_MB = 1 << 20


class Limits(BaseModel):
    """What one run may use.

    >>> Limits(timeout_s=5, memory_mb=512)
    """

    model_config = ConfigDict(frozen=True)

    timeout_s: float = Field(default=10.0, gt=0, description="wall clock for the whole run")
    cpu_s: int = Field(default=10, gt=0, description="CPU seconds, per process")
    memory_mb: int = Field(default=2048, gt=0,
                           description="address space per process, and the run's memory cgroup")
    file_size_mb: int = Field(default=16, gt=0, description="largest file or output written")
    processes: int = Field(default=32, gt=1,
                           description="the run's pids (its cgroup), or RLIMIT_NPROC")
    open_files: int = Field(default=256, gt=16)
    disk_mb: int = Field(default=64, gt=0,
                         description="each writable tmpfs of a minimal root: /work, /tmp, /dev/shm")
    output_bytes: int = Field(default=16_384, gt=0, description="output kept, from the end")
    report_bytes: int = Field(default=1 << 20, gt=0,
                              description="a longer report is no report: the run fails closed")


@dataclass
class SandboxResult:
    """How a run ended. `report` is what the program wrote to its report file descriptor:
    all of it, or nothing when it held more than `Limits.report_bytes` (`report_error` says
    so), since a prefix is not the report."""

    run_id: str
    exit_code: int | None
    signal: int | None
    timed_out: bool
    seconds: float
    output: str
    report: bytes
    isolation: dict[str, Any]
    leftovers_killed: int = 0
    peak_processes: int | None = None  # the most the run had at once, where the cgroup says
    setup_error: str | None = None
    limits: dict[str, Any] = field(default_factory=dict)
    report_error: str | None = None


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
            reason = await _Run(probed, Limits(timeout_s=60), 1).trial()
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
            return await _Run(isolation, limits, self.max_concurrency).execute(
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


class _Run:
    """One run: a directory, cgroups, a process tree, and their cleanup."""

    def __init__(self, isolation: Isolation, limits: Limits, concurrency: int) -> None:
        self.isolation = isolation
        self.limits = limits
        self.concurrency = concurrency
        self.run_id = uuid.uuid4().hex[:16]
        self.ids = isolation.pick_ids()  # (candidate, judge), or None: our own uid
        self.cgroups: list[Path] = []
        self.leftovers = 0
        self.peak_processes: int | None = None

    async def trial(self) -> str:
        """Why a trivial program and its peer do not run under this isolation ("" if they
        do)."""
        files = {"probe.py": "import os, sys\n"
                             "fd = int(os.environ['PONDER_PEER_OUT_FD'])\n"
                             "if sys.argv[1:] == ['peer']:\n"
                             "    os.write(fd, b'ok')\n"
                             "else:\n"
                             "    fd = int(os.environ['PONDER_PEER_IN_FD'])\n"
                             "    print(os.read(fd, 2).decode())\n"}
        try:
            result = await self.execute(files, "probe.py", (), b"", ("probe.py", "peer"))
        except OSError as exc:  # no `unshare` after all, or a cgroup we may not make
            return f"{type(exc).__name__}: {exc}"
        # Output includes stderr: a layer may warn before the program runs.
        if result.exit_code == 0 and result.output.splitlines()[-1:] == ["ok"]:
            return ""
        if result.setup_error:
            return result.setup_error
        last = result.output.strip().splitlines()[-1:] or ["no output"]
        return f"exit code {result.exit_code}, signal {result.signal}: {last[0][:200]}"

    async def execute(self, files: dict[str, str], entry: str, args: tuple[str, ...],
                      secret: bytes = b"", peer: tuple[str, ...] | None = None,
                      ) -> SandboxResult:
        with tempfile.TemporaryFile() as output, tempfile.TemporaryFile() as report, \
                tempfile.TemporaryFile() as hidden:
            hidden.write(secret)
            hidden.flush()
            hidden.seek(0)
            started = time.monotonic()
            code, timed_out = await self._spawn(files, entry, args, output, report, hidden,
                                                peer)
            seconds = time.monotonic() - started
            text = _tail(output, self.limits.output_bytes).decode("utf-8", "replace")
            report_bytes, report_error = _whole(report, self.limits.report_bytes)
        exit_code, sig = _decode_status(code)
        setup_error = None
        if exit_code == _BOOT_FAILED and "ponder-sandbox boot:" in text:
            setup_error = text.split("ponder-sandbox boot:", 1)[1].strip().splitlines()[0]
        return SandboxResult(
            run_id=self.run_id, exit_code=None if timed_out else exit_code,
            signal=None if timed_out else sig, timed_out=timed_out, seconds=seconds,
            output=text, report=report_bytes, isolation=self.isolation.describe(),
            leftovers_killed=self.leftovers, peak_processes=self.peak_processes,
            setup_error=setup_error,
            limits=self.limits.model_dump(), report_error=report_error,
        )

    async def _spawn(self, files: dict[str, str], entry: str, args: tuple[str, ...],
                     output: Any, report: Any, hidden: Any, peer: tuple[str, ...] | None,
                     ) -> tuple[int | None, bool]:
        """Run to the end or the time limit; returns (return code, whether it timed out)."""
        workdir = Path(tempfile.mkdtemp(prefix="ponder-sandbox-"))
        proc: asyncio.subprocess.Process | None = None
        timed_out = False
        try:
            for name, text in files.items():
                (workdir / name).write_text(text)
            # The program's to write; with a peer beside it, nobody's: the peer gets a
            # directory of its own inside (its cwd), and the files the tests may read stay
            # as written.
            workdir.chmod(0o755)
            if self.ids is not None and peer is None:
                os.chown(workdir, self.ids[0], self.ids[0])  # each id is its own group too
            self._make_cgroups()
            fds = (report.fileno(), hidden.fileno())
            proc = await asyncio.create_subprocess_exec(
                *self._command(entry, args, peer, fds), cwd=workdir,
                env=self._env(workdir, report, hidden),
                stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                pass_fds=fds, start_new_session=True,
            )
            try:
                await asyncio.wait_for(proc.wait(), self.limits.timeout_s)
            except TimeoutError:
                timed_out = True
        finally:
            if proc is not None:
                self.leftovers = await asyncio.to_thread(self._kill_everything, proc.pid)
                await proc.wait()
            await asyncio.to_thread(self._remove_cgroups)
            shutil.rmtree(workdir, ignore_errors=True)
        return (proc.returncode if proc is not None else None), timed_out

    def _command(self, entry: str, args: tuple[str, ...], peer: tuple[str, ...] | None,
                 secret_fds: tuple[int, ...]) -> list[str]:
        limits = self.limits
        nproc = limits.processes
        if self.ids is None and self.isolation.pids_cgroup is not None:
            # RLIMIT_NPROC counts every process of our uid; the cgroup is the run's own cap.
            nproc = limits.processes * self.concurrency + 16
        candidate, judge = self.ids if self.ids is not None else (None, None)
        config = {
            "python": self.isolation.python,
            "argv": ["-I", "-B", entry, *args],
            "cgroups": [str(path / "cgroup.procs") for path in self.cgroups],
            "tmpfs": list(_PRIVATE_TMP) if self._private_tmp else [],
            "root": None if self._root is None else {
                "binds": list(self._root.binds), "links": [list(x) for x in self._root.links],
                "disk_mb": limits.disk_mb},
            "init": "--pid" in self.isolation.namespaces,
            # Each id is its own group too. With a peer the program is its judge, under an id
            # of its own, and the run's directory is nobody's to write.
            "id": judge if peer is not None else candidate,
            "work_owner": candidate if peer is None else None,
            "secret_fds": list(secret_fds),
            "peer": None if peer is None else {
                "argv": list(peer), "id": candidate, "unset": [REPORT_FD_ENV, SECRET_FD_ENV]},
            "rlimits": {
                "RLIMIT_CPU": [limits.cpu_s, limits.cpu_s + 1],
                "RLIMIT_AS": [limits.memory_mb * _MB] * 2,
                "RLIMIT_FSIZE": [limits.file_size_mb * _MB] * 2,
                "RLIMIT_NOFILE": [limits.open_files] * 2,
                "RLIMIT_CORE": [0, 0],
                "RLIMIT_NPROC": [nproc] * 2,
            },
        }
        boot = [self.isolation.python, "-I", "-S", "-B", str(_BOOT), json.dumps(config)]
        if not self.isolation.namespaces:
            return boot
        user = ["--user", "--map-root-user"] if self.isolation.user_namespace else []
        return ["unshare", *user, *self.isolation.namespaces, "--", *boot]

    @property
    def _private_tmp(self) -> bool:
        return "--mount" in self.isolation.namespaces and not self.isolation.user_namespace

    @property
    def _root(self) -> RootView | None:
        # Only inside a mount namespace of its own: the boot would mount on the host otherwise.
        return self.isolation.root if "--mount" in self.isolation.namespaces else None

    def _env(self, workdir: Path, report: Any, hidden: Any) -> dict[str, str]:
        # Built from nothing: no API keys or tokens of ours reach the program.
        home = "/work" if self._root is not None else str(workdir)
        return {
            "PATH": SANDBOX_PATH,
            "HOME": home,
            "TMPDIR": "/tmp" if self._private_tmp or self._root is not None else home,
            "LANG": "C.UTF-8",
            "PYTHONIOENCODING": "utf-8",
            MARKER_ENV: self.run_id,
            REPORT_FD_ENV: str(report.fileno()),
            SECRET_FD_ENV: str(hidden.fileno()),
        }

    def _make_cgroups(self) -> None:
        for parent, limit_file, value in (
            (self.isolation.pids_cgroup, "pids.max", str(self.limits.processes)),
            (self.isolation.memory_cgroup, memory_limit_file(self.isolation.memory_cgroup),
             str(self.limits.memory_mb * _MB)),
        ):
            if parent is None:
                continue
            path = Path(parent) / f"run-{self.run_id}"
            path.mkdir()
            self.cgroups.append(path)
            (path / limit_file).write_text(value)

    def _kill_everything(self, pgid: int) -> int:
        """SIGKILL the session (in a PID namespace that ends every process in it), give the
        kernel a moment to tear it down, then SIGKILL what is left in the cgroups and any
        process still carrying the run's marker. Returns how many such escapees there were."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
        settled = time.monotonic() + 0.2
        while time.monotonic() < settled and any(_cgroup_pids(p) for p in self.cgroups):
            time.sleep(0.005)
        killed: set[int] = set()
        deadline = time.monotonic() + 5.0
        for path in self.cgroups:
            while (pids := _cgroup_pids(path)) and time.monotonic() < deadline:
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                        killed.add(pid)
                time.sleep(0.01)
        return len(killed) + kill_marked(self.run_id)

    def _remove_cgroups(self) -> None:
        for path in self.cgroups:
            with contextlib.suppress(OSError, ValueError):
                if (path / "pids.peak").exists():
                    self.peak_processes = int((path / "pids.peak").read_text())
            for _ in range(50):
                try:
                    path.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.02)  # the last killed tasks are still being released
            else:
                log.warning("sandbox: could not remove cgroup %s", path)


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


def _pids() -> list[int]:
    me = os.getpid()
    return [int(name) for name in os.listdir("/proc") if name.isdigit() and int(name) != me]


def _environ(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return f.read()
    except OSError:
        return b""


def _cgroup_pids(path: Path) -> list[int]:
    try:
        return [int(line) for line in (path / "cgroup.procs").read_text().split()]
    except OSError:
        return []


def _decode_status(code: int | None) -> tuple[int | None, int | None]:
    """`(exit code, signal)` from a return code; the boot init reports a signal as 128+n."""
    if code is None:
        return None, None
    if code < 0:
        return None, -code
    if code > 128 and code - 128 < signal.NSIG:
        return None, code - 128
    return code, None


def _tail(f: Any, limit: int) -> bytes:
    size = f.seek(0, os.SEEK_END)
    f.seek(max(0, size - limit))
    data: bytes = f.read()
    return data


def _whole(f: Any, limit: int) -> tuple[bytes, str | None]:
    """The whole of a report, or nothing and why: a report cut at the cap could be the first
    part of several, or a forgery padded to push the real one past what is read."""
    size = f.seek(0, os.SEEK_END)
    if size > limit:
        return b"", f"the report held {size} bytes, more than the {limit} a report may"
    f.seek(0)
    data: bytes = f.read(limit)
    return data, None
