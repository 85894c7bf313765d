"""One token budget for a whole run (`ponder.runs.allocation`): never exceeded, with faults,
concurrency and a run killed and resumed; every problem gets one final row; the second pass
goes to the most promising first; `ponder solve --total-budget-tokens` and its summary."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import ponder
from ponder.backends.openai import OpenAIBackend
from ponder.backends.scripted import ScriptedBackend
from ponder.cli import app
from ponder.core.budget import Budget, BudgetMeter, RunMeter
from ponder.core.errors import BudgetExhausted, ConfigError
from ponder.core.replay import Replay
from ponder.core.types import Message, Problem, Result, Usage
from ponder.runs.allocation import first_cap, solve_within
from ponder.runs.results import ResultsWriter
from ponder.runs.results_reader import read_results
from ponder.runs.solve_many import Solver, resume_plan, run_all
from ponder.runs.summary import RunTally
from ponder.strategies import REGISTRY
from ponder.testing import FakeOpenAIServer, QuizItem

QUIZ = [QuizItem(problem=f"Quiz {i}: what is {i} + {i}?", answer=str(2 * i),
                 p_correct=(0.95, 0.5, 0.15)[i % 3]) for i in range(8)]
PROBLEMS = [Problem(id=f"q{i}", problem=item.problem) for i, item in enumerate(QUIZ)]
ADAPTIVE = {"adaptive": True, "n": 7, "min_samples": 3, "batch_size": 2, "max_tokens": 160}
FAULTS = ("429", "500", "malformed", "drop")  # a "hang" would only test the client's timeout


def last_rows(rows: Sequence[Result]) -> dict[str, Result]:
    """Each id's last row: what ponder reads as its result."""
    return {row.id: row for row in rows}


def spent(rows: Sequence[Result]) -> int:
    return sum(row.usage.total_tokens for row in last_rows(rows).values())


# -- the run's meter -----------------------------------------------------------------------------


def test_problems_sharing_a_run_meter_cannot_overspend_it_together() -> None:
    run = RunMeter(tokens=1000)
    a, b = Budget(tokens=800).start(run), Budget(tokens=800).start(run)
    first = a.reserve(prompt_tokens=100, prompt_copies=1, n=1, max_tokens=500)
    assert (first.tokens, run.reserved, run.remaining) == (600, 600, 400)
    # b's own budget would allow 700 more tokens; the run has 400 left: max_tokens is capped,
    # no lower than the run's replies have needed.
    second = b.reserve(prompt_tokens=100, prompt_copies=1, n=2, max_tokens=500,
                       reply_tokens=150)
    assert (second.n, second.max_tokens, second.tokens) == (2, 150, 400)
    assert run.remaining == 0 and b.exhausted
    with pytest.raises(BudgetExhausted, match="run's total budget of 1000"):
        b.reserve(prompt_tokens=10, prompt_copies=1, n=1, max_tokens=50)
    a.charge(first, Usage(prompt_tokens=90, completion_tokens=110, calls=1))
    b.release(second)
    assert (run.spent, run.reserved, run.remaining) == (200, 0, 800)
    assert a.remaining_tokens == 600 and b.remaining_tokens == 800


