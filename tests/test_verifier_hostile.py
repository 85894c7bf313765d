"""Hostile candidates: each is stopped within its limits, the test process and the machine stay
healthy, and no process of a candidate outlives its verdict."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import ponder
from ponder.core.types import Candidate, Problem
from ponder.sandbox import Limits, Sandbox
from ponder.sandbox.isolation import own_cgroup
from ponder.verifiers.unit_tests import UnitTestVerifier

REPO = Path(__file__).resolve().parents[1]
LIMITS = Limits(timeout_s=4.0, cpu_s=2, memory_mb=512, processes=16)


@pytest.fixture(scope="module")
def sandbox() -> Sandbox:
    return Sandbox()


async def judge(sandbox: Sandbox, code: str, tests: str, limits: Limits = LIMITS,
                ) -> tuple[ponder.Verdict, float]:
    # Full feedback: these tests read what stopped the program in it.
    verifier = UnitTestVerifier(limits=limits, sandbox=sandbox, private_feedback="full")
    started = time.monotonic()
    verdict = await verifier.verify(Problem(problem="?", tests=tests),
                                    Candidate(text=code, answer=code))
    return verdict, time.monotonic() - started


def processes_carrying(marker: bytes) -> list[int]:
    """Pids whose command line or environment contains `marker` (a /proc scan, no psutil)."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        for part in ("cmdline", "environ"):
            with contextlib.suppress(OSError), open(f"/proc/{name}/{part}", "rb") as f:
                if marker in f.read():
                    found.append(int(name))
                    break
    return found


def assert_nothing_left(verdict: ponder.Verdict, *markers: str) -> None:
    assert processes_carrying(f"PONDER_SANDBOX={verdict.details['sandbox_id']}".encode()) == []
    for marker in markers:
        assert processes_carrying(marker.encode()) == []
    assert subprocess.run(["true"], check=False).returncode == 0  # the machine still forks


async def test_an_infinite_loop_is_stopped_by_the_cpu_limit(sandbox: Sandbox) -> None:
    limits = Limits(timeout_s=10.0, cpu_s=1, memory_mb=512)
    verdict, elapsed = await judge(sandbox, "def f():\n    while True:\n        pass\n",
                                   "assert f() == 1", limits)
    assert not verdict.passed
    assert verdict.details["candidate_signal"] == signal.SIGXCPU  # the judge outlived it
    assert "more than 1s of CPU time" in verdict.feedback
    assert elapsed < limits.timeout_s
    assert_nothing_left(verdict)


async def test_a_sleeping_program_is_stopped_by_the_wall_clock(sandbox: Sandbox) -> None:
    limits = Limits(timeout_s=1.5, cpu_s=5, memory_mb=512)
    verdict, elapsed = await judge(sandbox, "import time\ntime.sleep(600)\n", "assert True",
                                   limits)
    assert not verdict.passed and verdict.details["timed_out"]
    assert verdict.feedback.startswith("Timed out after 1.5s")
    assert elapsed < 1.5 + 2.0
    assert_nothing_left(verdict)


@pytest.fixture
def capped_pids_cgroup() -> Iterator[Path]:
    """Moves this test process into a pids cgroup of its own capped at 256, so that even if
    the sandbox's own cap failed a fork bomb could not exhaust the machine's pids."""
    home = own_cgroup("pids")
    if home is None or os.geteuid() != 0:
        pytest.skip("no writable pids cgroup: the fork bomb is only run with a cap in place")
    cap = home / f"ponder-test-{uuid.uuid4().hex[:8]}"
    try:
        cap.mkdir()
        (cap / "pids.max").write_text("256")
        (cap / "cgroup.procs").write_text(str(os.getpid()))
    except OSError as exc:
        with contextlib.suppress(OSError):
            cap.rmdir()
        pytest.skip(f"cannot make a pids cgroup here ({exc})")
    try:
        yield cap
    finally:
        (home / "cgroup.procs").write_text(str(os.getpid()))
        for _ in range(100):
            with contextlib.suppress(OSError):
                for pid in (cap / "cgroup.procs").read_text().split():
                    os.kill(int(pid), signal.SIGKILL)
                cap.rmdir()
                break
            time.sleep(0.05)


async def test_a_fork_bomb_is_capped_and_killed(capped_pids_cgroup: Path) -> None:
    sandbox = Sandbox(cgroup_parent=str(capped_pids_cgroup))
    if (await sandbox.isolation()).pids_cgroup is None:
        pytest.skip("per-run pids cgroups are not available")
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"
    limits = Limits(timeout_s=2.0, cpu_s=5, memory_mb=512, processes=16)
    verdict, elapsed = await judge(sandbox, bomb, "assert True", limits)
    assert not verdict.passed and verdict.details["timed_out"]
    assert elapsed < 2.0 + 3.0
    assert verdict.details["isolation"]["pids_cgroup"]
    peak = (capped_pids_cgroup / "pids.peak")
    if peak.exists():
        assert int(peak.read_text()) < 256  # the run's own cap of 16 held
    assert_nothing_left(verdict)
    others = set((capped_pids_cgroup / "cgroup.procs").read_text().split()) - {str(os.getpid())}
    assert others == set()


async def test_allocating_20_gb_fails_with_a_memory_error(sandbox: Sandbox) -> None:
    code = "def grab():\n    return len(bytearray(20 * 1024 ** 3))\n"
    verdict, elapsed = await judge(sandbox, code, "assert grab() > 0")
    assert not verdict.passed
    assert "MemoryError" in verdict.feedback
    assert elapsed < LIMITS.timeout_s
    assert_nothing_left(verdict)


