"""What this machine allows a sandbox to use, found by trying each mechanism for real.

`probe_isolation()` checks util-linux `unshare` (network, PID and mount namespaces, or a
user namespace when we are not root), a pids and a memory cgroup (v1, or v2 where it is
delegated), and, when we are root, ids of a range no account and no process uses, with a
Python interpreter they can run. `Sandbox` then runs a trivial program under the result, and
refuses to run anything when that fails: it never drops to weaker isolation on its own.
`Isolation.none()` is the one way to run without it, chosen by name.
"""

from __future__ import annotations

import json
import logging
import os
import pwd
import secrets
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

NAMESPACE_FLAGS = ("--net", "--pid", "--mount", "--ipc", "--uts", "--fork", "--kill-child",
                   "--mount-proc")
log = logging.getLogger(__name__)

SANDBOX_PATH = "/usr/local/bin:/usr/bin:/bin"  # the PATH a sandboxed program gets
_CGROUP_GROUP = "ponder-sandbox"
_MB = 1 << 20
# Each run takes two ids of its own from here (its candidate's and its judge's), so no other
# process on the host shares them: RLIMIT_NPROC then counts only the run's own processes, and
# nothing another service does (`nobody` is shared by many) can make the drop fail. The range
# sits below 2**31, above the ids distributions and container tools hand out (systemd's
# dynamic users end at 65519, subordinate ranges usually start at 100000 and span 65536 each).
ID_RANGE_START = 0x70000000
ID_RANGE_PAIRS = 1 << 19


@dataclass(frozen=True)
class RootView:
    """The only host paths a run sees, all read-only: its interpreter, the standard library
    and the shared libraries they load (`binds`), and the symlinks on the way to them
    (`links`: path, target). Everything writable is a size-limited tmpfs of the run's own."""

    binds: tuple[str, ...]
    links: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Isolation:
    """The mechanisms this machine allows; each run uses all of them.

    `Isolation.none()` runs with none of them, as ponder's own user: for trusted code only,
    and said in every result that ran so."""

    namespaces: tuple[str, ...] = ()
    user_namespace: bool = False
    pids_cgroup: str | None = None  # the directory runs' pids cgroups are made in
    memory_cgroup: str | None = None
    # When we are root: runs drop to ids of their own from ID_RANGE_START (see there).
    own_ids: bool = False
    python: str = sys.executable  # an interpreter those ids can run
    root: RootView | None = None  # a minimal filesystem, where the mount namespace allows
    opted_out: bool = False  # Isolation.none(): the user chose to run without a sandbox

    @classmethod
    def none(cls) -> Isolation:
        """No sandbox at all: the program runs as ponder's user, on the host, with only the
        rlimits and the wall clock. For trusted code; never chosen by ponder itself."""
        return cls(opted_out=True)

    def pick_ids(self) -> tuple[int, int] | None:
        """A fresh (candidate, judge) pair of unprivileged ids for one run, or None when runs
        keep our own uid (we are not root, or the sandbox was opted out of)."""
        if not self.own_ids:
            return None
        first = ID_RANGE_START + 2 * secrets.randbelow(ID_RANGE_PAIRS)
        return first, first + 1

    def summary(self) -> str:
        """The layers in a few words, for messages."""
        if self.opted_out:
            return "none, opted out"
        parts = [" ".join(flag.strip("-") for flag in self.namespaces
                          if flag in ("--net", "--pid", "--mount", "--ipc", "--uts"))
                 + " namespaces" if self.namespaces else "no namespaces"]
        parts += ["a minimal root"] if self.root is not None else []
        parts += [f"{name} cgroup" for name, path in (("pids", self.pids_cgroup),
                                                      ("memory", self.memory_cgroup)) if path]
        parts += ["ids of its own"] if self.own_ids else []
        return ", ".join(parts)

    def describe(self) -> dict[str, Any]:
        described = {
            "sandbox": "isolated",
            "network": "namespace" if "--net" in self.namespaces else "not isolated",
            "pid_namespace": "--pid" in self.namespaces,
            "ipc_namespace": "--ipc" in self.namespaces,
            "filesystem": (f"minimal root: {len(self.root.binds)} read-only host paths, "
                           "private size-limited tmpfs for /work, /tmp, /dev/shm")
            if self.root is not None else "host",
            "private_tmp": "--mount" in self.namespaces and not self.user_namespace,
            "user_namespace": self.user_namespace,
            "pids_cgroup": self.pids_cgroup is not None,
            "memory_cgroup": self.memory_cgroup is not None,
            "user": ("an unused uid of its own (not root, not nobody)" if self.own_ids
                     else _user_name(os.geteuid())),
            # Whether the unit-test judge runs as a uid the candidate cannot signal or trace;
            # with one uid the judge is undumpable before the candidate starts, and a signal
            # to it fails the verdict (no report).
            "judge_apart": "another uid" if self.own_ids else "same uid, undumpable",
            "python": self.python,
            "rlimits": ["cpu", "address_space", "file_size", "open_files", "core"]
            + (["processes"] if self.own_ids or os.geteuid() != 0 else []),
        }
        if self.opted_out:  # every layer above already reads as absent
            described.update(sandbox="none (opted out: Isolation.none(), --sandbox none)",
                             judge_apart=False)
        return described


