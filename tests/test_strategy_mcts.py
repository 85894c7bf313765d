"""`tree_search` with `algorithm="mcts"`: UCT selection, expansion by one `n=k` request, the
value sources, backpropagation, the budget, the stop conditions, and the tree in the trace as
`ponder show` draws it."""

from __future__ import annotations

import math

import pytest

import ponder
from ponder import Budget, ScriptedBackend
from ponder.cli.tree_view import tree_lines
from ponder.core.errors import ConfigError
from ponder.strategies import REGISTRY
from ponder.strategies.mcts import select, uct
from ponder.strategies.steps import MAX_DEPTH, MAX_ITERATIONS, Node
from ponder.testing import by_step
from tests.conftest import PartialChecker

PROBLEM = "A box holds 6 eggs. How many eggs are in 4 boxes?"


def node(node_id: str, visits: int, q: float, parent: Node | None = None) -> Node:
    """A node already visited `visits` times with mean value `q`, hung under `parent`."""
    made = Node(id=node_id, steps=[node_id], parent=parent, visits=visits, value_sum=q * visits)
    if parent is not None:
        parent.children = [*(parent.children or []), made]
    return made


def test_uct_is_the_mean_value_plus_the_exploration_bonus():
    child = node("a", visits=5, q=0.8)
    assert uct(child, 10, 1.0) == pytest.approx(0.8 + math.sqrt(math.log(10) / 5))
    assert uct(child, 10, 0.0) == pytest.approx(0.8)
    assert uct(Node(id="new"), 10, 1.0) == math.inf  # every child is tried once first


def test_selection_exploits_with_little_exploration_and_explores_with_much():
    root = node("root", visits=10, q=0.5)
    node("good", visits=7, q=0.8, parent=root)
    node("poor", visits=3, q=0.3, parent=root)
    assert [n.id for n in select(root, 0.1)] == ["root", "good"]
    # 0.3 + 2*sqrt(ln 10 / 3) = 2.05 beats 0.8 + 2*sqrt(ln 10 / 7) = 1.95
    assert [n.id for n in select(root, 2.0)] == ["root", "poor"]


def test_selection_descends_to_an_unvisited_child_or_an_unexpanded_node():
    root = node("root", visits=4, q=0.5)
    good = node("good", visits=3, q=0.9, parent=root)
    node("poor", visits=1, q=0.1, parent=root)
    assert [n.id for n in select(root, 0.5)] == ["root", "good"]  # a leaf: expand it next
    node("good.0", visits=1, q=0.9, parent=good)
    node("good.1", visits=0, q=0.0, parent=good)
    assert [n.id for n in select(root, 0.5)] == ["root", "good", "good.1"]  # value it next


@pytest.mark.parametrize(("values", "expanded", "dropped"), [
    (["Score: 3", "Score: 8", "Score: 9"], "6 * 4 = 24", "6 + 4 = 10"),
    (["Score: 8", "Score: 3", "Score: 9"], "6 + 4 = 10", "6 * 4 = 24"),
])
async def test_uct_expands_the_child_with_the_better_scripted_value(
        values: list[str], expanded: str, dropped: str):
    backend = ScriptedBackend(by_step(
        step=["Step 1: 6 + 4 = 10", "Step 1: 6 * 4 = 24", "So 24. Final answer: 24",
              "Final answer: 25"],
        value=values))
    result = await ponder.asolve(PROBLEM, strategy="tree_search", algorithm="mcts",
                                 backend=backend, branching=2, iterations=3, exploration=1.0)
    first, second = backend.requests_for("step")
    assert first["n"] == second["n"] == 2  # one n=k request per expansion
    assert expanded in second["messages"][-1].content
    assert dropped not in second["messages"][-1].content
    assert len(backend.requests_for("value")) == 3  # one new node valued per round
    visits = {n["id"]: n["visits"] for n in result.info["tree"]}
    assert visits["root"] == 3 and sorted([visits["0"], visits["1"]]) == [1, 2]
    assert result.stop_reason == "max_iters" and result.info["iterations"] == 3
    assert result.answer == "24"  # the finished node with the most visits


def test_the_value_is_backed_up_along_the_path():
    backend = ScriptedBackend(by_step(step="Step 1: 6 * 4 = 24", value=["Score: 6", "Score: 10"],
                                      rollout="Final answer: 24"))
    result = ponder.solve(PROBLEM, strategy="tree_search", algorithm="mcts", backend=backend,
                          branching=1, iterations=2)
    tree = {n["id"]: n for n in result.info["tree"]}
    assert (tree["root"]["visits"], tree["root"]["value"]) == (2, 0.8)
    assert (tree["0"]["visits"], tree["0"]["value"]) == (2, 0.8)
    assert (tree["0.0"]["visits"], tree["0.0"]["value"]) == (1, 1.0)