def test_under_a_run_meter_no_sample_is_cut_below_what_replies_needed() -> None:
    def shared(tokens: int) -> BudgetMeter:
        return Budget(tokens=tokens).start(RunMeter(tokens=10_000))

    # 300 tokens after the prompt. Alone, four samples share them (75 each).
    alone = Budget(tokens=400).start()
    res = alone.reserve(prompt_tokens=100, prompt_copies=1, n=4, max_tokens=200)
    assert (res.n, res.max_tokens) == (4, 75)
    # Under a total, before any reply came back: none cut below half of max_tokens.
    res = shared(400).reserve(prompt_tokens=100, prompt_copies=1, n=4, max_tokens=200)
    assert (res.n, res.max_tokens, res.tokens) == (3, 100, 400)
    # Replies that needed 60 tokens: four at 75 lose nothing; replies of 80 would be cut.
    res = shared(400).reserve(prompt_tokens=100, prompt_copies=1, n=4, max_tokens=200,
                              reply_tokens=60)
    assert (res.n, res.max_tokens) == (4, 75)
    res = shared(400).reserve(prompt_tokens=100, prompt_copies=1, n=4, max_tokens=200,
                              reply_tokens=80)
    assert (res.n, res.max_tokens) == (3, 100)
    with pytest.raises(BudgetExhausted):  # min_n samples would all be cut short
        shared(400).reserve(prompt_tokens=100, prompt_copies=1, n=5, max_tokens=200, min_n=4,
                            reply_tokens=200)
    # A prompt charged per sample is counted per sample: two of (100 + 150).
    res = shared(500).reserve(prompt_tokens=100, prompt_copies=4, n=4, max_tokens=200)
    assert (res.n, res.max_tokens, res.tokens, res.prompt_copies) == (2, 150, 500, 2)
    # A lone sample is held to what replies needed too...
    with pytest.raises(BudgetExhausted, match="too few for a prompt of up to 100 tokens and 80"):
        shared(160).reserve(prompt_tokens=100, prompt_copies=1, n=1, max_tokens=100,
                            reply_tokens=80)
    # ...unless replies run to max_tokens anyway: then it may be cut to half, no shorter.
    res = shared(160).reserve(prompt_tokens=100, prompt_copies=1, n=1, max_tokens=100,
                              reply_tokens=100)
    assert (res.n, res.max_tokens) == (1, 60)
    with pytest.raises(BudgetExhausted, match="too few for a prompt of up to 100 tokens and 50"):
        shared(140).reserve(prompt_tokens=100, prompt_copies=1, n=1, max_tokens=100,
                            reply_tokens=100)
    assert Budget(tokens=140).start().reserve(prompt_tokens=100, prompt_copies=1, n=1,
                                              max_tokens=100).max_tokens == 40


def test_replies_shorter_than_max_tokens_keep_a_call_whole_under_a_total() -> None:
    # The default max_tokens (512) far above replies of about 150: once the first reply has
    # come back, each problem's five samples come from one call, cut to what fits, as they
    # would alone, rather than whole samples one call at a time (a prompt each).
    reply = " ".join(["step"] * 145) + "\nFinal answer: 7"
    spec = REGISTRY.get("best_of_n")
    config = spec.make_config({"n": 5})
    problems = [Problem(id=f"p{i}", problem=f"Problem {i}: what is it?") for i in range(4)]
    backend = ScriptedBackend(reply)
    rows = asyncio.run(solve_within(problems, Solver(spec, config, backend),
                                    total_tokens=4 * 1500, concurrency=1))
    assert [r.info["samples"] for r in rows] == [5] * 4
    assert [r.usage.calls for r in rows] == [2, 1, 1, 1]
    requests = [(r["n"], r["max_tokens"]) for r in backend.requests]
    assert requests[0][0] < 5  # nothing learned yet: none cut below half of max_tokens
    assert all(n == 5 and 150 <= int(str(m)) < 512 for n, m in requests[2:])
    assert all(r.answer == "7" for r in rows)


def test_a_resumed_run_meter_starts_from_what_was_spent() -> None:
    run = RunMeter(tokens=1000, spent=950)
    meter = Budget().start(run)
    assert meter.remaining_tokens == 50
    with pytest.raises(BudgetExhausted):
        meter.reserve(prompt_tokens=40, prompt_copies=1, n=1, max_tokens=100)


def test_the_first_pass_cap_is_a_share_of_the_total_never_above_the_problem_budget() -> None:
    assert first_cap(10_000, 10, 0.5, None) == 500
    assert first_cap(10_000, 10, 0.5, 300) == 300
    assert first_cap(10, 100, 0.5, None) == 1


