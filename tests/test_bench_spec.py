"""`ponder bench` SPECs: sweeps expand to points, and points that differ only in how they
choose among samples share one pool; a pooled point re-chooses exactly as best_of_n does."""

from __future__ import annotations

import pytest

from ponder.bench.run import rechoose
from ponder.bench.spec import Choice, parse_spec, plan_runs
from ponder.core.errors import ConfigError
from ponder.core.types import Confidence, PoolRecord, Result, SamplingInfo, Usage


def test_a_comma_list_sweeps_and_two_lists_make_every_pair() -> None:
    points = parse_spec("best_of_n n=1,2,4 temperature=0.5,0.9")
    assert [(p.params["n"], p.params["temperature"]) for p in points] == [
        (1, 0.5), (1, 0.9), (2, 0.5), (2, 0.9), (4, 0.5), (4, 0.9)]
    assert all(p.label == "best_of_n" and p.verifier is None for p in points)


def test_bench_keys_are_not_strategy_parameters() -> None:
    [point] = parse_spec("single label='greedy answer' verifier=gold local_model=1.5b")
    assert point.params == {}
    assert (point.label, point.verifier, point.local_model) == ("greedy answer", "gold", "1.5b")
    assert point.selection == "gold (pass@k)"


def test_an_effort_is_its_tiers_strategy_labelled_with_the_effort() -> None:
    [medium] = parse_spec("effort=medium")
    assert (medium.strategy, medium.label) == ("program", "effort=medium")
    assert medium.params == {"few_shot": False, "temperature": 0.0}
    [hotter] = parse_spec("effort=medium temperature=0.5")
    assert hotter.params["temperature"] == 0.5
    with pytest.raises(ConfigError, match="effort"):
        parse_spec("effort=extreme")


