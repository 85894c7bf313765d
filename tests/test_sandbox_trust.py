"""The second red-team pass, against the sandbox itself: the candidate cannot reach its judge,
a report is whole or it is nothing, and the sandbox never runs model-written code with less
isolation than the machine allows unless the user opts out by name (docs/trust.md)."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ponder.core.types import Candidate, Problem, Result
from ponder.runs.summary import RunTally
from ponder.sandbox import (
    Isolation,
    Limits,
    Sandbox,
    SandboxResult,
    SandboxUnavailable,
    runner,
)
from ponder.sandbox.run import Run
from ponder.verifiers.unit_tests import UnitTestVerifier, judge

LIMITS = Limits(timeout_s=10.0, cpu_s=5, memory_mb=512)
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="the id layers need root")

# Every way the first pass found to reach the judge, tried from inside the candidate's code.
REACH_THE_JUDGE = """
import ctypes, os, signal
libc = ctypes.CDLL(None, use_errno=True)
def reach():
    judge, outcomes = os.getppid(), {}
    def attempt(name, action):
        try:
            action()
            outcomes[name] = "done"
        except OSError as exc:
            outcomes[name] = type(exc).__name__
    attempt("signal", lambda: os.kill(judge, 0))
    attempt("stop", lambda: os.kill(judge, signal.SIGSTOP))
    os.kill(judge, signal.SIGCONT) if outcomes["stop"] == "done" else None
    def trace():
        if libc.ptrace(16, judge, 0, 0) != 0:  # PTRACE_ATTACH
            raise OSError(ctypes.get_errno(), "ptrace")
        libc.ptrace(17, judge, 0, 0)  # PTRACE_DETACH
    attempt("trace", trace)
    def take():
        pidfd = os.pidfd_open(judge)
        if libc.syscall(438, pidfd, 3, 0) < 0:  # pidfd_getfd
            raise OSError(ctypes.get_errno(), "pidfd_getfd")
    attempt("descriptors", take)
    attempt("proc fd", lambda: os.listdir(f"/proc/{judge}/fd"))
    return outcomes
"""


@pytest.fixture(scope="module")
def sandbox() -> Sandbox:
    return Sandbox()


@as_root
async def test_the_candidate_cannot_signal_stop_trace_or_take_descriptors_from_its_judge(
        sandbox: Sandbox) -> None:
    verifier = UnitTestVerifier(limits=LIMITS, sandbox=sandbox, private_feedback="full")
    problem = Problem(problem="?", tests=["assert 'done' not in reach().values(), reach()"])
    verdict = await verifier.verify(problem, Candidate(text=REACH_THE_JUDGE,
                                                       answer=REACH_THE_JUDGE))
    assert verdict.passed, verdict.feedback
    assert verdict.details["isolation"]["judge_apart"] == "another uid"


CAPABILITIES = """
def capabilities():
    with open("/proc/self/status") as f:
        fields = dict(line.split(":", 1) for line in f if line.startswith("Cap"))
    return {name: int(value, 16) for name, value in fields.items()}