# -- the property: never more than the total, one final row each ---------------------------------


@pytest.fixture(scope="module")
def faulty() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(quiz=QUIZ, fault_rate=0.15, faults=FAULTS, seed=3,
                          retry_after_s=0.01) as server:
        yield server


def solver_for(server: FakeOpenAIServer, strategy: str, budget: Budget) -> Solver:
    params = dict(ADAPTIVE) if strategy == "best_of_n" else \
        {"program": False, "max_samples": 4, "batch_size": 2, "max_tokens": 160}
    spec = REGISTRY.get(strategy)
    backend = OpenAIBackend(server.base_url, model="fake-model", timeout=5.0, max_retries=2,
                            backoff_initial=0.005, backoff_max=0.01)
    return Solver(spec, spec.make_config(params), backend, budget=budget, seed=7)


async def run_twice(server: FakeOpenAIServer, path: Path, *, total: int, first_share: float,
                    strategy: str, per_problem: int | None, concurrency: int,
                    cut: float) -> None:
    """A run, cut short by truncating its results file (what a kill leaves, a torn last line
    included), then resumed; each session checked against the total."""
    solver = solver_for(server, strategy, Budget(tokens=per_problem))
    try:
        with ResultsWriter(path, fsync=False) as writer:
            final = await solve_within(PROBLEMS, solver, total_tokens=total,
                                       concurrency=concurrency, first_share=first_share,
                                       writer=writer)
        assert [r.id for r in final] == [p.id for p in PROBLEMS]
        written = read_results(path)
        assert spent(written) <= total
        assert {i: (r.answer, r.usage) for i, r in last_rows(written).items()} == \
            {r.id: (r.answer, r.usage) for r in final}
        for row in final:
            if per_problem is not None:
                assert row.usage.total_tokens <= per_problem
            if row.info.get("passes") == 2:
                first = row.info["first_pass"]
                assert first["tokens"] <= row.usage.total_tokens
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * cut)])
        _, previous, _ = resume_plan(PROBLEMS, path)
        assert spent(previous) <= total
        with ResultsWriter(path, fsync=False) as writer:
            resumed = await solve_within(PROBLEMS, solver, total_tokens=total,
                                         concurrency=concurrency, first_share=first_share,
                                         previous=previous, writer=writer)
    finally:
        await solver.backend.aclose()
    rows = read_results(path)
    latest = last_rows(rows)
    assert sorted(latest) == sorted(p.id for p in PROBLEMS)  # one final row each
    assert spent(rows) <= total
    assert {r.id: r.usage for r in resumed} == {i: r.usage for i, r in latest.items()}
    for row in latest.values():
        if row.answer is None and row.error is None:
            assert row.stop_reason == "budget" and row.budget_exhausted


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(total=st.integers(min_value=1, max_value=9000),
       first_share=st.sampled_from([0.3, 0.5, 1.0]),
       strategy=st.sampled_from(["best_of_n", "auto"]),
       per_problem=st.none() | st.integers(min_value=200, max_value=2000),
       concurrency=st.integers(min_value=2, max_value=6),
       cut=st.floats(min_value=0.0, max_value=1.0))
def test_a_run_never_spends_more_than_its_total_even_killed_and_resumed(
        faulty: FakeOpenAIServer, tmp_path_factory: pytest.TempPathFactory, total: int,
        first_share: float, strategy: str, per_problem: int | None, concurrency: int,
        cut: float) -> None:
    path = tmp_path_factory.mktemp("run") / "run.jsonl"
    asyncio.run(run_twice(faulty, path, total=total, first_share=first_share,
                          strategy=strategy, per_problem=per_problem, concurrency=concurrency,
                          cut=cut))