@pytest.mark.parametrize(("spec", "says"), [
    ("", "empty"),
    ("nope n=1", "nope"),
    ("best_of_n n", "not key=value"),
    ("best_of_n n=0", "n"),
    ("best_of_n n=1 n=2", "twice"),
    ("best_of_n bogus=1", "bogus"),
    ("single verifier=gold,math", "cannot be swept"),
])
def test_a_bad_spec_is_refused_before_any_call(spec: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        parse_spec(spec)


def test_an_n_sweep_is_one_pool_at_the_largest_n() -> None:
    runs = plan_runs(parse_spec("best_of_n n=1,2,4,8,16 temperature=0.7"))
    assert len(runs) == 1
    [run] = runs
    assert run.pooled and run.pool_n == 16 and run.params["selector"] == "confidence"
    assert [p.choice.n for p in run.points if p.choice] == [1, 2, 4, 8, 16]


def test_selectors_share_one_pool() -> None:
    points = (parse_spec("best_of_n n=2,4 selector=vote label=vote")
              + parse_spec("best_of_n n=4 selector=confidence keep=0.5,0.75 label=conf"))
    [run] = plan_runs(points)
    assert run.params["n"] == 4 and run.params["selector"] == "confidence"
    assert len(run.points) == 4


def test_what_a_pool_cannot_answer_runs_on_its_own() -> None:
    points = (parse_spec("best_of_n n=4 adaptive=true")
              + parse_spec("best_of_n n=4 selector=judge")
              + parse_spec("best_of_n n=4 verifier=gold")
              + parse_spec("program n=1,5 temperature=0.7")
              + parse_spec("best_of_n n=4 temperature=0.7")
              + parse_spec("best_of_n n=4 temperature=1.0"))
    runs = plan_runs(points)
    pooled = [r for r in runs if r.pooled]
    assert len(pooled) == 2  # the two temperatures are two pools
    assert len(runs) == 2 + 3 + 2  # adaptive, judge, gold; program n=1 and n=5
    assert len({r.key for r in runs}) == len(runs)


def test_the_same_point_twice_is_run_once() -> None:
    runs = plan_runs(parse_spec("single") + parse_spec("single temperature=0.0"))
    assert len(runs) == 1 and len(runs[0].points) == 1


def _row(answers: list[str], tokens: list[int], confidences: list[float] | None = None,
         overhead: int = 0) -> Result:
    pool = [PoolRecord(answer=a, tokens=t, confidence=None if confidences is None else Confidence(
                measure="top_k", tokens=10, window=8, mean_logprob=-0.1, mean=c,
                lowest_group=c))
            for a, t, c in zip(answers, tokens, confidences or [0.0] * len(answers),
                               strict=True)]
    sampled = SamplingInfo(samples=len(pool), vote_answer=None, pool=pool)
    total = sum(tokens) + overhead
    return Result(id="p", answer=None, usage=Usage(prompt_tokens=0, completion_tokens=total,
                                                  calls=1), info=sampled.model_dump())


def test_a_prefix_of_the_pool_votes_and_costs_what_its_samples_cost() -> None:
    row = _row(["7", "5", "5", "7", "7"], [10, 20, 30, 40, 50], overhead=3)
    assert rechoose(row, Choice(1, "vote", 0.5, "lowest_group")) == ("7", 13)
    assert rechoose(row, Choice(3, "vote", 0.5, "lowest_group")) == ("5", 63)
    assert rechoose(row, Choice(5, "vote", 0.5, "lowest_group")) == ("7", 153)
    # A tie goes to the answer seen first, as best_of_n's vote does.
    assert rechoose(row, Choice(2, "vote", 0.5, "lowest_group"))[0] == "7"


def test_the_confidence_choice_keeps_the_surest_share() -> None:
    row = _row(["7", "5", "5", "7", "7"], [1] * 5, confidences=[9.0, 1.0, 1.0, 8.0, 0.5])
    assert rechoose(row, Choice(5, "vote", 0.4, "lowest_group"))[0] == "7"
    # Only the two surest (both "7") vote at keep=0.4; at n=3 the surest is "7" alone.
    assert rechoose(row, Choice(5, "confidence", 0.4, "lowest_group"))[0] == "7"
    row = _row(["5", "7", "7"], [1] * 3, confidences=[9.0, 1.0, 1.0])
    assert rechoose(row, Choice(3, "confidence", 0.34, "lowest_group"))[0] == "5"
    assert rechoose(row, Choice(3, "vote", 0.34, "lowest_group"))[0] == "7"


def test_a_row_without_a_pool_keeps_its_own_answer() -> None:
    row = Result(id="p", answer="4", usage=Usage(prompt_tokens=5, completion_tokens=5, calls=1))
    assert rechoose(row, Choice(2, "vote", 0.5, "lowest_group")) == ("4", 10)


def test_a_coding_pool_is_chosen_again_by_behaviour_and_pays_for_the_tests_from_n_2() -> None:
    from ponder.core.types import Behaviour

    right = Behaviour(key="r", public=[True, True], model=[True])
    wrong = Behaviour(key="w", public=[True, False], model=[True])
    codes = ["def f(): return 2", "def f(): return 3", "def f():  return 3", "def f(): return 1"]
    pool = [PoolRecord(answer=a, tokens=10, behaviour=b)
            for a, b in zip(codes, [wrong, wrong, right, right], strict=True)]
    info = SamplingInfo(samples=4, vote_answer=None, pool=pool).model_dump()
    info["behaviour"] = {"tokens": 7}
    row = Result(id="p", answer=None, info=info,
                 usage=Usage(prompt_tokens=0, completion_tokens=47, calls=2))
    # One sample: nothing to choose and nothing run, so the tests' call is not paid for.
    assert rechoose(row, Choice(1, "auto", 0.5, "lowest_group"), code=True) == (codes[0], 10)
    # Two alike, wrong on a stated example: the first drawn answers, and the tests are paid.
    assert rechoose(row, Choice(2, "auto", 0.5, "lowest_group"), code=True) == (codes[0], 27)
    assert rechoose(row, Choice(3, "auto", 0.5, "lowest_group"), code=True) == (codes[2], 37)
    # The text vote groups programs by syntax (2 and 3 are one program), and pays the same.
    assert rechoose(row, Choice(3, "vote", 0.5, "lowest_group"), code=True) == (codes[1], 37)
