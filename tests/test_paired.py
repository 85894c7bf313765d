"""The paired comparison a bench prints beside each point: exact where it can be checked by
hand, and an interval that covers the true difference about 95% of the time."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from ponder.bench.curve import baseline, paired_markdown, write_all
from ponder.bench.paired import Paired, pair
from ponder.bench.run import CurvePoint
from ponder.bench.spec import GOLD_SELECTION


@pytest.mark.parametrize(("only_point", "only_baseline", "p"), [
    (5, 0, 2 / 32),    # all five disagreements one way: 2 × (1/2)^5
    (3, 0, 2 / 8),
    (4, 1, 2 * 6 / 32),  # P(X ≤ 1) for X ~ Bin(5, 1/2) is 6/32
    (2, 2, 1.0),
    (0, 0, 1.0),       # never disagree: no evidence either way
])
def test_mcnemar_exact_p_by_hand(only_point: int, only_baseline: int, p: float) -> None:
    paired = Paired(problems=20, both=5, only_point=only_point, only_baseline=only_baseline)
    assert paired.p_value == pytest.approx(p)


def test_pairing_counts_only_the_problems_both_answered() -> None:
    point = {"a": True, "b": True, "c": False, "d": True, "only-here": True}
    baseline = {"a": True, "b": False, "c": True, "d": False}
    paired = pair(point, baseline)
    assert (paired.problems, paired.both, paired.only_point, paired.only_baseline) == (4, 1, 2, 1)
    assert paired.difference == pytest.approx(0.25)


def test_the_interval_matches_a_published_implementation() -> None:
    """Bentur et al.'s airway data (both 1, only before 1, only after 7, neither 12), the
    worked example for paired intervals in Fagerland, Lydersen and Laake's book and their
    `contingencytables` package, whose `Newcombe_square_and_add_CI_paired_2x2` (phi with
    its continuity correction) gives -0.507 to -0.026."""
    paired = Paired(problems=21, both=1, only_point=1, only_baseline=7)
    assert paired.difference == pytest.approx(-6 / 21)
    assert paired.interval == pytest.approx((-0.507, -0.026), abs=5e-4)


def test_the_interval_holds_the_difference_and_turns_over_with_the_pair() -> None:
    paired = Paired(problems=200, both=47, only_point=27, only_baseline=7)
    low, high = paired.interval
    assert paired.difference == pytest.approx(0.10)
    assert 0 < low < 0.10 < high < 0.2
    swapped = Paired(problems=200, both=47, only_point=7, only_baseline=27)
    assert swapped.interval == pytest.approx((-high, -low))


@pytest.mark.parametrize(("p_point", "p_baseline", "agree"), [
    (0.35, 0.25, 0.8), (0.3, 0.3, 0.9), (0.1, 0.05, 0.95)])
def test_the_interval_covers_the_true_difference_about_95_percent_of_the_time(
        p_point: float, p_baseline: float, agree: float) -> None:
    """Simulated benches of 100 problems with correlated strategies (each problem's outcome
    for the point copies the baseline's with probability `agree`, else is drawn afresh; the
    marginals are fixed so the true difference is known)."""
    rng = random.Random(0)
    truth = p_point - p_baseline
    covered, trials = 0, 2000
    for _ in range(trials):
        both = only_point = only_baseline = 0
        for _ in range(100):
            base = rng.random() < p_baseline
            # keep the point's marginal at p_point: copy, then flip up or down as needed
            if rng.random() < agree:
                ok = base
                if ok and rng.random() < max(0.0, (p_baseline - p_point) / p_baseline):
                    ok = False
                elif not ok and rng.random() < max(0.0, (p_point - p_baseline)
                                                   / (1 - p_baseline)):
                    ok = True
            else:
                ok = rng.random() < p_point
            both += ok and base
            only_point += ok and not base
            only_baseline += base and not ok
        low, high = Paired(100, both, only_point, only_baseline).interval
        covered += low <= truth <= high
    assert 0.92 <= covered / trials <= 0.99


def point(label: str, right: list[bool], *, selection: str = "no gold",
          tokens: float = 100.0) -> CurvePoint:
    outcomes = tuple((f"p{i}", ok, int(tokens)) for i, ok in enumerate(right))
    return CurvePoint(label=label, strategy=label, params="", model="m", selection=selection,
                      accuracy=sum(right) / len(right), ci_low=0.0, ci_high=1.0,
                      correct=sum(right), problems=len(right), mean_tokens=tokens,
                      mean_calls=1.0, wall_s=None, subsampled=False, pool_n=None, errors=0,
                      run=label, outcomes=outcomes)


def test_the_paired_table_leaves_out_what_gold_chose_and_says_how_many_it_compared() -> None:
    gold = point("oracle", [True] * 6, selection=GOLD_SELECTION, tokens=800)
    single = point("single", [True, False, False, False, True, False])
    vote = point("vote", [True, True, True, False, True, False], tokens=400)
    table = paired_markdown([gold, single, vote])
    assert "Paired against single" in table and "oracle" not in table
    [row] = [line for line in table.splitlines() if line.startswith("| vote ")]
    cells = [c.strip() for c in row.strip("|").split("|")]
    # n, Δ (interval), only vote right, only single right, p, × tokens
    assert cells[4] == "6" and cells[5].startswith("+33.3 (")
    assert cells[6:] == ["2", "0", "0.5", "4.0"]
    assert paired_markdown([gold, single]) == ""  # nothing honest to compare with


def test_a_named_baseline_compares_every_other_point_with_it() -> None:
    single = point("single", [True, False, False, False, True, False])
    vote = point("vote", [True, True, True, False, True, False], tokens=400)
    big = point("1.5B", [True, True, False, True, True, True], tokens=90)
    table = paired_markdown([single, vote, big], against="1.5B")
    assert "Paired against 1.5B" in table
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.strip("|").split("|")]
            for line in table.splitlines() if line.startswith("| ") and "---" not in line}
    assert set(rows) == {"strategy", "single", "vote"}  # the header, and both others
    # vote against 1.5B: only vote right on p2, only 1.5B right on p3 and p5.
    assert rows["vote"][6:9] == ["1", "2", "1"]
    assert paired_markdown([single, vote], against="nobody") == ""


def test_naming_the_first_point_or_a_gold_chosen_one_adds_no_table(tmp_path: Path) -> None:
    gold = point("oracle", [True] * 6, selection=GOLD_SELECTION, tokens=800)
    single = point("single", [True, False, False, False, True, False])
    vote = point("vote", [True, True, True, False, True, False], tokens=400)
    write_all([gold, single, vote], tmp_path, title="t", command="c",
              paired_with=["single", "oracle", "vote", "vote"])
    text = (tmp_path / "curve.md").read_text()
    assert text.count("## Paired against single") == 1
    assert text.count("## Paired against vote") == 1 and "Paired against oracle" not in text


def test_a_label_shared_by_a_sweep_names_its_first_point() -> None:
    small = point("sweep", [True, False, False, False, True, False])
    large = point("sweep", [True, True, True, False, True, False], tokens=400)
    other = point("other", [False] * 6)
    assert baseline([other, small, large], "sweep") is small
    assert baseline([other, small, large]) is other