"""


@pytest.mark.parametrize("mode", ["isolated", "in_process"])
async def test_no_capability_survives_in_the_candidates_process(mode: str,
                                                                 sandbox: Sandbox) -> None:
    """The isolated candidate runs in the boot's interpreter, never exec'd: nothing but an
    explicit capset empties what a process that kept uid 0 (a user namespace) holds."""
    verifier = UnitTestVerifier(limits=LIMITS, sandbox=sandbox, mode=mode,  # type: ignore[arg-type]
                                private_feedback="full")
    problem = Problem(problem="?", tests=["assert set(capabilities().values()) == {0}"])
    verdict = await verifier.verify(problem, Candidate(text=CAPABILITIES, answer=CAPABILITIES))
    assert verdict.passed, verdict.feedback


async def test_a_report_past_the_cap_is_no_report(sandbox: Sandbox) -> None:
    """A forgery padded to the cap used to be read as the verdict, with the judge's true
    report after it unread."""
    limits = Limits(report_bytes=4096)
    program = ("import os\n"
               "with os.fdopen(int(os.environ['PONDER_SANDBOX_REPORT_FD']), 'w') as out:\n"
               "    out.write('{\"phase\": \"tests\", \"results\": []}'.ljust(4096))\n"
               "    out.write('{\"phase\": \"tests\", \"results\": []}')\n")
    result = await sandbox.run({"main.py": program}, "main.py", limits=limits)
    assert result.report == b"" and result.report_error is not None
    assert "more than the 4096" in result.report_error
    verdict = judge(result, limits)
    assert not verdict.passed and verdict.details["stage"] == "report"


@pytest.mark.parametrize("report", [
    b'{"phase": "tests", "results": []}{"phase": "tests", "results": []}',
    b'{"phase": "tests", "results": []}\n{"phase": "tests", "results": []}\n',
    b'{"phase": "tests", "results": [{"passed": true}]}\xff',
    b'[' * 100_000,
])
async def test_a_report_that_is_not_exactly_one_object_fails_closed(report: bytes) -> None:
    result = SandboxResult(
        run_id="x", exit_code=0, signal=None, timed_out=False, seconds=0.1, output="",
        report=report, isolation={})
    verdict = judge(result, LIMITS)
    assert not verdict.passed and verdict.details["stage"] == "crash"


@contextlib.contextmanager
def processes_of(user: str, count: int) -> Iterator[None]:
    """`count` sleeping processes of `user`: what another service (or two sandboxes that
    shared `nobody`) leaves on the host."""
    entry = pwd.getpwnam(user)
    held = [subprocess.Popen(["sleep", "60"], user=entry.pw_uid, group=entry.pw_gid,
                             extra_groups=[]) for _ in range(count)]
    try:
        yield
    finally:
        for process in held:
            process.kill()
            process.wait()


@as_root
async def test_a_host_busy_with_nobodys_processes_does_not_downgrade_the_sandbox() -> None:
    """With about 50 `nobody` processes on the host, RLIMIT_NPROC made every probe's drop to
    `nobody` fail and the sandbox ran the candidate as root on the host."""
    marker = Path("/tmp") / f"ponder-escape-{uuid.uuid4().hex}"
    program = ("import os\n"
               f"try:\n    open({str(marker)!r}, 'w').close()\nexcept OSError:\n    pass\n"
               "print(os.getuid())\n")
    with processes_of("nobody", 120):
        fresh = Sandbox()
        result = await fresh.run({"main.py": program}, "main.py", limits=LIMITS)
    assert result.exit_code == 0, result.output
    assert int(result.output.split()[-1]) not in (0, pwd.getpwnam("nobody").pw_uid)
    assert not marker.exists()
    assert result.isolation["sandbox"] == "isolated"


async def test_a_probe_that_cannot_run_a_program_is_retried_then_refused(
        monkeypatch: pytest.MonkeyPatch) -> None:
    tries: list[int] = []

    async def fails(self: object) -> str:
        tries.append(1)
        return "mount /usr on /x failed"

    monkeypatch.setattr(Run, "trial", fails)
    fresh = Sandbox()
    with pytest.raises(SandboxUnavailable, match="did not run a test program in 3 tries: "
                                                 "mount /usr on /x failed"):
        await fresh.run({"main.py": "print(1)"}, "main.py")
    assert len(tries) == 3
    monkeypatch.undo()  # a refusal is not kept: the next run probes again
    result = await fresh.run({"main.py": "print(1)"}, "main.py")
    assert result.output.strip() == "1"


@as_root
async def test_root_that_cannot_drop_to_ids_of_its_own_refuses(
        monkeypatch: pytest.MonkeyPatch) -> None:
    probed = runner.probe_isolation

    def without_ids(**options: object) -> Isolation:
        import dataclasses
        return dataclasses.replace(probed(**options), own_ids=False)  # type: ignore[arg-type]

    monkeypatch.setattr(runner, "probe_isolation", without_ids)
    with pytest.raises(SandboxUnavailable, match="as root"):
        await Sandbox().run({"main.py": "print(1)"}, "main.py")


async def test_no_sandbox_only_by_name_and_said_in_every_verdict() -> None:
    unsandboxed = Sandbox(isolation=Isolation.none())
    verifier = UnitTestVerifier(limits=LIMITS, sandbox=unsandboxed)
    code = "def add(a, b):\n    return a + b\n"
    verdict = await verifier.verify(Problem(problem="?", tests=["assert add(1, 2) == 3"]),
                                    Candidate(text=code, answer=code))
    assert verdict.passed, verdict.feedback
    assert verdict.details["isolation"]["sandbox"].startswith("none (opted out")
    assert (await Sandbox().isolation()).describe()["sandbox"] == "isolated"
    tally = RunTally(problems=2)
    tally.add(Result(id="a", answer="", verdict=verdict))
    isolated = verdict.model_copy(update={"details": {"isolation": {"sandbox": "isolated"}}})
    tally.add(Result(id="b", answer="", verdict=isolated))
    assert tally.summary().unsandboxed == 1


WITHOUT_ROOT = """
import asyncio, json, sys
from ponder.core.types import Candidate, Problem
from ponder.sandbox import Sandbox
from ponder.verifiers.unit_tests import UnitTestVerifier

