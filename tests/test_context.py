"""The `Context` a strategy works through: what it sends, charges and records."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from ponder.backends.openai import OpenAIBackend
from ponder.backends.scripted import ScriptedBackend
from ponder.core.budget import Budget
from ponder.core.errors import BackendError, BudgetExhausted, TemplateError
from ponder.core.tracing import JsonlTraceWriter, read_trace_jsonl
from ponder.core.types import Problem, Usage
from ponder.testing import FakeOpenAIServer, make_context
from ponder.verifiers.base import as_verifier

GOLD = Problem(
    id="gold-check", problem="Write add(a, b) returning the sum of two numbers.",
    answer="GOLD-ANSWER-7731", test="assert add(2, 2) == 4  # GOLD-TEST-1193",
    tests=["GOLD-TESTS-5527"], entry_point="add",
)


async def test_a_call_is_traced_with_what_was_sent_and_what_it_cost() -> None:
    backend = ScriptedBackend(["Adding. Final answer: 5"])
    ctx = make_context("What is 2 + 3?", backend=backend)

    [completion] = await ctx.generate("single/answer", max_tokens=64, step="first try")

    [event] = ctx.trace.events
    assert event.kind == "generate" and event.problem_id == "problem"
    assert event.step == "first try" and event.template == "single/answer"
    assert [m.role for m in event.messages] == ["system", "user"]
    assert event.messages[-1].content == "What is 2 + 3?"
    assert event.completions == [completion]
    assert event.usage == completion.usage + Usage(calls=1)
    assert event.usage == ctx.meter.used
    assert event.latency_s >= 0 and event.retries == 0 and event.error is None
    assert event.data == {"n": 1, "max_tokens": 64, "temperature": 0.0}


async def test_retries_reach_the_trace() -> None:
    replies = itertools.count()
    with FakeOpenAIServer(status_for=lambda body: 503 if next(replies) < 2 else None) as server:
        async with OpenAIBackend(server.base_url, backoff_initial=0.01, backoff_max=0.02) as b:
            ctx = make_context("What is 2 + 3?", backend=b)
            await ctx.generate("single/answer", max_tokens=64)
    [event] = ctx.trace.events
    assert event.retries == 2 and event.error is None


async def test_a_failed_call_is_traced_and_charges_nothing() -> None:
    with FakeOpenAIServer(status_for=lambda body: 400) as server:
        async with OpenAIBackend(server.base_url) as backend:
            ctx = make_context(backend=backend, budget=Budget(tokens=10_000))
            with pytest.raises(BackendError, match="answered 400"):
                await ctx.generate("single/answer", max_tokens=64)
    [event] = ctx.trace.events
    assert event.error is not None and event.error.startswith("BackendError")
    assert ctx.meter.used.total_tokens == 0 and ctx.meter.reserved_tokens == 0


async def test_gold_fields_never_reach_the_model() -> None:
    backend = ScriptedBackend("def add(a, b):\n    return a + b")
    ctx = make_context(GOLD, backend=backend)

    await ctx.generate("single/answer", n=2, max_tokens=64)

    sent = " ".join(m.content for event in ctx.trace.events for m in event.messages)
    assert backend.requests[0]["messages"] == ctx.trace.events[0].messages
    assert "add(a, b)" in sent
    for gold in ("GOLD-ANSWER-7731", "GOLD-TEST-1193", "GOLD-TESTS-5527"):
        assert gold not in sent


async def test_a_template_cannot_ask_for_a_gold_field(tmp_path: Path) -> None:
    (tmp_path / "peek.j2").write_text("{% block user %}{{ problem }} {{ answer }}{% endblock %}")
    ctx = make_context(GOLD)
    ctx.prompts = type(ctx.prompts)(tmp_path)

    with pytest.raises(TemplateError, match="answer"):
        ctx.render("peek")


async def test_a_backend_returning_fewer_than_n_is_asked_again() -> None:
    backend = ScriptedBackend(["Final answer: 1", "Final answer: 2"], max_n=2)
    ctx = make_context(backend=backend)

    completions = await ctx.generate("single/answer", n=5, max_tokens=64)

    assert len(completions) == 5
    assert [r["n"] for r in backend.requests] == [5, 3, 1]
    assert len(ctx.trace.events) == 3 and ctx.meter.used.calls == 3


async def test_budget_running_out_mid_top_up_keeps_the_samples_paid_for() -> None:
    backend = ScriptedBackend("Final answer: 1", max_n=1)
    ctx = make_context(backend=backend, budget=Budget(calls=2))

    completions = await ctx.generate("single/answer", n=4, max_tokens=64)

    assert len(completions) == 2
    assert ctx.meter.used.calls == 2
    assert ctx.meter.used.total_tokens == sum(c.usage.total_tokens for c in completions)


async def test_min_n_turns_a_short_top_up_into_budget_exhausted() -> None:
    backend = ScriptedBackend("Final answer: 1", max_n=1)
    ctx = make_context(backend=backend, budget=Budget(calls=2))

    with pytest.raises(BudgetExhausted, match="call limit"):
        await ctx.generate("single/answer", n=4, min_n=3, max_tokens=64)
    assert ctx.meter.used.calls == 2  # what was spent stays spent


async def test_time_limit_ends_a_slow_call_as_budget_exhausted() -> None:
    ctx = make_context(backend=ScriptedBackend(latency_s=5.0), budget=Budget(seconds=0.2))

    with pytest.raises(BudgetExhausted, match="time limit"):
        await ctx.generate("single/answer", max_tokens=64)
    [event] = ctx.trace.events
    assert event.error is not None and "time limit" in event.error
    assert ctx.meter.exhausted


async def test_samples_get_distinct_seeds_across_calls() -> None:
    with FakeOpenAIServer(native_n=False) as server:
        async with OpenAIBackend(server.base_url, native_n=False) as backend:
            ctx = make_context(backend=backend, seed=100)
            await ctx.generate("single/answer", n=2, max_tokens=64, temperature=0.7)
            await ctx.generate("single/answer", n=1, max_tokens=64, temperature=0.7)
    assert sorted(body["seed"] for body in server.received) == [100, 101, 102]


async def test_verification_is_traced() -> None:
    verifier = as_verifier(lambda problem, cand: cand.answer == "5", name="is-five")
    ctx = make_context("What is 2 + 3?", backend=ScriptedBackend("Final answer: 5"),
                       verifier=verifier)
    [completion] = await ctx.generate("single/answer", max_tokens=64)
    candidate = ctx.candidate(completion.text)

    verdict = await ctx.verify(candidate)

    assert verdict is not None and verdict.passed and candidate.verdict == verdict
    event = ctx.trace.events[-1]
    assert event.kind == "verify" and event.step == "is-five"
    assert event.verdict == verdict and event.data == {"answer": "5"}


async def test_trace_round_trips_through_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "traces" / "run.jsonl"
    with JsonlTraceWriter(path) as sink:
        ctx = make_context("What is 2 + 3? ünïcode ✓", backend=ScriptedBackend("Final answer: 5"),
                           sink=sink)
        await ctx.generate("single/answer", n=2, max_tokens=64)
        ctx.note("vote", winner="5", share=1.0)

    events = read_trace_jsonl(path)
    assert events == ctx.trace.events
    assert [e.kind for e in events] == ["generate", "note"]


async def test_solve_inside_an_event_loop_points_to_asolve():
    import ponder
    from ponder.core.errors import ConfigError

    with pytest.raises(ConfigError, match=r"await ponder\.asolve"):
        ponder.solve("2+2?", backend=ponder.ScriptedBackend("4"))
