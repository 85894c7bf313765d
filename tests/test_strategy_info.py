"""The typed parts of `Result.info`: what sampling strategies record of their vote
(`SamplingInfo`), how a verifier's pick was labelled (`Selection`) and `program`'s runs
(`ProgramRuns`). Strategies build them, every reader reads them by field, and the results
file keeps the keys it always had, so files written before still read the same."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

import ponder
from ponder import Problem, ScriptedBackend
from ponder.bench.run import rechoose
from ponder.bench.spec import Choice
from ponder.core.types import PoolRecord, Result, SamplingInfo, Selection
from ponder.runs.allocation import promise
from ponder.runs.summary import RunTally
from ponder.serve.service import distinct_answers
from ponder.strategies.program import ProgramRuns
from ponder.testing import by_step
from tests.conftest import REPO

# The keys `vote_info` has always written, in its order: the results file's format.
SAMPLING_KEYS = ["samples", "votes", "answers", "vote_answer", "agreement", "pool"]
NO_GOLD = Problem(id="q", problem="What is 17 * 23?")


def said(*values: object) -> list[str]:
    return [f"Final answer: {v}" for v in values]


def code(body: str) -> str:
    return f"```python\n{body}\n```"


@pytest.mark.parametrize(("strategy", "backend", "params"), [
    ("best_of_n", ScriptedBackend(said(391, 391, 401)), {"n": 3}),
    ("program", ScriptedBackend(by_step(write=code("print(17 * 23)"))), {}),
    ("auto", ScriptedBackend(by_step(write=code("print(17 * 23)"), answer=said(401),
                                     generate=said(391, 391, 391))), {}),
])
async def test_sampling_strategies_record_the_same_keys_and_read_back_typed(
        strategy: str, backend: ScriptedBackend, params: dict[str, Any]) -> None:
    result = await ponder.asolve(NO_GOLD, strategy=strategy, backend=backend, **params)
    assert list(result.info)[:len(SAMPLING_KEYS)] == SAMPLING_KEYS
    sampled = SamplingInfo.of(result)
    assert sampled is not None and sampled.vote_answer == "391"
    assert sampled.model_dump() == {key: result.info[key] for key in SAMPLING_KEYS}
    # Through the results file and back: JSON as before, the same part read from it.
    line = json.loads(result.model_dump_json())["info"]
    assert isinstance(line["pool"][0]["tokens"], int) and isinstance(line["agreement"], float)
    assert SamplingInfo.of(Result.model_validate(json.loads(result.model_dump_json()))) \
        == sampled


def test_every_committed_results_row_reads_as_it_was_written() -> None:
    """Rows written before the parts were typed: a sampling row's part is its keys exactly
    (dumped again, the same JSON), any other strategy's row has none."""
    files = sorted((REPO / "benchmarks" / "results").glob("**/*.jsonl"))
    assert files
    seen = set()
    for path in files:
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            raw = json.loads(line)
            row = Result.model_validate(raw)
            sampled = SamplingInfo.of(row)
            if row.strategy in ("best_of_n", "program", "auto"):
                assert sampled is not None, (path.name, row.id)
                assert sampled.model_dump(mode="json") == \
                    {key: raw["info"][key] for key in SAMPLING_KEYS}
                seen.add(row.strategy)
            else:
                assert sampled is None, (path.name, row.strategy)
    assert seen == {"best_of_n", "program", "auto"}


def test_a_part_is_absent_where_info_lacks_it_or_holds_something_else() -> None:
    vote = {"samples": 3, "vote_answer": "7"}
    assert SamplingInfo.of({"votes": {"7": 2.0}}) is None  # self_refine's vote: no samples
    assert SamplingInfo.of({"samples": 3}) is None  # a count with no vote taken
    for wrong in ({"samples": True}, {"samples": "3"}, {"agreement": math.nan},
                  {"agreement": "0.5"}, {"pool": [{"answer": None, "tokens": 3}]}):
        assert SamplingInfo.of({**vote, **wrong}) is None, wrong
    # A row from before `answers`, `agreement` and `pool` were recorded.
    old = SamplingInfo.of({**vote, "votes": {"7": 2, "8": 1}})
    assert old is not None and (old.answers, old.agreement, old.pool) == ({}, None, [])
    assert Selection.of({}) is None and Selection.of({"selected_by": "gold"}) is None
    selection = Selection.of({"selected_by": "gold", "vote_correct": None})
    assert selection is not None and selection.by_gold and selection.vote_correct is None
    assert ProgramRuns.of({"runs": 2, "repairs": 1, "failed": 0}) == \
        ProgramRuns(runs=2, repairs=1, failed=0)


def row(id: str, sampled: SamplingInfo | None = None, **info: Any) -> Result:
    return Result(id=id, answer="7", strategy="best_of_n", stop_reason="budget",
                  params={"n": 4}, info={**(sampled.model_dump() if sampled else {}), **info})


def vote(samples: int = 3, **fields: Any) -> SamplingInfo:
    return SamplingInfo(**{"samples": samples, "vote_answer": "7", **fields})


def test_readers_read_the_part_by_field() -> None:
    # The total budget's second pass: no answer first, then the smallest lead of the top
    # answer (a row that did not vote leads by one), then the fewest votes, then the id.
    rows = [row("a", vote(votes={"7": 3.0, "8": 1.0}, agreement=0.75)), row("b"),
            row("c", vote(votes={"7": 2.0, "8": 2.0}, agreement=0.5)),
            row("d", vote(votes={"7": 1.0, "8": 1.0, "9": 1.0}, agreement=1 / 3)),
            row("e", vote(votes={"7": 2.0, "8": 1.0}, agreement=2 / 3)),
            row("f", None, samples=3, vote_answer="7", agreement=math.nan),
            row("g").model_copy(update={"answer": None})]
    assert [r.id for r in sorted(rows, key=promise)] == ["g", "d", "c", "b", "f", "e", "a"]
    # ponder serve: the runners-up of the vote.
    served = row("s", vote(answers={"7": "7", "8": "8.0", "9": "9"}))
    assert distinct_answers(served, 2, None) == ["7", "8.0"]
    assert distinct_answers(row("t"), 3, None) == ["7"]
    # ponder bench: the first n samples of the pool, chosen again at their cost.
    pool = [PoolRecord(answer=a, tokens=10) for a in ("8", "7", "7", "8", "8")]
    pooled = row("p", vote(5, pool=pool)).model_copy(
        update={"usage": ponder.Usage(prompt_tokens=20, completion_tokens=50)})
    assert rechoose(pooled, Choice(n=3, selector="vote", keep=1.0, metric="mean")) == ("7", 50)
    # The run summary: samples drawn, and whether a run stopped before its n.
    tally = RunTally(2)
    tally.add(row("x", vote(4)).model_copy(update={"stop_reason": "consensus"}))
    tally.add(row("y", vote(2)).model_copy(update={"stop_reason": "consensus"}))
    summary = tally.summary()
    assert (summary.samples, summary.stopped_early) == (6, 1)


async def test_a_verifier_picking_among_samples_is_labelled_as_a_selection() -> None:
    gold = Problem(id="q", problem="What is 17 * 23?", answer="391")
    result = await ponder.asolve(gold, strategy="best_of_n", n=3,
                                 backend=ScriptedBackend(said(401, 391, 401)))
    selection = Selection.of(result)
    assert selection is not None and selection.by_gold and selection.vote_correct is False
    assert list(result.info)[-2:] == ["selected_by", "vote_correct"]  # the keys as before
