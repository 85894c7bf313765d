"""`tree_search`: children from one `n=k` request cut at the step delimiter, beam pruning by
score, verifier partial scores, the stop conditions, and the budget."""

from __future__ import annotations

from collections.abc import Sequence

import ponder
from ponder import Budget, Message, ScriptedBackend
from ponder.testing import by_step
from tests.conftest import PartialChecker

PROBLEM = "A box holds 6 eggs. How many eggs are in 4 boxes?"


def rate_good_steps(messages: Sequence[Message]) -> str:
    """The value prompt's reply: 9 for a partial solution with no bad step, else 2."""
    return "Score: 2" if "bad" in messages[-1].content else "Score: 9"


async def test_children_come_from_one_n_k_request_cut_at_the_step_delimiter():
    backend = ScriptedBackend(by_step(step="Step 1: 6 * 4 = 24. Final answer: 24\n\nStep 2: x",
                                      value="Score: 8"))
    result = await ponder.asolve(PROBLEM, strategy="tree_search", backend=backend,
                                 branching=3, beam_width=2)
    [expansion] = backend.requests_for("step")
    assert expansion["n"] == 3
    assert expansion["stop"] == ["\n\n", "\nStep "]
    assert result.answer == "24"
    assert result.stop_reason == "done"
    # identical siblings are rated once
    assert result.info["beam"][0]["kept"] == [{"id": "0", "score": 0.8, "final": True}]


async def test_the_beam_keeps_the_best_scored_partial_solutions():
    backend = ScriptedBackend(by_step(
        step=["Step 1: bad idea", "Step 1: good start", "Step 1: bad again",
              "Step 2: good, 6 * 4 = 24. Final answer: 24"],
        value=rate_good_steps))
    result = await ponder.asolve(PROBLEM, strategy="tree_search", backend=backend,
                                 branching=3, beam_width=1, max_depth=3)
    depth1 = result.info["beam"][0]
    assert [n["id"] for n in depth1["kept"]] == ["1"]
    assert sorted(n["id"] for n in depth1["dropped"]) == ["0", "2"]
    second = backend.requests_for("step")[1]
    assert "Step 1: good start" in second["messages"][-1].content
    assert "bad" not in second["messages"][-1].content  # pruned branches are not expanded
    assert result.answer == "24"
    pruned = [e for e in result.trace if e.kind == "note" and e.step == "beam"]
    assert pruned[0].data["kept"][0]["id"] == "1"


async def test_max_depth_asks_for_the_final_answer_and_stops():
    backend = ScriptedBackend(by_step(step="Step: think more about 24", value="Score: 5"))
    result = await ponder.asolve(PROBLEM, strategy="tree_search", backend=backend,
                                 branching=1, beam_width=1, max_depth=2)
    assert result.stop_reason == "max_depth"
    expansions = backend.requests_for("step")
    assert len(expansions) == 2
    assert "Finish the solution" in expansions[-1]["messages"][-1].content
    assert "Finish the solution" not in expansions[0]["messages"][-1].content
    assert result.answer == "24"  # the best partial solution's last number


async def test_a_verifier_that_scores_partial_work_replaces_the_value_prompt():
    backend = ScriptedBackend(by_step(
        step=["Step 1: 6 + 4 = 10. Final answer: 10", "Step 1: 6 * 4 = 24. Final answer: 24"]))
    result = await ponder.asolve(PROBLEM, strategy="tree_search", backend=backend,
                                 verifier=PartialChecker(), branching=2, beam_width=1)
    assert backend.requests_for("value") == []
    assert (result.answer, result.stop_reason) == ("24", "verified")


async def test_unreadable_ratings_score_neutral():
    backend = ScriptedBackend(by_step(step="Step 1: 24. Final answer: 24", value="Hmm."))
    result = await ponder.asolve(PROBLEM, strategy="tree_search", backend=backend, branching=1)
    assert result.info["beam"][0]["kept"][0]["score"] == 0.5


async def test_out_of_budget_mid_search_returns_the_best_so_far():
    script = by_step(step="Step: 6 * 4 = 24", value="Score: 7")
    one_depth = await ponder.asolve(PROBLEM, strategy="tree_search", max_depth=1, branching=2,
                                    backend=ScriptedBackend(script))
    budget = Budget(tokens=one_depth.usage.total_tokens + 100)
    result = await ponder.asolve(PROBLEM, strategy="tree_search", max_depth=5, branching=2,
                                 backend=ScriptedBackend(script), budget=budget)
    assert result.stop_reason == "budget" and result.budget_exhausted
    assert result.answer == "24"
    assert result.usage.total_tokens <= budget.tokens


async def test_a_boxed_answer_also_finishes_a_branch_and_ratings_stop_at_a_newline():
    backend = ScriptedBackend(by_step(step="6 * 4 = \\boxed{24}", value="Score: 8\nbecause"))
    result = await ponder.asolve(PROBLEM, strategy="tree_search", backend=backend, branching=1)
    assert (result.answer, result.stop_reason) == ("24", "done")
    [rating] = backend.requests_for("value")
    assert rating["stop"] == ["\n"]
    assert result.info["beam"][0]["kept"][0]["score"] == 0.8


async def test_among_equal_scores_a_finished_solution_is_kept_first():
    backend = ScriptedBackend(by_step(step=["Step 1: let me think", "6 * 4 = 24. Final answer: 24"],
                                      value="Score: 5"))
    result = await ponder.asolve(PROBLEM, strategy="tree_search", backend=backend,
                                 branching=2, beam_width=1)
    assert result.info["beam"][0]["kept"] == [{"id": "1", "score": 0.5, "final": True}]
    assert (result.answer, result.stop_reason) == ("24", "done")


async def test_a_pruned_finished_solution_beats_an_unfinished_one_at_the_end():
    backend = ScriptedBackend(by_step(
        step=["Step 1: good idea", "A bad guess. Final answer: 20",
              "Step 2: good progress", "Step 2: good, more"],
        value=rate_good_steps))
    result = await ponder.asolve(PROBLEM, strategy="tree_search", backend=backend,
                                 branching=2, beam_width=1, max_depth=2)
    assert result.stop_reason == "max_depth"
    assert result.info["beam"][0]["dropped"] == [{"id": "1", "score": 0.2, "final": True}]
    assert result.answer == "20"