def probe_isolation(*, namespaces: bool = True, cgroups: bool = True,
                    drop_privileges: bool = True, cgroup_parent: str | None = None) -> Isolation:
    """Try each mechanism for real, and keep those that work (and are not switched off).

    Each is tried up to three times before it counts as missing: a passing failure (a busy
    machine, a cgroup not yet released) must not decide the isolation of every later run.
    What is still missing is logged, and said in every result's `isolation`."""
    flags: tuple[str, ...] = ()
    user_ns = False
    if namespaces and shutil.which("unshare"):
        if _works(["unshare", *NAMESPACE_FLAGS, "true"], tries=3):
            flags = NAMESPACE_FLAGS
        elif os.geteuid() != 0 and _works(
            ["unshare", "--user", "--map-root-user", *NAMESPACE_FLAGS, "true"]
        ):
            flags, user_ns = NAMESPACE_FLAGS, True
        elif _works(["unshare", "--net", "true"]):
            flags = ("--net",)
    pids = _cgroup_dir("pids", cgroup_parent, "pids.max") if cgroups else None
    memory = _cgroup_dir("memory", None, None) if cgroups else None
    own_ids = False
    python = sys.executable
    if drop_privileges and os.geteuid() == 0:
        # The last id of the range, which a run may also draw: the same "other" permissions.
        probe_id = ID_RANGE_START + 2 * ID_RANGE_PAIRS - 1
        same_version = f"import sys; assert sys.version_info[:2] == {sys.version_info[:2]}"
        found = next((p for p in _interpreters() if _works(
            [p, "-I", "-c", same_version], tries=3, user=probe_id, group=probe_id,
            extra_groups=[])), None)
        if found is not None and not ids_in_use():
            own_ids, python = True, found
    root = None
    if "--mount" in flags:
        for _ in range(3):
            if (root := root_view(python)) is not None:
                break
    probed = Isolation(namespaces=flags, user_namespace=user_ns, pids_cgroup=pids,
                       memory_cgroup=memory, own_ids=own_ids, python=python, root=root)
    missing = [name for name, present in (
        ("namespaces", flags == NAMESPACE_FLAGS or not namespaces),
        ("a minimal root", root is not None or "--mount" not in flags),
        ("cgroups", (pids is not None and memory is not None) or not cgroups)) if not present]
    if missing:
        log.warning("sandbox: this machine gives runs %s; missing: %s", probed.summary(),
                    ", ".join(missing))
    return probed


def ids_in_use() -> list[str]:
    """Accounts that own an id of the range runs draw from: a sign that the range is not ours
    to take (runs are then refused rather than share an id with them). Processes are not
    checked: other ponder processes' runs hold ids of the range too."""
    last = ID_RANGE_START + 2 * ID_RANGE_PAIRS
    return [e.pw_name for e in pwd.getpwall()
            if ID_RANGE_START <= e.pw_uid < last or ID_RANGE_START <= e.pw_gid < last]


# Imported by the probe so that the libraries behind the usual standard-library modules are
# found; a module outside this list whose library lives elsewhere would fail to import.
_PROBE_MODULES = (
    "array", "asyncio", "binascii", "bisect", "bz2", "collections", "csv", "ctypes", "datetime",
    "decimal", "fractions", "functools", "hashlib", "heapq", "itertools", "json", "lzma",
    "math", "multiprocessing", "pickle", "random", "re", "select", "socket", "sqlite3", "ssl",
    "statistics", "string", "struct", "subprocess", "typing", "unicodedata", "uuid", "zlib",
)
_PROBE = f"""
import json, os, sys, sysconfig
for name in {_PROBE_MODULES!r}:
    try:
        __import__(name)
    except Exception:
        pass
files = set()
with open("/proc/self/maps") as maps:
    for line in maps:
        parts = line.split()
        if len(parts) >= 6 and parts[5].startswith("/"):
            files.add(parts[5])
paths = sysconfig.get_paths()
sys.stdout.write(json.dumps({{"files": sorted(files), "executable": sys.executable,
                             "dirs": [paths["stdlib"], paths["platstdlib"]]}}))
"""


