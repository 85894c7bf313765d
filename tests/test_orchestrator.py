"""The orchestrator: bounded concurrency, a result row the moment each problem finishes, failures
recorded without stopping the run, gold kept from the model, and resuming a stopped run."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest

from ponder.backends.scripted import ScriptedBackend
from ponder.core.budget import Budget
from ponder.core.errors import BackendError
from ponder.core.types import Candidate, Completion, Message, Problem, Result, Usage, Verdict
from ponder.runs.problem_files import load_problems
from ponder.runs.results import ResultsWriter, result_line
from ponder.runs.results_reader import read_results
from ponder.runs.solve_many import Solver, resume_plan, run_all
from ponder.runs.summary import RunTally, failure_kind
from ponder.runs.torn_tail import drop_torn_tail
from ponder.strategies import REGISTRY
from ponder.verifiers import FunctionVerifier, VerifierChoice
from tests.conftest import DATA

SINGLE = REGISTRY.get("single")


def problems(count: int) -> list[Problem]:
    return [Problem(id=f"p{i}", problem=f"What is {i} + {i}?", answer=str(2 * i))
            for i in range(count)]


def doubling_backend(latency_s: float = 0.0) -> ScriptedBackend:
    """Answers `What is i + i?` with 2i, correctly."""
    def reply(messages: Sequence[Message]) -> str:
        i = int(messages[-1].content.split()[2])
        return f"{i} + {i} = {2 * i}. Final answer: {2 * i}"
    return ScriptedBackend(reply, latency_s=latency_s)


def same_number(problem: Problem, candidate: Candidate) -> bool:
    return candidate.answer == problem.answer


def solver_for(backend: object, **kwargs: object) -> Solver:
    return Solver(SINGLE, SINGLE.make_config({"max_tokens": 64}), backend,  # type: ignore[arg-type]
                  verifier_for=VerifierChoice(FunctionVerifier(same_number)).for_problem,
                  **kwargs)  # type: ignore[arg-type]


async def test_each_result_is_on_disk_before_the_next_step(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    seen_on_disk: list[int] = []
    with ResultsWriter(path) as writer:
        results = await run_all(
            problems(5), solver_for(doubling_backend()), concurrency=2, writer=writer,
            on_result=lambda r: seen_on_disk.append(len(read_results(path))))
    assert seen_on_disk == [1, 2, 3, 4, 5]
    rows = read_results(path)
    assert sorted(r.id for r in rows) == [f"p{i}" for i in range(5)]
    assert all(r.correct for r in rows)
    assert [r.id for r in rows] == [r.id for r in results]
    assert all(r.trace == [] for r in rows)  # the trace goes to its own file
    assert rows[0].usage.calls == 1 and rows[0].strategy == "single"
    assert rows[0].params == {"max_tokens": 64, "temperature": 0.0, "few_shot": False}


async def test_no_more_than_concurrency_problems_are_in_flight() -> None:
    backend = ScriptedBackend("Final answer: 0", latency_s=0.01)
    results = await run_all(problems(20), solver_for(backend), concurrency=3)
    assert len(results) == 20
    assert backend.peak_in_flight == 3


async def test_a_failing_problem_is_recorded_and_the_run_goes_on(tmp_path: Path) -> None:
    class FlakyBackend(ScriptedBackend):
        async def generate(self, messages: Sequence[Message], **kw: object) -> list[Completion]:
            if "3 + 3" in messages[-1].content:
                raise BackendError("server answered 500: boom", status=500)
            return await super().generate(messages, **kw)  # type: ignore[arg-type]

    def picky(problem: Problem, candidate: Candidate) -> bool:
        if problem.id == "p1":
            raise ValueError("this verifier has a bug")
        return True

    solver = Solver(SINGLE, SINGLE.make_config({}), FlakyBackend("Final answer: 1"),
                    verifier_for=lambda p: FunctionVerifier(picky))
    with ResultsWriter(tmp_path / "r.jsonl") as writer:
        await run_all(problems(5), solver, concurrency=5, writer=writer)
    rows = {r.id: r for r in read_results(tmp_path / "r.jsonl")}
    assert len(rows) == 5
    assert rows["p1"].error == "ValueError: this verifier has a bug"
    assert rows["p1"].stop_reason == "error"
    assert rows["p3"].error == "BackendError: server answered 500: boom"
    assert all(rows[i].error is None and rows[i].correct for i in ("p0", "p2", "p4"))
    summary = RunTally(5, rows.values()).summary()
    assert summary.failures == {"BackendError": 1, "ValueError": 1}
    assert (summary.errors, summary.solved, summary.judged) == (2, 3, 3)


async def test_gold_fields_never_reach_the_model() -> None:
    backend = ScriptedBackend("Final answer: 1")
    solver = Solver(SINGLE, SINGLE.make_config({}), backend,
                    verifier_for=lambda p: FunctionVerifier(same_number))
    gsm8k = load_problems(DATA / "gsm8k_test_public.jsonl")[:20]
    humaneval = load_problems(DATA / "humaneval_public.jsonl")[:5]
    await run_all(gsm8k + humaneval, solver, concurrency=4)
    sent = "\n".join(m.content for request in backend.requests
                     for m in request["messages"])  # type: ignore[attr-defined]
    for problem in gsm8k:
        assert problem.metadata["solution"] not in sent
    for problem in humaneval:
        assert problem.metadata["canonical_solution"].strip() not in sent
        assert problem.test is not None and problem.test.strip() not in sent


async def test_a_cancelled_run_keeps_whole_rows_only(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    finished: list[Result] = []
    with ResultsWriter(path) as writer:
        run = asyncio.create_task(run_all(problems(50), solver_for(doubling_backend(0.01)),
                                          concurrency=4, writer=writer,
                                          on_result=finished.append))
        while len(finished) < 10:
            await asyncio.sleep(0.005)
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run
    rows = read_results(path)
    assert len(rows) == len(finished) < 50
    assert path.read_bytes().endswith(b"\n")


def test_a_torn_last_line_is_skipped_on_read_and_cut_on_resume(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    done = [Result(id=f"p{i}", answer=str(2 * i)) for i in range(3)]
    with ResultsWriter(path) as writer:
        for result in done:
            writer.write(result)
    whole = path.read_bytes()
    with path.open("ab") as file:  # a process killed in the middle of its write
        file.write(result_line(Result(id="p3", answer="6")).encode()[:25])
    assert [r.id for r in read_results(path)] == ["p0", "p1", "p2"]

    todo, previous, _ = resume_plan(problems(5), path)
    assert path.read_bytes() == whole
    assert [p.id for p in todo] == ["p3", "p4"]
    assert [r.id for r in previous] == ["p0", "p1", "p2"]
    assert drop_torn_tail(path) == 0  # nothing more to cut


def test_drop_torn_tail_of_a_file_without_any_newline_empties_it(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_bytes(b'{"id": "p0", "ans')
    assert drop_torn_tail(path) == 17
    assert path.read_bytes() == b""
    assert drop_torn_tail(tmp_path / "missing.jsonl") == 0


def test_resume_keeps_only_rows_of_this_problem_set(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    with ResultsWriter(path) as writer:
        for pid in ("p1", "other"):
            writer.write(Result(id=pid, answer="2"))
    todo, previous, _ = resume_plan(problems(3), path)
    assert [p.id for p in todo] == ["p0", "p2"]
    assert [r.id for r in previous] == ["p1"]


def test_a_corrupt_row_in_the_middle_is_an_error_naming_its_line(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text(result_line(Result(id="a", answer="1")) + "not json\n"
                    + result_line(Result(id="b", answer="2")))
    with pytest.raises(Exception, match=r"r.jsonl:2: not a result row"):
        read_results(path)


async def test_the_budget_applies_to_each_problem_on_its_own() -> None:
    backend = ScriptedBackend("word " * 100 + "Final answer: 3")
    solver = Solver(SINGLE, SINGLE.make_config({"max_tokens": 200}), backend,
                    budget=Budget(tokens=300))
    results = await run_all(problems(3), solver, concurrency=3)
    # Each problem gets the whole 300 tokens: a shared budget would starve the later ones.
    assert [r.usage.calls for r in results] == [1, 1, 1]
    assert all(200 < r.usage.total_tokens <= 300 for r in results)
    assert all(r.usage.completion_tokens < 100 for r in results)


def test_summary_counts_accuracy_tokens_and_failures() -> None:
    ok = Result(id="a", answer="1", verdict=Verdict.from_bool(True),
                usage=Usage(prompt_tokens=10, completion_tokens=5, calls=1))
    wrong = Result(id="b", answer="2", verdict=Verdict.from_bool(False),
                   usage=Usage(prompt_tokens=10, completion_tokens=15, calls=2))
    unjudged = Result(id="c", answer="x", budget_exhausted=True, stop_reason="budget")
    failed = Result(id="d", answer=None, error="BackendError: cannot reach server")
    tally = RunTally(problems=5, previous=[ok])
    for result in (wrong, unjudged, failed):
        tally.add(result)
    summary = tally.summary(interrupted=True)
    assert (summary.done, summary.remaining, summary.resumed) == (4, 1, 1)
    assert (summary.judged, summary.solved, summary.accuracy) == (2, 1, 0.5)
    assert (summary.total_tokens, summary.calls, summary.mean_tokens) == (40, 3, 10.0)
    assert summary.failures == {"BackendError": 1}
    assert summary.budget_exhausted == 1
    assert tally.session_usage.total_tokens == 25  # the resumed row is not this session's
    assert summary.interrupted


def test_failure_kind_is_the_exception_name() -> None:
    assert failure_kind("BackendError: http://x answered 429: slow down") == "BackendError"
    assert failure_kind("something odd happened") == "error"


def test_a_later_row_for_the_same_id_replaces_the_earlier_one() -> None:
    tally = RunTally(1, [Result(id="a", answer="1", verdict=Verdict.from_bool(False))])
    tally.add(Result(id="a", answer="2", verdict=Verdict.from_bool(True)))
    summary = tally.summary()
    assert (summary.done, summary.judged, summary.solved) == (1, 1, 1)
