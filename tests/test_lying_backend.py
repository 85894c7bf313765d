"""A backend can lie: usage larger than the call could cost, or negative, is charged at the
call's upper bound and flagged; usage smaller than its texts must have cost is raised to that
floor and flagged; a reply far longer than max_tokens allows is cut and marked."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

import ponder
from ponder import Budget, OpenAIBackend, ScriptedBackend
from ponder.core.charging import CHARS_SLACK, MAX_CHARS_PER_TOKEN
from ponder.core.types import Completion, Message, Usage
from ponder.testing import FakeOpenAIServer, make_context
from tests.conftest import json_server


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
    assert len(completion.text) <= 512 * MAX_CHARS_PER_TOKEN + CHARS_SLACK
    [event] = ctx.trace.events
    assert len(event.completions[0].text) == len(completion.text)  # the trace holds the cut


async def test_a_run_with_a_lying_backend_stays_within_its_budget() -> None:
    result = await ponder.asolve("2+2?", strategy="best_of_n", n=3,
                                 backend=Liar(Usage(prompt_tokens=10**6, completion_tokens=1)),
                                 budget=Budget(tokens=3000))
    assert result.usage.total_tokens <= 3000


def least(chars: int) -> float:
    """The fewest tokens `chars` characters can be."""
    return (chars - CHARS_SLACK) / MAX_CHARS_PER_TOKEN


async def test_usage_below_what_the_texts_must_have_cost_is_raised_to_that_floor() -> None:
    page = "Final answer: 8 " + "1234567890" * 300  # 3,016 characters: at least 87 tokens
    ctx = make_context("How many? " * 100,
                       backend=Liar(Usage(prompt_tokens=0, completion_tokens=1), reply=page),
                       budget=Budget(tokens=5000))
    await ctx.generate("single/answer", max_tokens=512)
    [event] = ctx.trace.events
    assert "usage_rejected" in event.data
    used = ctx.meter.used
    assert used.completion_tokens >= least(len(page)) > 80
    assert used.prompt_tokens >= least(sum(len(m.content) for m in event.messages)) > 0
    assert used.estimated and used.total_tokens <= 5000


async def test_greedy_copies_of_one_reply_with_its_honest_usage_pass() -> None:
    # At temperature 0 the n samples are one reply, asked for once and copied: its usage is
    # for one reply, and the floor must count the text once too.
    long_reply = "Let us count the eggs carefully. " * 40 + "Final answer: 24"
    with FakeOpenAIServer(reply=lambda messages: long_reply) as server:
        async with OpenAIBackend(server.base_url, max_retries=0) as backend:
            ctx = make_context(backend=backend, budget=Budget(tokens=20_000))
            completions = await ctx.generate("single/answer", n=16, max_tokens=512,
                                             temperature=0.0)
            served = server.usage_served
    assert len(completions) == 16 and len({c.text for c in completions}) == 1
    [event] = ctx.trace.events
    assert "usage_rejected" not in event.data and not ctx.meter.used.estimated
    assert ctx.meter.used.completion_tokens == served["completion_tokens"]


PAGE = "The apples: " + "three and five make eight; " * 80 + "Final answer: 8"


def chat_reply(usage: dict[str, Any]) -> dict[str, Any]:
    return {"id": "x", "object": "chat.completion", "model": "m", "usage": usage, "choices": [
        {"index": 0, "message": {"role": "assistant", "content": PAGE}, "finish_reason": "stop"}]}


@pytest.fixture
def liar_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A chat server that answers a page of text and reports the usage the test gives."""
    with json_server(lambda handler: (200, chat_reply(request.param))) as address:
        yield f"http://{address}/v1"


@pytest.mark.parametrize(("liar_url", "least_completion"), [
    ({"prompt_tokens": 30}, min(512, len(PAGE.encode()))),  # bounded: bytes, max_tokens
    ({"prompt_tokens": 30, "completion_tokens": 0}, least(len(PAGE))),  # the floor
], indirect=["liar_url"], ids=["completion_left_out", "completion_zero"])
async def test_a_server_cannot_make_a_page_of_reply_free(liar_url: str,
                                                         least_completion: float) -> None:
    async with OpenAIBackend(liar_url, model="m", max_retries=0) as backend:
        result = await ponder.asolve("2+2?", backend=backend, budget=Budget(tokens=20_000),
                                     max_tokens=512)
    assert result.answer == "8"
    assert result.usage.completion_tokens >= least_completion > 40
    assert result.usage.estimated


async def test_a_lone_surrogate_in_a_reply_is_text_a_results_row_can_hold() -> None:
    """JSON lets a server send `\\ud800`; as a Python str it could not be encoded, and writing
    the row (or the trace, or `ponder serve`'s reply) failed."""
    def reply(handler: object) -> tuple[int, dict[str, Any]]:
        body = chat_reply({"prompt_tokens": 30, "completion_tokens": 9})
        body["choices"][0]["message"]["content"] = "odd \ud800 text. Final answer: 8"
        return 200, body

    with json_server(reply) as address:
        async with OpenAIBackend(f"http://{address}/v1", model="m", max_retries=0) as backend:
            result = await ponder.asolve("2+2?", backend=backend, max_tokens=64)
    assert result.answer == "8" and "\ufffd" in result.text
    result.model_dump_json()
    json.dumps(result.model_dump(mode="json"), ensure_ascii=False).encode()


async def test_a_prompt_count_above_the_servers_own_tokenizer_is_charged_as_a_lie() -> None:
    """The bound a call reserves for its prompt is the server's `/tokenize` count: a reply
    claiming more is no honest count of that prompt, whatever its total, so the call is
    charged its whole reservation and the trace says why."""
    def answer(handler: Any) -> tuple[int, Any]:
        if handler.path == "/tokenize":
            return 200, {"count": 5}
        return 200, {"id": "x", "object": "chat.completion", "model": "m",
                     "usage": {"prompt_tokens": 40, "completion_tokens": 4}, "choices": [
                         {"index": 0, "message": {"role": "assistant",
                                                  "content": "Final answer: 8"},
                          "finish_reason": "stop"}]}

    with json_server(answer) as address:
        async with OpenAIBackend(f"http://{address}/v1", model="m", max_retries=0) as backend:
            ctx = make_context(backend=backend, budget=Budget(tokens=2000))
            await ctx.generate("single/answer", max_tokens=64)
    [event] = ctx.trace.events
    assert event.data["prompt_bound"] == {"tokens": 5, "by": "tokenizer"}
    assert "tokenizer's count of 5" in event.data["usage_rejected"]
    assert ctx.meter.used.total_tokens == 5 + 64 and ctx.meter.used.estimated
