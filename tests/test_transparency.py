"""Transparency: a row where gold chose among candidates says so (pass@k) with the vote's own
verdict beside it, the run summary labels it and counts early stops, escalations and samples,
and `ponder show` prints the compute a problem used."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

import ponder
from ponder import Problem, ScriptedBackend
from ponder.cli import app
from ponder.cli.render import GOLD_LABEL, HONEST_LABEL, result_panel, shortener, summary_table
from ponder.core.types import Result, Usage, Verdict
from ponder.runs.results import result_line
from ponder.runs.results_reader import read_results
from ponder.runs.summary import RunTally
from ponder.testing import FakeOpenAIServer

runner = CliRunner()
PROBLEM = "A shirt costs $4 and a hat costs $4. How much do both cost?"
QUIZ = [
    {"id": "easy", "problem": "Tom has 3 apples and buys 5 more. How many apples?",
     "answer": "8", "p_correct": 1.0},
    # Mostly wrong, and the wrong replies agree (one distractor): the vote misses, gold finds it.
    {"id": "hard", "problem": "A box holds 12 pencils and a teacher buys 4 boxes. How many "
                              "pencils?", "answer": "48", "p_correct": 0.25, "distractors": 1},
    {"id": "never", "problem": "A train goes 60 km per hour for 2 hours. How far?",
     "answer": "120", "p_correct": 0.0},
]


def answers(*values: str) -> list[str]:
    return [f"Adding up gives {v}. Final answer: {v}" for v in values]


def rendered(table: Any) -> str:
    console = Console(width=200, record=True)
    console.print(table)
    return console.export_text()


# -- the row --------------------------------------------------------------------------------


async def test_gold_choosing_among_samples_is_labelled_with_the_vote_beside_it() -> None:
    backend = ScriptedBackend(answers("7", "8", "7"))
    result = await ponder.asolve(Problem(problem=PROBLEM, answer="8"), strategy="best_of_n",
                                 backend=backend, n=3)
    assert (result.answer, result.correct) == ("8", True)  # gold found the right sample
    assert result.info["selected_by"] == "gold"
    assert (result.info["vote_answer"], result.info["vote_correct"]) == ("7", False)
    assert backend.requests and len(backend.requests) == 1  # no model call for the label
    [note] = [e for e in result.trace if e.kind == "note" and e.step == "selection"]
    assert note.data == {"selected_by": "gold", "vote_answer": "7", "vote_correct": False}


async def test_the_vote_verdict_is_judged_when_no_sample_with_its_answer_was() -> None:
    # The first sample passes, so the others (the vote's "7") were never judged.
    backend = ScriptedBackend(answers("8", "7", "7"))
    result = await ponder.asolve(Problem(problem=PROBLEM, answer="8"), strategy="best_of_n",
                                 backend=backend, n=3)
    assert result.info["selected_by"] == "gold" and result.info["vote_correct"] is False
    judged = [e.data["answer"] for e in result.trace if e.kind == "verify"]
    assert judged == ["8", "7"]


@pytest.mark.parametrize("replies", [
    ["Trust me. Final answer: 7", "Final answer: 7", "Final answer: 8"],
    ["Final answer: 7", "Trust me. Final answer: 7", "Final answer: 8"],
])
async def test_the_vote_is_judged_on_its_answer_whichever_sample_was_judged_first(
        replies: list[str]) -> None:
    # A verifier that reads the text passes one "7" and not the other: the vote's verdict is
    # the answer's own, not that of whichever sample with it was judged.
    def trusting(problem: Problem, candidate: Any) -> bool:
        return "Trust me" in candidate.text

    result = await ponder.asolve(PROBLEM, strategy="best_of_n", verifier=trusting, n=3,
                                 backend=ScriptedBackend(replies))
    assert (result.info["vote_answer"], result.info["vote_correct"]) == ("7", False)


async def test_a_run_without_gold_has_no_label() -> None:
    result = await ponder.asolve(PROBLEM, strategy="best_of_n",
                                 backend=ScriptedBackend(answers("7", "8", "7")), n=3)
    assert "selected_by" not in result.info and "vote_correct" not in result.info


async def test_no_label_where_the_verifier_did_not_choose() -> None:
    gold = Problem(problem=PROBLEM, answer="8")
    voted = await ponder.asolve(gold, strategy="best_of_n", selector="vote",
                                backend=ScriptedBackend(answers("7", "8", "7")), n=3)
    one = await ponder.asolve(gold, strategy="best_of_n",
                              backend=ScriptedBackend(answers("8")), n=1)
    single = await ponder.asolve(gold, backend=ScriptedBackend(answers("8")))
    for result in (voted, one, single):
        assert result.correct is not None  # judged, but nothing was chosen by the verifier
        assert "selected_by" not in result.info


async def test_a_verifier_of_ones_own_is_named_not_called_gold() -> None:
    def is_eight(problem: Problem, candidate: Any) -> bool:
        return bool(candidate.answer == "8")

    result = await ponder.asolve(PROBLEM, strategy="best_of_n", verifier=is_eight,
                                 backend=ScriptedBackend(answers("7", "8", "7")), n=3)
    assert result.info["selected_by"] == "verifier:is_eight"
    assert result.info["vote_correct"] is False


async def test_a_gold_verifier_named_by_the_problem_or_given_is_gold() -> None:
    exact = await ponder.asolve(Problem(problem=PROBLEM, answer="8"), strategy="best_of_n",
                                verifier="exact", n=3,
                                backend=ScriptedBackend(answers("8", "8", "7")))
    assert (exact.info["selected_by"], exact.info["vote_correct"]) == ("gold", True)


# -- the summary ----------------------------------------------------------------------------


def row(id: str, *, correct: bool | None = None, strategy: str = "best_of_n",
        stop: str = "done", params: dict[str, Any] | None = None, **info: Any) -> Result:
    verdict = None if correct is None else Verdict.from_bool(correct)
    usage = Usage(prompt_tokens=10, completion_tokens=5, calls=1)
    return Result.model_validate({"id": id, "answer": "1", "verdict": verdict,
                                  "strategy": strategy, "params": params or {},
                                  "stop_reason": stop, "info": info, "usage": usage})


def test_the_summary_labels_gold_selection_pass_at_k_with_the_vote_beside_it() -> None:
    tally = RunTally(3)
    tally.add(row("a", correct=True, selected_by="gold", vote_answer="1", vote_correct=True,
                  samples=3))
    tally.add(row("b", correct=True, selected_by="gold", vote_answer="2", vote_correct=False,
                  samples=3))
    tally.add(row("c", correct=False, selected_by="gold", vote_answer="2", vote_correct=False,
                  samples=3))
    summary = tally.summary()
    assert (summary.solved, summary.judged, summary.gold_selected) == (2, 3, 3)
    assert summary.solved_without_gold == 1
    assert summary.accuracy_without_gold == 1 / 3
    text = rendered(summary_table(summary))
    assert f"2 / 3 judged (66.7%), {GOLD_LABEL}" in text
    assert HONEST_LABEL in text and "1 / 3 (33.3%)" in text
    assert GOLD_LABEL == "selected with gold (pass@k)"
    assert HONEST_LABEL == "without gold (the vote)"


def test_rows_gold_did_not_select_count_as_they_are_beside_the_vote() -> None:
    tally = RunTally(3)
    tally.add(row("a", correct=True, selected_by="gold", vote_answer="2", vote_correct=False,
                  samples=3))
    tally.add(row("b", correct=True, strategy="single"))
    tally.add(row("c", correct=True, selected_by="verifier:mine", vote_correct=False,
                  samples=3))
    summary = tally.summary()
    assert (summary.gold_selected, summary.solved_without_gold) == (1, 2)
    text = rendered(summary_table(summary))
    assert f"3 / 3 judged (100.0%), {GOLD_LABEL} for 1 of them" in text
    assert "2 / 3 (66.7%)" in text


def test_a_summary_without_gold_selection_has_no_label() -> None:
    tally = RunTally(2)
    tally.add(row("a", correct=True, strategy="single"))
    tally.add(row("b", correct=False, strategy="single"))
    summary = tally.summary()
    assert (summary.gold_selected, summary.solved_without_gold) == (0, None)
    text = rendered(summary_table(summary))
    assert "pass@k" not in text and HONEST_LABEL not in text


def test_the_summary_counts_early_stops_escalations_and_samples() -> None:
    tally = RunTally(7)
    vote = {"vote_answer": "1"}  # with `samples`: a sampling strategy's vote (SamplingInfo)
    tally.add(row("consensus", stop="consensus", params={"n": 8}, samples=3, **vote))  # early
    tally.add(row("all-drawn", stop="verified", params={"n": 3}, samples=3, **vote))  # no saving
    tally.add(row("single", stop="verified", strategy="single"))               # nothing to save
    tally.add(row("done", stop="done", params={"n": 5}, samples=5, **vote))
    tally.add(row("budget", stop="budget", params={"n": 5}, samples=2, **vote))
    tally.add(row("auto-up", stop="scattered", strategy="auto", samples=5, tier=1,
                  escalations=["the cheap answers disagree"], **vote))        # early, escalated
    tally.add(row("auto-flat", stop="consensus", strategy="auto", samples=2, tier=0,
                  escalations=[], **vote))                                   # early
    summary = tally.summary()
    assert summary.stopped_early == 3
    assert summary.escalated == 1
    assert summary.samples == 3 + 3 + 5 + 2 + 5 + 2
    assert "stopped early 3, escalated 1, 20 samples" in rendered(summary_table(summary))


# -- ponder solve and ponder show -----------------------------------------------------------


def quiz_run(tmp_path: Path, *extra: str) -> tuple[Path, str]:
    problems = tmp_path / "quiz.jsonl"
    problems.write_text("".join(json.dumps(item) + "\n" for item in QUIZ))
    out = tmp_path / "run.jsonl"
    with FakeOpenAIServer(quiz=QUIZ, seed=0) as server:
        result = runner.invoke(app, ["solve", str(problems), "-s", "best_of_n", "-p", "n=6",
                                     "--base-url", server.base_url, "--seed", "0", "-o",
                                     str(out), *extra], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.stderr
    return out, result.stdout


def test_solve_labels_a_gold_selected_run_pass_at_k_in_json_and_table(tmp_path: Path) -> None:
    out, stdout = quiz_run(tmp_path, "--json")
    summary = json.loads(stdout)
    assert (summary["solved"], summary["judged"], summary["gold_selected"]) == (2, 3, 3)
    assert (summary["solved_without_gold"], summary["samples"]) == (1, 18)
    rows = {r.id: r for r in read_results(out)}
    assert rows["hard"].correct and rows["hard"].info["vote_correct"] is False
    assert rows["easy"].info["vote_correct"] is True
    assert all(r.info["selected_by"] == "gold" for r in rows.values())
    _, stdout = quiz_run(tmp_path, "--overwrite")
    assert f"2 / 3 judged (66.7%), {GOLD_LABEL}" in stdout
    assert HONEST_LABEL in stdout and "1 / 3 (33.3%)" in stdout


def test_show_prints_the_compute_a_problem_used(tmp_path: Path) -> None:
    out, _ = quiz_run(tmp_path, "--quiet")
    result = runner.invoke(app, ["show", str(out), "--id", "hard"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for expected in ("usage", "prompt", "completion", "1 call(s)", "compute", "6 samples",
                     "agreement 83%", "selected by",
                     "gold (pass@k); without it the vote answers '50': wrong", "stop",
                     "verified", "note selection"):
        assert expected in result.stdout, expected
    every = runner.invoke(app, ["show", str(out)], env={"COLUMNS": "200"})
    assert GOLD_LABEL in every.stdout and HONEST_LABEL in every.stdout


def test_show_prints_autos_tier_and_escalations(tmp_path: Path) -> None:
    auto = row("q", correct=True, strategy="auto", stop="consensus", samples=5,
               agreement=0.8, tier=1, escalations=["the cheap answers disagree: '7' vs '8'"],
               vote_answer="8")
    text = rendered(result_panel(auto, shortener(400)))
    assert "5 samples · agreement 80% · tier 1, 1 escalation" in text
    assert "escalations" in text and "the cheap answers disagree" in text
    assert "selected by" not in text
    results = tmp_path / "r.jsonl"
    results.write_text(result_line(auto))
    shown = runner.invoke(app, ["show", str(results), "--id", "q"], env={"COLUMNS": "200"})
    assert shown.exit_code == 0 and "tier 1, 1 escalation" in shown.stdout
