"""Prompt bounds that learn (`ponder.core.calibration`): a backend's tokenizer where it has one,
else the prompt counts earlier replies reported; the first call pays the byte bound, a reply
above the learned bound is charged as a liar's and widens it, and no budget is ever exceeded."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ponder
from ponder.backends.openai import OpenAIBackend
from ponder.backends.scripted import ScriptedBackend
from ponder.core.budget import Budget, RunMeter
from ponder.core.calibration import (
    FLOOR_MARGIN,
    REPLIES_KEPT,
    PromptBound,
    PromptCalibration,
    ReplyLengths,
)
from ponder.core.errors import BudgetExhausted
from ponder.core.tokens import prompt_upper_bound
from ponder.core.types import Completion, Message, Problem, TraceEvent, Usage
from ponder.strategies.context import Context
from ponder.testing import FakeOpenAIServer

SETTINGS = settings(deadline=None, derandomize=True, max_examples=60,
                    suppress_health_check=[HealthCheck.too_slow])
TEMPLATE = "single/answer"


class Untokenized(ScriptedBackend):
    """A backend without a tokenizer (OpenAI's API) whose replies report, for the k-th call,
    `shares[k]` (cycling) of the prompt's byte bound as its prompt tokens."""

    def __init__(self, shares: Sequence[float], reply: str = "Final answer: 8",
                 latency_s: float = 0.0) -> None:
        super().__init__(reply, latency_s=latency_s)
        self.shares = list(shares)
        self.calls = 0
        self.counted = 0

    async def generate(self, messages: Sequence[Message], **kwargs: Any) -> list[Completion]:
        completions = await super().generate(messages, **kwargs)
        share = self.shares[self.calls % len(self.shares)]
        self.calls += 1
        prompt = math.ceil(share * prompt_upper_bound(messages))
        return [c.model_copy(update={"usage": c.usage.model_copy(
            update={"prompt_tokens": prompt if i == 0 else 0})})
            for i, c in enumerate(completions)]

    async def count_prompt_tokens(self, messages: Sequence[Message]) -> int | None:
        self.counted += 1
        return None


class Tokenized(Untokenized):
    """The same, with a tokenizer that counts `counted_share` of the byte bound."""

    def __init__(self, shares: Sequence[float], counted_share: float) -> None:
        super().__init__(shares)
        self.counted_share = counted_share

    async def count_prompt_tokens(self, messages: Sequence[Message]) -> int | None:
        self.counted += 1
        return math.ceil(self.counted_share * prompt_upper_bound(messages))


def context(problem: str, backend: ScriptedBackend, calibration: PromptCalibration, *,
            budget: Budget | None = None, run: RunMeter | None = None) -> Context:
    return Context(Problem(problem=problem), backend=backend, budget=budget or Budget(),
                   run_meter=run, calibration=calibration)


def generated(ctx: Context) -> TraceEvent:
    [event] = [e for e in ctx.trace.events if e.kind == "generate"]
    return event


def bound_of(event: TraceEvent) -> int:
    learned = event.data.get("prompt_bound")
    return int(learned["tokens"]) if learned else prompt_upper_bound(event.messages)


async def one_call(problem: str, backend: ScriptedBackend, calibration: PromptCalibration,
                   **kwargs: Any) -> TraceEvent:
    ctx = context(problem, backend, calibration, **kwargs)
    await ctx.generate(TEMPLATE, max_tokens=32)
    return generated(ctx)


PROBLEM = "Tom has 3 apples and buys 4 more. How many apples does he have now?"


async def test_the_first_call_pays_the_byte_bound_and_later_ones_the_calibrated_one() -> None:
    calibration = PromptCalibration()
    backend = Untokenized([0.25])
    events = [await one_call(PROBLEM, backend, calibration, budget=Budget(tokens=5000))
              for _ in range(12)]
    assert "prompt_bound" not in events[0].data  # nothing to calibrate with yet
    bounds = [bound_of(e) for e in events]
    reported = events[0].usage.prompt_tokens  # type: ignore[union-attr]
    assert bounds[0] == prompt_upper_bound(events[0].messages) > 3 * reported
    assert all(e.data["prompt_bound"]["by"] == "calibration" for e in events[1:])
    assert bounds[1:] == sorted(bounds[1:], reverse=True)  # the margin shrinks with replies
    assert reported <= bounds[-1] <= math.ceil(reported * (FLOOR_MARGIN + 0.05))
    assert all("usage_rejected" not in e.data for e in events)
    assert backend.counted == 12  # a token budget asks the tokenizer; this one has none


async def test_with_no_token_limit_the_tokenizer_is_not_asked() -> None:
    backend = Tokenized([0.25], counted_share=0.25)
    await one_call(PROBLEM, backend, PromptCalibration())
    assert backend.counted == 0


async def test_a_tokenizer_count_is_the_bound_and_is_checked_against_the_reply() -> None:
    calibration = PromptCalibration()
    honest = await one_call(PROBLEM, Tokenized([0.25], counted_share=0.25), calibration,
                            budget=Budget(tokens=5000))
    assert honest.data["prompt_bound"] == {"tokens": honest.usage.prompt_tokens,  # type: ignore[union-attr]
                                           "by": "tokenizer"}
    # A server whose replies count more than its own tokenizer said is charged as a liar,
    # and its tokenizer is not asked for that template again.
    backend = Tokenized([0.5], counted_share=0.25)
    calibration = PromptCalibration()
    budget = Budget(tokens=5000)
    lied = await one_call(PROBLEM, backend, calibration, budget=budget)
    assert "usage_rejected" in lied.data and lied.usage is not None and lied.usage.estimated
    assert backend.counted == 1
    after = await one_call(PROBLEM, backend, calibration, budget=budget)
    assert backend.counted == 1 and "usage_rejected" not in after.data


async def test_a_reply_above_the_calibrated_bound_is_charged_as_a_liars_and_widens_it() -> None:
    calibration = PromptCalibration()
    backend = Untokenized([0.2] * 6 + [0.6] + [0.2] * 20)
    budget = Budget(tokens=5000)
    events = []
    for _ in range(6):
        events.append(await one_call(PROBLEM, backend, calibration, budget=budget))
    before = bound_of(events[-1])
    ctx = context(PROBLEM, backend, calibration, budget=budget)
    await ctx.generate(TEMPLATE, max_tokens=32)
    broke = generated(ctx)
    assert broke.data["prompt_bound"]["by"] == "calibration"
    assert broke.usage is not None and broke.usage.estimated
    assert "calibrated bound" in broke.data["usage_rejected"]
    reserved = broke.data["prompt_bound"]["tokens"] + broke.data["max_tokens"]
    assert ctx.meter.used.total_tokens == reserved  # the whole reservation
    # The byte bound for a few calls, then a calibration wide enough for the breaking count.
    later = [await one_call(PROBLEM, backend, calibration, budget=budget) for _ in range(6)]
    assert [bound_of(e) for e in later[:2]] == [prompt_upper_bound(later[0].messages)] * 2
    assert bound_of(later[-1]) > 2 * before
    assert all("usage_rejected" not in e.data for e in later)


async def test_concurrent_breaks_of_one_belief_widen_once() -> None:
    calibration = PromptCalibration()
    budget = Budget(tokens=5000)
    warm = Untokenized([0.2])
    for _ in range(4):
        await one_call(PROBLEM, warm, calibration, budget=budget)
    dense = Untokenized([0.6], latency_s=0.01)  # all five in flight on the old belief
    events = await asyncio.gather(*(one_call(PROBLEM, dense, calibration, budget=budget)
                                    for _ in range(5)))
    assert all("usage_rejected" in e.data for e in events)
    assert calibration.describe((dense.label, TEMPLATE, 2))["breaks"] == 1  # type: ignore[index]


async def test_a_prompt_far_longer_than_any_calibrated_pays_the_byte_bound() -> None:
    calibration = PromptCalibration()
    backend = Untokenized([0.2])
    for _ in range(5):
        await one_call(PROBLEM, backend, calibration, budget=Budget(tokens=50_000))
    long = await one_call(PROBLEM * 20, backend, calibration, budget=Budget(tokens=50_000))
    assert "prompt_bound" not in long.data


async def test_an_untrusted_count_may_widen_the_calibration_but_never_narrow_it() -> None:
    calibration = PromptCalibration()
    key = ("b", None, 1)
    bound = PromptBound(500, "bytes", key, 500)
    calibration.observe(bound, 100, trusted=True)
    calibration.observe(bound, 10, trusted=False)
    assert calibration.describe(key) == {"replies": 1, "ratio": 0.2, "margin": 1.5, "breaks": 0}
    calibration.observe(bound, 0, trusted=True)  # a prompt count left out vouches for nothing
    assert calibration.describe(key)["replies"] == 1  # type: ignore[index]
    calibration.observe(bound, 300, trusted=False)
    assert calibration.describe(key)["ratio"] == 0.6  # type: ignore[index]


prompts = st.text(min_size=0, max_size=40)


@SETTINGS
@given(short=st.lists(prompts, min_size=1, max_size=5),
       long=st.lists(st.text(min_size=200, max_size=1500), min_size=1, max_size=3),
       shares=st.lists(st.sampled_from([0.05, 0.2, 0.3, 0.6, 1.0]), min_size=1, max_size=6),
       tokens=st.integers(min_value=1, max_value=3000), total=st.integers(1, 6000),
       max_tokens=st.integers(min_value=1, max_value=400), n=st.integers(1, 4))
def test_calibration_never_lets_a_call_exceed_the_budget(
        short: list[str], long: list[str], shares: list[float], tokens: int, total: int,
        max_tokens: int, n: int) -> None:
    """Short prompts first calibrate the bound low; a long prompt (or a denser reply) later
    must still leave every problem and the run within its budget."""
    async def main() -> None:
        calibration = PromptCalibration()
        backend = Untokenized(shares, reply=" ".join(["word"] * 50))
        run = RunMeter(tokens=total)
        for problem in [*short, *long, *short]:
            ctx = context(problem or "?", backend, calibration, budget=Budget(tokens=tokens),
                          run=run)
            outcomes = await asyncio.gather(
                *(ctx.generate(TEMPLATE, n=n, max_tokens=max_tokens, temperature=0.7)
                  for _ in range(2)), return_exceptions=True)
            assert all(not isinstance(o, BaseException) or isinstance(o, BudgetExhausted)
                       for o in outcomes), outcomes
            assert ctx.meter.used.total_tokens <= tokens
            assert ctx.meter.reserved_tokens == 0
            traced = sum((e.usage for e in ctx.trace.events if e.usage), Usage())
            assert traced.total_tokens == ctx.meter.used.total_tokens
        assert run.spent <= total and run.reserved == 0

    asyncio.run(main())


class NoTokenizer(OpenAIBackend):
    async def count_prompt_tokens(self, messages: Sequence[Message]) -> int | None:
        return None


GSM8K_LIKE = [
    "Janet's ducks lay 16 eggs per day. She eats three for breakfast every morning and bakes "
    "muffins for her friends every day with four. She sells the remainder at the farmers' "
    "market daily for $2 per fresh duck egg. How much in dollars does she make every day?",
    "A robe takes 2 bolts of blue fiber and half that much white fiber. How many bolts in "
    "total does it take?",
    "Josh decides to try flipping a house. He buys a house for $80,000 and then puts in "
    "$50,000 in repairs. This increased the value of the house by 150%. How much profit did "
    "he make?",
    "James decides to run 3 sprints 3 times a week. He runs 60 meters each sprint. How many "
    "total meters does he run a week?",
    "Every day, Wendi feeds each of her chickens three cups of mixed chicken feed, containing "
    "seeds, mealworms and vegetables to help keep them healthy. She gives the chickens their "
    "feed in three separate meals. How many cups of feed does she need in the final meal?",
    "Kylar went to the store to buy glasses for his new apartment. One glass costs $5, but "
    "every second glass costs only 60% of the price. Kylar wants to buy 16 glasses. How much "
    "does he need to pay for them?",
]


def test_on_the_fake_server_the_bound_comes_within_a_quarter_of_the_reported_count() -> None:
    """The fake counts a token a word; after a few calls the calibrated bound is within 1.25x
    of what it reports, where the byte bound is about 5x."""
    with FakeOpenAIServer(reply=lambda messages: "Let us see. Final answer: 8") as server:
        events: list[TraceEvent] = []
        with ponder.Session(NoTokenizer(server.base_url, max_retries=0),
                            close_backend=True) as session:
            session.solve_many(GSM8K_LIKE * 2, strategy="single", budget=Budget(tokens=2000),
                               concurrency=1, trace=events.append, max_tokens=32)
    calls = [e for e in events if e.kind == "generate"]
    assert len(calls) == 12
    ratios = [bound_of(e) / e.usage.prompt_tokens for e in calls]  # type: ignore[union-attr]
    assert ratios[0] > 4
    assert max(ratios[4:]) <= 1.25
    assert all("usage_rejected" not in e.data for e in calls)


def test_a_session_shares_one_calibration_across_its_runs_and_problems() -> None:
    with ponder.Session(ScriptedBackend()) as session:
        spec, config = session.plan("single")
        assert session.solver(spec, config).calibration is session.calibration


# -- reply lengths -------------------------------------------------------------------------------


def reply(tokens: int, finish: str = "stop") -> Completion:
    return Completion(text="x", finish_reason=finish, usage=Usage(completion_tokens=tokens))


def test_what_a_reply_needs_is_the_longest_of_a_few_then_the_ninetieth_percentile() -> None:
    lengths = ReplyLengths()
    key = ("model", "single/answer")
    assert lengths.needed(key) is None
    lengths.observe(key, [reply(80), reply(120)], max_tokens=512)
    assert lengths.needed(key) == 120
    lengths.observe(key, [reply(t) for t in range(1, 99)], max_tokens=512)
    assert lengths.needed(key) == 89  # of these 100 replies, 90 took at most 89 tokens
    assert lengths.needed(("model", "other")) is None  # per template


def test_a_reply_cut_short_counts_as_long_as_its_call_asked() -> None:
    lengths = ReplyLengths()
    key = ("model", None)
    lengths.observe(key, [reply(40, "length")], max_tokens=200)
    assert lengths.needed(key) == 200
    lengths.observe(key, [reply(30)] * REPLIES_KEPT, max_tokens=200)
    assert lengths.needed(key) == 30  # only the latest replies are kept
