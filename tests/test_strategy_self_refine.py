"""`self_refine`: each stop condition, verifier feedback in the prompts, the best version kept,
and the budget running out mid-loop."""

from __future__ import annotations

import ponder
from ponder import Budget, ScriptedBackend, Verdict
from ponder.testing import by_step

PROBLEM = "Tom has 3 apples and buys 5 more. How many apples does Tom have now?"


def answer_is(gold: str, feedback: str = "") -> ponder.Verifier:
    async def check(problem: ponder.Problem, candidate: ponder.Candidate) -> Verdict:
        ok = candidate.answer == gold
        return Verdict(passed=ok, score=1.0 if ok else 0.0, feedback="" if ok else feedback)

    return ponder.get_verifier(check)


async def test_stops_when_the_verifier_passes_the_draft():
    backend = ScriptedBackend(by_step(generate="3 + 5 = 8. Final answer: 8"))
    result = await ponder.asolve(PROBLEM, strategy="self_refine", backend=backend,
                                 verifier=answer_is("8"))
    assert (result.answer, result.stop_reason) == ("8", "verified")
    assert len(backend.requests) == 1
    assert result.info["iterations"] == 0


async def test_verifier_feedback_reaches_the_critique_and_the_rewrite():
    backend = ScriptedBackend(by_step(generate="3 * 5 = 15. Final answer: 15",
                                      feedback="Tom buys more, so add.",
                                      refine="3 + 5 = 8. Final answer: 8"))
    result = await ponder.asolve(PROBLEM, strategy="self_refine", backend=backend,
                                 verifier=answer_is("8", feedback="15 is not the expected answer"))
    assert (result.answer, result.stop_reason) == ("8", "verified")
    [critique] = backend.requests_for("feedback")
    [rewrite] = backend.requests_for("refine")
    assert "15 is not the expected answer" in critique["messages"][-1].content
    assert "15 is not the expected answer" in rewrite["messages"][-1].content
    assert "Tom buys more, so add." in rewrite["messages"][-1].content
    assert [v["answer"] for v in result.info["versions"]] == ["15", "8"]


async def test_stops_when_the_feedback_finds_nothing_to_fix():
    backend = ScriptedBackend(by_step(generate="Final answer: 8", feedback="**No issues.**"))
    result = await ponder.asolve(PROBLEM, strategy="self_refine", backend=backend)
    assert (result.answer, result.stop_reason) == ("8", "no_improvement")
    assert result.info["approved"] == "draft"
    assert len(backend.requests) == 2  # draft and one critique, no rewrite


async def test_a_failing_verifier_overrides_a_critique_that_approves():
    backend = ScriptedBackend(by_step(generate="Final answer: 15", feedback="NO ISSUES",
                                      refine="Final answer: 8"))
    result = await ponder.asolve(PROBLEM, strategy="self_refine", backend=backend,
                                 verifier=answer_is("8"))
    assert (result.answer, result.stop_reason) == ("8", "verified")


async def test_the_stop_marker_is_configurable():
    backend = ScriptedBackend(by_step(generate="Final answer: 8", feedback="LGTM"))
    result = await ponder.asolve(PROBLEM, strategy="self_refine", backend=backend,
                                 stop_marker="LGTM")
    assert result.stop_reason == "no_improvement"


async def test_stops_after_max_iters_rewrites():
    backend = ScriptedBackend(by_step(generate="Final answer: 8", feedback="Check the sum.",
                                      refine="Final answer: 8"))
    result = await ponder.asolve(PROBLEM, strategy="self_refine", backend=backend, max_iters=2)
    assert result.stop_reason == "max_iters"
    assert result.info["iterations"] == 2
    # draft, then (critique, rewrite) twice; the last rewrite is not critiqued
    assert len(backend.requests) == 5


async def test_keeps_the_best_scoring_version_not_the_last():
    scores = {"8": 0.9, "9": 0.4, "10": 0.2}
    backend = ScriptedBackend(by_step(generate="Final answer: 9", feedback="Recount.",
                                      refine=["Final answer: 8", "Final answer: 10"]))
    result = await ponder.asolve(PROBLEM, strategy="self_refine", backend=backend, max_iters=2,
                                 verifier=lambda problem, cand: scores[cand.answer])
    assert result.stop_reason == "max_iters"
    assert [v["answer"] for v in result.info["versions"]] == ["9", "8", "10"]
    assert result.answer == "8"


async def test_without_a_verifier_an_unapproved_change_does_not_replace_the_draft():
    backend = ScriptedBackend(by_step(generate="Final answer: 8", feedback="Are you sure?",
                                      refine="Final answer: 15"))
    result = await ponder.asolve(PROBLEM, strategy="self_refine", backend=backend, max_iters=1)
    assert result.answer == "8"  # 8 and 15 have one vote each; the tie goes to the draft
    assert result.info["unverified_changes"] == 1


async def test_without_a_verifier_the_version_the_feedback_approved_wins():
    backend = ScriptedBackend(by_step(generate="Final answer: 15",
                                      feedback=["It should be a sum.", "NO ISSUES"],
                                      refine="Final answer: 8"))
    result = await ponder.asolve(PROBLEM, strategy="self_refine", backend=backend, max_iters=3)
    assert (result.answer, result.stop_reason) == ("8", "no_improvement")
    assert result.info["approved"] == "refine 1"


async def test_running_out_of_budget_mid_loop_returns_the_best_so_far():
    backend = ScriptedBackend(by_step(generate="Final answer: 8", feedback="word " * 40,
                                      refine="Final answer: 8"))
    # Room for the draft and the critique, not for the rewrite (whose prompt holds both).
    first_two = await ponder.asolve(PROBLEM, strategy="self_refine", backend=ScriptedBackend(
        by_step(generate="Final answer: 8", feedback="word " * 40)), max_iters=0)
    budget = Budget(tokens=first_two.usage.total_tokens + 400)
    result = await ponder.asolve(PROBLEM, strategy="self_refine", backend=backend,
                                 budget=budget, max_iters=3)
    assert result.answer == "8"
    assert result.stop_reason == "budget"
    assert result.budget_exhausted and result.stop_reason == "budget"
    assert result.usage.total_tokens <= budget.tokens


async def test_no_budget_for_even_a_draft_returns_no_answer():
    result = await ponder.asolve(PROBLEM, strategy="self_refine", backend=ScriptedBackend(),
                                 budget=Budget(tokens=20))
    assert result.answer is None
    assert result.stop_reason == "budget"
    assert result.error is None
