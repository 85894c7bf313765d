"""The exit status says how a run went, against a real HTTP server on 127.0.0.1: 3 when rows
carry an error (kept for `--resume --retry-errors`), 4 when the backend refuses every call (a
wrong model name or key), which stops the run after its first problems instead of writing an
identical error row for each; and the API's `BackendRefused` for the same."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import ponder
from ponder.cli import app
from ponder.runs.refusals import FIRST_FEW, BackendRefused
from ponder.runs.results_reader import read_results
from ponder.testing import FakeOpenAIServer

SERVED = "served-model"


def sums(tmp_path: Path, count: int) -> Path:
    """Problems the fake server answers right (it adds the numbers it is given)."""
    path = tmp_path / "sums.jsonl"
    path.write_text("".join(
        json.dumps({"id": f"s{i}", "problem": f"What is {i} + {i + 1}?", "answer": str(2 * i + 1)})
        + "\n" for i in range(count)))
    return path


def ponder_cli(*args: object) -> tuple[int, str, str]:
    done = CliRunner().invoke(app, [str(a) for a in args])
    if done.exception and not isinstance(done.exception, SystemExit):
        raise done.exception
    return done.exit_code, done.stdout, done.stderr


def test_a_wrong_model_name_stops_the_run_after_its_first_problems(tmp_path: Path) -> None:
    problems, out = sums(tmp_path, 20), tmp_path / "r.jsonl"
    solve = ["solve", problems, "-o", out, "--concurrency", "2"]
    with FakeOpenAIServer(model=SERVED) as server:
        code, stdout, stderr = ponder_cli(*solve, "--base-url", server.base_url,
                                          "--model", "nonesuch", "--json")
        asked = server.requests
    assert code == 4, stderr
    rows = read_results(out)
    # The first three failed alike; the one in flight beside them finished; none started after.
    assert FIRST_FEW <= len(rows) <= FIRST_FEW + 1
    assert asked == len(rows) and all(r.error and "answered 404" in r.error for r in rows)
    summary = json.loads(stdout)
    assert (summary["done"], summary["remaining"]) == (len(rows), 20 - len(rows))
    last = stderr.splitlines()[-1]
    assert last.startswith("error: the backend refuses every call: http://127.0.0.1:")
    assert last.count("answered 404") == 1
    assert last.endswith("run the same command with --resume --retry-errors (the failed rows "
                         f"are in {out})")
    assert stderr.count("answered 404") == 2  # the first failure as it came, and the verdict

    with FakeOpenAIServer(model=SERVED) as server:
        code, _, stderr = ponder_cli(*solve, "--base-url", server.base_url, "--model", SERVED,
                                     "--resume", "--retry-errors", "--quiet")
        assert (code, stderr) == (0, "")
        assert server.requests == 20
    rows = read_results(out)
    assert len(rows) == 20 and all(r.error is None and r.correct for r in rows)


def test_a_key_the_server_does_not_take_stops_the_run_too(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PONDER_TEST_KEY", "wrong")
    with FakeOpenAIServer(api_key="right") as server:
        code, _, stderr = ponder_cli("solve", sums(tmp_path, 10), "-o", tmp_path / "r.jsonl",
                                     "--base-url", server.base_url, "--concurrency", "1",
                                     "--api-key-env", "PONDER_TEST_KEY", "--quiet")
        assert server.requests == FIRST_FEW
    assert code == 4
    assert "answered 401" in stderr.splitlines()[-1]
    assert "wrong" not in stderr


def test_a_refusal_of_some_problems_is_not_a_refused_backend(tmp_path: Path) -> None:
    """One problem's 404 among answers: the run goes on, and ends with status 3."""
    out = tmp_path / "r.jsonl"

    def refuse_s0(body: dict[str, object]) -> int | None:
        return 404 if "0 + 1" in json.dumps(body) else None

    with FakeOpenAIServer(status_for=refuse_s0) as server:
        code, _, stderr = ponder_cli("solve", sums(tmp_path, 5), "-o", out, "--base-url",
                                     server.base_url, "--concurrency", "1", "--quiet")
    assert code == 3
    assert [r.id for r in read_results(out) if r.error] == ["s0"]
    assert len(read_results(out)) == 5
    assert stderr.splitlines()[-1] == (
        f"error: 1 of 5 problems failed (their rows are in {out}); run the same command with "
        "--resume --retry-errors to solve them again")