async def main():
    verifier = UnitTestVerifier(sandbox=Sandbox(), private_feedback="full")
    code = sys.argv[1]
    test = ("assert capabilities() == 0 and 'done' not in (reach()['trace'], "
            "reach()['descriptors']), (capabilities(), reach())")
    verdict = await verifier.verify(Problem(problem="?", tests=[test]),
                                    Candidate(text=code, answer=code))
    print(json.dumps({"passed": verdict.passed, "feedback": verdict.feedback,
                      "isolation": verdict.details.get("isolation")}))

asyncio.run(main())
"""


@as_root
def test_without_root_the_candidate_holds_no_capability_and_cannot_trace_its_judge() -> None:
    """ponder run by an unprivileged user: the run's root is the user namespace's, the
    candidate keeps uid 0 there and (never exec'd) would keep every capability but for an
    explicit capset; with them it could trace the judge."""
    import shutil
    import sys
    python = shutil.which(f"python{sys.version_info[0]}.{sys.version_info[1]}",
                          path="/usr/local/bin:/usr/bin:/bin")
    if python is None or shutil.which("setpriv") is None:
        pytest.skip("needs setpriv and a system Python of this version for an unprivileged run")
    nobody = pwd.getpwnam("nobody")
    code = REACH_THE_JUDGE + (
        "def capabilities():\n"
        "    with open('/proc/self/status') as f:\n"
        "        return sum(int(line.split()[1], 16) for line in f if line.startswith('Cap'))\n")
    repo = Path(__file__).resolve().parents[1]
    site = [p for p in sys.path if p.endswith("site-packages")]
    done = subprocess.run(
        ["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups",
         "env", "HOME=/tmp", f"PYTHONPATH={os.pathsep.join([str(repo), *site])}", python,
         "-c", WITHOUT_ROOT, code],
        capture_output=True, text=True, timeout=120, check=False, cwd="/")
    if done.returncode != 0 and "No module named" in done.stderr:
        pytest.skip(f"ponder's dependencies are not readable by nobody: {done.stderr[-200:]}")
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.splitlines()[-1])
    if report["isolation"]["user_namespace"] is not True:
        pytest.skip("no unprivileged user namespaces on this machine")
    assert report["isolation"]["judge_apart"] == "same uid, undumpable"
    assert report["passed"], report["feedback"]


def _ran(report: bytes, exit_code: int | None = 0, sig: int | None = None,
         ) -> SandboxResult:
    return SandboxResult(
        run_id="x", exit_code=exit_code, signal=sig, timed_out=False, seconds=0.1, output="",
        report=report, isolation={})


PASSING = b'{"phase": "tests", "results": [{"test": "t", "passed": true}], "nonce": "n1"}'


def test_a_report_counts_only_from_a_judge_that_exited_cleanly_with_its_nonce() -> None:
    """A forger that wrote a report and then killed the judge (or wrote one without the
    nonce that reached the judge with the tests) gets no verdict from it."""
    assert judge(_ran(PASSING), LIMITS, nonce="n1").passed
    killed = judge(_ran(PASSING, exit_code=None, sig=9), LIMITS, nonce="n1")
    assert not killed.passed and killed.details["stage"] == "report"
    stranger = judge(_ran(PASSING), LIMITS, nonce="n2")
    assert not stranger.passed and "nonce" in stranger.feedback


def test_a_report_holding_values_nested_deep_keeps_only_its_fixed_fields() -> None:
    """A problem's tests can write the report themselves; a value 700 deep in it once made
    the results row unserialisable and lost the whole run."""
    deep = "[" * 700 + "]" * 700
    report = ('{"phase": "tests", "nonce": "n1", "results": [{"test": "t", "passed": false, '
              f'"error": {deep}, "x": {deep}, "public": false}}]}}').encode()
    verdict = judge(_ran(report), LIMITS, nonce="n1")
    assert verdict.details["results"] == [
        {"test": "t", "passed": False, "error": None, "public": False}]
    Result(id="a", answer="", verdict=verdict).model_dump_json()


@as_root
def test_one_passing_probe_failure_does_not_weaken_every_later_run(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The full namespace probe failing once used to settle on `--net` alone, for good: no
    PID namespace, the host's filesystem (and its data files) in sight."""
    from ponder.sandbox import isolation

    real = subprocess.run
    failed: list[list[str]] = []

    def flaky(command: list[str], **options: object) -> subprocess.CompletedProcess[bytes]:
        if command[:2] == ["unshare", "--net"] and "--pid" in command and not failed:
            failed.append(command)
            return subprocess.CompletedProcess(command, 1)
        return real(command, **options)  # type: ignore[call-overload,no-any-return]

    monkeypatch.setattr(isolation.subprocess, "run", flaky)
    probed = isolation.probe_isolation()
    assert failed, "the probe never ran unshare"
    assert probed.namespaces == isolation.NAMESPACE_FLAGS and probed.root is not None
