"""A strategy's outcome is its return value: the answer, why it stopped, and its details."""

from __future__ import annotations

import asyncio

import pytest

import ponder
from ponder import Budget, BudgetExhausted, ConfigError, ScriptedBackend
from ponder.core.types import STOP_REASONS, Problem, Result
from ponder.prompts import PromptLibrary
from ponder.runs.solve_one import run_problem
from ponder.strategies.base import StrategyConfig, StrategyFn
from ponder.strategies.registry import StrategyRegistry, make_register
from ponder.strategies.wiring import Wiring
from ponder.testing import make_context
from ponder.verifiers import VerifierChoice

PROBLEM = {"problem": "What is 17 * 23?", "answer": "391"}
WRONG, RIGHT = "17 * 23 = 401.\nFinal answer: 401", "17 * 23 = 391.\nFinal answer: 391"


def solve_with(fn: StrategyFn[StrategyConfig], backend: ScriptedBackend) -> Result:
    """Run `fn` as a strategy (registered in a registry of the test's own) on PROBLEM, whose
    gold answer picks the math verifier, as `ponder.solve` would."""
    registry = StrategyRegistry()
    make_register(registry)("probe")(fn)
    spec = registry.get("probe")
    problem = Problem.model_validate(PROBLEM)
    return asyncio.run(run_problem(problem, spec, spec.make_config({}), Wiring(
        backend, Budget(), PromptLibrary(), VerifierChoice().for_problem(problem))))


def test_a_bare_candidate_the_verifier_passed_stops_as_verified() -> None:
    async def once(ctx: ponder.Context, cfg: StrategyConfig) -> ponder.Candidate:
        [reply] = await ctx.generate("single/answer", max_tokens=cfg.max_tokens)
        candidate = ctx.candidate(reply.text)
        await ctx.verify(candidate)
        return candidate  # no stop reason given

    assert solve_with(once, ScriptedBackend(RIGHT)).stop_reason == "verified"
    assert solve_with(once, ScriptedBackend(WRONG)).stop_reason == "done"


def test_finish_carries_the_reason_and_the_info() -> None:
    async def tries(ctx: ponder.Context, cfg: StrategyConfig) -> ponder.Outcome:
        replies = await ctx.generate("single/answer", n=2, max_tokens=cfg.max_tokens)
        return ctx.finish(ctx.candidates(replies)[0], "max_iters", tries=2)

    result = solve_with(tries, ScriptedBackend([WRONG, RIGHT]))
    assert (result.stop_reason, result.info, result.answer) == ("max_iters", {"tries": 2}, "401")
    assert result.verdict is not None and not result.verdict.passed  # judged on the way out


def test_a_run_cut_short_returns_the_best_answer_judging_unjudged_ones_first() -> None:
    """A retry strategy whose correct rewrite was never judged before the budget ran out:
    the rewrite wins, not the judged wrong first answer."""

    async def retry(ctx: ponder.Context, cfg: StrategyConfig) -> ponder.Candidate:
        [first] = await ctx.generate("single/answer", max_tokens=cfg.max_tokens)
        await ctx.verify(ctx.candidate(first.text, source="first"))
        [second] = await ctx.generate("single/answer", max_tokens=cfg.max_tokens)
        ctx.candidate(second.text, source="rewrite")
        raise BudgetExhausted("out of tokens before the rewrite was judged")

    result = solve_with(retry, ScriptedBackend([WRONG, RIGHT]))
    assert result.answer == "391" and result.verdict is not None and result.verdict.passed
    assert result.stop_reason == "budget" and result.budget_exhausted


async def test_finish_refuses_a_reason_that_is_not_a_stop_reason() -> None:
    ctx = make_context()
    with pytest.raises(ConfigError, match=r"stop reason 'tired' is not one of done, verified"):
        ctx.finish(None, "tired")
    assert set(STOP_REASONS) >= {"done", "verified", "budget", "error"}


def test_result_stop_reason_is_one_of_the_stop_reasons() -> None:
    with pytest.raises(ValueError, match="stop_reason"):
        Result(id="a", answer="1", stop_reason="tired")  # type: ignore[arg-type]


async def test_best_without_a_verifier_is_the_latest_candidate() -> None:
    ctx = make_context()
    assert await ctx.best() is None
    ctx.candidate("Final answer: 1")
    latest = ctx.candidate("Final answer: 2")
    assert await ctx.best() is latest