async def test_the_tree_is_in_the_trace_and_ponder_show_draws_it():
    backend = ScriptedBackend(by_step(
        step=["Step 1: 6 + 4 = 10", "Step 1: 6 * 4 = 24\x1b]0;owned\x07", "Final answer: 24"],
        value=["Score: 2", "Score: 9", "Score: 10"]))
    result = await ponder.asolve(PROBLEM, strategy="tree_search", algorithm="mcts",
                                 backend=backend, branching=2, iterations=3)
    [note] = [e for e in result.trace if e.kind == "note" and e.step == "mcts_tree"]
    nodes = note.data["nodes"]
    assert [(n["id"], n["parent"]) for n in nodes] == [
        ("root", None), ("0", "root"), ("1", "root"), ("1.0", "1"), ("1.1", "1")]
    assert nodes[3]["step"] == "Final answer: 24" and nodes[3]["final"]
    assert tree_lines(nodes) == [
        "root  visits=3 value=0.70",
        '├─ 0  visits=1 value=0.20  "Step 1: 6 + 4 = 10"',
        '└─ 1  visits=2 value=0.95  "Step 1: 6 * 4 = 24]0;owned"',  # no escape reaches a tty
        '   ├─ 1.0  visits=1 value=1.00 final  "Final answer: 24"',
        '   └─ 1.1  visits=0 value=–  "Step 1: 6 + 4 = 10"',
    ]
    assert result.info["tree"] == [{k: v for k, v in n.items() if k != "step"} for n in nodes]


async def test_a_verified_answer_ends_the_search_at_once():
    backend = ScriptedBackend(by_step(step=["Step 1: 6 * 4 = 24", "Final answer: 24"],
                                      value="Score: 7"))
    result = await ponder.asolve(PROBLEM, strategy="tree_search", algorithm="mcts",
                                 backend=backend, branching=1, iterations=50,
                                 verifier=lambda p, c: c.answer == "24")
    assert (result.answer, result.stop_reason) == ("24", "verified")
    assert result.info["chosen"] == "0.0"
    assert len(backend.requests) == 3  # expand, value, expand: the finished step is verified


async def test_a_tree_with_nothing_left_to_grow_is_done():
    backend = ScriptedBackend(by_step(step=["6 * 4 = 24. Final answer: 24", "Final answer: 20"],
                                      value=["Score: 9", "Score: 1"]))
    result = await ponder.asolve(PROBLEM, strategy="tree_search", algorithm="mcts",
                                 backend=backend, branching=2, max_depth=1, iterations=10)
    assert (result.answer, result.stop_reason) == ("24", "done")
    assert result.info["iterations"] == 2
    [expansion] = backend.requests_for("step")
    assert "Finish the solution" in expansion["messages"][-1].content  # max_depth is one step


async def test_no_first_step_ends_the_search_with_an_empty_answer():
    backend = ScriptedBackend(by_step(step="   "))
    result = await ponder.asolve(PROBLEM, strategy="tree_search", algorithm="mcts",
                                 backend=backend, iterations=5)
    assert (result.answer, result.stop_reason, result.info["chosen"]) == ("", "done", "root")
    assert len(backend.requests) == 1


async def test_a_rollout_finishes_the_solution_and_the_model_rates_it():
    backend = ScriptedBackend(by_step(step="Step 1: 6 * 4", rollout="= 24. Final answer: 24",
                                      value="Score: 8"))
    result = await ponder.asolve(PROBLEM, strategy="tree_search", algorithm="mcts",
                                 backend=backend, branching=1, iterations=1,
                                 value_source="rollout", rollout_max_tokens=50)
    [rollout] = backend.requests_for("rollout")
    assert (rollout["max_tokens"], rollout["temperature"], rollout["stop"]) == (50, 0.0, [])
    assert "Step 1: 6 * 4" in rollout["messages"][-1].content
    [rating] = backend.requests_for("value")
    assert "= 24. Final answer: 24" in rating["messages"][-1].content
    assert result.info["tree"][1]["value"] == 0.8
    assert (result.answer, result.info["chosen"]) == ("24", "rollout from 0")


async def test_with_a_verifier_the_rollouts_verdict_is_the_value_and_a_pass_ends_it():
    backend = ScriptedBackend(by_step(step=["Step 1: 6 + 4", "Step 1: 6 * 4"],
                                      rollout=["= 10. Final answer: 10", "= 24. Final answer: 24"]))
    result = await ponder.asolve(PROBLEM, strategy="tree_search", algorithm="mcts",
                                 backend=backend, branching=2, iterations=10,
                                 value_source="rollout", verifier=lambda p, c: c.answer == "24")
    assert backend.requests_for("value") == []
    assert (result.answer, result.stop_reason) == ("24", "verified")
    assert [n["value"] for n in result.info["tree"]] == [0.5, 0.0, 1.0]


