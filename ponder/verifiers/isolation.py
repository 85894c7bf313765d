"""What this machine allows a sandbox to use, found by trying each mechanism for real.

`probe_isolation()` checks util-linux `unshare` (network, PID and mount namespaces, or a
user namespace when we are not root), a pids and a memory cgroup (v1, or v2 where it is
delegated), and an unprivileged uid with a Python interpreter it can run. `Sandbox` then runs
a trivial program under the result and drops layers until one works.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

NAMESPACE_FLAGS = ("--net", "--pid", "--mount", "--fork", "--kill-child", "--mount-proc")
SANDBOX_PATH = "/usr/local/bin:/usr/bin:/bin"  # the PATH a sandboxed program gets
_CGROUP_GROUP = "ponder-sandbox"
_MB = 1 << 20


@dataclass(frozen=True)
class Isolation:
    """The mechanisms this machine allows; each run uses all of them."""

    namespaces: tuple[str, ...] = ()
    user_namespace: bool = False
    pids_cgroup: str | None = None  # the directory runs' pids cgroups are made in
    memory_cgroup: str | None = None
    uid: int | None = None  # the unprivileged uid runs drop to
    gid: int | None = None
    python: str = sys.executable  # an interpreter that uid can run

    def describe(self) -> dict[str, Any]:
        return {
            "network": "namespace" if "--net" in self.namespaces else "not isolated",
            "pid_namespace": "--pid" in self.namespaces,
            "private_tmp": "--mount" in self.namespaces and not self.user_namespace,
            "user_namespace": self.user_namespace,
            "pids_cgroup": self.pids_cgroup is not None,
            "memory_cgroup": self.memory_cgroup is not None,
            "user": _user_name(self.uid) if self.uid is not None else _user_name(os.geteuid()),
            "python": self.python,
            "rlimits": ["cpu", "address_space", "file_size", "open_files", "core"]
            + (["processes"] if self.uid is not None or os.geteuid() != 0 else []),
        }


def probe_isolation(*, namespaces: bool = True, cgroups: bool = True,
                    drop_privileges: bool = True, cgroup_parent: str | None = None) -> Isolation:
    """Try each mechanism for real, and keep those that work (and are not switched off)."""
    flags: tuple[str, ...] = ()
    user_ns = False
    if namespaces and shutil.which("unshare"):
        if _works(["unshare", *NAMESPACE_FLAGS, "true"]):
            flags = NAMESPACE_FLAGS
        elif os.geteuid() != 0 and _works(
            ["unshare", "--user", "--map-root-user", *NAMESPACE_FLAGS, "true"]
        ):
            flags, user_ns = NAMESPACE_FLAGS, True
        elif _works(["unshare", "--net", "true"]):
            flags = ("--net",)
    pids = _cgroup_dir("pids", cgroup_parent, "pids.max") if cgroups else None
    memory = _cgroup_dir("memory", None, None) if cgroups else None
    uid = gid = None
    python = sys.executable
    if drop_privileges and os.geteuid() == 0:
        with contextlib.suppress(KeyError):
            nobody = pwd.getpwnam("nobody")
            same_version = f"import sys; assert sys.version_info[:2] == {sys.version_info[:2]}"
            python = next((p for p in _interpreters() if _works(
                [p, "-I", "-c", same_version],
                user=nobody.pw_uid, group=nobody.pw_gid, extra_groups=[])), "")
            if python:
                uid, gid = nobody.pw_uid, nobody.pw_gid
            else:
                python = sys.executable
    return Isolation(namespaces=flags, user_namespace=user_ns, pids_cgroup=pids,
                     memory_cgroup=memory, uid=uid, gid=gid, python=python)


def _interpreters() -> list[str]:
    """Ours first; then the same Python elsewhere, for when ours sits in a directory the
    unprivileged uid cannot enter (a pyenv under /root). That one lacks our site-packages."""
    found = [sys.executable, os.path.realpath(sys.executable)]
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    found += [p for name in (version, "python3") if (p := shutil.which(name, path=SANDBOX_PATH))]
    return list(dict.fromkeys(found))


def _works(command: list[str], **kwargs: Any) -> bool:
    try:
        return subprocess.run(command, capture_output=True, timeout=30, check=False,
                              cwd="/", **kwargs).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def _cgroup_dir(controller: str, parent: str | None, limit_file: str | None) -> str | None:
    """A directory under which per-run cgroups of `controller` can be made (probed by making
    one), or None. By default it sits under this process's own cgroup, so limits set above
    us still hold."""
    base = Path(parent) if parent is not None else own_cgroup(controller)
    if base is None:
        return None
    group = base if parent is not None else base / _CGROUP_GROUP
    probe = group / f"probe-{uuid.uuid4().hex[:8]}"
    try:
        group.mkdir(exist_ok=True)
        probe.mkdir()
        try:
            name = limit_file or memory_limit_file(str(group))
            (probe / name).write_text("64" if controller == "pids" else str(64 * _MB))
        finally:
            probe.rmdir()
    except OSError:
        return None
    return str(group)


def own_cgroup(controller: str) -> Path | None:
    """This process's cgroup directory in the v1 hierarchy of `controller`."""
    mounts: dict[str, tuple[str, str]] = {}
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                left, _, right = line.partition(" - ")
                fields, rights = left.split(), right.split()
                if len(fields) >= 5 and len(rights) >= 3 and rights[0] == "cgroup":
                    for option in rights[2].split(","):
                        mounts[option] = (fields[3], fields[4])
        with open("/proc/self/cgroup") as f:
            for line in f:
                _, controllers, path = line.rstrip("\n").split(":", 2)
                if controller in controllers.split(",") and controller in mounts:
                    root, mountpoint = mounts[controller]
                    relative = os.path.relpath(path, root) if path.startswith(root) else "."
                    return Path(mountpoint) / relative
    except (OSError, ValueError):
        return None
    return None


def memory_limit_file(parent: str | None) -> str:
    """The memory cgroup's limit file: v2's `memory.max` or v1's `memory.limit_in_bytes`."""
    if parent is not None and (Path(parent) / "memory.max").exists():
        return "memory.max"
    return "memory.limit_in_bytes"


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)
