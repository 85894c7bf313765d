"""The sandbox keeps nothing between runs and shows nothing of the host: a minimal root of
read-only interpreter paths, size-limited private tmpfs for everything writable, and an IPC
namespace. Each test is an attack that worked before the minimal root (or the IPC namespace)
existed."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import pytest

from ponder.sandbox import Limits, Sandbox, SandboxResult
from tests.conftest import REPO

pytestmark = pytest.mark.asyncio(loop_scope="module")

LIMITS = Limits(timeout_s=20.0, cpu_s=10, memory_mb=1024, disk_mb=32)
WORLD_WRITABLE = ("/run/lock", "/var/lock", "/tmp", "/var/tmp", "/dev/shm", "/dev/mqueue",
                  "/var/crash", "/var/mail", "/work")


@pytest.fixture(scope="module")
def sandbox() -> Sandbox:
    return Sandbox()


async def minimal_root(sandbox: Sandbox) -> None:
    if (await sandbox.isolation()).root is None:
        pytest.skip("this machine allows no mount namespace: no minimal root to test")


async def run(sandbox: Sandbox, code: str) -> SandboxResult:
    result = await sandbox.run({"main.py": code}, "main.py", limits=LIMITS)
    assert result.setup_error is None, result.setup_error
    return result


async def test_files_left_in_world_writable_places_do_not_reach_the_next_run(
        sandbox: Sandbox) -> None:
    await minimal_root(sandbox)
    tag = f"ponder-leftover-{uuid.uuid4().hex[:8]}"
    planted = await run(sandbox, (
        f"import os\nfor d in {WORLD_WRITABLE!r}:\n"
        "    try:\n"
        f"        open(os.path.join(d, {tag!r}), 'w').write('x')\n"
        "        print('wrote', d)\n"
        "    except OSError:\n"
        "        pass\n"))
    assert planted.exit_code == 0, planted.output
    found = await run(sandbox, (
        f"import os\nprint([d for d in {WORLD_WRITABLE!r}"
        f" if os.path.exists(os.path.join(d, {tag!r}))])\n"))
    assert found.output.strip() == "[]"
    assert [d for d in WORLD_WRITABLE if os.path.exists(os.path.join(d, tag))] == []


async def test_filling_the_disk_stops_at_the_quota_and_leaves_nothing(sandbox: Sandbox) -> None:
    await minimal_root(sandbox)
    before = _free_mb("/tmp")
    started = time.monotonic()
    result = await run(sandbox, (
        "import os\nwritten = 0\n"
        "for d in ('/work', '/tmp', '/dev/shm'):\n"
        "    try:\n"
        "        with open(os.path.join(d, 'fill'), 'wb') as f:\n"
        "            for _ in range(450):\n"
        "                f.write(b'x' * (1 << 20))\n"
        "                f.flush()\n"
        "                written += 1\n"
        "    except OSError as exc:\n"
        "        print(d, type(exc).__name__)\n"
        "print('written MB', written)\n"))
    written = int(result.output.split("written MB")[1])
    assert written <= 3 * LIMITS.disk_mb  # each tmpfs stops at its size
    assert "OSError" in result.output or "MemoryError" in result.output
    assert time.monotonic() - started < LIMITS.timeout_s
    assert _free_mb("/tmp") >= before - 16  # nothing stayed on our disk


async def test_sysv_shared_memory_does_not_reach_the_next_run(sandbox: Sandbox) -> None:
    key = 0x504F4E44  # "POND"
    shm = ("import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
           "libc.shmat.restype = ctypes.c_void_p\n")
    planted = await run(sandbox, shm + (
        f"seg = libc.shmget({key}, 4096, 0o1666)\n"
        "addr = libc.shmat(seg, None, 0)\n"
        "ctypes.memmove(addr, b'secret', 6)\n"
        "print('created', seg >= 0)\n"))
    assert "created True" in planted.output, planted.output
    found = await run(sandbox, shm + f"print('found', libc.shmget({key}, 0, 0) >= 0)\n")
    assert "found False" in found.output, found.output
    host = Path("/proc/sysvipc/shm")
    if host.exists():
        assert f"{key:>10}" not in host.read_text()  # and none lives on in our namespace


async def test_the_project_its_data_and_the_hosts_files_are_out_of_sight(
        sandbox: Sandbox) -> None:
    await minimal_root(sandbox)
    secrets = ["/etc/passwd", "/etc/shadow", str(REPO / "README.md"),
               str(REPO.parent / "shared" / "data" / "humaneval_public.jsonl"),
               "/root", "/home", "/usr/local/bin", "/proc/1/environ"]
    result = await run(sandbox, (
        "import os\nseen = []\n"
        f"for path in {secrets!r}:\n"
        "    try:\n"
        "        with open(path, 'rb') as f:\n"
        "            f.read(1)\n"
        "        seen.append(path)\n"
        "    except OSError:\n"
        "        pass\n"
        "print(seen)\n"
        "print(sorted(os.listdir('/')))\n"))
    lines = result.output.splitlines()
    assert lines[0] == "[]"
    assert set(eval(lines[1])) <= {"dev", "etc", "lib", "lib64", "bin", "sbin", "proc", "tmp",
                                   "usr", "work"}


async def test_the_interpreter_and_its_library_are_read_only(sandbox: Sandbox) -> None:
    await minimal_root(sandbox)
    result = await run(sandbox, (
        "import os, sys, json\nrefused = []\n"
        "for path in (sys.executable, os.path.dirname(json.__file__) + '/evil.py', '/evil'):\n"
        "    try:\n"
        "        open(path, 'a').close()\n"
        "    except OSError:\n"
        "        refused.append(path)\n"
        "print(len(refused))\n"))
    assert result.output.strip() == "3"


async def test_the_isolation_says_what_it_stops(sandbox: Sandbox) -> None:
    described = (await sandbox.isolation()).describe()
    assert {"network", "pid_namespace", "ipc_namespace", "filesystem"} <= set(described)


def _free_mb(path: str) -> float:
    stat = os.statvfs(path)
    return stat.f_bavail * stat.f_frsize / (1 << 20)
