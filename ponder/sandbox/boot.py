"""The first program of a sandbox run, started by `ponder.sandbox.run` inside the
namespaces as root: it joins the run's cgroups, builds the run's filesystem (a minimal root of
read-only host paths and size-limited tmpfs, or at least a private tmpfs over the
world-writable directories), stays behind as the PID namespace's init, applies the rlimits,
drops privileges and execs the program.

With a `peer` (the unit-test judge's candidate), it first starts the peer's process: joined
to the program by two pipes, without the program's secret and report descriptors, dropped to
an id of its own. Both drop privileges here, before either runs a line, so there is no moment
in which the candidate can reach the judge (docs/trust.md).

Run by path as `python -I -S boot.py CONFIG`: the standard library only, and a few
modules of it, since every run pays for this interpreter's start.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import resource
import sys
from typing import Any

BOOT_FAILED = 125
_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 1, 2, 4, 8
_MS_REMOUNT, _MS_BIND, _MS_REC = 32, 4096, 16384
_DEVICES = ("/dev/null", "/dev/zero", "/dev/random", "/dev/urandom")
_PR_SET_DUMPABLE, _PR_CAPBSET_DROP, _PR_SET_SECUREBITS, _PR_SET_NO_NEW_PRIVS = 4, 24, 28, 38
_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL = 47, 4
# SECBIT_NOROOT, SECBIT_NO_CAP_AMBIENT_RAISE, their locks, and KEEP_CAPS locked off: uid 0
# gains no capabilities at exec, and a drop from uid 0 still clears them, for good.
_SECUREBITS = 0x01 | 0x02 | 0x20 | 0x40 | 0x80
PEER_PID_ENV, PEER_IN_ENV, PEER_OUT_ENV = ("PONDER_PEER_PID", "PONDER_PEER_IN_FD",
                                           "PONDER_PEER_OUT_FD")


def boot(config: dict[str, Any]) -> None:
    """Join the cgroups, privatise /tmp, become init, start the peer, limit, drop
    privileges, exec."""
    for procs in config["cgroups"]:
        with open(procs, "w") as f:
            f.write(str(os.getpid()))
    libc = ctypes.CDLL(None, use_errno=True)
    if config.get("root") is not None:
        _enter_root(libc, config["root"], config["work_owner"])
    else:
        _private_tmp(libc, config["tmpfs"])
    if config["init"]:
        child = os.fork()
        if child:
            for fd in config["secret_fds"]:  # init, as root, holds nothing a run could want
                os.close(fd)
            _be_init(child)
    env = dict(os.environ)
    if config.get("peer") is not None:
        env.update(_start_peer(libc, config, config["peer"], env))
    _drop_and_exec(libc, config["rlimits"], config["id"], config["python"], config["argv"], env)


def _start_peer(libc: Any, config: dict[str, Any], peer: dict[str, Any],
                env: dict[str, str]) -> dict[str, str]:
    """Fork the peer's process and run its script once it is limited and dropped to its own
    id; returns the environment that tells the program its pid and pipes.

    The peer runs in this interpreter rather than a new one: a second interpreter's start
    would be most of a verdict's cost. This process holds nothing a peer could want (no
    secret, the config only says how the run is built), and the script sees the interpreter
    as `python -I` would give it, `site` included."""
    to_peer_r, to_peer_w = os.pipe()
    to_main_r, to_main_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = BOOT_FAILED
        try:
            for fd in (to_peer_w, to_main_r, *config["secret_fds"]):
                os.close(fd)
            # Its own output, not the program's: that file is open for reading too, and what
            # the tests print (the judge's output) is theirs.
            null = os.open("/dev/null", os.O_WRONLY)
            os.dup2(null, 1)
            os.dup2(null, 2)
            os.close(null)
            os.environ.clear()
            os.environ.update({k: v for k, v in env.items() if k not in peer["unset"]})
            os.environ[PEER_IN_ENV], os.environ[PEER_OUT_ENV] = str(to_peer_r), str(to_main_w)
            # Its own directory: the program's (the judge's files, its cwd) is not its to write.
            argv = [os.path.abspath(peer["argv"][0]), *peer["argv"][1:]]
            os.mkdir("candidate", 0o755)
            if peer["id"] is not None:
                os.chown("candidate", peer["id"], peer["id"])
            os.chdir("candidate")
            os.environ["HOME"] = os.getcwd()
            _drop(libc, config["rlimits"], peer["id"])
            # As exec would leave it: its own /proc entries stay readable to its own id.
            libc.prctl(_PR_SET_DUMPABLE, 1, 0, 0, 0)
            code = _run_script(argv)
        except BaseException as exc:
            sys.stderr.write(f"ponder-sandbox boot: the peer: {type(exc).__name__}: {exc}\n")
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)
    os.close(to_peer_r)
    os.close(to_main_w)
    os.set_inheritable(to_main_r, True)
    os.set_inheritable(to_peer_w, True)
    return {PEER_PID_ENV: str(pid), PEER_IN_ENV: str(to_main_r), PEER_OUT_ENV: str(to_peer_w)}


def _run_script(argv: list[str]) -> int:
    """Run `argv[0]` as `__main__` with `argv` as `sys.argv`; its exit code."""
    import site
    import types

    site.main()  # what -S left out: exit(), quit() and the usual paths
    sys.argv = list(argv)
    main = types.ModuleType("__main__")
    main.__file__ = argv[0]
    sys.modules["__main__"] = main
    with open(argv[0], "rb") as f:
        source = f.read()
    try:
        exec(compile(source, argv[0], "exec", dont_inherit=True), main.__dict__)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


def _drop_and_exec(libc: Any, rlimits: dict[str, list[int]], uid: int | None, python: str,
                   argv: list[str], env: dict[str, str]) -> None:
    """Apply the rlimits, give up every capability for good, take `uid`, exec."""
    _drop(libc, rlimits, uid)
    os.execve(python, [python, *argv], env)


def _drop(libc: Any, rlimits: dict[str, list[int]], uid: int | None) -> None:
    """Apply the rlimits, give up every capability for good, take `uid` (as user and as
    group: a run's ids are groups of their own)."""
    for name, (soft, hard) in rlimits.items():
        if name == "RLIMIT_NPROC" and uid is None and os.geteuid() == 0:
            continue  # it would not bind root, and would count our other processes
        resource.setrlimit(getattr(resource, name), (soft, hard))
    root = os.geteuid() == 0
    if root:
        _drop_capabilities(libc)
    if uid is not None:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
    if root:  # uid 0 kept (a user namespace), or a peer that will not exec: none left now
        _clear_capabilities(libc)
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")


def _drop_capabilities(libc: Any) -> None:
    """Empty the bounding and ambient sets and lock root out of capabilities at exec, so a
    process that keeps uid 0 (inside a user namespace) runs with none of them."""
    with open("/proc/sys/kernel/cap_last_cap") as f:
        last = int(f.read())
    for cap in range(last + 1):
        if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), f"prctl(PR_CAPBSET_DROP, {cap}) failed")
    libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)  # absent before Linux 4.3
    if libc.prctl(_PR_SET_SECUREBITS, _SECUREBITS, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECUREBITS) failed")


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def _clear_capabilities(libc: Any) -> None:
    """Empty this process's effective, permitted and inheritable sets (capset(2), version
    3): without an exec to recompute them, a process that keeps uid 0 keeps every
    capability until told otherwise."""
    header = _CapHeader(0x20080522, 0)
    data = (_CapData * 2)()
    if libc.capset(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capset failed")


def _enter_root(libc: Any, view: dict[str, Any], owner: int | None) -> None:
    """Build the run's filesystem and chroot into it: a tmpfs root holding read-only binds of
    the host paths the interpreter needs and nothing else, the run's files copied into a
    size-limited tmpfs `/work` (its cwd), a size-limited `/tmp` and `/dev/shm`, four device
    nodes and a fresh `/proc`. The tmpfs vanish with the mount namespace: nothing outlives
    the run, and nothing of the host is writable or readable beyond the binds."""
    workdir = os.getcwd()
    root = os.path.join(workdir, ".root")
    os.mkdir(root)
    _mount(libc, "tmpfs", root, "tmpfs", _MS_NOSUID | _MS_NODEV, "size=1m,mode=755")
    for path in view["binds"]:
        _mountpoint(root, path)
        _bind(libc, path, root + path, _MS_RDONLY | _MS_NOSUID | _MS_NODEV)
    for path in _DEVICES:
        if os.path.exists(path):
            _mountpoint(root, path)
            _bind(libc, path, root + path, _MS_NOSUID | _MS_NOEXEC)
    for path, target in view["links"]:
        if not os.path.lexists(root + path):
            os.makedirs(_inside(root, os.path.dirname(path)), exist_ok=True)
            os.symlink(target, root + path)
    size = f"size={int(view['disk_mb'])}m"
    for path, mode in (("/work", "0755"), ("/tmp", "1777"), ("/dev/shm", "1777")):
        os.makedirs(_inside(root, path), exist_ok=True)
        _mount(libc, "tmpfs", root + path, "tmpfs", _MS_NOSUID | _MS_NODEV, f"{size},mode={mode}")
    for name in os.listdir(workdir):
        if name != ".root":
            with open(os.path.join(workdir, name), "rb") as src, \
                    open(os.path.join(root, "work", name), "wb") as dst:
                dst.write(src.read())
    if owner is not None:
        for name in [".", *os.listdir(os.path.join(root, "work"))]:
            os.chown(os.path.join(root, "work", name), owner, owner)
    os.makedirs(root + "/proc", exist_ok=True)
    _mount(libc, "proc", root + "/proc", "proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC, None)
    _mount(libc, "", root, "", _MS_REMOUNT | _MS_RDONLY | _MS_NOSUID | _MS_NODEV, None)
    os.chroot(root)
    os.chdir("/work")


def _inside(root: str, path: str) -> str:
    """`root + path`, refusing a path that symlinks made so far would lead out of `root`."""
    full = os.path.realpath(root + path)
    if full != root and not full.startswith(root + "/"):
        raise OSError(f"{path} would leave the run's root")
    return full


def _mountpoint(root: str, path: str) -> None:
    target = _inside(root, path)
    if os.path.isdir(path):
        os.makedirs(target, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        open(target, "a").close()


def _bind(libc: Any, source: str, target: str, flags: int) -> None:
    """A bind mount, then a remount that applies `flags` (a bind ignores them at first)."""
    _mount(libc, source, target, None, _MS_BIND | _MS_REC, None)
    _mount(libc, "", target, None, _MS_REMOUNT | _MS_BIND | flags, None)


def _private_tmp(libc: Any, targets: list[str]) -> None:
    """Without a minimal root: at least a private tmpfs over the world-writable directories."""
    workdir = os.getcwd()
    keep = os.open(".", os.O_RDONLY | os.O_DIRECTORY)
    for target in targets:
        if os.path.isdir(target):
            _mount(libc, "tmpfs", target, "tmpfs", _MS_NOSUID | _MS_NODEV, "size=64m,mode=1777")
    if any(workdir.startswith(target + "/") for target in targets):
        # The run's own directory was under a private tmpfs: bind it back at its old path.
        os.makedirs(workdir)
        _mount(libc, f"/proc/self/fd/{keep}", workdir, None, _MS_BIND, None)
        os.chdir(workdir)
    os.close(keep)


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
