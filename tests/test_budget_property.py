"""The total must never exceed the budget: over random budgets, prompts, replies and calls.

Each example runs `single` through `ponder.asolve`, or a random sequence (and a concurrent
burst) of `ctx.generate` calls with random `n`, on a scripted backend or a real HTTP server
(with and without a tokenizer: then calibrated prompt bounds, short prompts before a long one),
and checks what the meter charged against the limits, and against the trace.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ponder
from ponder.backends.base import Backend
from ponder.backends.openai import OpenAIBackend
from ponder.backends.scripted import ScriptedBackend
from ponder.core.budget import Budget
from ponder.core.calibration import PromptCalibration
from ponder.core.charging import CHARS_SLACK, MAX_CHARS_PER_TOKEN
from ponder.core.errors import BudgetExhausted
from ponder.core.types import Completion, Message, Usage
from ponder.strategies.context import Context
from ponder.testing import FakeOpenAIServer, make_context

SETTINGS = settings(deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])

budgets = st.builds(
    Budget,
    tokens=st.integers(min_value=1, max_value=4000),
    calls=st.none() | st.integers(min_value=1, max_value=6),
    min_completion_tokens=st.integers(min_value=1, max_value=32),
)
prompts = st.text(max_size=300)  # any unicode, empty included
words = st.text(min_size=1, max_size=12).map(lambda s: "".join(s.split()) or "x")
replies = st.lists(words, max_size=400).map(" ".join)
max_tokens = st.integers(min_value=1, max_value=1000)
ns = st.lists(st.integers(min_value=1, max_value=8), min_size=1, max_size=6)
temperatures = st.sampled_from([0.0, 0.7])  # greedy samples are asked for once


def within(budget: Budget, used: Usage) -> bool:
    return ((budget.tokens is None or used.total_tokens <= budget.tokens)
            and (budget.calls is None or used.calls <= budget.calls))


async def solve_single(prompt: str, backend: Backend, budget: Budget, tokens: int) -> None:
    # A Problem, not text: the loader refuses blank text, and the budget must hold for any.
    result = await ponder.asolve(ponder.Problem(problem=prompt), strategy="single",
                                 backend=backend, budget=budget, max_tokens=tokens)
    assert within(budget, result.usage), (budget, result.usage)
    assert result.error is None
    traced = sum((e.usage for e in result.trace), Usage())
    assert traced.total_tokens == result.usage.total_tokens


async def generate_many(prompt: str, backend: Backend, budget: Budget, tokens: int,
                        sizes: list[int], temperature: float) -> None:
    await generate_on(make_context(prompt, backend=backend, budget=budget), budget, tokens,
                      sizes, temperature)


async def generate_on(ctx: Context, budget: Budget, tokens: int, sizes: list[int],
                      temperature: float) -> None:
    async def one(n: int) -> None:
        try:
            completions = await ctx.generate("single/answer", n=n, max_tokens=tokens,
                                             temperature=temperature)
        except BudgetExhausted:
            return
        assert 1 <= len(completions) <= n

    for n in sizes:  # one after another, then all at once
        await one(n)
    await asyncio.gather(*(one(n) for n in sizes))
    assert within(budget, ctx.meter.used), (budget, ctx.meter.used)
    assert ctx.meter.reserved_tokens == 0 and ctx.meter.reserved_calls == 0
    traced = sum((e.usage for e in ctx.trace.events), Usage())
    assert traced.total_tokens == ctx.meter.used.total_tokens


@SETTINGS
@given(budget=budgets, prompt=prompts, reply=replies, tokens=max_tokens, sizes=ns,
       native_n=st.booleans(), max_n=st.none() | st.integers(min_value=1, max_value=3),
       temperature=temperatures)
def test_scripted_backend_never_overspends(budget: Budget, prompt: str, reply: str, tokens: int,
                                           sizes: list[int], native_n: bool,
                                           max_n: int | None, temperature: float) -> None:
    def backend() -> ScriptedBackend:
        return ScriptedBackend(reply, native_n=native_n, max_n=max_n)

    asyncio.run(solve_single(prompt, backend(), budget, tokens))
    asyncio.run(generate_many(prompt, backend(), budget, tokens, sizes, temperature))


class UnderReporting(ScriptedBackend):
    """Replies as scripted, and reports `share` of the tokens they cost."""

    def __init__(self, reply: str, share: float, **options: Any) -> None:
        super().__init__(reply, **options)
        self.share = share

    async def generate(self, messages: Sequence[Message], **kwargs: Any) -> list[Completion]:
        completions = await super().generate(messages, **kwargs)
        return [c.model_copy(update={"usage": Usage(
            prompt_tokens=int(c.usage.prompt_tokens * self.share),
            completion_tokens=int(c.usage.completion_tokens * self.share))})
            for c in completions]


long_words = st.text(min_size=1, max_size=60).map(lambda s: "".join(s.split()) or "x")


@settings(SETTINGS, max_examples=60)
@given(budget=budgets, prompt=prompts, reply=st.lists(long_words, max_size=300).map(" ".join),
       tokens=max_tokens, sizes=ns, native_n=st.booleans(),
       share=st.sampled_from([0.0, 0.1, 0.5]), temperature=temperatures)
def test_an_under_reporting_backend_is_charged_its_floor_and_never_overspends(
        budget: Budget, prompt: str, reply: str, tokens: int, sizes: list[int], native_n: bool,
        share: float, temperature: float) -> None:
    def backend() -> UnderReporting:
        return UnderReporting(reply, share, native_n=native_n)

    asyncio.run(solve_single(prompt, backend(), budget, tokens))
    asyncio.run(generate_many(prompt, backend(), budget, tokens, sizes, temperature))
    ctx = make_context(prompt, backend=backend(), budget=Budget(tokens=10**6))
    asyncio.run(ctx.generate("single/answer", max_tokens=tokens))
    [event] = ctx.trace.events
    assert event.usage is not None
    least = math.ceil(max(0, len(event.completions[0].text) - CHARS_SLACK) / MAX_CHARS_PER_TOKEN)
    assert event.usage.completion_tokens >= min(tokens, least)


@settings(SETTINGS, max_examples=40)
@given(budget=budgets, prompt=prompts, reply=replies, tokens=max_tokens, sizes=ns,
       native_n=st.booleans(), include_usage=st.booleans(), temperature=temperatures)
def test_http_server_never_overspends(budget: Budget, prompt: str, reply: str, tokens: int,
                                      sizes: list[int], native_n: bool,
                                      include_usage: bool, temperature: float) -> None:
    with FakeOpenAIServer(reply=lambda messages: reply, native_n=native_n,
                          include_usage=include_usage) as server:

        async def run(check: Callable[[OpenAIBackend], Awaitable[None]]) -> None:
            async with OpenAIBackend(server.base_url, timeout=10, max_retries=0) as backend:
                await check(backend)

        asyncio.run(run(lambda b: solve_single(prompt, b, budget, tokens)))
        asyncio.run(run(lambda b: generate_many(prompt, b, budget, tokens, sizes, temperature)))


class NoTokenizer(OpenAIBackend):
    """A server as a client sees one without `/tokenize` (OpenAI's API): its prompt bounds
    come from the calibration its earlier replies made."""

    async def count_prompt_tokens(self, messages: Sequence[Message]) -> int | None:
        return None


@settings(SETTINGS, max_examples=30)
@given(budget=budgets, short=st.lists(st.text(max_size=30), min_size=1, max_size=4),
       long=st.text(min_size=100, max_size=2000), reply=replies, tokens=max_tokens, sizes=ns,
       native_n=st.booleans(), temperature=temperatures)
def test_a_server_without_a_tokenizer_never_overspends(
        budget: Budget, short: list[str], long: str, reply: str, tokens: int,
        sizes: list[int], native_n: bool, temperature: float) -> None:
    """Short prompts calibrate the bound first, then a long one comes (and short ones again),
    each problem on one run's calibration, as a `Solver` shares it."""
    with FakeOpenAIServer(reply=lambda messages: reply, native_n=native_n) as server:

        async def run() -> None:
            calibration = PromptCalibration()
            async with NoTokenizer(server.base_url, timeout=10, max_retries=0) as backend:
                for prompt in [*short, long, *short]:
                    ctx = Context(ponder.Problem(problem=prompt), backend=backend,
                                  budget=budget, calibration=calibration)
                    await generate_on(ctx, budget, tokens, sizes, temperature)

        asyncio.run(run())
