"""The first program of a sandbox run, started by `ponder.verifiers.sandbox` inside the
namespaces as root: it joins the run's cgroups, mounts a private tmpfs over the world-writable
directories, stays behind as the PID namespace's init, applies the rlimits, drops privileges
and execs the program.

Run by path as `python -I -S sandbox_boot.py CONFIG`: the standard library only, and a few
modules of it, since every run pays for this interpreter's start.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import sys
from typing import Any

BOOT_FAILED = 125
_MS_NOSUID, _MS_NODEV, _MS_BIND = 2, 4, 4096
_PR_SET_NO_NEW_PRIVS = 38


def boot(config: dict[str, Any]) -> None:
    """Join the cgroups, privatise /tmp, become init, limit, drop privileges, exec."""
    for procs in config["cgroups"]:
        with open(procs, "w") as f:
            f.write(str(os.getpid()))
    libc = ctypes.CDLL(None, use_errno=True)
    workdir = os.getcwd()
    keep = os.open(".", os.O_RDONLY | os.O_DIRECTORY)
    for target in config["tmpfs"]:
        if os.path.isdir(target):
            _mount(libc, "tmpfs", target, "tmpfs", _MS_NOSUID | _MS_NODEV, "size=64m,mode=1777")
    if any(workdir.startswith(target + "/") for target in config["tmpfs"]):
        # The run's own directory was under a private tmpfs: bind it back at its old path.
        os.makedirs(workdir)
        _mount(libc, f"/proc/self/fd/{keep}", workdir, None, _MS_BIND, None)
        os.chdir(workdir)
    os.close(keep)
    if config["init"]:
        child = os.fork()
        if child:
            _be_init(child)
    for name, (soft, hard) in config["rlimits"].items():
        if name == "RLIMIT_NPROC" and config["uid"] is None and os.geteuid() == 0:
            continue  # it would not bind root, and would count our other processes
        resource.setrlimit(getattr(resource, name), (soft, hard))
    if config["uid"] is not None:
        os.setgroups([])
        os.setgid(config["gid"])
        os.setuid(config["uid"])
    libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    os.execv(config["python"], [config["python"], *config["argv"]])


def _mount(libc: Any, source: str, target: str, fstype: str | None, flags: int,
           options: str | None) -> None:
    if libc.mount(source.encode(), target.encode(), fstype.encode() if fstype else None, flags,
                  options.encode() if options else None) != 0:
        raise OSError(ctypes.get_errno(), f"mount {source} on {target} failed")


def _be_init(child: int) -> None:
    """PID 1 of the namespace: reap orphans until the program exits, then exit with its
    status (a signal as 128+n), which makes the kernel kill everything left in the
    namespace."""
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            os._exit(1)
        if pid == child:
            code = os.waitstatus_to_exitcode(status)
            os._exit(code if code >= 0 else 128 - code)


if __name__ == "__main__":
    try:
        boot(json.loads(sys.argv[1]))
    except Exception as exc:
        sys.stderr.write(f"ponder-sandbox boot: {type(exc).__name__}: {exc}\n")
        sys.stderr.flush()
        os._exit(BOOT_FAILED)
