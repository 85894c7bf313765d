"""Choosing among programs by what they do (ponder.code.behaviour), and the coding paths of
best_of_n, self_refine and auto on scripted models, with the real sandbox."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

import ponder
from ponder import ScriptedBackend
from ponder.backends.scripted import by_step
from ponder.bench.run import without_gold
from ponder.code.behaviour import behaviour_of, choose, rank
from ponder.code.examples import Example
from ponder.code.probe import CallResult
from ponder.core.types import Message, Problem
from ponder.strategies.context import Context

PROMPT = '''def double(x: int) -> int:
    """Return twice x.
    >>> double(2)
    4
    >>> double(5)
    10
    """
'''
# Private: values that appear nowhere in the prompt, so a prompt holding one leaked it.
PRIVATE = "def check(candidate):\n    assert candidate(31337) == 62674\n"
PROBLEM = Problem(id="double", problem=PROMPT, entry_point="double", test=PRIVATE)
BLIND = without_gold(PROBLEM)  # as `ponder bench` solves it

RIGHT = "```python\ndef double(x: int) -> int:\n    return 2 * x\n```"
WRONG = "```python\ndef double(x: int) -> int:\n    return x + 2\n```"  # right at 2 only
SQUARE = "```python\ndef double(x: int) -> int:\n    return x * x\n```"  # right at 2 only
TESTS_RIGHT = "```python\nassert double(0) == 0\nassert double(-3) == -6\n```"
# The model's own tests, wrong: they agree with `WRONG`, never with the right program.
TESTS_WRONG = "```python\nassert double(0) == 2\nassert double(7) == 9\nassert double(1) == 3\n```"


def stated(call: str, expected: str) -> Example:
    return Example(call=call, expected=expected, origin="prompt")


def written(call: str, expected: str) -> Example:
    return Example(call=call, expected=expected, origin="model")


def value(v: object) -> CallResult:
    return CallResult(value=v)


# -- clustering on scripted candidates --------------------------------------------------------


def test_candidates_that_behave_alike_share_a_cluster_and_the_largest_passing_one_wins():
    examples = [stated("f(1)", "2"), written("f(3)", "6")]
    runs = [[value(2), value(6)], [value(2), value(5)], [value(2), value(6)],
            [CallResult(error="TypeError: boom"), CallResult(timed_out=True)]]
    behaviours = [behaviour_of(r, examples) for r in runs]
    clusters = rank(behaviours)
    assert [c.members for c in clusters] == [[0, 2], [1], [3]]
    assert clusters[0].public == [True] and clusters[0].model == [True]
    assert clusters[2].errors == 2
    assert choose(behaviours) == 0


def test_a_wrong_model_test_cannot_flip_a_candidate_that_passes_the_prompts_examples():
    examples = [stated("f(2)", "4"), stated("f(5)", "10"),
                written("f(0)", "2"), written("f(7)", "9")]
    right = behaviour_of([value(4), value(10), value(0), value(14)], examples)
    # Three alike, passing every model test (wrong ones) and one of the prompt's examples.
    wrong = behaviour_of([value(4), value(7), value(2), value(9)], examples)
    assert choose([wrong, wrong, wrong, right]) == 3


def test_nothing_ran_means_no_choice_and_a_candidate_without_code_joins_no_cluster():
    assert choose([None, None]) is None
    only = behaviour_of([value(1)], [stated("f(0)", "1")])
    assert choose([None, only]) == 1


def test_results_and_examples_must_pair_up():
    with pytest.raises(ValueError):
        behaviour_of([value(1)], [])


# -- the strategies on coding problems --------------------------------------------------------


def seen_text(backend: ScriptedBackend) -> str:
    out = []
    for request in backend.requests:
        messages = request["messages"]
        assert isinstance(messages, Sequence)
        out += [m.content for m in messages if isinstance(m, Message)]
    return "\n".join(out)


def test_best_of_n_picks_by_behaviour_over_a_wrong_majority():
    backend = ScriptedBackend(by_step({"best_of_n/generate": [WRONG, WRONG, RIGHT],
                                       "code/tests": TESTS_WRONG}))
    result = ponder.solve(BLIND, strategy="best_of_n", backend=backend, n=3)
    assert "2 * x" in (result.answer or "")
    info = result.info["behaviour"]
    assert info["examples"] == {"stated": 2, "written": 3}
    assert 0 < info["probe_s"] < result.elapsed_s  # the wall time candidates ran
    assert [c["size"] for c in info["clusters"]] == [1, 2]
    pool = result.info["pool"]
    assert [p["behaviour"] is not None for p in pool] == [True, True, True]
    clusters = [e for e in result.trace if e.step == "clusters"]
    assert len(clusters) == 1 and clusters[0].data["tests"][0]["call"] == "double(2)"


def test_the_plain_vote_on_code_groups_programs_by_syntax():
    spaced = WRONG.replace("x + 2", "x+2  # the same program")
    backend = ScriptedBackend(by_step({"best_of_n/generate": [WRONG, spaced, RIGHT],
                                       "code/tests": TESTS_RIGHT}))
    result = ponder.solve(BLIND, strategy="best_of_n", backend=backend, n=3, selector="vote")
    assert "x + 2" in (result.answer or "")
    assert max(result.info["votes"].values()) == 2


def test_self_refine_debugs_on_the_failing_example_and_stops_when_the_examples_pass():
    backend = ScriptedBackend(by_step({"self_refine/generate": SQUARE, "code/tests": TESTS_RIGHT,
                                       "self_refine/debug": RIGHT}))
    result = ponder.solve(BLIND, strategy="self_refine", backend=backend, max_iters=3)
    assert "2 * x" in (result.answer or "")
    assert result.stop_reason == "examples_pass"
    [debug] = backend.requests_for("self_refine/debug")
    shown = debug["messages"][-1].content  # type: ignore[index]
    assert "double(5)" in shown and "expected 10" in shown and "returned 25" in shown


def test_a_rewrite_that_passes_fewer_examples_never_replaces_its_parent():
    backend = ScriptedBackend(by_step({"self_refine/generate": SQUARE, "code/tests": TESTS_RIGHT,
                                       "self_refine/debug": "```python\ndef double(x):\n"
                                                            "    return None\n```"}))
    result = ponder.solve(BLIND, strategy="self_refine", backend=backend, max_iters=3)
    assert "x * x" in (result.answer or "")
    assert result.stop_reason == "no_improvement"
    # Greedy, the same prompt would bring the same rewrite: one miss ends it; sampled, two.
    assert len(backend.requests_for("self_refine/debug")) == 1
    ponder.solve(BLIND, strategy="self_refine", backend=backend, max_iters=3, temperature=0.7)
    assert len(backend.requests_for("self_refine/debug")) == 3


def test_auto_stops_at_the_greedy_solution_when_it_passes_the_examples():
    backend = ScriptedBackend(by_step({"single/answer": RIGHT}))
    result = ponder.solve(BLIND, strategy="auto", backend=backend)
    assert result.stop_reason == "examples_pass"
    assert result.usage.calls == 1  # the greedy solution: the model writes no tests
    assert "2 * x" in (result.answer or "")


def test_auto_samples_and_judges_between_two_clusters_that_pass_the_same_examples():
    # WRONG passes double(2) only; a program right on the prompt's examples but not on 0 is
    # told apart from RIGHT on the model's input double(0), and the model judges.
    odd = "```python\ndef double(x):\n    return 2 * x if x else 1\n```"
    backend = ScriptedBackend(by_step({
        "single/answer": WRONG, "code/tests": TESTS_RIGHT,
        "best_of_n/generate": [odd, odd, RIGHT], "code/judge": "It must be 0.\nCorrect: B"}))
    result = ponder.solve(BLIND, strategy="auto", backend=backend, batch_size=3,
                          max_samples=3)
    assert result.info["distinguished"]["call"] == "double(0)"
    # `odd` is the bigger cluster, but fails the model's test double(0) == 0; either way the
    # judge is asked, and its choice answers.
    assert "2 * x\n" in (result.answer or "") or result.answer.endswith("2 * x")


@pytest.mark.parametrize("strategy", ["single", "best_of_n", "self_refine", "auto", "ice",
                                      "tree_search"])
async def test_no_private_test_or_unstated_value_reaches_the_model(strategy: str):
    # Gold on the problem itself, as a bench holds it, and no verifier, as a bench solves:
    # neither the private test (`test`), nor plain private tests, nor an answer may reach a
    # message the model is sent.
    problem = PROBLEM.model_copy(update={
        "tests": ["assert double(4242) == 8484"], "answer": "SECRET-ANSWER-99"})
    backend = ScriptedBackend(by_step({
        "single/answer": WRONG, "best_of_n/generate": [WRONG, SQUARE, RIGHT],
        "self_refine/generate": SQUARE, "self_refine/debug": WRONG,
        "ice/answer": SQUARE, "ice/revise": WRONG,
        "tree_search/step": "Handle zero first.", "tree_search/value": "Score: 5",
        "tree_search/rollout": WRONG,
        "code/tests": TESTS_WRONG, "code/judge": "Correct: A"}))
    ctx = Context(problem, backend=backend, verifier=None)
    await ctx.run(strategy)
    text = seen_text(backend)
    assert "double(2)" in text  # the prompt, with its examples, was sent
    for private in ("31337", "62674", "4242", "8484", "SECRET-ANSWER", "check("):
        assert private not in text, private
    # The debugging feedback quotes the prompt's examples, or the model's own tests.
    for request in backend.requests_for("self_refine/debug"):
        feedback = request["messages"][-1].content  # type: ignore[index]
        for line in feedback.splitlines():
            if line.startswith("- "):
                assert line[2:].split(" (")[0] in PROMPT + TESTS_WRONG, line


def test_ponder_show_draws_the_clusters_and_the_tests_each_passed():
    from rich.console import Console

    from ponder.cli.cluster_view import cluster_lines
    from ponder.cli.render import shortener, timeline_table

    backend = ScriptedBackend(by_step({"best_of_n/generate": [WRONG, WRONG, RIGHT],
                                       "code/tests": TESTS_WRONG}))
    result = ponder.solve(BLIND, strategy="best_of_n", backend=backend, n=3)
    [note] = [e for e in result.trace if e.step == "clusters"]
    lines = cluster_lines(note.data)
    assert lines[0] == "test 1 [prompt]: double(2) == 4"
    assert "cluster 1: 1 candidate (#3) · stated 2/2 · model 0/3" in lines[5]
    assert lines[5].endswith("✓✓ | ✗✗✗")
    assert lines[6].startswith("cluster 2: 2 candidates (#1, #2) · stated 1/2 · model 3/3")
    console = Console(width=200, record=True)
    console.print(timeline_table(result.trace, shortener(400)))
    drawn = console.export_text()
    assert "cluster 1: 1 candidate" in drawn and "ran 5 calls" in drawn


def test_a_reply_with_no_code_ends_debugging_without_an_error():
    backend = ScriptedBackend(by_step({"self_refine/generate": "```python\n```",
                                       "code/tests": TESTS_RIGHT}))
    result = ponder.solve(BLIND, strategy="self_refine", backend=backend)
    assert result.error is None and result.stop_reason == "no_improvement"


def test_programs_that_all_fail_rank_below_one_that_returns_a_value():
    examples = [stated("f(1)", "2"), written("f(3)", "6")]
    broken = behaviour_of([CallResult(error="SyntaxError: x")] * 2, examples)
    running = behaviour_of([value(3), value(5)], examples)
    assert choose([broken, broken, broken, running]) == 3


def test_only_literal_calls_of_the_entry_point_are_kept_from_the_models_tests():
    from ponder.strategies.code_checks import literal_call

    assert literal_call("double(2, y=[1, (2, 3)])", "double")
    assert not literal_call("double(sum(range(10**10)))", "double")
    assert not literal_call("double(__import__('os').getpid())", "double")
    assert not literal_call("other(2)", "double")
    assert not literal_call("double(**{'x': 1})", "double")


def test_a_tests_only_problem_stays_a_coding_problem_without_its_gold():
    problem = Problem(problem="Write add(a, b).", tests=["assert add(1, 2) == 3"])
    assert without_gold(problem).is_code and without_gold(problem).tests == None  # noqa: E711
    assert not without_gold(Problem(problem="2+2?", answer="4")).is_code


def test_the_models_tests_are_kept_when_it_writes_its_function_above_them():
    from ponder.strategies.code_checks import only_asserts

    reply = ("def double(x):\n    return 2 * x\n\nassert double(0) == 0\n"
             "assert double(-3) == -6\nprint('ok')\n")
    assert only_asserts(reply) == "assert double(0) == 0\nassert double(-3) == -6"
    cut = "def double(x):\n    return 2 * x\nassert double(1) == 2\nassert double(4) =="
    assert only_asserts(cut) == "assert double(1) == 2"
    written = "```python\n" + reply + "```"
    backend = ScriptedBackend(by_step({"best_of_n/generate": [WRONG, RIGHT],
                                       "code/tests": written}))
    result = ponder.solve(BLIND, strategy="best_of_n", backend=backend, n=2)
    assert result.info["behaviour"]["examples"] == {"stated": 2, "written": 2}
