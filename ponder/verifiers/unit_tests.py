"""`unit_tests`: run a candidate's code against the problem's tests, in the sandbox.

Two shapes of problem:

- HumanEval: `problem.test` defines `check(candidate)` and `problem.entry_point` names the
  function; the problem text is HumanEval's prompt (signature and docstring). The candidate
  may be the whole function (the prompt is prepended for its imports and helpers, and the
  candidate's definition wins) or only its body (appended to the prompt).
- plain tests: `problem.tests`, a string or list of strings of asserts and `test_*`
  functions, run after the candidate's code (it is also importable as `solution`).

Public and private tests (as AlphaCodium and Reflexion keep them): `test` and `tests` are
private: they score, and by default the feedback says only how many of them failed, so no
gold assertion reaches a refine prompt. `tests_public` (or, when a problem has none, the
`>>>` examples in its text, which the model has seen anyway) are public: their failures are
quoted in full. The score is the share of private tests passed (of public ones when a
problem has no private tests). `private_feedback="full"` (or the verifier name
`unit_tests_full_feedback`) quotes private failures too, for users who want that.

By default (`mode="isolated"`) the candidate's code runs in a process of its own and the
assertions in another that the candidate cannot touch, so a candidate cannot forge its
verdict; its functions may then take and return only plain data. `mode="in_process"` runs
both in one process, for tests that need the candidate's own objects (see docs/trust.md).
"""

from __future__ import annotations

import ast
import json
import re
import secrets
import signal
import textwrap
from dataclasses import dataclass
from typing import Any, Literal

from ponder.code.examples import as_assert, prompt_examples
from ponder.core.answers import canonical_code, extract_code, is_python
from ponder.core.errors import ConfigError, PonderError
from ponder.core.types import Candidate, Problem, Verdict
from ponder.sandbox import HARNESS, Limits, Sandbox, SandboxResult, shared_sandbox
from ponder.sandbox.harness import DEFINITIONS
from ponder.verifiers.base import Verifier

_HARNESS = HARNESS
_SHOWN_FAILURES = 2
_FEEDBACK_LIMIT = 1200


class UnitTestVerifier(Verifier):
    """Runs candidate code against `problem.test` (HumanEval), `problem.tests` and
    `problem.tests_public`.

    >>> problem = Problem(problem="Write add(a, b).", tests=["assert add(2, 3) == 5"])
    >>> code = "def add(a, b):\\n    return a + b\\n"
    >>> (await UnitTestVerifier().verify(problem, Candidate(text=code, answer=code))).passed
    True
    """

    name = "unit_tests"

    def __init__(self, *, limits: Limits | None = None, sandbox: Sandbox | None = None,
                 mode: Literal["isolated", "in_process"] = "isolated",
                 private_feedback: Literal["pass_fail", "full"] = "pass_fail") -> None:
        if mode not in ("isolated", "in_process"):
            raise ConfigError(f"unit_tests mode must be 'isolated' or 'in_process', got {mode!r}")
        if private_feedback not in ("pass_fail", "full"):
            raise ConfigError("unit_tests private_feedback must be 'pass_fail' or 'full', got "
                              f"{private_feedback!r}")
        self.limits = limits or Limits()
        self._sandbox = sandbox
        self.mode = mode
        self.private_feedback = private_feedback

    @property
    def sandbox(self) -> Sandbox:
        return self._sandbox or shared_sandbox()

    def extract(self, text: str) -> str:
        return extract_code(text)

    def canonical(self, answer: str) -> str | None:
        return canonical_code(answer)

    async def verify(self, problem: Problem, candidate: Candidate) -> Verdict:
        code = candidate.answer if candidate.answer.strip() or candidate.answer_given \
            else self.extract(candidate.text)
        if not has_tests(problem):
            # A coding problem whose gold was taken away and whose prompt states no example
            # (as `ponder bench` solves one): nothing here can pass it, and nothing is wrong
            # with the problem. The strategies' own checks (ponder.code) still run it.
            return Verdict(passed=False, score=0.0, details={"stage": "no_tests"},
                           feedback="There are no tests to run for this problem.")
        program, tests, shape = build_program(problem, code)
        nonce = secrets.token_hex(16)
        result = await self.sandbox.run(
            {"harness.py": _HARNESS.read_text(), "solution.py": program}, "harness.py",
            limits=self.limits, args=(self.mode,),
            secret=json.dumps({"public": tests.public, "private": tests.private,
                               "entry_point": problem.entry_point,
                               "problem_code": tests.problem_code, "nonce": nonce}).encode(),
            peer=("harness.py", "candidate") if self.mode == "isolated" else None,
        )
        if result.setup_error is not None:
            raise PonderError(f"the unit-test sandbox failed to start: {result.setup_error}")
        verdict = judge(result, self.limits, full=self.private_feedback == "full", nonce=nonce,
                        private=bool(tests.private))
        verdict.details.update(shape=shape, mode=self.mode, sandbox_id=result.run_id,
                               seconds=round(result.seconds, 3), isolation=result.isolation,
                               exit_code=result.exit_code, signal=result.signal,
                               timed_out=result.timed_out,
                               leftovers_killed=result.leftovers_killed,
                               peak_processes=result.peak_processes)
        return verdict

    def __repr__(self) -> str:
        return f"UnitTestVerifier(mode={self.mode!r}, limits={self.limits})"