async def test_files_written_outside_the_run_directory_do_not_appear(sandbox: Sandbox) -> None:
    tag = uuid.uuid4().hex[:8]
    targets = [f"/tmp/ponder-escape-{tag}", f"/var/tmp/ponder-escape-{tag}",
               f"/dev/shm/ponder-escape-{tag}", str(REPO / f"escape-{tag}"),
               f"/root/escape-{tag}"]
    code = (f"for path in {targets!r} + ['inside.txt']:\n"
            "    try:\n"
            "        with open(path, 'w') as f:\n"
            "            f.write('x')\n"
            "    except OSError:\n"
            "        pass\n")
    # Writing inside its own directory (the run's `candidate/`, its cwd) is fine.
    verdict, _ = await judge(sandbox, code,
                             "import os\nassert os.path.exists('candidate/inside.txt')")
    assert verdict.passed, verdict.feedback
    assert [t for t in targets if os.path.exists(t)] == []
    assert_nothing_left(verdict)


async def test_secrets_in_our_environment_do_not_reach_the_candidate(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch,
) -> None:
    secret = f"sk-test-{uuid.uuid4().hex}"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    monkeypatch.setenv("ANTHROPIC_API_KEY", secret)
    # A process of ours that holds the secret, for the candidate to look for in /proc.
    holder = subprocess.Popen(["sleep", "30"], env={**os.environ})
    code = (
        "import os\n"
        "def leaks():\n"
        "    found = [k for k in os.environ if k.endswith('_API_KEY') or k.startswith('OPENAI')]\n"
        "    for pid in filter(str.isdigit, os.listdir('/proc')):\n"
        "        try:\n"
        "            with open(f'/proc/{pid}/environ', 'rb') as f:\n"
        "                if b'sk-test-' in f.read():\n"
        "                    found.append(pid)\n"
        "        except OSError:\n"
        "            pass\n"
        "    print(found)\n"
        "    return found\n"
    )
    try:
        verdict, _ = await judge(sandbox, code, "assert leaks() == []")
    finally:
        holder.kill()
        holder.wait()
    assert verdict.passed, verdict.feedback
    assert secret not in verdict.model_dump_json()
    assert_nothing_left(verdict)


async def test_no_socket_reaches_our_loopback(sandbox: Sandbox) -> None:
    if (await sandbox.isolation()).describe()["network"] != "namespace":
        pytest.skip("no network namespace on this machine: the candidate would reach us")
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        code = ("import socket\n"
                "def reach():\n"
                "    try:\n"
                f"        socket.create_connection(('127.0.0.1', {port}), timeout=2).close()\n"
                "        return 'connected'\n"
                "    except OSError as exc:\n"
                "        return type(exc).__name__\n")
        verdict, _ = await judge(sandbox, code, "assert reach() != 'connected'")
        listener.settimeout(0.2)
        with pytest.raises(TimeoutError):
            listener.accept()
    assert verdict.passed, verdict.feedback
    assert_nothing_left(verdict)


async def test_killing_its_parent_or_us_fails(sandbox: Sandbox) -> None:
    code = ("import os, signal\n"
            "def attack():\n"
            "    outcomes = []\n"
            f"    for pid in (os.getppid(), {os.getpid()}):\n"
            "        try:\n"
            "            os.kill(pid, signal.SIGKILL)\n"
            "            outcomes.append('sent')\n"
            "        except OSError as exc:\n"
            "            outcomes.append(type(exc).__name__)\n"
            "    return outcomes\n")
    verdict, _ = await judge(sandbox, code, "assert 'sent' not in attack()")
    # Its parent is the judge, under an id of its own: refused; ours is not in its PID
    # namespace (or is refused too): we are here.
    assert verdict.passed, verdict.feedback
    assert_nothing_left(verdict)


SETSID_CHILDREN = """
import os, subprocess, sys
def spawn(marker):
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)", marker],
                     start_new_session=True)
    pid = os.fork()
    if pid == 0:  # a classic daemon: setsid, fork again, sleep
        os.setsid()
        if os.fork() == 0:
            os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(300)", marker])
        os._exit(0)
    os.waitpid(pid, 0)
    return True
"""


async def test_children_that_setsid_and_sleep_do_not_outlive_the_verdict(
    sandbox: Sandbox,
) -> None:
    marker = f"ponder-marker-{uuid.uuid4().hex}"
    verdict, _ = await judge(sandbox, SETSID_CHILDREN, f"assert spawn({marker!r})")
    assert verdict.passed, verdict.feedback
    assert_nothing_left(verdict, marker)


async def test_without_namespaces_or_cgroups_the_marker_scan_still_finds_them() -> None:
    """The weakest fallback: no namespaces, no cgroups; processes are found by the marker in
    their environment, and the verdict says which isolation was missing."""
    weak = Sandbox(namespaces=False, cgroups=False)
    marker = f"ponder-marker-{uuid.uuid4().hex}"
    verdict, _ = await judge(weak, SETSID_CHILDREN, f"assert spawn({marker!r})")
    assert verdict.passed, verdict.feedback
    isolation = verdict.details["isolation"]
    assert isolation["network"] == "not isolated"
    assert not isolation["pid_namespace"] and not isolation["pids_cgroup"]
    assert verdict.details["leftovers_killed"] >= 2
    assert_nothing_left(verdict, marker)

