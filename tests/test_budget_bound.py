"""The run-budget upper bound on the fake quiz (benchmarks/budget_bound.py) is only worth
quoting if its model of the quiz is the fake server's: these check it against brute force
and against the quiz's own draws."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest

from benchmarks import budget_bound as bb
from ponder.testing import Quiz, QuizItem


def plurality_right(votes: tuple[object, ...], right: object = 0) -> float:
    """The chance that the plurality is `right`, ties among the top answers broken at random."""
    counts = Counter(votes)
    top = max(counts.values())
    leaders = [label for label, count in counts.items() if count == top]
    return (right in leaders) / len(leaders)


def test_one_sample_is_right_at_the_mean_skill() -> None:
    mean = sum(share * p for share, p in bb.MIX)
    assert bb.solve_fixed(1) == pytest.approx(mean)


@pytest.mark.parametrize("n", [2, 3, 4])
def test_fixed_vote_matches_brute_force(n: int) -> None:
    expected = 0.0
    for share, p in bb.MIX:
        q = (1 - p) / bb.WRONG
        for votes in itertools.product(range(bb.LABELS), repeat=n):
            chance = 1.0
            for vote in votes:
                chance *= p if vote == 0 else q
            expected += share * chance * plurality_right(votes)
    assert bb.solve_fixed(n) == pytest.approx(expected)


def test_the_quiz_draws_what_the_bound_assumes() -> None:
    # 1,000 problems in the mix's proportions; three replies each, scored by plurality.
    levels = [p for share, p in bb.MIX for _ in range(round(share * 10))]
    items = [QuizItem(problem=f"problem number {i}", answer="42", p_correct=p)
             for i, p in enumerate(levels * 100)]
    quiz = Quiz(items, seed=3)
    right = 0.0
    for item in items:
        draws = quiz.draw([{"role": "user", "content": item.problem}], n=3)
        assert draws is not None
        right += plurality_right(tuple(d.answer for d in draws), item.answer)
    # The draws are seeded, so this cannot flake; 0.02 is about 1.3 standard errors. It
    # catches a gross mismatch (wrong replies that all agree miss by 0.05); the brute-force
    # test above pins the arithmetic.
    assert right / len(items) == pytest.approx(bb.solve_fixed(3), abs=0.02)


def test_the_frontier_is_at_least_every_fixed_vote() -> None:
    hull = bb.frontier(82, 83)
    for n in (1, 2, 3, 5):
        assert bb.best_at(hull, 82 + n * 83) >= bb.solve_fixed(n) - 1e-9
    accuracies = [acc for _, acc in hull]
    assert accuracies == sorted(accuracies)
