"""`ScriptedBackend` as tests use it: replies scripted by what each call is for (`by_step`),
each request recorded with its template and step, calls in flight counted, and replies cut at
stop strings like a server's."""

from __future__ import annotations

import asyncio

import pytest

import ponder
from ponder import Message, ScriptedBackend
from ponder.testing import by_step, make_context

HELLO = [Message(role="user", content="hello")]


async def test_by_step_replies_by_template_role_and_each_request_records_its_call():
    backend = ScriptedBackend(by_step(
        {"self_refine/refine": "3 + 5 = 8. Final answer: 8"},
        generate="3 * 5 = 15. Final answer: 15", feedback=["Add, do not multiply.", "NO ISSUES"]))
    result = await ponder.asolve("Tom has 3 apples and buys 5 more. How many now?",
                                 strategy="self_refine", backend=backend, max_iters=3)
    assert result.answer == "8"
    assert [(r["template"], r["step"]) for r in backend.requests] == [
        ("self_refine/generate", "generate"), ("self_refine/feedback", "feedback"),
        ("self_refine/refine", "refine"), ("self_refine/feedback", "feedback")]
    assert backend.requests_for("feedback") == [backend.requests[1], backend.requests[3]]
    assert backend.requests_for("self_refine/refine") == [backend.requests[2]]


async def test_a_step_name_or_a_function_of_the_messages_may_script_a_call():
    backend = ScriptedBackend(by_step({"second try": "Final answer: 5"},
                                      answer=lambda messages: f"echo: {messages[-1].content}"))
    ctx = make_context("What is 2 + 3?", backend=backend)
    [first] = await ctx.generate("single/answer", max_tokens=16)
    [second] = await ctx.generate("single/answer", max_tokens=16, step="second try")
    assert first.text == "echo: What is 2 + 3?"
    assert second.text == "Final answer: 5"  # the step is more specific than the role


async def test_a_call_no_script_covers_fails_naming_its_role_and_template():
    ctx = make_context(backend=ScriptedBackend(by_step(feedback="NO ISSUES")))
    with pytest.raises(AssertionError, match=r"role 'answer' \(template 'single/answer'"):
        await ctx.generate("single/answer", max_tokens=16)


async def test_outside_a_context_a_request_has_no_template_or_step():
    backend = ScriptedBackend("hi")
    await backend.generate(HELLO, max_tokens=8)
    assert (backend.requests[0]["template"], backend.requests[0]["step"]) == (None, None)
    with pytest.raises(AssertionError, match="through a Context"):
        await ScriptedBackend(by_step(answer="hi")).generate(HELLO, max_tokens=8)


async def test_with_latency_overlapping_calls_are_counted_in_flight():
    backend = ScriptedBackend(latency_s=0.01)
    await asyncio.gather(*(backend.generate(HELLO, max_tokens=8) for _ in range(3)))
    await backend.generate(HELLO, max_tokens=8)
    assert (backend.in_flight, backend.peak_in_flight) == (0, 3)


async def test_a_reply_is_cut_before_the_earliest_stop_string():
    backend = ScriptedBackend("Step 1: 2 + 3 = 5\n\nStep 2: done")
    [completion] = await backend.generate(HELLO, max_tokens=50, stop=["\nStep ", "\n\n"])
    assert (completion.text, completion.finish_reason) == ("Step 1: 2 + 3 = 5", "stop")
