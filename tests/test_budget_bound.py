"""The run-budget upper bound on the fake quiz (benchmarks/budget_bound.py) is only worth
quoting if its model of the quiz is the fake server's: these check it against brute force
and against the quiz's own draws."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable, Iterator

import pytest

from benchmarks import budget_bound as bb
from benchmarks import make_quiz
from ponder.testing import Quiz, QuizItem


def plurality_right(votes: tuple[object, ...], right: object = 0) -> float:
    """The chance that the plurality is `right`, ties among the top answers broken at random."""
    counts = Counter(votes)
    top = max(counts.values())
    leaders = [label for label, count in counts.items() if count == top]
    return (right in leaders) / len(leaders)


def test_the_bounds_skill_mix_is_the_quiz_files() -> None:
    shares = Counter(make_quiz.LEVELS[level] for level in make_quiz.PATTERN)
    assert sorted(bb.MIX) == sorted((n / len(make_quiz.PATTERN), p) for p, n in shares.items())


def test_one_sample_is_right_at_the_mean_skill() -> None:
    mean = sum(share * p for share, p in bb.MIX)
    assert bb.solve_fixed(1) == pytest.approx(mean)


@pytest.mark.parametrize("n", [2, 3, 4])
def test_fixed_vote_matches_brute_force(n: int) -> None:
    expected = 0.0
    for share, p in bb.MIX:
        # Label 0 is the right answer, label k the k-th distractor (4/7, 2/7, 1/7 of the
        # wrong replies): every sequence of votes, with its chance.
        chances = [p, *((1 - p) * w for w in (4 / 7, 2 / 7, 1 / 7))]
        for votes in itertools.product(range(bb.LABELS), repeat=n):
            chance = 1.0
            for vote in votes:
                chance *= chances[vote]
            expected += share * chance * plurality_right(votes)
    assert bb.solve_fixed(n) == pytest.approx(expected)


@pytest.fixture
def one_level(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[float], None]]:
    """Set the bound's skill mix to one level (its caches cleared either side)."""
    def clear() -> None:
        bb.hypotheses.cache_clear()
        bb.after.cache_clear()

    def level(p: float) -> None:
        monkeypatch.setattr(bb, "MIX", ((1.0, p),))
        clear()

    yield level
    monkeypatch.undo()
    clear()


@pytest.mark.parametrize("p", [0.5, 0.1])
def test_the_quiz_draws_what_the_bound_assumes(p: float,
                                               one_level: Callable[[float], None]) -> None:
    # 2,000 problems at one skill, three replies each: how often the three agree, two do,
    # or none, against the bound's own prediction.
    items = [QuizItem(problem=f"problem number {i}", answer="42", p_correct=p)
             for i in range(2000)]
    quiz = Quiz(items, seed=3)
    seen: Counter[tuple[int, ...]] = Counter()
    for item in items:
        draws = quiz.draw([{"role": "user", "content": item.problem}], n=3)
        assert draws is not None
        seen[tuple(sorted(Counter(d.answer for d in draws).values(), reverse=True))] += 1
    one_level(p)
    predicted = {state: chance for chance, state in bb.after((), 3)}
    # Seeded, so this cannot flake; 0.03 is three standard errors. Wrong replies spread
    # evenly over the distractors (not 4/7, 2/7, 1/7 as the quiz draws them) would predict
    # all three agreeing at p = 0.1 with 0.08, not 0.16.
    for state in ((3,), (2, 1), (1, 1, 1)):
        assert seen[state] / len(items) == pytest.approx(predicted[state], abs=0.03), state


def test_the_frontier_is_at_least_every_fixed_vote(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bb, "MAX_SAMPLES", 12)  # enough for 5 samples, and fast
    hull = bb.frontier(82, 83)
    for n in (1, 2, 3, 5):
        assert bb.best_at(hull, 82 + n * 83) >= bb.solve_fixed(n) - 1e-9
    accuracies = [acc for _, acc in hull]
    assert accuracies == sorted(accuracies)


def test_the_sample_cap_moves_no_figure_quoted_up_to_best_of_n_n3s_spend(
        monkeypatch: pytest.MonkeyPatch) -> None:
    def figures(cap: int) -> list[float]:
        monkeypatch.setattr(bb, "MAX_SAMPLES", cap)
        hull = bb.frontier(82, 83)
        return [bb.best_at(hull, m * (82 + 3 * 83)) for m in (0.25, 0.5, 0.9, 1.0)]

    assert figures(10) == pytest.approx(figures(14), abs=1e-4)


def test_a_close_vote_gains_most_from_more_samples_whatever_its_agreement() -> None:
    # What the total budget's later passes rank by (`ponder.runs.allocation.promise`): the
    # lead of the top answer over the runner-up, not the top answer's share.
    def gain(counts: tuple[int, ...]) -> float:
        return sum(w * bb.answer_value(s) for w, s in bb.after(counts, 3)) - \
            bb.answer_value(counts)

    ties = [(1, 1), (2, 2), (3, 3), (1, 1, 1), (2, 2, 1)]
    lead_one = [(2, 1), (3, 2), (4, 3), (2, 1, 1)]
    lead_two = [(2,), (3, 1), (4, 2), (3, 1, 1), (4, 2, 1)]
    assert min(map(gain, ties)) > 0.09 > 0.05 > max(map(gain, lead_one))
    assert min(map(gain, lead_one)) > 0.025 > 0.01 > max(map(gain, lead_two))
    # (2, 2, 1) shares 0.4 and gains more than (2, 1), which shares 0.67.
    assert gain((2, 2, 1)) > gain((2, 1))
