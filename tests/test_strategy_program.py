"""`program`: the model writes Python, the sandbox runs it, the printed answer is the answer;
errors get a repair, samples are voted on as best_of_n votes."""

from __future__ import annotations

import pytest

import ponder
from ponder import Budget, Problem, ScriptedBackend
from ponder.bench.run import Scorer, score_run
from ponder.bench.spec import parse_spec, plan_runs
from ponder.testing import by_step

QUESTION = Problem(id="mul", problem="What is 17 * 23?", answer="391")
NO_GOLD = Problem(id="mul", problem="What is 17 * 23?")


def code(body: str) -> str:
    return f"Here is the program:\n```python\n{body}\n```"


async def solve(problem: Problem, backend: ScriptedBackend, **params: object) -> ponder.Result:
    return await ponder.asolve(problem, strategy="program", backend=backend, **params)


async def test_a_good_program_answers_with_what_it_prints() -> None:
    backend = ScriptedBackend(by_step(write=code("a = 17\nb = 23\nprint(a * b)")))
    result = await solve(QUESTION, backend)
    assert result.answer == "391" and result.correct
    assert result.stop_reason == "verified" and result.usage.calls == 1
    [run] = [e for e in result.trace if e.kind == "execute"]
    assert run.data["code"] == "a = 17\nb = 23\nprint(a * b)"
    assert run.data["output"].strip() == "391" and run.error is None and run.latency_s > 0


async def test_what_a_program_prints_is_judged_not_the_question_it_restates() -> None:
    """The embedded model on MATH-500 precalculus/24313: its reply restates the expression to
    simplify (equal to gold) and its program prints 1.0. The answer is 1.0, in the run's own
    verdict and when a benchmark scores the row afterwards."""
    simplify = Problem(id="cot", problem="Simplify sec x / sin x - sin x / cos x.",
                       answer="\\cot x")
    reply = ("The answer to \\(\\frac{\\sec x}{\\sin x} - \\frac{\\sin x}{\\cos x}\\) "
             "at \\(x = \\frac{\\pi}{4}\\):\n" + code("import math\nprint(1.0)"))
    backend = ScriptedBackend(by_step(write=reply))
    result = await solve(simplify, backend, verifier="math")
    assert result.answer == "1.0" and result.answer_given and result.correct is False
    scorer = Scorer([simplify])
    [run] = plan_runs(parse_spec("program"))
    [point] = await score_run(run, [result], scorer, wall_s=None, model="m")
    assert point.correct == 0


async def test_a_raising_program_is_repaired_with_its_error_shown() -> None:
    backend = ScriptedBackend(by_step(write=code("print(17 * b)"),
                                      repair=code("b = 23\nprint(17 * b)")))
    result = await solve(QUESTION, backend)
    assert result.answer == "391" and result.info["repairs"] == 1 and result.info["runs"] == 2
    [repair] = backend.requests_for("repair")
    prompt = repair["messages"][-1].content
    assert "NameError: name 'b' is not defined" in prompt and "print(17 * b)" in prompt
    assert "391" not in prompt  # the gold answer never reaches a prompt


@pytest.mark.parametrize(("body", "error"), [
    ("while True:\n    pass", "did not finish within 1s"),
    ("x = 17 * 23", "printed nothing"),
])
async def test_a_hanging_or_silent_program_fails_then_falls_back_to_prose(body: str,
                                                                          error: str) -> None:
    backend = ScriptedBackend(by_step(write=code(body), repair=code(body),
                                      answer="17 * 23 = 391.\nFinal answer: 391"))
    result = await solve(NO_GOLD, backend, timeout_s=1.0, max_repairs=1)
    runs = [e for e in result.trace if e.kind == "execute"]
    assert len(runs) == 2 and all(error in (e.error or "") for e in runs)
    assert result.info["failed"] == 1 and result.info["fallback"] is True
    assert result.answer == "391"  # the prose answer, since no program printed one


async def test_a_program_that_printed_nothing_is_not_judged() -> None:
    """Nothing to judge: the verifier sees only the prose answer that replaced it (as `auto`
    judges its tier 0, which runs `program`)."""
    backend = ScriptedBackend(by_step(write=code("x = 17 * 23"),
                                      answer="17 * 23 = 391.\nFinal answer: 391"))
    result = await solve(QUESTION, backend, max_repairs=0)
    assert result.info["failed"] == 1 and result.info["fallback"] is True
    verdicts = [e.data["answer"] for e in result.trace if e.kind == "verify"]
    assert verdicts == ["391"] and result.correct


async def test_without_fallback_a_failed_program_answers_nothing() -> None:
    backend = ScriptedBackend(by_step(write=code("raise ValueError('no')")))
    result = await solve(NO_GOLD, backend, max_repairs=0, fallback=False)
    assert not result.answer and result.info["failed"] == 1


async def test_samples_come_from_one_request_and_the_executed_answers_are_voted_on() -> None:
    programs = [code("print(17 * 23)"), code("print(17 * 20 + 17 * 3)"), code("print(400)"),
                code("print(391.0)"), code("raise SystemExit(3)")]
    backend = ScriptedBackend(by_step(write=programs, repair=code("print(1 / 0)")))
    result = await solve(NO_GOLD, backend, n=5, temperature=0.7, max_repairs=1)
    [write] = backend.requests_for("write")
    assert write["n"] == 5 and len(backend.requests_for("write")) == 1
    assert result.answer in ("391", "391.0")
    assert result.info["votes"] == {"391": 3.0, "400": 1.0}  # 391.0 votes with 391
    assert result.info["failed"] == 1 and result.info["vote_answer"] in ("391", "391.0")


async def test_adaptive_sampling_stops_once_programs_agree() -> None:
    backend = ScriptedBackend(by_step(write=code("print(391)")))
    result = await solve(NO_GOLD, backend, n=8, temperature=0.7, adaptive=True, min_samples=3)
    assert result.stop_reason == "consensus" and result.info["samples"] == 3


async def test_running_programs_counts_against_the_budgets_seconds() -> None:
    backend = ScriptedBackend(by_step(write=code("import time\ntime.sleep(30)\nprint(1)")))
    result = await solve(NO_GOLD, backend, budget=Budget(seconds=1.5), timeout_s=20.0,
                         max_repairs=3, fallback=False)
    assert result.elapsed_s < 10
    assert result.stop_reason == "budget" and result.budget_exhausted
