"""`ice`: consensus and no-consensus paths, what an agent sees of the others, per-agent
backends, personas and temperatures, concurrency within a round, and the budget."""

from __future__ import annotations

import pytest

import ponder
from ponder import Budget, ConfigError, ScriptedBackend
from ponder.strategies import Agent
from ponder.testing import by_step

PROBLEM = "Ann reads 12 pages a day. How many pages does she read in 5 days?"


def says(value: str) -> str:
    return f"12 * 5 = {value}. Final answer: {value}"


async def test_agreement_in_round_zero_ends_the_run():
    backend = ScriptedBackend(by_step(answer=says("60")))
    result = await ponder.asolve(PROBLEM, strategy="ice", backend=backend, agents=3)
    assert (result.answer, result.stop_reason) == ("60", "consensus")
    assert len(backend.requests) == 3
    assert result.info["rounds"] == [
        {"round": 0, "answers": ["60", "60", "60"], "top": "60", "agreement": 1.0}]


async def test_agents_revise_after_reading_each_other_until_they_agree():
    backend = ScriptedBackend(by_step(answer=[says("60"), says("17"), says("60")],
                                      revise=says("60")))
    result = await ponder.asolve(PROBLEM, strategy="ice", backend=backend, agents=3,
                                 max_rounds=2)
    assert (result.answer, result.stop_reason) == ("60", "consensus")
    assert [r["agreement"] for r in result.info["rounds"]] == [pytest.approx(2 / 3), 1.0]
    revisions = backend.requests_for("revise")
    assert len(revisions) == 3
    seen_by_second = revisions[1]["messages"][-1].content
    assert "Your previous solution (answer: 17)" in seen_by_second
    assert "Solution from agent 1 (answer: 60)" in seen_by_second
    assert "Solution from agent 3 (answer: 60)" in seen_by_second
    assert "Solution from agent 2" not in seen_by_second


async def test_without_consensus_it_stops_at_max_rounds_with_the_majority():
    backend = ScriptedBackend(by_step(answer=[says("60"), says("17"), says("60")],
                                      revise=[says("60"), says("17"), says("60")]))
    result = await ponder.asolve(PROBLEM, strategy="ice", backend=backend, agents=3,
                                 max_rounds=2)
    assert (result.answer, result.stop_reason) == ("60", "max_rounds")
    assert [r["round"] for r in result.info["rounds"]] == [0, 1, 2]
    assert len(backend.requests) == 9


async def test_agreement_as_a_count_of_agents():
    backend = ScriptedBackend(by_step(answer=[says("60"), says("17"), says("60")]))
    result = await ponder.asolve(PROBLEM, strategy="ice", backend=backend, agents=3,
                                 agreement=2)
    assert (result.answer, result.stop_reason) == ("60", "consensus")
    assert len(backend.requests) == 3


async def test_agreement_as_a_fraction_rounds_up():
    backend = ScriptedBackend(by_step(answer=[says("60"), says("17"), says("60"), says("5")],
                                      revise=says("60")))
    result = await ponder.asolve(PROBLEM, strategy="ice", backend=backend, agents=4,
                                 agreement=0.75)
    assert len(result.info["rounds"]) == 2  # 2 of 4 is short of 3; after revising, 4 agree


async def test_each_agent_may_have_its_own_backend_persona_and_temperature():
    shared = ScriptedBackend(by_step(answer=says("60")))
    own = ScriptedBackend(by_step(answer=says("60")))
    agents = [Agent(name="skeptic", persona="You doubt every step.", backend=own),
              Agent(temperature=0.1)]
    result = await ponder.asolve(PROBLEM, strategy="ice", backend=shared, agents=agents)
    assert result.stop_reason == "consensus"
    [mine] = own.requests
    assert mine["messages"][0].content.startswith("You doubt every step.")
    [theirs] = shared.requests
    assert theirs["temperature"] == 0.1
    assert "backend" not in result.params["agents"][0]  # objects stay out of the record


async def test_agents_in_a_round_run_concurrently():
    backend = ScriptedBackend(by_step(answer=says("60")), latency_s=0.01)
    await ponder.asolve(PROBLEM, strategy="ice", backend=backend, agents=4)
    assert backend.peak_in_flight == 4


async def test_a_verifier_pass_ends_the_discussion():
    backend = ScriptedBackend(by_step(answer=[says("17"), says("60"), says("5")]))
    result = await ponder.asolve(PROBLEM, strategy="ice", backend=backend, agents=3,
                                 verifier=lambda p, c: c.answer == "60")
    assert (result.answer, result.stop_reason) == ("60", "verified")
    assert len(result.info["rounds"]) == 1


async def test_out_of_budget_in_a_revision_round_keeps_the_last_answers():
    script = by_step(answer=[says("60"), says("17"), says("60")], revise=says("17"))
    first = await ponder.asolve(PROBLEM, strategy="ice", backend=ScriptedBackend(script),
                                agents=3, max_rounds=0)
    budget = Budget(tokens=first.usage.total_tokens + 50)  # round 0, and no full revision
    backend = ScriptedBackend(by_step(answer=[says("60"), says("17"), says("60")],
                                      revise=says("17")))
    result = await ponder.asolve(PROBLEM, strategy="ice", backend=backend, agents=3,
                                 budget=budget)
    assert result.stop_reason == "budget" and result.budget_exhausted
    assert result.answer == "60"
    assert result.usage.total_tokens <= budget.tokens


def test_a_count_larger_than_the_agents_is_refused():
    with pytest.raises(ConfigError, match="agreement"):
        ponder.solve(PROBLEM, strategy="ice", backend=ScriptedBackend(), agents=3, agreement=4)
