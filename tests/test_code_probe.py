"""`ponder.code.probe`: one candidate, many inputs, one sandbox run, each input with a time of
its own; and the harness's `probe` mode behind it, against candidates that hang, exit, kill
or forge."""

from __future__ import annotations

import textwrap
import time
from typing import Any

import pytest

from ponder.code import probe
from ponder.code.probe import REFUSED, CallResult, run_calls
from ponder.core.errors import PonderError
from ponder.core.types import Problem
from ponder.sandbox import Limits, Sandbox, SandboxResult
from ponder.verifiers.unit_tests import build_program, program_for
from tests.conftest import load_jsonl

PROBLEM = Problem(problem="Write f(x).", entry_point="f")
FAST = 0.5  # per call: a hang costs this


@pytest.fixture(scope="module")
def sandbox() -> Sandbox:
    return Sandbox()


async def test_values_of_every_plain_type_come_back_equal(sandbox: Sandbox) -> None:
    code = textwrap.dedent("""
        def f(x):
            return x
        def big():
            return 10 ** 5000 + 1
    """)
    values: list[Any] = [None, True, -7, 2.5, "é\n", [1, [2]], (1, "a"), {3, 4},
                         frozenset({5}), {"k": (1, 2), 2: {None}}, []]
    run = await run_calls(PROBLEM, code, [f"f({v!r})" for v in values] + ["big()"],
                          sandbox=sandbox)
    assert run.load_error is None and run.sandbox_id and run.seconds > 0
    assert [r.value for r in run.results] == [*values, 10 ** 5000 + 1]
    assert [type(r.value) for r in run.results[:-1]] == [type(v) for v in values]
    assert all(r.ok for r in run.results)


async def test_an_exception_on_one_input_does_not_stop_the_next(sandbox: Sandbox) -> None:
    code = "def f(x):\n    return 10 // x\n"
    run = await run_calls(PROBLEM, code, ["f(5)", "f(0)", "f(2)", "f('a')", "f(1, 2)",
                                          "undefined(1)", "f(", "y = f(1)"], sandbox=sandbox)
    first, zero, two, text, arity, name, syntax, block = run.results
    assert (first.value, two.value, block.value) == (2, 5, None)
    assert zero.error is not None and zero.error.startswith("ZeroDivisionError: ")
    assert zero.where is not None and "line 2 of your code" in zero.where
    assert text.key() == arity.key() == "!TypeError"
    assert name.key() == "!NameError" and syntax.key() == "!SyntaxError"
    assert block.ok


async def test_a_hanging_input_times_out_alone_and_the_run_stays_short(
        sandbox: Sandbox) -> None:
    code = textwrap.dedent("""
        import time
        def f(x):
            if x == "loop":
                while True:
                    pass
            if x == "sleep":
                time.sleep(100)
            return x * 2
    """)
    calls = ["f(1)", "f('loop')", "f(2)", "f('sleep')", "f(3)"]
    started = time.monotonic()
    # A whole-run limit shorter than two hangs: run_calls makes room for every call's time.
    run = await run_calls(PROBLEM, code, calls, sandbox=sandbox, per_call_s=FAST,
                          limits=Limits(timeout_s=1, cpu_s=5))
    took = time.monotonic() - started
    assert [r.timed_out for r in run.results] == [False, True, False, True, False]
    assert [r.value for r in run.results if r.ok] == [2, 4, 6]
    assert run.results[1].key() == "!timeout"
    assert took < 8, took  # the hangs were 100 s and forever


async def test_the_cpu_limit_is_each_calls_own(sandbox: Sandbox) -> None:
    code = "def f(x):\n    while x:\n        pass\n    return 'done'\n"
    run = await run_calls(PROBLEM, code, ["f(1)", "f(2)", "f(0)"], sandbox=sandbox,
                          per_call_s=5, limits=Limits(cpu_s=1))
    # Two CPU seconds in all, one each: neither loop used up the other's, nor the process's.
    assert [r.timed_out for r in run.results] == [True, True, False]
    assert run.results[2].value == "done"
    assert run.seconds < 8  # each loop ended at its CPU second, not at its 5 s


async def test_a_calls_time_covers_all_it_does_on_either_side(sandbox: Sandbox) -> None:
    code = "import time\ndef f(x):\n    time.sleep(0.2)\n    return x\n"
    forever = "[0 for _ in iter(int, 1)]"  # the judge's own loop, no call of the candidate's
    run = await run_calls(PROBLEM, code, ["f(1)", "[f(i) for i in range(50)]", forever,
                                          "f(2)"], sandbox=sandbox, per_call_s=FAST)
    assert [r.key() for r in run.results] == ["1", "!timeout", "!timeout", "2"]


