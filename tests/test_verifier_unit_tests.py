"""The unit_tests verifier: HumanEval and plain tests, run in the sandbox, with feedback that
says what failed."""

from __future__ import annotations

import asyncio
import textwrap
from typing import Any

import pytest

import ponder
from ponder.core.errors import ConfigError
from ponder.core.types import Candidate, Problem
from ponder.verifiers.unit_tests import UnitTestVerifier, build_program
from tests.conftest import load_jsonl


def humaneval(task_id: str) -> dict[str, Any]:
    return next(row for row in load_jsonl("humaneval_public.jsonl") if row["task_id"] == task_id)


def as_problem(row: dict[str, Any]) -> Problem:
    return Problem(id=row["task_id"], problem=row["prompt"], test=row["test"],
                   entry_point=row["entry_point"])


async def run(problem: Problem, code: str, **options: Any) -> ponder.Verdict:
    return await UnitTestVerifier(**options).verify(problem, Candidate(text=code, answer=code))


async def test_all_100_canonical_solutions_pass() -> None:
    rows = load_jsonl("humaneval_public.jsonl")
    verdicts = await asyncio.gather(*(run(as_problem(r), r["canonical_solution"]) for r in rows))
    failed = {r["task_id"]: v.feedback for r, v in zip(rows, verdicts, strict=True)
              if not v.passed}
    assert not failed
    assert {v.details["shape"] for v in verdicts} == {"body"}


@pytest.mark.parametrize("task_id", ["HumanEval/0", "HumanEval/10", "HumanEval/25", "HumanEval/39"])
async def test_a_whole_function_and_a_bare_body_both_work(task_id: str) -> None:
    row = humaneval(task_id)
    problem = as_problem(row)
    whole = await run(problem, row["prompt"] + row["canonical_solution"])
    dedented_body = await run(problem, textwrap.dedent(row["canonical_solution"]))
    assert (whole.passed, whole.details["shape"]) == (True, "function")
    assert (dedented_body.passed, dedented_body.details["shape"]) == (True, "body")


async def test_the_function_alone_gets_the_prompts_imports_and_helpers() -> None:
    row = humaneval("HumanEval/10")  # make_palindrome calls the prompt's is_palindrome
    solution = "def make_palindrome(string: str) -> str:\n" + row["canonical_solution"]
    reply = f"Here it is:\n```python\n{solution}```\nIt appends the reversed prefix."
    verifier = UnitTestVerifier()
    verdict = await verifier.verify(as_problem(row),
                                    Candidate(text=reply, answer=verifier.extract(reply)))
    assert verdict.passed, verdict.feedback


# -- wrong solutions ---------------------------------------------------------------------------


async def test_return_none_shows_the_failing_example_but_not_the_hidden_test() -> None:
    verdict = await run(as_problem(humaneval("HumanEval/53")), "    return None\n")
    assert not verdict.passed and verdict.score == 0.0
    assert "1 of 1 hidden tests failed" in verdict.feedback
    assert "failed: assert add(2, 3) == 5" in verdict.feedback  # the prompt's own example
    assert "left side was: None" in verdict.feedback
    assert "candidate(" not in verdict.feedback  # HumanEval's check() stays private


async def test_full_feedback_quotes_the_hidden_test_too() -> None:
    verdict = await run(as_problem(humaneval("HumanEval/60")), "    return sum(range(n))\n",
                        private_feedback="full")
    assert not verdict.passed
    assert "failed: assert sum_to_n(30) == 465\n  left side was: 435" in verdict.feedback
    assert "failed: assert candidate(1) == 1" in verdict.feedback
    assert "left side was: 0" in verdict.feedback


async def test_a_problem_with_no_examples_gets_pass_fail_only() -> None:
    problem = Problem(problem="Write inc(x).", tests=["assert inc(1) == 2", "assert inc(5) == 6"])
    verdict = await run(problem, "def inc(x):\n    return x + 2\n")
    assert verdict.feedback == "2 of 2 hidden tests failed."
    assert verdict.details["public_tests"] == 0 and verdict.details["scored_by"] == "private"


