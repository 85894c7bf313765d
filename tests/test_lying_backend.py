"""A backend can lie: usage larger than the call could cost, or negative, is charged at the
call's upper bound and flagged; a reply far longer than max_tokens allows is cut and marked."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

import ponder
from ponder import Budget, ScriptedBackend
from ponder.context import MAX_CHARS_PER_TOKEN
from ponder.testing import make_context
from ponder.types import Completion, Message, Usage


class Liar(ScriptedBackend):
    """Replies as scripted, then reports `usage` for the call instead of the truth."""

    def __init__(self, usage: Usage, reply: str = "Final answer: 8") -> None:
        super().__init__(reply)
        self.lie = usage

    async def generate(self, messages: Sequence[Message], **kwargs: object) -> list[Completion]:
        completions = await super().generate(messages, **kwargs)  # type: ignore[arg-type]
        return [c.model_copy(update={"usage": self.lie}) for c in completions]


@pytest.mark.parametrize("lie", [Usage(prompt_tokens=-1000, completion_tokens=5),
                                 Usage(prompt_tokens=10, completion_tokens=-3),
                                 Usage(prompt_tokens=10**9, completion_tokens=10**9)])
async def test_impossible_usage_is_charged_at_the_bound_and_flagged(lie: Usage) -> None:
    ctx = make_context(backend=Liar(lie), budget=Budget(tokens=5000))
    await ctx.generate("single/answer", max_tokens=64)
    [event] = ctx.trace.events
    assert "usage_rejected" in event.data
    used = ctx.meter.used
    assert used.prompt_tokens >= 0 and used.completion_tokens >= 0
    assert 64 <= used.total_tokens <= 5000 and used.estimated
    assert event.usage == used


async def test_honest_usage_is_charged_as_reported() -> None:
    ctx = make_context(backend=ScriptedBackend("Final answer: 8"))
    await ctx.generate("single/answer", max_tokens=64)
    [event] = ctx.trace.events
    assert "usage_rejected" not in event.data and not ctx.meter.used.estimated


async def test_a_reply_longer_than_max_tokens_allows_is_cut_and_marked() -> None:
    huge = "Final answer: 8 " + "x" * 10_000_000  # one "word": the scripted backend keeps it
    ctx = make_context(backend=ScriptedBackend(huge))
    [completion] = await ctx.generate("single/answer", max_tokens=512)
    assert completion.truncated
    assert len(completion.text) <= 512 * MAX_CHARS_PER_TOKEN + 256
    [event] = ctx.trace.events
    assert len(event.completions[0].text) == len(completion.text)  # the trace holds the cut


async def test_a_run_with_a_lying_backend_stays_within_its_budget() -> None:
    result = await ponder.asolve("2+2?", strategy="best_of_n", n=3,
                                 backend=Liar(Usage(prompt_tokens=10**6, completion_tokens=1)),
                                 budget=Budget(tokens=3000))
    assert result.usage.total_tokens <= 3000
