"""`auto`: cheap greedy answers first (a program and a prose answer), samples only where they
disagree; stops on a verifier pass, agreement, a settled vote or scattered answers, within
`max_samples` and the budget."""

from __future__ import annotations

import pytest

import ponder
from ponder import Budget, Problem, ScriptedBackend
from ponder.testing import by_step

QUESTION = Problem(id="mul", problem="What is 17 * 23?", answer="391")
NO_GOLD = Problem(id="mul", problem="What is 17 * 23?")


def code(body: str) -> str:
    return f"Here is the program:\n```python\n{body}\n```"


def said(*values: object) -> list[str]:
    return [f"Working it out gives {v}. Final answer: {v}" for v in values]


async def solve(backend: ScriptedBackend, problem: Problem = NO_GOLD,
                **params: object) -> ponder.Result:
    return await ponder.asolve(problem, strategy="auto", backend=backend, **params)


def decisions(result: ponder.Result) -> list[tuple[int, bool]]:
    return [(e.data["tier"], e.data["escalate"]) for e in result.trace
            if e.kind == "note" and e.step == "escalation"]


async def test_stops_at_tier_0_when_the_program_and_the_prose_answer_agree() -> None:
    # No script for the samples: a call for one would fail the test.
    backend = ScriptedBackend(by_step(write=code("print(17 * 23)"), answer=said(391)))
    result = await solve(backend)
    assert (result.answer, result.stop_reason) == ("391", "consensus")
    assert result.info["tier"] == 0 and result.info["escalations"] == []
    [greedy] = result.info["tiers"]
    assert greedy["kind"] == "greedy" and greedy["answers"] == ["391", "391"]
    assert greedy["sources"] == ["program 0", "single"]
    assert greedy["program"] == {"runs": 1, "repairs": 0, "failed": 0}
    assert result.usage.calls == 2
    [write] = backend.requests_for("write")
    assert write["temperature"] == 0.0 and "Here are examples" not in str(write["messages"])
    assert decisions(result) == [(0, False)]


async def test_disagreeing_cheap_answers_escalate_and_agreement_at_tier_1_ends_it() -> None:
    backend = ScriptedBackend(by_step(write=code("print(17 * 23)"), answer=said(401),
                                      generate=said(391, 391, 391)))
    result = await solve(backend)
    assert (result.answer, result.stop_reason) == ("391", "consensus")
    [sampled] = backend.requests_for("generate")
    assert (sampled["n"], sampled["temperature"], sampled["step"]) == (3, 0.7, "tier 1")
    info = result.info
    assert info["tier"] == 1 and info["samples"] == 5 and info["votes"] == {"391": 4, "401": 1}
    assert info["agreement"] == 0.8 and info["vote_answer"] == "391"
    assert [t["kind"] for t in info["tiers"]] == ["greedy", "samples"]
    assert info["tiers"][1] == {"tier": 1, "kind": "samples", "drawn": 3,
                                "answers": ["391", "391", "391"]}
    [why] = info["escalations"]
    assert "disagree" in why and "'391' vs '401'" in why
    assert "4 of 5" in info["stopped"]
    assert decisions(result) == [(0, True), (1, False)]


async def test_a_verifier_pass_ends_it_at_once() -> None:
    backend = ScriptedBackend(by_step(write=code("print(17 * 23)")))
    result = await solve(backend, QUESTION)
    assert (result.answer, result.stop_reason, result.correct) == ("391", "verified", True)
    assert result.usage.calls == 1  # the program passed: no prose answer was asked for
    assert result.info["tier"] == 0


async def test_with_a_verifier_the_cheap_answers_failing_escalates_until_a_pass() -> None:
    backend = ScriptedBackend(by_step(write=code("print(17 * 20)"), answer=said(340),
                                      generate=said(391, 390, 391)))
    result = await solve(backend, QUESTION)
    assert (result.answer, result.stop_reason, result.correct) == ("391", "verified", True)
    assert result.info["tier"] == 1
    verdicts = [e for e in result.trace if e.kind == "verify"]
    assert len(verdicts) == 3  # the program, the prose answer, the first sample: it passed


async def test_scattered_answers_give_up_before_max_samples() -> None:
    backend = ScriptedBackend(by_step(write=code("print(1)"), answer=said(2),
                                      generate=said(3, 4, 5)))
    result = await solve(backend)
    assert result.stop_reason == "scattered"
    assert result.info["tier"] == 1 and result.info["samples"] == 5  # 3 samples of 8
    assert "no two answers agree" in result.info["stopped"]
    assert result.answer == "1"  # the vote's answer: a tie, to the earliest (the program's)


async def test_a_top_answer_with_a_small_share_is_scattered() -> None:
    backend = ScriptedBackend(by_step({"tier 1": said(1, 3, 4), "tier 2": said(5, 6, 7)},
                                      write=code("print(1)"), answer=said(2)))
    result = await solve(backend)
    assert result.stop_reason == "scattered" and result.info["tier"] == 2
    assert result.info["samples"] == 8 and result.answer == "1"  # 2 of 8 votes: 0.25
    assert "scatter_share=0.3" in result.info["stopped"]
    assert decisions(result) == [(0, True), (1, True), (2, False)]


async def test_max_samples_bounds_the_samples() -> None:
    backend = ScriptedBackend(by_step(answer=said(7), generate=said(8, 7)))
    result = await solve(backend, program=False, max_samples=5, batch_size=2)
    assert [r["n"] for r in backend.requests_for("generate")] == [2, 2, 1]
    assert result.stop_reason == "done" and result.info["tier"] == 3
    assert result.info["samples"] == 6  # the prose answer and 5 samples
    assert not backend.requests_for("write")
    assert result.info["escalations"][0] == "one cheap answer, none to agree with"


async def test_it_stops_when_the_remaining_samples_cannot_overturn_the_leader() -> None:
    backend = ScriptedBackend(by_step(answer=said(7), generate=said(7, 7, 8)))
    result = await solve(backend, program=False, max_samples=4, batch_size=3, agreement=0.9)
    assert result.stop_reason == "majority" and result.answer == "7"
    assert result.info["samples"] == 4  # 3 votes to 1 with one sample left


async def test_the_budget_ends_it_with_the_best_so_far() -> None:
    backend = ScriptedBackend(by_step(write=code("print(17 * 23)"), answer=said(401),
                                      generate=said(391)))
    result = await solve(backend, budget=Budget(calls=2))
    assert result.stop_reason == "budget" and result.budget_exhausted
    assert result.usage.calls == 2 and not backend.requests_for("generate")
    assert result.answer == "391"  # the cheap answers' vote: a tie, to the program's
    assert result.info["tier"] == 0 and len(result.info["escalations"]) == 1
    assert "budget" in result.info["stopped"]


@pytest.mark.parametrize("tokens", [1, 60, 200, 400, 700, 1000, 1500, 3000])
async def test_it_never_spends_over_the_budget(tokens: int) -> None:
    backend = ScriptedBackend(by_step(write=code("print(17 * 23)"), answer=said(401),
                                      generate=said(391, 390, 389, 388)))
    result = await solve(backend, budget=Budget(tokens=tokens), max_samples=8)
    assert result.usage.total_tokens <= tokens and result.error is None
    assert result.answer is not None or result.budget_exhausted
