"""One sandbox run (`Run`): a fresh directory, its cgroups, the `boot.py` process tree under
the isolation the `Sandbox` found, and their cleanup. `Sandbox.run` makes one per program."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from ponder.sandbox.isolation import SANDBOX_PATH, Isolation, RootView, memory_limit_file
from ponder.sandbox.leftovers import MARKER_ENV, kill_leftovers
from ponder.sandbox.limits import Limits, SandboxResult

log = logging.getLogger(__name__)

REPORT_FD_ENV = "PONDER_SANDBOX_REPORT_FD"
SECRET_FD_ENV = "PONDER_SANDBOX_SECRET_FD"
_BOOT = Path(__file__).with_name("boot.py")
_BOOT_FAILED = 125  # boot.py's exit code when it could not set the run up
_PRIVATE_TMP = ("/tmp", "/var/tmp", "/dev/shm")
_MB = 1 << 20


class Run:
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
                self.leftovers = await asyncio.to_thread(kill_leftovers, proc.pid,
                                                         self.cgroups, self.run_id)
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
