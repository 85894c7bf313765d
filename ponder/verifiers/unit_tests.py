"""`unit_tests`: run a candidate's code against the problem's tests, in the sandbox.

Two shapes of problem:

- HumanEval: `problem.test` defines `check(candidate)` and `problem.entry_point` names the
  function; the problem text is HumanEval's prompt (signature and docstring). The candidate
  may be the whole function (the prompt is prepended for its imports and helpers, and the
  candidate's definition wins) or only its body (appended to the prompt).
- plain tests: `problem.tests`, a string or list of strings of asserts and `test_*`
  functions, run after the candidate's code in its namespace (it is also importable as
  `solution`).

The score is the share of tests that passed; the feedback names the first failing
assertions (with what their left side was) or the tail of the error, in a few lines.
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
import signal
import textwrap
from pathlib import Path
from typing import Any

from ponder.answers import extract_code
from ponder.errors import ConfigError, PonderError
from ponder.types import Candidate, Problem, Verdict
from ponder.verifiers.base import Verifier
from ponder.verifiers.sandbox import Limits, Sandbox, SandboxResult, shared_sandbox

_HARNESS = Path(__file__).with_name("harness.py")
_SHOWN_FAILURES = 2
_FEEDBACK_LIMIT = 1200


class UnitTestVerifier(Verifier):
    """Runs candidate code against `problem.test` (HumanEval) or `problem.tests`.

    >>> problem = Problem(problem="Write add(a, b).", tests=["assert add(2, 3) == 5"])
    >>> code = "def add(a, b):\\n    return a + b\\n"
    >>> (await UnitTestVerifier().verify(problem, Candidate(text=code, answer=code))).passed
    True
    """

    name = "unit_tests"

    def __init__(self, *, limits: Limits | None = None, sandbox: Sandbox | None = None) -> None:
        self.limits = limits or Limits()
        self._sandbox = sandbox

    @property
    def sandbox(self) -> Sandbox:
        return self._sandbox or shared_sandbox()

    def extract(self, text: str) -> str:
        return extract_code(text)

    def canonical(self, answer: str) -> str | None:
        """Programs that differ only in layout and comments share a key; None if it does
        not parse."""
        try:
            tree = ast.parse(textwrap.dedent(answer))
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            return None
        return hashlib.sha1(ast.dump(tree).encode()).hexdigest()[:16]

    async def verify(self, problem: Problem, candidate: Candidate) -> Verdict:
        code = candidate.answer if candidate.answer.strip() else self.extract(candidate.text)
        program, tests, shape = build_program(problem, code)
        payload = json.dumps({"code": program, "tests": tests})
        result = await self.sandbox.run(
            {"harness.py": _HARNESS.read_text(), "payload.json": payload}, "harness.py",
            limits=self.limits,
        )
        if result.setup_error is not None:
            raise PonderError(f"the unit-test sandbox failed to start: {result.setup_error}")
        verdict = judge(result, self.limits)
        verdict.details.update(shape=shape, sandbox_id=result.run_id,
                               seconds=round(result.seconds, 3), isolation=result.isolation,
                               exit_code=result.exit_code, signal=result.signal,
                               timed_out=result.timed_out,
                               leftovers_killed=result.leftovers_killed,
                               peak_processes=result.peak_processes)
        return verdict

    def __repr__(self) -> str:
        return f"UnitTestVerifier(limits={self.limits})"


def build_program(problem: Problem, code: str) -> tuple[str, list[str], str]:
    """The code to run, the test chunks, and which shape the candidate had."""
    tests: list[str] = []
    if problem.test is not None:
        if not problem.entry_point:
            raise ConfigError(f"problem {problem.id!r} has a HumanEval `test` but no "
                              "`entry_point` to pass to check()")
        tests.append(f"{problem.test}\n\ncheck({problem.entry_point})\n")
    if isinstance(problem.tests, str):
        tests.append(problem.tests)
    elif problem.tests is not None:
        tests.extend(problem.tests)
    if not tests:
        raise ConfigError(f"the unit_tests verifier needs `test` or `tests`; problem "
                          f"{problem.id!r} has neither")
    if not problem.entry_point:
        return code, tests, "code"
    defines = re.search(rf"^\s*(?:async\s+)?def\s+{re.escape(problem.entry_point)}\s*\(",
                        code, re.MULTILINE)
    prompt = problem.problem if _compiles(problem.problem) else None
    if defines:
        return (code if prompt is None else f"{prompt}\n\n{code}"), tests, "function"
    if prompt is None:
        return code, tests, "code"
    body = code.strip("\n")
    first = next((line for line in body.splitlines() if line.strip()), "")
    if first and not first[0].isspace():
        body = textwrap.indent(body, "    ")
    return f"{prompt.rstrip()}\n{body}\n", tests, "body"


def _compiles(source: str) -> bool:
    try:
        compile(source, "<prompt>", "exec")
    except (SyntaxError, ValueError):
        return False
    return True


def judge(result: SandboxResult, limits: Limits) -> Verdict:
    """Turn a sandbox run of the harness into a verdict with feedback for the model."""
    report = _load_report(result.report)
    if result.timed_out:
        return _fail(f"Timed out after {limits.timeout_s:g}s: the code is too slow or never "
                     "finishes (an infinite loop?).", "timeout")
    if report is None:
        return _fail(_crash_message(result, limits), "crash", output=result.output)
    phase = report.get("phase")
    if phase == "compile":
        return _fail(f"Your code does not compile:\n{report.get('error', '')}", "compile")
    if phase == "load":
        return _fail(f"Your code raised an error as it was loaded:\n{report.get('error', '')}",
                     "load")
    results: list[dict[str, Any]] = list(report.get("results") or [])
    failed = [r for r in results if not r.get("passed")]
    total = len(results)
    details: dict[str, Any] = {"tests": total, "failed": len(failed), "results": results[:50]}
    if total == 0:
        return Verdict(passed=False, score=0.0, feedback="No tests ran.", details=details)
    if not failed:
        return Verdict(passed=True, score=1.0, feedback=f"All {total} tests passed.",
                       details=details)
    lines = [f"{len(failed)} of {total} tests failed."]
    for item in failed[:_SHOWN_FAILURES]:
        lines.append(f"- {item.get('test', '')}\n  " + str(item.get("error") or "").replace(
            "\n", "\n  "))
    return Verdict(passed=False, score=(total - len(failed)) / total,
                   feedback=_clip("\n".join(lines)), details=details)


def _load_report(raw: bytes) -> dict[str, Any] | None:
    try:
        report = json.loads(raw.decode("utf-8", "replace"))
    except ValueError:
        return None
    return report if isinstance(report, dict) else None


def _crash_message(result: SandboxResult, limits: Limits) -> str:
    sig = result.signal
    if sig == signal.SIGXCPU:
        reason = f"It used more than {limits.cpu_s}s of CPU time: too slow, or it never ends."
    elif sig == signal.SIGKILL:
        reason = (f"It was killed for using more than {limits.cpu_s}s of CPU time or "
                  f"{limits.memory_mb} MB of memory.")
    elif sig == signal.SIGXFSZ:
        reason = f"It wrote more than {limits.file_size_mb} MB of output or files."
    elif sig is not None:
        reason = f"It was killed by signal {sig}."
    else:
        reason = (f"It exited with code {result.exit_code} before the tests finished "
                  "(did it call exit()?).")
    tail = "\n".join(result.output.strip().splitlines()[-8:])
    return f"The program stopped early. {reason}" + (f"\nLast output:\n{tail}" if tail else "")


def _fail(feedback: str, stage: str, *, output: str = "") -> Verdict:
    details: dict[str, Any] = {"stage": stage}
    if output:
        details["output_tail"] = output[-2000:]
    return Verdict(passed=False, score=0.0, feedback=_clip(feedback), details=details)


def _clip(text: str) -> str:
    return text if len(text) <= _FEEDBACK_LIMIT else text[: _FEEDBACK_LIMIT - 1] + "…"