def test_the_api_raises_the_refusal_once(tmp_path: Path) -> None:
    problems = [{"id": f"p{i}", "problem": f"What is {i} + 1?"} for i in range(10)]
    with FakeOpenAIServer(model=SERVED) as server, \
            ponder.Session(server.base_url, model="nonesuch") as session:
        with pytest.raises(BackendRefused) as refused:
            session.solve_many(problems, concurrency=1)
        assert server.requests == FIRST_FEW
    assert refused.value.status == 404 and refused.value.failed == FIRST_FEW


def test_a_pool_where_one_server_refuses_and_one_answers_is_not_stopped(tmp_path: Path) -> None:
    """A refusal comes back faster than an answer: the first problems to finish may all be
    refused while the other server is still answering. The rule watches the first to start."""
    problems = [json.loads(line) for line in sums(tmp_path, 24).read_text().splitlines()]
    with FakeOpenAIServer(model=SERVED, latency_s=0.2) as good, \
            FakeOpenAIServer(model="another-model") as bad, \
            ponder.Session([good.base_url, bad.base_url], model=SERVED) as session:
        rows = session.solve_many(problems, concurrency=8)
    assert len(rows) == 24 and any(r.error is None for r in rows)


def test_a_refusal_keeps_the_rows_that_finished(tmp_path: Path) -> None:
    problems = [json.loads(line) for line in sums(tmp_path, 20).read_text().splitlines()]
    with FakeOpenAIServer(model=SERVED) as server, pytest.raises(BackendRefused) as refused, \
            ponder.Session(server.base_url, model="nonesuch") as session:
        session.solve_many(problems, concurrency=2)
    assert FIRST_FEW <= len(refused.value.results) <= FIRST_FEW + 1
    assert all("answered 404" in (r.error or "") for r in refused.value.results)


def test_a_bench_says_so_too_and_solves_failed_rows_again(tmp_path: Path) -> None:
    problems, out = sums(tmp_path, 6), tmp_path / "bench"
    bench = ["bench", problems, "-o", out, "--run", "single", "--concurrency", "1", "--quiet"]
    with FakeOpenAIServer(model=SERVED) as server:
        code, _, stderr = ponder_cli(*bench, "--base-url", server.base_url, "--model", "x")
        assert server.requests == FIRST_FEW
    assert code == 4
    assert "the backend refuses every call" in stderr and "answered 404" in stderr

    def refuse_s1(body: dict[str, object]) -> int | None:
        return 400 if "1 + 2" in json.dumps(body) else None

    with FakeOpenAIServer(model=SERVED, status_for=refuse_s1) as server:
        code, _, stderr = ponder_cli(*bench, "--base-url", server.base_url, "--model", SERVED)
        assert server.requests == 6  # the three refused solved again, and the three never begun
    assert code == 3
    assert stderr.splitlines()[-1] == (
        f"error: 1 row failed, counted wrong in the curve (the errors are in {out / 'runs'}); "
        "the same command solves them again")
    with (out / "curve.csv").open() as file:
        [point] = csv.DictReader(file)
    assert (point["correct"], point["errors"]) == ("5", "1")

    with FakeOpenAIServer(model=SERVED) as server:
        code, _, stderr = ponder_cli(*bench, "--base-url", server.base_url, "--model", SERVED)
        assert server.requests == 1  # only the failed row
    assert (code, stderr) == (0, "")
    with (out / "curve.csv").open() as file:
        [point] = csv.DictReader(file)
    assert (point["correct"], point["errors"]) == ("6", "0")