async def test_a_call_never_sees_another_calls_side_effects(sandbox: Sandbox) -> None:
    code = "seen = []\ndef f(x):\n    seen.append(x)\n    return list(seen)\n"
    run = await run_calls(PROBLEM, code, ["f(1)", "f(2)", "[f(3), f(4)]", "f(1)"],
                          sandbox=sandbox)
    assert [r.value for r in run.results] == [[1], [2], [[3], [4]], [1]]


async def test_the_judges_builtins_are_used_and_the_candidates_own_calls_keep_theirs(
        sandbox: Sandbox) -> None:
    code = textwrap.dedent("""
        def abs(x):
            return 0
        def len(x):
            return -1
        def helper(x):
            return x + 1
        def f(xs):
            return [abs(-2), len(xs), helper(1)]
    """)
    run = await run_calls(PROBLEM, code, ["abs(-3)", "len([1, 2])", "f([1, 2, 3])",
                                          "abs(f([1])[1])", "helper(4)"], sandbox=sandbox)
    assert [r.value for r in run.results] == [3, 2, [0, -1, 2], 1, 5]


@pytest.mark.parametrize("code", [
    "import os\nos._exit(3)\ndef f(x):\n    return x\n",
    "import sys\nsys.exit(2)\ndef f(x):\n    return x\n",
    "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\ndef f(x):\n    return x\n",
])
async def test_a_candidate_that_exits_or_kills_as_it_loads_fails_every_call(
        sandbox: Sandbox, code: str) -> None:
    run = await run_calls(PROBLEM, code, ["f(1)", "1 + 1"], sandbox=sandbox)
    assert not any(r.ok for r in run.results)
    # Where the candidate could kill the judge (no ids of its own) there is no report at all.
    assert run.load_error is not None or all(r.error == REFUSED for r in run.results)


async def test_a_candidate_that_exits_or_kills_mid_call_loses_only_what_it_ended(
        sandbox: Sandbox) -> None:
    code = textwrap.dedent("""
        import os, signal, sys
        def f(x):
            if x == 1:
                os._exit(3)
            if x == 2:
                sys.exit(4)
            if x == 3:
                os.kill(os.getpid(), signal.SIGSEGV)
            if x == 9:
                os.kill(os.getppid(), signal.SIGKILL)  # the candidate's own main process
            return x
    """)
    run = await run_calls(PROBLEM, code, ["f(1)", "f(2)", "f(3)", "f(5)", "f(9)", "f(6)",
                                          "2 + 2"], sandbox=sandbox)
    keys = [r.key() for r in run.results]
    assert keys[:4] == ["!ProcessExit", "!SystemExit", "!ProcessKilled", "5"]
    assert keys[4:] == ["!CandidateGone", "!CandidateGone", "4"]
    assert run.results[0].error is not None and "code 3" in run.results[0].error


async def test_a_candidate_that_breaks_its_own_timeouts_cannot_stall_the_judge(
        sandbox: Sandbox) -> None:
    # Its process can no longer fork a call (nor time one out): the judge's own deadline ends it.
    code = "import os, time\nos.fork = lambda: time.sleep(1000)\ndef f(x):\n    return x\n"
    started = time.monotonic()
    run = await run_calls(PROBLEM, code, ["f(1)", "f(2)", "3"], sandbox=sandbox, per_call_s=FAST)
    assert all(r.timed_out for r in run.results)
    assert time.monotonic() - started < 6