async def test_public_tests_are_quoted_and_private_tests_score() -> None:
    problem = Problem(problem="Write inc(x).", tests_public=["assert inc(0) == 1"],
                      tests=["assert inc(1) == 2", "assert inc(-1) == 0"])
    verdict = await run(problem, "def inc(x):\n    return abs(x) + 1\n")
    assert not verdict.passed and verdict.score == 0.5  # 1 of 2 private tests
    assert verdict.feedback == ("1 of 2 hidden tests failed.\n"
                                "All 1 examples from the problem pass.")
    only_public = Problem(problem="Write inc(x).", tests_public="assert inc(0) == 1")
    assert (await run(only_public, "def inc(x):\n    return x + 1\n")).passed


async def test_a_swapped_operator_is_caught() -> None:
    verdict = await run(as_problem(humaneval("HumanEval/3")), textwrap.dedent("""\
        balance = 0
        for op in operations:
            balance += op
            if balance > 0:
                return True
        return False
    """))
    assert not verdict.passed
    assert "left side was: " in verdict.feedback


async def test_an_exception_names_the_line_of_the_solution() -> None:
    verdict = await run(as_problem(humaneval("HumanEval/35")), "    return l[len(l)]\n")
    assert not verdict.passed
    assert "IndexError: list index out of range" in verdict.feedback
    assert "of your code: return l[len(l)]" in verdict.feedback


async def test_a_syntax_error_is_reported_with_its_line() -> None:
    verdict = await run(Problem(problem="Write inc(x).", tests="assert inc(1) == 2"),
                        "def inc(x):\n    return x +\n")
    assert not verdict.passed
    assert verdict.feedback.startswith("Your code does not compile")
    assert "SyntaxError" in verdict.feedback and "line 2" in verdict.feedback


async def test_feedback_stays_short() -> None:
    tests = [f"assert len(noisy()) == {i}" for i in range(30)]
    verdict = await run(Problem(problem="?", tests=tests),
                        "def noisy():\n    print('x' * 100000)\n    return 'y' * 5000\n")
    assert verdict.details["failed"] == 30
    assert len(verdict.feedback) <= 1200
    assert verdict.feedback.startswith("30 of 30 hidden tests failed.")


# -- plain tests -------------------------------------------------------------------------------

ADD = "def add(a, b):\n    return a + b\n"


async def test_plain_asserts_score_the_share_that_passed() -> None:
    problem = Problem(problem="Write add(a, b).",
                      tests="assert add(1, 2) == 3\nassert add(-1, 1) == 0\nassert add(2, 2) == 5")
    verdict = await run(problem, ADD, private_feedback="full")
    assert not verdict.passed
    assert verdict.score == pytest.approx(2 / 3)
    assert "1 of 3 hidden tests failed" in verdict.feedback
    assert "assert add(2, 2) == 5" in verdict.feedback and "left side was: 4" in verdict.feedback


async def test_pytest_style_test_functions_run_after_their_chunk() -> None:
    tests = [
        "from solution import add as plus\n\ndef test_small():\n    assert plus(2, 3) == 5\n",
        "def helper():\n    return add(10, 20)\n\ndef test_helper():\n    assert helper() == 30\n",
    ]
    verdict = await run(Problem(problem="Write add(a, b).", tests=tests), ADD)
    assert verdict.passed, verdict.feedback
    assert [r["test"] for r in verdict.details["results"]] == ["test_small()", "test_helper()"]


async def test_through_the_public_api() -> None:
    problem = {"problem": "Write add(a, b).", "tests": ["assert add(2, 2) == 4"]}
    verdict = await ponder.averify(problem, f"```python\n{ADD}```")
    assert verdict.passed


# -- configuration, extraction, voting ---------------------------------------------------------


async def test_a_problem_with_no_test_at_all_fails_every_candidate_without_an_error() -> None:
    verdict = await UnitTestVerifier().verify(
        Problem(problem="Write f(x), twice x.", entry_point="f"),
        Candidate(text="", answer="def f(x):\n    return 2 * x\n"))
    assert not verdict.passed and verdict.details["stage"] == "no_tests"