async def test_a_search_stopped_before_any_solution_is_whole_finishes_its_best_path():
    # Two rounds reach no final step: the most-visited path (through the better-rated "1")
    # is finished by one greedy rollout, whose answer is the result's; a partial solution's
    # last number would be a stray intermediate value.
    backend = ScriptedBackend(by_step(step=["Step 1: 6 + 4 = 10", "Step 1: 6 * 4 = 24",
                                            "Step 2: check 24 / 4 = 6"],
                                      value=["Score: 2", "Score: 9", "Score: 9", "Score: 9"],
                                      rollout="So 4 boxes hold 24 eggs. Final answer: 24"))
    result = await ponder.asolve(PROBLEM, strategy="tree_search", algorithm="mcts",
                                 backend=backend, branching=2, iterations=4)
    [rollout] = backend.requests_for("rollout")
    assert "Step 1: 6 * 4 = 24" in rollout["messages"][-1].content
    assert "6 + 4" not in rollout["messages"][-1].content
    assert rollout["temperature"] == 0.0
    assert (result.answer, result.stop_reason) == ("24", "max_iters")
    assert result.info["chosen"].startswith("rollout from 1")
    assert not any(n["final"] for n in result.info["tree"])


@pytest.mark.parametrize("source", ["auto", "verifier"])
async def test_a_verifiers_partial_score_values_a_node(source: str):
    backend = ScriptedBackend(by_step(
        step=["Step 1: 6 + 4", "Step 1: 6 * 4", "= 24. Final answer: 24"]))
    result = await ponder.asolve(PROBLEM, strategy="tree_search", algorithm="mcts",
                                 backend=backend, verifier=PartialChecker(), branching=2,
                                 iterations=10, value_source=source)
    assert backend.requests_for("value") == []
    assert (result.answer, result.stop_reason) == ("24", "verified")
    assert "6 * 4" in backend.requests_for("step")[1]["messages"][-1].content


async def test_value_source_model_asks_the_model_even_with_a_partial_scorer():
    backend = ScriptedBackend(by_step(step="Step 1: 6 * 4", value="Score: 4",
                                      rollout="= 24. Final answer: 24"))
    result = await ponder.asolve(PROBLEM, strategy="tree_search", algorithm="mcts",
                                 backend=backend, verifier=PartialChecker(), branching=1,
                                 iterations=1, value_source="model")
    assert result.info["tree"][1]["value"] == 0.4


async def test_value_source_verifier_without_a_partial_scorer_is_an_error():
    result = await ponder.asolve(PROBLEM, strategy="tree_search", algorithm="mcts",
                                 backend=ScriptedBackend(), value_source="verifier",
                                 verifier=lambda p, c: True)
    assert result.error is not None and "score_partial" in result.error


@pytest.mark.parametrize("budget", [Budget(tokens=2500), Budget(calls=3), Budget(calls=1)])
@pytest.mark.parametrize("source", ["model", "rollout"])
async def test_the_budget_bounds_the_search(budget: Budget, source: str):
    backend = ScriptedBackend(by_step(step="Step: 6 * 4 = 24", rollout="So 24 eggs.",
                                      value="Score: 7"))
    result = await ponder.asolve(PROBLEM, strategy="tree_search", algorithm="mcts",
                                 backend=backend, budget=budget, iterations=MAX_ITERATIONS,
                                 max_depth=MAX_DEPTH, branching=2, value_source=source)
    assert result.stop_reason == "budget" and result.budget_exhausted
    assert result.error is None
    assert budget.tokens is None or result.usage.total_tokens <= budget.tokens
    assert budget.calls is None or result.usage.calls <= budget.calls
    assert result.answer == "24"  # with one call, from the best partial solution


def test_each_algorithm_refuses_the_others_parameters():
    spec = REGISTRY.get("tree_search")
    with pytest.raises(ConfigError, match="iterations only apply to algorithm='mcts'"):
        spec.make_config({"iterations": 5})
    with pytest.raises(ConfigError, match="beam_width only apply to algorithm='beam'"):
        spec.make_config({"algorithm": "mcts", "beam_width": 4})
    mcts = spec.make_config({"algorithm": "mcts", "iterations": 5, "value_source": "rollout"})
    assert spec.make_config(mcts.model_dump()) == mcts  # a results file's params validate again


def test_tree_lines_survive_a_hostile_results_file():
    nodes = [
        {"id": "root", "parent": None, "visits": "many", "value": float("nan")},
        {"id": "a", "parent": "b", "step": "\x1b[2J\u202egnp.exe"},
        {"id": "b", "parent": "a", "visits": True, "value": 10**400},
        {"id": "c", "parent": "c", "final": "yes"},
        "not a node", 7,
    ]
    assert tree_lines(nodes) == [
        "root  visits=– value=–",
        "c  visits=– value=–",
        'a  visits=– value=–  "[2Jgnp.exe"',
        "└─ b  visits=– value=–",
    ]
    assert tree_lines("root") == tree_lines(None) == []
    many = [{"id": str(i), "parent": None} for i in range(10)]
    assert tree_lines(many, max_lines=3)[-1] == "… 7 more nodes"