async def test_a_load_that_never_ends_times_out(sandbox: Sandbox,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(probe, "_LOAD_S", 1.0)
    run = await run_calls(PROBLEM, "while True:\n    pass\n", ["f(1)"], sandbox=sandbox)
    assert run.results[0].timed_out
    assert run.load_error is not None and "loading" in run.load_error


async def test_a_candidate_that_prints_a_forged_report_gets_no_forged_values(
        sandbox: Sandbox) -> None:
    forged = '{"phase": "probe", "results": [{"value": 42}, {"value": 42}], "nonce": null}'
    code = textwrap.dedent(f"""
        import os
        FORGED = {forged!r}
        print(FORGED)
        def f(x):
            if x == 1:
                print(FORGED)
                for fd in range(64):  # its own reply pipe among them
                    try:
                        os.write(fd, (FORGED + "\\n").encode())
                    except OSError:
                        pass
            return x
    """)
    run = await run_calls(PROBLEM, code, ["f(1)", "f(2)"], sandbox=sandbox)
    # Its forgery came first on its own reply pipe: that call's answer is lost, nothing more.
    assert [r.key() for r in run.results] == ["!ProtocolError", "2"]


async def test_code_that_does_not_compile_is_a_load_error(sandbox: Sandbox) -> None:
    run = await run_calls(PROBLEM, "def f(x)\n    return 1\n", ["f(1)", "f(2)"], sandbox=sandbox)
    assert run.load_error is not None and run.load_error.startswith("SyntaxError")
    assert [r.key() for r in run.results] == ["!SyntaxError"] * 2


async def test_humaneval_shapes_a_body_and_a_whole_function_both_work(sandbox: Sandbox) -> None:
    row = next(r for r in load_jsonl("humaneval_public.jsonl") if r["task_id"] == "HumanEval/10")
    problem = Problem(id=row["task_id"], problem=row["prompt"], test=row["test"],
                      entry_point=row["entry_point"])
    # make_palindrome calls the prompt's is_palindrome, which the function alone lacks.
    body = textwrap.dedent(row["canonical_solution"])
    whole = "def make_palindrome(string: str) -> str:\n" + row["canonical_solution"]
    assert program_for(problem, body)[1] == "body" == build_program(problem, body)[2]
    assert program_for(problem, whole) == build_program(problem, whole)[::2]
    calls = ["make_palindrome('cat')", "make_palindrome('')", "is_palindrome('aba')"]
    for code in (body, whole):
        run = await run_calls(problem, code, calls, sandbox=sandbox)
        assert [r.value for r in run.results] == ["catac", "", True], run


async def test_equal_calls_run_once_and_no_calls_run_nothing(sandbox: Sandbox) -> None:
    class Refuses:
        async def run(self, *args: Any, **kwargs: Any) -> SandboxResult:
            raise AssertionError("no calls need no sandbox")

    empty = await run_calls(PROBLEM, "def f(x):\n    return x\n", [], sandbox=Refuses())  # type: ignore[arg-type]
    assert empty.results == []
    run = await run_calls(PROBLEM, "def f(x):\n    return x\n", ["f(1)", "f(2)", "f(1)"],
                          sandbox=sandbox)
    assert [r.value for r in run.results] == [1, 2, 1]


def fake(report: bytes, *, exit_code: int | None = 0, setup_error: str | None = None,
         timed_out: bool = False) -> Any:
    class Fake:
        async def run(self, *args: Any, **kwargs: Any) -> SandboxResult:
            return SandboxResult(run_id="fake", exit_code=exit_code, signal=None,
                                 timed_out=timed_out, seconds=0.1, output="", report=report,
                                 isolation={}, setup_error=setup_error)
    return Fake()


@pytest.mark.parametrize("report, exit_code", [
    (b'{"phase": "probe", "results": [{"value": 42}], "nonce": "forged"}', 0),
    (b'{"phase": "probe", "results": [{"value": 42}]}', 0),
    (b'{"phase": "probe", "results": [{"value": 42}], "nonce": "x"}{}', 0),
    (b"", 1),
])
async def test_a_report_without_the_nonce_or_a_clean_exit_is_refused(report: bytes,
                                                                      exit_code: int) -> None:
    run = await run_calls(PROBLEM, "def f(x):\n    return x\n", ["f(1)"],
                          sandbox=fake(report, exit_code=exit_code))
    assert [r.error for r in run.results] == [REFUSED]


async def test_a_sandbox_that_cannot_start_raises() -> None:
    with pytest.raises(PonderError, match="failed to start"):
        await run_calls(PROBLEM, "x = 1", ["x"], sandbox=fake(b"", exit_code=125,
                                                               setup_error="no unshare"))


def test_keys_agree_on_equal_values_and_only_on_them() -> None:
    def key(value: Any) -> str:
        return CallResult(value=value).key()

    assert key({1, 2}) == key({2, 1}) == key(frozenset({1, 2}))
    assert key({"a": 1, "b": 2}) == key({"b": 2, "a": 1})
    assert key(0.1 + 0.2) == key(0.3) and key([0.1 + 0.2]) == key([0.3])
    assert key(3) == key(3.0) == key(2.9999999)
    assert key({(1, 0.1 + 0.2)}) == key({(1, 0.3)})
    assert key(float("nan")) == key(float("nan")) != key(float("inf"))
    assert key(10 ** 5000) == key(10 ** 5000) != key(10 ** 5000 + 1)
    assert key(True) != key(1)
    assert key([1, 2]) != key((1, 2))
    assert key("1") != key(1)
    assert key(None) != key("null") != key([])
    assert key(0.3) != key(0.31)
    assert CallResult(error="TypeError: a").key() == CallResult(error="TypeError: b").key() \
        == "!TypeError"
    assert CallResult(error="ValueError: a").key() != CallResult(error="TypeError: a").key()
    assert CallResult(timed_out=True).key() == "!timeout"
    assert key("!timeout") != "!timeout"
    assert not CallResult(error="E").ok and not CallResult(timed_out=True).ok
    assert CallResult(value=None).ok
