"""No strategy ever spends more than its budget, nor fails because the budget ran out: over
random token and call limits, reply lengths, and strategy settings."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ponder
from ponder import Budget, ScriptedBackend
from ponder.core.types import Confidence

SETTINGS = settings(max_examples=60, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])

budgets = st.builds(
    Budget,
    tokens=st.integers(min_value=1, max_value=12_000),
    calls=st.none() | st.integers(min_value=1, max_value=12),
)
# A reply: some words, sometimes a final answer, sometimes a rating or a stop marker.
replies = st.lists(
    st.tuples(st.integers(min_value=0, max_value=120),
              st.sampled_from(["", "Final answer: 7", "Final answer: 8", "Score: 6",
                               "NO ISSUES", "Best: 2"])),
    min_size=1, max_size=6,
).map(lambda items: [" ".join(["word"] * n + [tail]).strip() for n, tail in items])

PARAMS = {
    "single": st.fixed_dictionaries({}),
    "auto": st.fixed_dictionaries({
        "program": st.booleans(), "max_repairs": st.integers(0, 1),
        "batch_size": st.integers(1, 4), "max_samples": st.integers(1, 8),
        "agreement": st.sampled_from([0.5, 0.7, 1.0]), "scatter_after": st.integers(2, 6),
    }),
    "self_refine": st.fixed_dictionaries({"max_iters": st.integers(0, 3)}),
    "best_of_n": st.fixed_dictionaries({
        "n": st.integers(1, 6), "adaptive": st.booleans(),
        "selector": st.sampled_from(["auto", "vote", "judge"]),
        "min_samples": st.integers(1, 4), "batch_size": st.integers(1, 3),
    }),
    "best_of_n:confidence": st.fixed_dictionaries({
        "selector": st.just("confidence"), "n": st.integers(1, 6), "adaptive": st.booleans(),
        "keep": st.sampled_from([0.1, 0.5, 1.0]),
        "confidence_metric": st.sampled_from(["lowest_group", "mean"]),
        "min_samples": st.integers(1, 4), "batch_size": st.integers(1, 3),
        "agreement": st.sampled_from([0.5, 0.7, 1.0]),
    }),
    "ice": st.fixed_dictionaries({"agents": st.integers(1, 4), "max_rounds": st.integers(0, 3),
                                  "agreement": st.sampled_from([0.5, 1.0])}),
    "tree_search": st.fixed_dictionaries({
        "beam_width": st.integers(1, 3), "branching": st.integers(1, 3),
        "max_depth": st.integers(1, 4), "max_tokens": st.integers(8, 200),
    }),
    "tree_search:mcts": st.fixed_dictionaries({
        "algorithm": st.just("mcts"), "iterations": st.integers(1, 12),
        "branching": st.integers(1, 3), "max_depth": st.integers(1, 4),
        "max_tokens": st.integers(8, 200), "exploration": st.sampled_from([0.0, 1.0, 2.0]),
        "value_source": st.sampled_from(["auto", "model", "rollout"]),
        "rollout_max_tokens": st.integers(8, 300),
    }),
}


def cycling(texts: Sequence[str], confidence: str = "none") -> ScriptedBackend:
    """Replies in turn; `confidence` "all" gives each a confidence from its length, "some"
    leaves out every reply of an odd number of words (a server's log-probs half missing)."""
    items = itertools.cycle(texts)

    def sureness(text: str) -> Confidence | None:
        words = len(text.split())
        if confidence == "none" or (confidence == "some" and words % 2):
            return None
        return Confidence(measure="top_k", tokens=max(words, 1), window=32, mean_logprob=-0.1,
                          mean=1.0 + words % 7, lowest_group=1.0 + words % 5)

    return ScriptedBackend(lambda messages: next(items) if texts else "", confidence=sureness)


@pytest.mark.parametrize("case", sorted(PARAMS))
@SETTINGS
@given(data=st.data())
def test_a_strategy_never_overspends(case: str, data: st.DataObject) -> None:
    # "tree_search:mcts" is tree_search in another mode, "best_of_n:confidence" best_of_n
    strategy = case.partition(":")[0]
    budget = data.draw(budgets, label="budget")
    texts = data.draw(replies, label="replies")
    params = data.draw(PARAMS[case], label="params")
    native = data.draw(st.booleans(), label="native_n")
    confidence = data.draw(st.sampled_from(["none", "some", "all"]), label="confidence") \
        if case == "best_of_n:confidence" else "none"
    backend = cycling(texts, confidence)
    backend.native_n = native
    result = ponder.solve("What is 3 + 4?", strategy=strategy, backend=backend, budget=budget,
                          **params)
    assert result.usage.total_tokens <= budget.tokens  # type: ignore[operator]
    assert budget.calls is None or result.usage.calls <= budget.calls
    assert result.error is None
    if result.answer is None:  # nothing at all fitted: the result must say so
        assert result.budget_exhausted
    if case == "best_of_n:confidence" and result.info.get("samples"):
        said = result.info["confidence"]  # weighed, or why not: never silently the plain vote
        assert isinstance(said, dict) or said.startswith("unavailable: ")
        assert confidence != "none" or isinstance(said, str)
        notes = [e for e in result.trace if e.step == "confidence_unavailable"]
        assert len(notes) == isinstance(said, str)



# A coding problem (no gold: as `ponder bench` solves one), whose strategies run candidates
# on its examples in the real sandbox: fewer cases, as each runs programs.
CODE_PROBLEM = ponder.Problem(
    id="inc", entry_point="inc",
    problem='def inc(x: int) -> int:\n    """Add one.\n    >>> inc(1)\n    2\n    """\n')
code_replies = st.lists(
    st.tuples(st.integers(min_value=0, max_value=80),
              st.sampled_from(["", "```python\ndef inc(x):\n    return x + 1\n```",
                               "```python\ndef inc(x):\n    return x\n```",
                               "```python\nassert inc(3) == 4\nassert inc(0) == 2\n```",
                               "```python\ndef inc(x):\n    while True: pass\n```",
                               "Correct: B"])),
    min_size=1, max_size=5,
).map(lambda items: [" ".join(["word"] * n + [tail]).strip() for n, tail in items])
CODE_PARAMS = {
    "best_of_n": st.fixed_dictionaries({
        "n": st.integers(1, 4), "selector": st.sampled_from(["auto", "vote", "behaviour"]),
        "write_tests": st.integers(0, 4), "per_call_s": st.just(0.5)}),
    "self_refine": st.fixed_dictionaries({"max_iters": st.integers(0, 3),
                                          "write_tests": st.integers(0, 3),
                                          "per_call_s": st.just(0.5)}),
    "auto": st.fixed_dictionaries({
        "batch_size": st.integers(1, 3), "max_samples": st.integers(1, 4),
        "debug_rounds": st.integers(0, 2), "distinguish": st.booleans(),
        "write_tests": st.integers(0, 4), "per_call_s": st.just(0.5)}),
}


@pytest.mark.parametrize("strategy", sorted(CODE_PARAMS))
@settings(max_examples=12, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_a_coding_strategy_never_overspends(strategy: str, data: st.DataObject) -> None:
    budget = data.draw(budgets, label="budget")
    texts = data.draw(code_replies, label="replies")
    params = data.draw(CODE_PARAMS[strategy], label="params")
    result = ponder.solve(CODE_PROBLEM, strategy=strategy, backend=cycling(texts),
                          budget=budget, **params)
    assert result.usage.total_tokens <= budget.tokens  # type: ignore[operator]
    assert budget.calls is None or result.usage.calls <= budget.calls
    assert result.error is None
    if result.answer is None:
        assert result.budget_exhausted