def test_problems_without_tests_are_refused() -> None:
    with pytest.raises(ConfigError, match="needs `test`, `tests` or `tests_public`"):
        build_program(Problem(problem="?"), "pass")
    with pytest.raises(ConfigError, match="no `entry_point`"):
        build_program(Problem(problem="?", test="def check(c): pass"), "pass")


def test_extract_takes_the_code_block_and_canonical_ignores_layout() -> None:
    verifier = UnitTestVerifier()
    assert verifier.extract("Sure:\n```python\nx = 1\n```\nDone.") == "x = 1"
    same = [verifier.canonical(c) for c in ("def f(a):\n    return a+1  # add\n",
                                             "def f(a):\n\n    return a + 1\n")]
    assert same[0] is not None and same[0] == same[1]
    assert verifier.canonical("def f(a):\n    return a + 2\n") != same[0]
    assert verifier.canonical("def (:") is None


async def test_the_verdict_records_the_isolation_used() -> None:
    verdict = await run(Problem(problem="?", tests="assert True"), "x = 1\n")
    isolation = verdict.details["isolation"]
    assert {"network", "pid_namespace", "pids_cgroup", "user", "rlimits"} <= set(isolation)
    assert verdict.details["sandbox_id"]


RIGHT_SECRET = "def secret(x):\n    return 4235 + x\n"


@pytest.mark.parametrize("mode", ["isolated", "in_process"])
@pytest.mark.parametrize("tests", [
    "def check(f):\n    assert f(8) == 4243\n\nif __name__ == '__main__':\n    check(secret)\n",
    "import unittest\nclass T(unittest.TestCase):\n    def test_8(self):\n"
    "        self.assertEqual(secret(8), 4243)\n    def test_9(self):\n"
    "        self.assertEqual(secret(9), 4244)\n",
    "async def test_a():\n    assert secret(8) == 4243\n",
    "for x, want in [(8, 4243), (9, 4244)]:\n    assert secret(x) == want\n",
], ids=["main guard", "unittest", "async test", "loop"])
async def test_every_shape_of_private_test_runs_and_a_right_solution_passes(
        tests: str, mode: str) -> None:
    problem = Problem(problem="Write secret(x).", tests=[tests])
    verdict = await run(problem, RIGHT_SECRET, mode=mode)
    assert verdict.passed, verdict.feedback
    assert verdict.details["scored_by"] == "private" and verdict.details["tests"] >= 1


async def test_private_tests_that_run_nothing_never_score_by_the_public_ones() -> None:
    problem = Problem(problem="Write secret(x).", tests_public=["assert secret(7) == 4242"],
                      tests=["def test_b():\n    assert secret(8) == 4243\n    yield\n"])
    verdict = await run(problem, RIGHT_SECRET)
    assert not verdict.passed
    assert "generator" in verdict.details["results"][-1]["error"]


@pytest.mark.parametrize("mode", ["isolated", "in_process"])
async def test_a_failing_sides_value_is_the_one_computed_not_a_second_call(mode: str) -> None:
    """Showing `left side was` used to call the candidate again: a second answer, and a
    signal to the candidate that its first one failed."""
    code = "calls = [0]\ndef f():\n    calls[0] += 1\n    return calls[0]\n"
    problem = Problem(problem="Write f().", tests_public=["assert f() == 5"],
                      tests=["assert f() == 2"])
    verdict = await UnitTestVerifier(mode=mode, private_feedback="full").verify(  # type: ignore[arg-type]
        problem, Candidate(text=code, answer=code))
    assert verdict.details["public_failed"] == 1 and verdict.passed, verdict.feedback


async def test_ints_past_4300_digits_cross_both_ways() -> None:
    code = "def f(x):\n    return x * 10\n"
    problem = Problem(problem="Write f(x).", tests=["assert f(10 ** 5000) == 10 ** 5001"])
    verdict = await run(problem, code)
    assert verdict.passed, verdict.feedback


async def test_a_reply_of_blank_lines_is_read_in_linear_time() -> None:
    """The entry point's `def` is looked for line by line: `\\s*` after `^` once spanned the
    blank lines, quadratic in them (20 s for 40,000 of them, on the event loop)."""
    problem = Problem(problem="def f(x):\n    pass\n", entry_point="f", tests=["assert f(1)"])
    program, _, shape = build_program(problem, "\n" * 20_000 + "x = 1\n")
    assert shape == "body" and program.endswith("x = 1\n")