def test_under_a_total_no_sample_is_cut_before_its_answer() -> None:
    # Each reply is 153 tokens after a prompt of about 230; 432 tokens a problem fit one
    # sample whole, or three cut to 66 tokens, which end before their answer line.
    reply = " ".join(["step"] * 150) + "\nFinal answer: 7"
    spec = REGISTRY.get("best_of_n")
    config = spec.make_config({"n": 3, "max_tokens": 200})
    problems = [Problem(id=f"p{i}", problem=f"Problem {i}: what is it?") for i in range(3)]

    alone = ScriptedBackend(reply)
    cut = asyncio.run(run_all(problems, Solver(spec, config, alone, budget=Budget(tokens=432)),
                              concurrency=1))
    assert [(r["n"], r["max_tokens"]) for r in alone.requests] == [(3, 66)] * 3
    assert all(r.answer != "7" for r in cut)  # a per-problem budget makes the cut call

    shared = ScriptedBackend(reply)
    rows = asyncio.run(solve_within(problems, Solver(spec, config, shared),
                                    total_tokens=3 * 432, concurrency=1))
    # Under a total, the first call (nothing learned) cuts no sample below half its
    # max_tokens: two at 100, still short of these replies, which count as needing all 200.
    # From then on every sample is whole.
    assert [(r["n"], r["max_tokens"]) for r in shared.requests] == [(2, 100), (1, 200), (1, 200)]
    assert [r.answer for r in rows][1:] == ["7", "7"]
    assert sum(r.usage.total_tokens for r in rows) <= 3 * 432


def test_when_the_total_is_spent_the_rest_get_budget_rows_without_a_model_call() -> None:
    with FakeOpenAIServer(quiz=QUIZ) as server:
        rows = ponder.solve_many(PROBLEMS, strategy="best_of_n", backend=server.base_url,
                                 total_budget=Budget(tokens=10), concurrency=3, **ADAPTIVE)
        assert server.requests == 0
    assert [r.id for r in rows] == [p.id for p in PROBLEMS]
    for row in rows:
        assert (row.answer, row.stop_reason, row.budget_exhausted) == (None, "budget", True)
        assert row.usage.total_tokens == 0 and "total budget of 10" in row.info["budget_note"]


# -- the second pass -----------------------------------------------------------------------------

SCRIPTS = {"alpha": ["1"], "beta": ["2", "2", "3"], "gamma": ["4", "5", "6"]}


def scripted() -> ScriptedBackend:
    """alpha's samples all agree; beta's agree two to one; gamma's never agree."""
    cycles = {key: itertools.cycle(replies) for key, replies in SCRIPTS.items()}

    def reply(messages: Sequence[Message]) -> str:
        key = next(k for k in SCRIPTS if f"Problem {k}" in messages[-1].content)
        return f"Final answer: {next(cycles[key])}"

    return ScriptedBackend(reply)


async def two_passes(total: int, *, reuse: bool = True) -> tuple[list[Result], ScriptedBackend]:
    spec = REGISTRY.get("best_of_n")
    config = spec.make_config({"adaptive": True, "n": 9, "min_samples": 3, "batch_size": 1,
                               "max_tokens": 8})
    problems = [Problem(id=k, problem=f"Problem {k}: what is it?")
                for k in ("gamma", "beta", "alpha")]
    backend = scripted()
    rows: list[Result] = []
    await solve_within(problems, Solver(spec, config, backend), total_tokens=total,
                       concurrency=1, first_share=0.5, on_result=rows.append, reuse=reuse)
    return rows, backend