def full_feedback() -> UnitTestVerifier:
    """Like `unit_tests`, but failures of private tests are quoted in the feedback too."""
    verifier = UnitTestVerifier(private_feedback="full")
    verifier.name = "unit_tests_full_feedback"
    return verifier


@dataclass(frozen=True)
class Tests:
    """A problem's test chunks: public ones (failures may be shown) and private ones (they
    score); and the problem's own code (a HumanEval prompt), whose helpers the tests use as
    the problem defines them, not as a candidate redefines them."""

    public: list[str]
    private: list[str]
    problem_code: str | None = None


def build_program(problem: Problem, code: str) -> tuple[str, Tests, str]:
    """The code to run, the tests, and which shape the candidate had."""
    private: list[str] = []
    if problem.test is not None:
        if not problem.entry_point:
            raise ConfigError(f"problem {problem.id!r} has a HumanEval `test` but no "
                              "`entry_point` to pass to check()")
        private.append(f"{problem.test}\n\ncheck({problem.entry_point})\n")
    private.extend(_chunks(problem.tests))
    public = _chunks(problem.tests_public) or examples_as_tests(problem)
    if not private and not public:
        raise ConfigError(f"the unit_tests verifier needs `test`, `tests` or `tests_public`; "
                          f"problem {problem.id!r} has none")
    prompt = problem_code(problem)
    program, shape = _program(problem, code, prompt)
    return program, Tests(public=public, private=private, problem_code=prompt), shape


def program_for(problem: Problem, code: str) -> tuple[str, str]:
    """The code to run and which shape the candidate had ("code", "function" or "body"), as
    `build_program` makes them, for a problem with or without tests."""
    return _program(problem, code, problem_code(problem))


def problem_code(problem: Problem) -> str | None:
    """The problem's text when it is code (a HumanEval prompt): what it defines, the tests
    take from it."""
    return problem.problem if is_python(problem.problem) else None


def _program(problem: Problem, code: str, prompt: str | None) -> tuple[str, str]:
    if not problem.entry_point:
        return code, "code"
    # [ \t], not \s: \s* after ^ in MULTILINE spans blank lines, quadratic in a reply of them.
    defines = re.search(rf"^[ \t]*(?:async[ \t]+)?def[ \t]+{re.escape(problem.entry_point)}"
                        r"[ \t]*\(", code, re.MULTILINE)
    if defines:
        return (code if prompt is None else f"{_definitions(prompt)}\n\n{code}"), "function"
    if prompt is None:
        return code, "code"
    body = code.strip("\n")
    first = next((line for line in body.splitlines() if line.strip()), "")
    if first and not first[0].isspace():
        body = textwrap.indent(body, "    ")
    return f"{prompt.rstrip()}\n{body}\n", "body"


def has_tests(problem: Problem) -> bool:
    """Whether `problem` has any test `unit_tests` can run: private, public, or an example
    its text states."""
    return any(t for t in (problem.test, problem.tests, problem.tests_public)) \
        or bool(examples_as_tests(problem))


def _definitions(source: str) -> str:
    """What a prompt defines (imports, helpers, constants), without its other statements: an
    example it runs would run on the stub, before the candidate's definition replaces it."""
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    kept = []
    for node in tree.body:
        if isinstance(node, DEFINITIONS):
            first = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])
            kept.append("".join(lines[first - 1:node.end_lineno]))
    return "\n".join(kept)


def _chunks(tests: str | list[str] | None) -> list[str]:
    if tests is None:
        return []
    return [tests] if isinstance(tests, str) else list(tests)


def examples_as_tests(problem: Problem) -> list[str]:
    """The examples the problem's text states (`ponder.code.prompt_reader.prompt_examples`: `>>>`
    doctests and the other forms prompts write them in) as one chunk of asserts."""
    asserts = [as_assert(e) for e in prompt_examples(problem.problem, problem.entry_point)]
    return ["\n".join(asserts)] if asserts else []