ENCODE = "def encode(s):\n    return s[::-1]\n\ndef decode(s):\n    return s[::-1]\n"


@pytest.mark.parametrize("mode", ["isolated", "in_process"])
@pytest.mark.parametrize(("problem", "code"), [
    (Problem(problem="Write secret(x): a palindrome check, say.", entry_point="secret",
             tests=["assert secret(7) == 4242"]), RIGHT_SECRET),
    (Problem(problem='def secret(x):\n    """x to its secret."""\n\nassert secret(1) == 4236\n',
             entry_point="secret", tests=["assert secret(7) == 4242"]), RIGHT_SECRET),
    (Problem(problem='def secret(x):\n    """x to its secret."""\n',
             tests=["assert secret(7) == 4242"]), RIGHT_SECRET),
    (Problem(problem='def encode(s):\n    """Encode."""\n\ndef decode(s):\n    """Decode."""\n',
             entry_point="decode", tests=["assert decode(encode('ab')) == 'ab'"]), ENCODE),
    (Problem(problem='def twice(x):\n    return 2 * secret(x)\n\ndef secret(x):\n    """?"""\n',
             entry_point="secret", tests=["assert twice(7) == 8484"]), RIGHT_SECRET),
    (Problem(problem='def twice(x):\n    return 2 * x\n\ndef secret(x):\n    """?"""\n',
             entry_point="secret",
             tests=["from solution import secret, twice\nassert twice(secret(7)) == 8484",
                    "import solution as s\nassert s.secret(7) == 4242"]), RIGHT_SECRET),
    (Problem(problem="Write secret(x).", tests=[
        "import unittest\nclass T(unittest.TestCase):\n    @classmethod\n"
        "    def setUpClass(cls):\n        cls.want = 4242\n    def test_7(self):\n"
        "        self.assertEqual(secret(7), self.want)\n\n"
        "if __name__ == '__main__':\n    unittest.main()\n"]), RIGHT_SECRET),
    (Problem(problem="Write secret(x).", tests=[
        "from __future__ import annotations\n\ndef expect(x: Later) -> Later:\n"
        "    return 4235 + x\n\nassert secret(7) == expect(7)\n"]), RIGHT_SECRET),
    (Problem(problem="Write secret(x).", tests=[
        "def test_case(x, want):\n    assert secret(x) == want\n\n"
        "def test_all():\n    test_case(7, 4242)\n"]), RIGHT_SECRET),
    (Problem(problem="Count letters.", tests=[
        "assert count('aab') == {'a': 2, 'b': 1}", "assert pair(1) == (1, 2)"]),
     "import collections\ndef count(s):\n    return collections.Counter(s)\n"
     "P = collections.namedtuple('P', 'a b')\ndef pair(a):\n    return P(a, a + 1)\n"),
], ids=["prose that compiles", "a prompt that fails when run", "a stub, no entry point",
        "two stubs", "a prompt helper calling the entry point", "the problem's names in solution",
        "unittest fixtures and main()", "the tests' own future import", "a test helper",
        "a Counter and a namedtuple"])
async def test_a_right_solution_passes_however_the_problem_and_its_tests_are_written(
        problem: Problem, code: str, mode: str) -> None:
    verdict = await UnitTestVerifier(mode=mode, private_feedback="full").verify(  # type: ignore[arg-type]
        problem, Candidate(text=code, answer=code))
    assert verdict.passed, verdict.feedback


async def test_examples_the_prompt_writes_in_other_forms_are_public_tests() -> None:
    problem = Problem(problem='def inc(x):\n    """Add one.\n    inc(1) ➞ 2\n    """\n',
                      entry_point="inc", tests=["assert inc(5) == 6"])
    verdict = await run(problem, "def inc(x):\n    return x\n")
    assert "1 of 1 examples from the problem failed" in verdict.feedback
    assert "inc(1) == 2" in verdict.feedback
