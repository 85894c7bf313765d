"""A total budget plans its first pass before it spends (`ponder.runs.run_plan`): a share too
small for the strategy's first step gets the cheap tier instead of nothing; one too small for
any call gives a call to as many problems as it can, in order, and says how many it could
not; later passes spend what is left while problems remain unsettled; never over the total."""

from __future__ import annotations

import asyncio
import itertools
import math
from collections.abc import Sequence
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ponder.backends.scripted import ScriptedBackend
from ponder.core.tokens import prompt_upper_bound
from ponder.core.types import Completion, Message, Problem, Result
from ponder.runs.allocation import solve_within
from ponder.runs.budget_split import PLAN_KEY, describe_split, split_line
from ponder.runs.run_plan import FLOOR_COMPLETION
from ponder.runs.solve_many import Solver
from ponder.runs.summary import RunTally
from ponder.strategies import REGISTRY

PROBLEMS = [Problem(id=f"p{i:02d}", problem=f"Problem {i}: a farmer has {i} cows and buys "
                                           f"{i + 3} more. How many cows does he have now?")
            for i in range(12)]
# What a server without a tokenizer reports: about a third of the byte bound, as real
# English prompts count.
SHARE_OF_BYTES = 0.3


class NoTokenizer(ScriptedBackend):
    """A backend without a tokenizer whose replies report a third of the prompt's byte bound
    as its prompt tokens (as OpenAI's API would, for English)."""

    async def generate(self, messages: Sequence[Message], **kwargs: Any) -> list[Completion]:
        completions = await super().generate(messages, **kwargs)
        prompt = math.ceil(SHARE_OF_BYTES * prompt_upper_bound(messages))
        return [c.model_copy(update={"usage": c.usage.model_copy(
            update={"prompt_tokens": prompt if i == 0 else 0})})
            for i, c in enumerate(completions)]

    async def count_prompt_tokens(self, messages: Sequence[Message]) -> int | None:
        return None


def agreeing() -> NoTokenizer:
    return NoTokenizer("Some working. Final answer: 8")


def scattered() -> NoTokenizer:
    """Every reply a different answer: a vote never settles."""
    counter = itertools.count()
    return NoTokenizer(lambda messages: f"Final answer: {next(counter)}")


def run(strategy: str, params: dict[str, Any], backend: ScriptedBackend, total: int,
        problems: Sequence[Problem] = PROBLEMS) -> tuple[list[Result], list[Result]]:
    """The final rows and every row in the order it came."""
    spec = REGISTRY.get(strategy)
    came: list[Result] = []
    rows = asyncio.run(solve_within(problems, Solver(spec, spec.make_config(params), backend),
                                    total_tokens=total, concurrency=4, on_result=came.append))
    return rows, came


def first_pass(came: list[Result], n: int) -> list[Result]:
    return came[:n]


def test_a_total_below_one_call_a_problem_gives_calls_in_order_and_says_how_many_not() -> None:
    # About 40 real prompt tokens a problem; 600 tokens cannot pay 12 calls of prompt + 64.
    rows, came = run("auto", {"max_tokens": 160}, agreeing(), 600)
    first = first_pass(came, len(PROBLEMS))
    called = [r.usage.calls > 0 for r in first]
    assert [r.id for r in first] == [p.id for p in PROBLEMS]  # concurrency 4, still in order
    k = sum(called)
    assert 0 < k < len(PROBLEMS) and called == [True] * k + [False] * (len(PROBLEMS) - k)
    for row in first[k:]:
        assert row.info[PLAN_KEY]["no_call"] and row.stop_reason == "budget"
        assert "could afford one call" in row.info["budget_note"]
    split = describe_split(rows, 600)
    assert split is not None and split.no_call_planned == len(PROBLEMS) - k
    assert f"{len(PROBLEMS) - k} could not be afforded a call" in split_line(split)
    assert sum(r.usage.total_tokens for r in rows) <= 600