def test_the_second_pass_goes_to_the_unsettled_closest_vote_first() -> None:
    rows, _ = asyncio.run(two_passes(2400))
    first, second = rows[:3], rows[3:5]
    assert [(r.id, r.stop_reason) for r in first] == \
        [("gamma", "budget"), ("beta", "budget"), ("alpha", "consensus")]
    assert first[1].info["votes"] == {"2": 2.0, "3": 1.0}
    assert first[0].info["votes"] == {"4": 1.0, "5": 1.0, "6": 1.0}
    # alpha is settled; gamma's three-way tie (a lead of 0) has more to gain than beta's
    # lead of one, however much higher beta's agreement (2/3 against 1/3).
    assert [r.id for r in second] == ["gamma", "beta"]
    before = {r.id: r for r in first}
    for row in second:
        assert row.info["passes"] == 2
        assert row.info["first_pass"] == {"answer": before[row.id].answer,
                                           "stop_reason": before[row.id].stop_reason,
                                           "tokens": before[row.id].usage.total_tokens}
        assert row.usage.total_tokens > before[row.id].usage.total_tokens
        # It went on from the first pass's three samples rather than drawing them again.
        assert row.info["samples"] > 3
    assert second[1].stop_reason == "consensus"
    assert sum(r.usage.total_tokens for r in last_rows(rows).values()) <= 2400


def test_ties_in_promise_go_by_id_and_a_second_pass_reuses_the_first_pass_replies() -> None:
    rows, _ = asyncio.run(two_passes(1500))
    # One sample each in the first pass (the cap fits no more): all agree with themselves.
    assert [r.info["samples"] for r in rows[:3]] == [1, 1, 1]
    assert [r.id for r in rows[3:]] == ["alpha", "beta", "gamma"]
    alpha = rows[3]
    # Its first pass's sample came back free from the trace; only two more were asked for.
    replayed = [e for e in alpha.trace if e.data.get("replayed")]
    assert [len(e.completions) for e in replayed] == [1]
    assert sum(e.usage.total_tokens for e in replayed) == 0
    again, _ = asyncio.run(two_passes(1500, reuse=False))
    assert again[3].id == "alpha" and not any(e.data.get("replayed") for e in again[3].trace)
    assert alpha.info["samples"] == again[3].info["samples"] == 3
    assert alpha.usage.total_tokens < again[3].usage.total_tokens


def test_a_replay_hands_back_whole_replies_once_each() -> None:
    from ponder.core.types import Completion, TraceEvent

    asked = [Message(role="user", content="q")]
    whole = Completion(text="Final answer: 2", finish_reason="stop",
                       usage=Usage(completion_tokens=3))
    cut = Completion(text="Final", finish_reason="length", usage=Usage(completion_tokens=1))
    event = TraceEvent(kind="generate", messages=asked, completions=[whole, cut, whole],
                       data={"n": 3, "max_tokens": 8, "temperature": 0.7})
    replay = Replay([event])
    assert len(replay) == 2
    assert replay.take(asked, n=1, max_tokens=8, temperature=0.0) == []  # greedy is another call
    assert replay.take(asked, n=5, max_tokens=8, temperature=0.7) == [whole, whole]
    assert replay.take(asked, n=1, max_tokens=8, temperature=0.7) == []


# -- the API -------------------------------------------------------------------------------------


def test_solve_many_returns_results_in_order_with_ids_given_by_position() -> None:
    backend = ScriptedBackend("Final answer: 5")
    rows = ponder.solve_many(["What is 2 + 3?", {"problem": "And 1 + 4?"},
                              Problem(id="mine", problem="And 0 + 5?")], backend=backend)
    assert [(r.id, r.answer) for r in rows] == [("0", "5"), ("1", "5"), ("mine", "5")]
    with pytest.raises(ConfigError, match="unique"):
        ponder.solve_many([{"id": "a", "problem": "x"}, {"id": "a", "problem": "y"}],
                          backend=backend)
    with pytest.raises(ConfigError, match="tokens only"):
        ponder.solve_many(["x"], backend=backend, total_budget=Budget(calls=3))


# -- the command line ----------------------------------------------------------------------------


def ponder_cli(*args: object) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def quiz_file(tmp_path: Path) -> Path:
    path = tmp_path / "quiz.jsonl"
    path.write_text("".join(json.dumps({"id": p.id, "problem": p.problem}) + "\n"
                            for p in PROBLEMS))
    return path