def root_view(python: str) -> RootView | None:
    """What `python` needs of the host to run the standard library: found by running it and
    reading which files it mapped, plus its ELF interpreter and the loader's cache."""
    try:
        done = subprocess.run([python, "-I", "-S", "-c", _PROBE], capture_output=True,
                              timeout=60, check=True, cwd="/")
        found = json.loads(done.stdout)
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    # Shared libraries by their directory (a module imported later may need a sibling of
    # one mapped now); the interpreter and data files by themselves.
    wanted = [python, found["executable"], *found["dirs"], "/etc/ld.so.cache"]
    wanted += [os.path.dirname(f) if ".so" in os.path.basename(f) else f
               for f in found["files"]]
    interpreter = elf_interpreter(python)
    if interpreter:
        wanted.append(interpreter)
    links: dict[str, str] = {}
    binds: set[str] = set()
    for path in wanted:
        if os.path.exists(path):
            binds.add(_follow(path, links))
    # A path inside another bound directory comes with it.
    kept = sorted(p for p in binds if not any(
        p != q and p.startswith(q.rstrip("/") + "/") for q in binds))
    return RootView(binds=tuple(kept), links=tuple(sorted(links.items())))


def _follow(path: str, links: dict[str, str]) -> str:
    """The real path of `path`, noting each symlink met on the way (so the run's root can
    have the same links and the same names resolve)."""
    parts = Path(path).parts
    current = "/"
    for i, part in enumerate(parts[1:], start=1):
        candidate = os.path.join(current, part)
        if os.path.islink(candidate):
            target = os.readlink(candidate)
            links[candidate] = target
            rest = os.path.join(*parts[i + 1:]) if i + 1 < len(parts) else ""
            resolved = os.path.normpath(os.path.join(os.path.dirname(candidate), target))
            return _follow(os.path.join(resolved, rest) if rest else resolved, links)
        current = candidate
    return current


def elf_interpreter(path: str) -> str | None:
    """The dynamic loader an ELF executable names (PT_INTERP), or None."""
    try:
        with open(path, "rb") as f:
            data = f.read(1 << 16)
    except OSError:
        return None
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:  # 64-bit little-endian only
        return None
    phoff = int.from_bytes(data[0x20:0x28], "little")
    phentsize = int.from_bytes(data[0x36:0x38], "little")
    phnum = int.from_bytes(data[0x38:0x3A], "little")
    for i in range(phnum):
        header = data[phoff + i * phentsize: phoff + (i + 1) * phentsize]
        if len(header) < 0x28 or int.from_bytes(header[0:4], "little") != 3:  # PT_INTERP
            continue
        offset = int.from_bytes(header[0x08:0x10], "little")
        size = int.from_bytes(header[0x20:0x28], "little")
        return data[offset: offset + size].rstrip(b"\0").decode() or None
    return None


def _interpreters() -> list[str]:
    """Ours first; then the same Python elsewhere, for when ours sits in a directory the
    unprivileged uid cannot enter (a pyenv under /root). That one lacks our site-packages."""
    found = [sys.executable, os.path.realpath(sys.executable)]
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    found += [p for name in (version, "python3") if (p := shutil.which(name, path=SANDBOX_PATH))]
    return list(dict.fromkeys(found))


def _works(command: list[str], *, tries: int = 1, **kwargs: Any) -> bool:
    for _ in range(tries):
        try:
            if subprocess.run(command, capture_output=True, timeout=30, check=False,
                              cwd="/", **kwargs).returncode == 0:
                return True
        except (OSError, subprocess.SubprocessError):
            pass
    return False


def _cgroup_dir(controller: str, parent: str | None, limit_file: str | None) -> str | None:
    """A directory under which per-run cgroups of `controller` can be made (probed by making
    one), or None. By default it sits under this process's own cgroup, so limits set above
    us still hold."""
    base = Path(parent) if parent is not None else own_cgroup(controller)
    if base is None:
        return None
    group = base if parent is not None else base / _CGROUP_GROUP
    for _ in range(3):
        if _cgroup_works(group, controller, limit_file):
            return str(group)
    return None


def _cgroup_works(group: Path, controller: str, limit_file: str | None) -> bool:
    """Whether a cgroup with a limit can be made under `group` (made and removed again)."""
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
        return False
    return True


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