def test_problems_get_their_calls_in_order_though_every_reply_is_cut() -> None:
    # Replies longer than the cheap tier's max_tokens are all cut, so the run learns that a
    # reply needs all of it; a problem whose prompt is longer than the one the plan priced
    # (its 90th percentile) still gets its call, a little shorter, rather than none while
    # the next problem gets one.
    reply = " ".join(["step"] * 300) + "\nFinal answer: 7"
    problems = [Problem(id=f"p{i:02d}", problem=f"Problem {i}: " + "word " * (5 + i % 10 * 6)
                        + "what is it?") for i in range(30)]
    params = {"n": 5, "max_tokens": 512, "adaptive": True, "min_samples": 3, "batch_size": 2}
    rows, _ = run("best_of_n", params, ScriptedBackend(reply), 12_000, problems)
    # The calls go in order (the first pass, then what it left unspent), none skipped.
    called = [r.usage.calls > 0 for r in rows]
    k = sum(called)
    assert 0 < k < len(problems) and called == [True] * k + [False] * (len(problems) - k)
    assert sum(r.usage.total_tokens for r in rows) <= 12_000


def test_a_share_below_autos_first_step_gets_the_cheap_tier_instead_of_nothing() -> None:
    # 250 a problem: auto's tier 0 (two calls of prompt + 160) does not fit; one call does.
    total = 250 * len(PROBLEMS)
    rows, came = run("auto", {"max_tokens": 160}, agreeing(), total)
    first = first_pass(came, len(PROBLEMS))
    assert all(r.usage.calls >= 1 and r.answer == "8" for r in first)
    assert {r.info[PLAN_KEY]["tier"] for r in first} == {"single"}
    assert [r.info[PLAN_KEY]["probe"] for r in first[:3]] == [True, True, False]  # priced
    assert all(r.answer == "8" for r in rows)
    assert sum(r.usage.total_tokens for r in rows) <= total
    tally = RunTally(len(PROBLEMS), total_budget=total)
    for row in came:
        tally.add(row)
    split = tally.summary().budget_split
    assert split is not None and split.no_call == 0 and split.later_tokens > 0
    [(label, count)] = split.first_pass.items()
    assert label.startswith("single max_tokens=") and count == len(PROBLEMS) - 2


def test_an_ample_share_runs_the_strategy_itself_with_no_probe() -> None:
    total = 2000 * len(PROBLEMS)
    rows, came = run("auto", {"max_tokens": 160}, agreeing(), total)
    assert {r.info[PLAN_KEY]["tier"] for r in came} == {"auto"}
    assert not any(r.info[PLAN_KEY]["probe"] for r in came)
    assert all(r.stop_reason == "consensus" for r in rows)


def test_while_problems_remain_unsettled_at_least_90_percent_of_the_total_is_spent() -> None:
    total = 4000
    params = {"adaptive": True, "n": 32, "min_samples": 3, "batch_size": 2, "max_tokens": 24}
    rows, _ = run("best_of_n", params, scattered(), total, PROBLEMS[:6])
    assert any(r.stop_reason == "budget" for r in rows)
    assert 0.9 * total <= sum(r.usage.total_tokens for r in rows) <= total


@settings(deadline=None, derandomize=True, max_examples=25,
          suppress_health_check=[HealthCheck.too_slow])
@given(total=st.integers(min_value=1, max_value=6000), problems=st.integers(1, 8),
       strategy=st.sampled_from(["auto", "single", "best_of_n"]),
       agree=st.booleans())
def test_a_planned_run_never_spends_more_than_its_total(total: int, problems: int,
                                                        strategy: str, agree: bool) -> None:
    backend = agreeing() if agree else scattered()
    rows, _ = run(strategy, {"max_tokens": 96}, backend, total, PROBLEMS[:problems])
    assert len(rows) == problems
    assert sum(r.usage.total_tokens for r in rows) <= total


def test_the_floor_of_a_useful_call_is_sensible() -> None:
    assert 32 <= FLOOR_COMPLETION <= 128
