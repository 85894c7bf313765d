"""A wrong candidate cannot forge a passing unit-test verdict. Each trick below passed a
wrong solution when the harness ran in the candidate's own process (8 of 13 did, and a
3-line reply scored 20/20 through `ponder solve`); in the default isolated mode the
assertions run in a judge process the candidate cannot reach. docs/trust.md has the threat
model."""

from __future__ import annotations

import asyncio
import textwrap

import pytest

import ponder
from ponder.types import Candidate, Problem, Verdict
from ponder.verifiers.sandbox import Limits, Sandbox
from ponder.verifiers.unit_tests import UnitTestVerifier
from tests.conftest import load_jsonl

LIMITS = Limits(timeout_s=10.0, cpu_s=5, memory_mb=512)
# The wrong solution every trick wraps: the right answer is 4242, which it cannot know.
PROBLEM = Problem(id="secret", problem="Write secret(x).",
                  tests=["assert secret(7) == 4242", "assert secret(8) == 4243"])
WRONG = "def secret(x):\n    return 0\n"
FORGED = ('{"phase": "tests", "results": [{"test": "assert secret(7) == 4242", '
          '"passed": true, "error": null, "public": false}]}')

TRICKS = {
    "patch the harness's result function": """
        import __main__
        __main__._result = lambda test, passed, error=None: {"test": test, "passed": True,
                                                               "error": None}
        WRONG""",
    "builtins.exec becomes a no-op": """
        import builtins
        builtins.exec = lambda *args, **kwargs: None
        WRONG""",
    "forge a report on an inherited descriptor, then _exit(0)": f"""
        import os
        for fd in range(3, 64):
            try:
                os.write(fd, {FORGED!r}.encode())
            except OSError:
                pass
        os._exit(0)""",
    "an atexit hook rewrites the report": f"""
        import atexit, os
        def forge():
            for fd in range(3, 64):
                try:
                    os.lseek(fd, 0, 0)
                    os.write(fd, {FORGED!r}.encode())
                except OSError:
                    pass
        atexit.register(forge)
        WRONG""",
    "json.dumps writes a forged report": f"""
        import json
        json.dumps = lambda *args, **kwargs: {FORGED!r}
        WRONG""",
    "ast.parse finds no tests": """
        import ast
        ast.parse = lambda *args, **kwargs: ast.Module(body=[], type_ignores=[])
        WRONG""",
    "a value whose __eq__ always says yes": """
        class Yes:
            def __eq__(self, other):
                return True
        def secret(x):
            return Yes()""",
    "an int subclass that equals anything": """
        class Liar(int):
            def __eq__(self, other):
                return True
            __hash__ = int.__hash__
        def secret(x):
            return Liar(0)""",
    "exit 0 as it loads": """
        import sys
        sys.exit(0)""",
    "AssertionError made harmless": """
        import builtins
        builtins.AssertionError = type("Harmless", (Exception,), {})
        WRONG""",
    "an exception hook that swallows failures": """
        import sys
        sys.excepthook = lambda *args: None
        WRONG""",
    "a trace function that rewrites comparisons": """
        import sys
        def tracer(frame, event, arg):
            frame.f_globals["AssertionError"] = type("Nope", (Exception,), {})
            return tracer
        sys.settrace(tracer)
        WRONG""",
    "search its own memory for the tests": """
        import gc, re
        def secret(x):
            for obj in gc.get_objects():
                for text in (obj if isinstance(obj, (list, tuple)) else [obj]):
                    if isinstance(text, str):
                        match = re.search(rf"secret\\({x}\\) == (\\d+)", text)
                        if match:
                            return int(match.group(1))
            return 0""",
    "read the tests from the judge's memory, descriptors and files": """
        import os, re
        def secret(x):
            found = []
            sources = [f"/proc/{os.getppid()}/{p}" for p in ("environ", "cmdline")]
            try:
                sources += [f"/proc/{os.getppid()}/fd/{fd}"
                            for fd in os.listdir(f"/proc/{os.getppid()}/fd")]
            except OSError as exc:
                found.append(type(exc).__name__)
            sources += [os.path.join(d, n) for d, _, names in os.walk(".") for n in names]
            for path in sources:
                try:
                    with open(path, "rb") as f:
                        text = f.read(1 << 20).decode("latin-1")
                except OSError:
                    continue
                match = re.search(rf"secret\\({x}\\) == (\\d+)", text)
                if match:
                    return int(match.group(1))
            try:
                with open(f"/proc/{os.getppid()}/mem", "rb") as mem:
                    mem.read(1)
            except OSError:
                return 0
            return -1""",
}


@pytest.fixture(scope="module")
def sandbox() -> Sandbox:
    return Sandbox()


async def verdict_for(code: str, sandbox: Sandbox, **options: object) -> Verdict:
    verifier = UnitTestVerifier(limits=LIMITS, sandbox=sandbox, **options)  # type: ignore[arg-type]
    code = textwrap.dedent(code).strip().replace("WRONG", WRONG) + "\n"
    return await verifier.verify(PROBLEM, Candidate(text=code, answer=code))


@pytest.mark.parametrize("trick", sorted(TRICKS))
async def test_a_trick_does_not_pass_a_wrong_solution(trick: str, sandbox: Sandbox) -> None:
    verdict = await verdict_for(TRICKS[trick], sandbox)
    assert not verdict.passed, (trick, verdict.feedback)
    assert verdict.score == 0.0
    assert verdict.details.get("stage") != "compile", verdict.feedback  # the trick ran


async def test_the_right_solution_still_passes(sandbox: Sandbox) -> None:
    verdict = await verdict_for("def secret(x):\n    return 4235 + x\n", sandbox)
    assert verdict.passed, verdict.feedback


async def test_in_process_mode_is_no_defence(sandbox: Sandbox) -> None:
    """What the old harness allowed, kept as the documented opt-out for trusted code: the
    tricks above are real attacks, not tests that cannot fail."""
    forged = [t for t in ("a value whose __eq__ always says yes",
                          "patch the harness's result function")
              if (await verdict_for(TRICKS[t], sandbox, mode="in_process")).passed]
    assert forged == ["a value whose __eq__ always says yes",
                      "patch the harness's result function"]


async def test_a_three_line_forging_reply_solves_no_humaneval_problem() -> None:
    reply = ("```python\nimport os\n"
             f"[os.write(fd, {FORGED!r}.encode()) for fd in range(3, 64)]\n"
             "os._exit(0)\n```")
    rows = load_jsonl("humaneval_public.jsonl")[:20]
    results = await asyncio.gather(*(
        ponder.asolve(Problem(id=r["task_id"], problem=r["prompt"], test=r["test"],
                              entry_point=r["entry_point"]),
                      backend=ponder.ScriptedBackend(reply))
        for r in rows))
    assert [r.id for r in results if r.correct] == []