def test_the_cli_option_its_summary_and_a_resume(quiz_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "run.jsonl"
    params = [a for key, value in ADAPTIVE.items()
              for a in ("-p", f"{key}={json.dumps(value)}")]
    with FakeOpenAIServer(quiz=QUIZ, seed=1) as server:
        base = ["solve", quiz_file, "--base-url", server.base_url, "-s", "best_of_n", *params,
                "-o", out, "--concurrency", "4", "--total-budget-tokens", "6000",
                "--first-share", "0.5"]
        code, stdout, stderr = ponder_cli(*base, "--json")
        assert code == 0, stderr
        summary = json.loads(stdout)
        rows = read_results(out)
        assert summary["total_budget"] == 6000 and summary["total_tokens"] <= 6000
        assert summary["done"] == summary["problems"] == len(PROBLEMS)
        assert summary["got_extra"] == sum(r.info.get("passes") == 2 for r in rows) > 0
        assert summary["total_tokens"] == spent(rows)
        per_problem = sorted(r.usage.total_tokens for r in last_rows(rows).values())
        assert (summary["tokens_min"], summary["tokens_max"]) == (per_problem[0],
                                                                  per_problem[-1])

        # Killed during the second pass: its last rows are gone; --resume finishes within
        # the same total, counting what the file already spent.
        lines = out.read_text().splitlines(keepends=True)
        out.write_text("".join(lines[: len(PROBLEMS) + 1]))
        code, stdout, stderr = ponder_cli(*base, "--resume")
        assert code == 0, stderr
        assert "total budget" in stdout and "got extra" in stdout
        assert "tokens per problem" in stdout and "6,000" in stdout
        rows = read_results(out)
        assert sorted(last_rows(rows)) == sorted(p.id for p in PROBLEMS)
        assert spent(rows) <= 6000

    # `ponder show` reads each id's last row, as the tally and a resume do.
    code, stdout, _ = ponder_cli("show", out)
    assert code == 0
    tally = RunTally(len(PROBLEMS), rows)
    assert f"{len(PROBLEMS)} / {len(PROBLEMS)}" in stdout
    assert f"{tally.summary().total_tokens:,}" in stdout
    extra = next(r for r in rows if r.info.get("passes") == 2)
    assert stdout.count(f" {extra.id} ") == 1


@pytest.mark.parametrize(("args", "message"), [
    (["--first-share", "0.7"], "--first-share goes with --total-budget-tokens"),
    (["--total-budget-tokens", "100", "--first-share", "0"], "choose a share above 0"),
    (["--total-budget-tokens", "100", "--first-share", "1.5"], "choose a share above 0"),
    (["--total-budget-tokens", "100", "--resume", "--retry-errors"], "--retry-errors cannot"),
    (["--total-budget-tokens", "100", "--ray", "local"], "cannot go with --ray"),
])
def test_the_cli_refuses_what_cannot_go_with_a_total(quiz_file: Path, tmp_path: Path,
                                                     args: list[str], message: str) -> None:
    code, _, stderr = ponder_cli("solve", quiz_file, "--base-url", "http://127.0.0.1:9",
                                 "-o", tmp_path / "x.jsonl", *args)
    assert code == 2 and message in stderr


def test_a_superseding_row_adds_only_its_new_tokens_to_the_session() -> None:
    tally = RunTally(1)
    tally.add(Result(id="a", answer="1", usage=Usage(prompt_tokens=10, completion_tokens=5)))
    tally.add(Result(id="a", answer="2", usage=Usage(prompt_tokens=30, completion_tokens=20),
                     info={"passes": 2}))
    assert tally.session_usage.total_tokens == 50
    summary = tally.summary()
    assert (summary.done, summary.total_tokens, summary.got_extra) == (1, 50, 1)