def judge(result: SandboxResult, limits: Limits, *, full: bool = False,
          nonce: str | None = None, private: bool | None = None) -> Verdict:
    """Turn a sandbox run of the harness into a verdict with feedback for the model: public
    failures quoted, private ones counted (quoted too when `full`). Where the problem has
    `private` tests (None: where private results came back), only they score: if they ran
    nothing, nothing passed, never the public ones instead.

    Fails closed: the report counts only when it is one JSON object within the cap, written
    by a judge that then exited 0, carrying the `nonce` that reached the judge with the
    tests (when one was sent)."""
    report = _load_report(result.report)
    if result.timed_out:
        return _fail(f"Timed out after {limits.timeout_s:g}s: the code is too slow or never "
                     "finishes (an infinite loop?).", "timeout")
    if result.report_error is not None:  # fail closed: no prefix of a report is a verdict
        return _fail(f"The tests' report was refused: {result.report_error}.", "report")
    if report is not None and (result.exit_code != 0 or (
            nonce is not None and report.get("nonce") != nonce)):
        why = ("the judge did not exit cleanly after writing it" if result.exit_code != 0
               else "it does not carry the judge's nonce")
        return _fail(f"The tests' report was refused: {why}.", "report")
    if report is None:
        # The output may hold what private tests printed: quoted only with full feedback.
        return _fail(_crash_message(result, limits, show_output=full), "crash",
                     output=result.output)
    phase = report.get("phase")
    if phase == "compile":
        return _fail(f"Your code does not compile:\n{report.get('error', '')}", "compile")
    fate = report.get("candidate")
    if phase == "load" and isinstance(fate, dict):
        return _fail("Your program stopped as it was loaded. "
                     f"{_stop_reason(fate.get('signal'), fate.get('exit_code'), limits)}", "load")
    if phase == "load":
        return _fail(f"Your code raised an error as it was loaded:\n{report.get('error', '')}",
                     "load")
    results = _results(report.get("results"))
    public = [r for r in results if r["public"]]
    hidden = [r for r in results if not r["public"]]
    private = bool(hidden) if private is None else private
    scoring = hidden if private else public
    failed = [r for r in scoring if not r.get("passed")]
    public_failed = [r for r in public if not r.get("passed")]
    total = len(scoring)
    details: dict[str, Any] = {
        "tests": total, "failed": len(failed), "public_tests": len(public),
        "public_failed": len(public_failed), "scored_by": "private" if private else "public",
        "results": results[:50]}
    if total == 0:
        return Verdict(passed=False, score=0.0, feedback="No tests ran.", details=details)
    if not failed:
        return Verdict(passed=True, score=1.0, feedback=f"All {total} tests passed.",
                       details=details)
    lines: list[str] = []
    if isinstance(fate, dict):  # its own death is the candidate's doing, not the tests'
        lines.append(f"Your program stopped mid-tests. "
                     f"{_stop_reason(fate.get('signal'), fate.get('exit_code'), limits)}")
        details["candidate_signal"] = fate.get("signal")
    if private:
        lines.append(f"{len(failed)} of {total} hidden tests failed.")
    if public_failed:
        lines.append(f"{len(public_failed)} of {len(public)} examples from the problem failed:")
        lines += [_quote(item) for item in public_failed[:_SHOWN_FAILURES]]
    elif public:
        lines.append(f"All {len(public)} examples from the problem pass.")
    if private and full:
        lines += [_quote(item) for item in failed[:_SHOWN_FAILURES]]
    return Verdict(passed=False, score=(total - len(failed)) / total,
                   feedback=_clip("\n".join(lines)), details=details)


def _results(raw: Any) -> list[dict[str, Any]]:
    """The report's results rebuilt to their fixed shape (`test`, `passed`, `error`,
    `public`): whatever else a report holds (a value nested a thousand deep, say) stays out
    of the verdict, and so out of results files."""
    if not isinstance(raw, list):
        return []
    def text(value: Any) -> str | None:
        return _clip(value) if isinstance(value, str) else None

    return [{"test": text(r.get("test")) or "", "passed": r.get("passed") is True,
             "error": text(r.get("error")), "public": r.get("public") is True}
            for r in raw if isinstance(r, dict)]


def _quote(item: dict[str, Any]) -> str:
    return f"- {item.get('test', '')}\n  " + str(item.get("error") or "").replace("\n", "\n  ")


def _load_report(raw: bytes) -> dict[str, Any] | None:
    """The judge's one report, or None: a report that is not exactly one JSON object (two
    concatenated, trailing bytes, bad UTF-8, too deep) is no report."""
    try:
        report = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):
        return None
    return report if isinstance(report, dict) else None


def _crash_message(result: SandboxResult, limits: Limits, *, show_output: bool) -> str:
    tail = "\n".join(result.output.strip().splitlines()[-8:]) if show_output else ""
    reason = _stop_reason(result.signal, result.exit_code, limits)
    return f"The program stopped early. {reason}" + (f"\nLast output:\n{tail}" if tail else "")


def _stop_reason(sig: Any, exit_code: Any, limits: Limits) -> str:
    if sig == signal.SIGXCPU:
        return f"It used more than {limits.cpu_s}s of CPU time: too slow, or it never ends."
    if sig == signal.SIGKILL:
        return (f"It was killed for using more than {limits.cpu_s}s of CPU time or "
                f"{limits.memory_mb} MB of memory.")
    if sig == signal.SIGXFSZ:
        return f"It wrote more than {limits.file_size_mb} MB of output or files."
    if sig is not None:
        return f"It was killed by signal {sig}."
    return f"It exited with code {exit_code} before the tests finished (did it call exit()?)."


def _fail(feedback: str, stage: str, *, output: str = "") -> Verdict:
    details: dict[str, Any] = {"stage": stage}
    if output:
        details["output_tail"] = output[-2000:]
    return Verdict(passed=False, score=0.0, feedback=_clip(feedback), details=details)


def _clip(text: str) -> str:
    return text if len(text) <= _FEEDBACK_LIMIT else text[: _FEEDBACK_LIMIT - 1] + "…"
