"""`ponder bench` end to end against the fake server in quiz mode (a model of known skill per
problem): one pool's worth of requests for a sweep, points that agree with a direct run,
resume from the cached runs, gold labelled as pass@k, and the three curve files."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ponder.cli import app
from ponder.testing import FakeOpenAIServer

runner = CliRunner()

QUIZ = [{"id": f"q{i}", "problem": f"Quiz problem number {i}: what is {i} * 7?",
         "answer": str(i * 7), "p_correct": p}
        for i, p in enumerate([0.9, 0.9, 0.6, 0.5, 0.3, 0.1], start=1)]


@pytest.fixture
def problems(tmp_path: Path) -> Path:
    path = tmp_path / "quiz.jsonl"
    path.write_text("".join(json.dumps(q) + "\n" for q in QUIZ))
    return path


def bench(server: FakeOpenAIServer, problems: Path, out: Path, *runs: str,
          extra: tuple[str, ...] = ()) -> Any:
    args = [ "bench", str(problems), "-o", str(out), "--base-url", server.base_url,
             "--quiet", "--concurrency", "4", *extra]
    for spec in runs:
        args += ["--run", spec]
    return runner.invoke(app, args)


def curve(out: Path) -> list[dict[str, str]]:
    with (out / "curve.csv").open() as file:
        return list(csv.DictReader(file))


def test_a_sweep_over_n_makes_one_pools_worth_of_requests(problems: Path, tmp_path: Path) -> None:
    with FakeOpenAIServer(quiz=QUIZ, seed=3) as server:
        done = bench(server, problems, tmp_path / "b", "best_of_n n=1,2,4,8 temperature=0.7")
        assert done.exit_code == 0, done.output
        assert server.requests == len(QUIZ)  # one n=8 request per problem, nothing more
        served = server.usage_served
    rows = curve(tmp_path / "b")
    assert [int(r["params"].split("n=")[1].split()[0]) for r in rows] == [1, 2, 4, 8]
    assert [r["subsampled"] for r in rows] == ["True", "True", "True", "False"]
    assert {r["pool_n"] for r in rows} == {"8"}
    # The n=8 point spent exactly what the server served; smaller n spent less.
    tokens = [float(r["mean_tokens"]) for r in rows]
    assert tokens == sorted(tokens) and tokens[0] < tokens[-1]
    assert tokens[-1] == pytest.approx(
        (served["prompt_tokens"] + served["completion_tokens"]) / len(QUIZ), abs=0.05)
    for r in rows:
        low, acc, high = float(r["ci_low"]), float(r["accuracy"]), float(r["ci_high"])
        assert low <= acc <= high and r["problems"] == str(len(QUIZ))
    table, paired = (tmp_path / "b" / "curve.md").read_text().split("## Paired against")
    assert table.count("| best_of_n |") == 4
    assert paired.count("| best_of_n |") == 3  # n=2, 4, 8 against the first point, n=1


def test_the_pooled_full_n_point_is_what_a_direct_run_answers(problems: Path,
                                                             tmp_path: Path) -> None:
    with FakeOpenAIServer(quiz=QUIZ, seed=5) as server:
        assert bench(server, problems, tmp_path / "b",
                     "best_of_n n=2,6 temperature=0.7").exit_code == 0
    [run] = (tmp_path / "b" / "runs").glob("*.jsonl")
    rows = [json.loads(line) for line in run.read_text().splitlines()]
    no_gold = tmp_path / "no_gold.jsonl"  # as the bench shows them: no gold to pick with
    no_gold.write_text("".join(json.dumps({"id": q["id"], "problem": q["problem"]}) + "\n"
                               for q in QUIZ))
    with FakeOpenAIServer(quiz=QUIZ, seed=5) as server:
        solved = runner.invoke(app, ["solve", str(no_gold), "-s", "best_of_n", "-p", "n=6",
                                     "-p", "temperature=0.7", "--seed", "0",
                                     "--base-url", server.base_url, "--quiet", "--no-trace",
                                     "-o", str(tmp_path / "direct.jsonl")])
    assert solved.exit_code == 0, solved.output
    direct = {json.loads(line)["id"]: json.loads(line)
              for line in (tmp_path / "direct.jsonl").read_text().splitlines()}
    # Same server seed, same requests: the direct n=6 vote answers as the pool's vote does.
    for row in rows:
        assert row["info"]["vote_answer"] == direct[row["id"]]["answer"]
    points = curve(tmp_path / "b")
    full = next(p for p in points if p["subsampled"] == "False")
    correct = sum(r["info"]["vote_answer"] == next(q["answer"] for q in QUIZ
                                                    if q["id"] == r["id"])
                  for r in rows)
    assert int(full["correct"]) == correct


def test_a_stopped_bench_resumes_from_its_cached_runs(problems: Path, tmp_path: Path) -> None:
    out = tmp_path / "b"
    with FakeOpenAIServer(quiz=QUIZ, seed=1) as server:
        assert bench(server, problems, out, "single", "best_of_n n=1,3").exit_code == 0
        first = server.requests
        assert first == 2 * len(QUIZ)
        # Cut one run's file to half its rows, as a killed bench leaves it.
        run = sorted((out / "runs").glob("best_of_n-*.jsonl"))[0]
        lines = run.read_text().splitlines(keepends=True)
        run.write_text("".join(lines[:3]))
        before = curve(out)
        assert bench(server, problems, out, "single", "best_of_n n=1,3").exit_code == 0
        assert server.requests == first + len(QUIZ) - 3
    assert len(run.read_text().splitlines()) == len(QUIZ)
    assert [r["params"] for r in curve(out)] == [r["params"] for r in before]


def test_gold_picking_is_labelled_pass_at_k_beside_the_vote(problems: Path,
                                                           tmp_path: Path) -> None:
    with FakeOpenAIServer(quiz=QUIZ, seed=2) as server:
        done = bench(server, problems, tmp_path / "b",
                     "best_of_n n=4 temperature=0.7 verifier=gold")
    assert done.exit_code == 0, done.output
    rows = curve(tmp_path / "b")
    assert [r["selection"] for r in rows] == ["gold (pass@k)", "no gold (the same run's vote)"]
    assert float(rows[0]["accuracy"]) >= float(rows[1]["accuracy"])
    assert "gold (pass@k)" in (tmp_path / "b" / "curve.md").read_text()


def test_problems_without_gold_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"id": "a", "problem": "2+2?", "answer": "4"}) + "\n"
                    + json.dumps({"id": "b", "problem": "3+3?"}) + "\n")
    with FakeOpenAIServer() as server:
        done = bench(server, path, tmp_path / "b", "single")
        assert server.requests == 0
    assert done.exit_code == 2
    assert "'b' (row 2) has no gold" in done.output


def test_a_bad_spec_names_itself(problems: Path, tmp_path: Path) -> None:
    with FakeOpenAIServer() as server:
        done = bench(server, problems, tmp_path / "b", "best_of_n n=1,two")
    assert done.exit_code == 2 and "best_of_n" in done.output


def test_paired_with_names_a_run_label(problems: Path, tmp_path: Path) -> None:
    with FakeOpenAIServer(quiz=QUIZ, seed=3) as server:
        done = bench(server, problems, tmp_path / "a", "single",
                     "single temperature=0.3 label=other", extra=("--paired-with", "nobody"))
        assert done.exit_code == 2 and server.requests == 0
        assert "--paired-with 'nobody'" in done.output and "single, other" in done.output
        done = bench(server, problems, tmp_path / "g", "single",
                     "best_of_n n=2 temperature=0.7 verifier=gold label=oracle",
                     extra=("--paired-with", "oracle"))
        assert done.exit_code == 2 and server.requests == 0 and "verifier=gold" in done.output
        done = bench(server, problems, tmp_path / "b", "single",
                     "single temperature=0.3 label=other", "best_of_n n=3 temperature=0.7",
                     extra=("--paired-with", "other"))
    assert done.exit_code == 0, done.output
    text = (tmp_path / "b" / "curve.md").read_text()
    assert "## Paired against single" in text and "## Paired against other" in text
    against_other = text.split("## Paired against other")[1]
    assert "| single |" in against_other and "| best_of_n |" in against_other


def test_the_plot_is_drawn(problems: Path, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    with FakeOpenAIServer(quiz=QUIZ, seed=4) as server:
        assert bench(server, problems, tmp_path / "b", "single",
                     "best_of_n n=1,2,4").exit_code == 0
    png = tmp_path / "b" / "curve.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_compute_axis_counts_the_models_parameters(problems: Path, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    with FakeOpenAIServer(quiz=QUIZ, seed=4) as server:
        done = bench(server, problems, tmp_path / "b", "single",
                     extra=("--x", "compute", "--model-params", "5e8"))
    assert done.exit_code == 0, done.output
    [row] = curve(tmp_path / "b")
    assert float(row["mean_flops"]) == pytest.approx(2 * 5e8 * float(row["mean_tokens"]),
                                                      rel=1e-3)
    assert (tmp_path / "b" / "curve.png").is_file()


def test_a_later_bench_chooses_from_a_larger_cached_pool(problems: Path, tmp_path: Path) -> None:
    out = tmp_path / "b"
    with FakeOpenAIServer(quiz=QUIZ, seed=6) as server:
        assert bench(server, problems, out, "best_of_n n=2,8 temperature=0.7").exit_code == 0
        first = server.requests
        done = bench(server, problems, out, "best_of_n n=1,4 temperature=0.7 selector=vote",
                     "best_of_n n=4 temperature=0.7 selector=confidence label=conf")
        assert done.exit_code == 0, done.output
        assert server.requests == first  # every point came from the n=8 pool
    rows = curve(out)
    assert [r["pool_n"] for r in rows] == ["8", "8", "8"]
    assert all(r["subsampled"] == "True" for r in rows)


def test_a_breakdown_by_a_problem_field_adds_up_to_the_point(tmp_path: Path) -> None:
    path = tmp_path / "quiz.jsonl"
    path.write_text("".join(
        json.dumps({**q, "difficulty": "easy" if q["p_correct"] > 0.5 else "hard"}) + "\n"
        for q in QUIZ))
    with FakeOpenAIServer(quiz=QUIZ, seed=5) as server:
        done = bench(server, path, tmp_path / "b", "single label=greedy",
                     "best_of_n n=2,4 temperature=0.7", extra=("--by", "difficulty"))
    assert done.exit_code == 0, done.output
    with (tmp_path / "b" / "curve_by.csv").open() as file:
        groups = list(csv.DictReader(file))
    points = curve(tmp_path / "b")
    assert len(groups) == 2 * len(points)
    for point in points:
        mine = [g for g in groups if (g["label"], g["strategy"], g["params"], g["run"])
                == (point["label"], point["strategy"], point["params"], point["run"])]
        assert [(g["by"], g["group"]) for g in mine] == [("difficulty", "easy"),
                                                         ("difficulty", "hard")]
        assert [int(g["problems"]) for g in mine] == [3, 3]
        assert sum(int(g["correct"]) for g in mine) == int(point["correct"])
        spent = sum(float(g["mean_tokens"]) * int(g["problems"]) for g in mine)
        assert spent / len(QUIZ) == pytest.approx(float(point["mean_tokens"]), abs=0.1)
    assert "## By difficulty" in (tmp_path / "b" / "curve.md").read_text()


def test_a_breakdown_by_a_field_no_problem_has_is_refused(problems: Path,
                                                          tmp_path: Path) -> None:
    with FakeOpenAIServer(quiz=QUIZ) as server:
        done = bench(server, problems, tmp_path / "b", "single", extra=("--by", "topic"))
        assert server.requests == 0
    assert done.exit_code == 2 and "--by topic" in done.output
    assert "chosen problems" in done.output


def test_the_wall_time_is_on_disk_as_each_row_lands_so_a_killed_bench_keeps_it(
        tmp_path: Path) -> None:
    import asyncio

    from ponder.backends.scripted import ScriptedBackend
    from ponder.bench.run import solve_run
    from ponder.bench.spec import parse_spec, plan_runs
    from ponder.core.types import Problem
    from ponder.session import Session

    [run] = plan_runs(parse_spec("single"))
    problems = [Problem(id=q["id"], problem=q["problem"], answer=q["answer"]) for q in QUIZ]
    meta = tmp_path / "runs" / f"{run.key}.json"
    seen: list[float] = []

    def on_result(row: Any) -> None:
        # A SIGKILL here runs no `finally`: what is on disk now is all the run keeps.
        saved = json.loads(meta.read_text())
        assert saved["params"] == run.params
        seen.append(saved["wall_s"])

    session = Session(ScriptedBackend(["Final answer: 7"]), seed=0)
    asyncio.run(solve_run(run, problems, tmp_path, session=session, concurrency=1,
                          on_result=on_result))
    assert len(seen) == len(QUIZ)
    assert not list((tmp_path / "runs").glob(".*"))  # no temporary file left behind


def _recache(out: Path, strategy: str, edit: Any) -> None:
    """Rewrite the one cached run of `strategy` as an older ponder would have written it:
    `edit` changes its parameters, and its files take the name those parameters give."""
    from ponder.bench.spec import Run

    [meta_path] = (out / "runs").glob(f"{strategy}-*.json")
    meta = json.loads(meta_path.read_text())
    edit(meta["params"])
    key = Run(strategy, meta["params"], None, None).key
    meta_path.with_suffix(".jsonl").rename(out / "runs" / f"{key}.jsonl")
    meta_path.unlink()
    (out / "runs" / f"{key}.json").write_text(json.dumps(meta))


@pytest.mark.parametrize("spec", ["single", "best_of_n n=1,3 temperature=0.7"])
def test_a_run_cached_before_a_parameter_existed_is_not_drawn_again(
        problems: Path, tmp_path: Path, spec: str) -> None:
    out = tmp_path / "b"
    strategy = spec.split()[0]
    with FakeOpenAIServer(quiz=QUIZ, seed=1) as server:
        assert bench(server, problems, out, spec).exit_code == 0
        first, before = server.requests, curve(out)
        # few_shot, at its default (off), did not exist when this run was cached.
        _recache(out, strategy, lambda params: params.pop("few_shot"))
        assert bench(server, problems, out, spec).exit_code == 0
        assert server.requests == first
    after = curve(out)
    assert all((out / "runs" / f"{row['run']}.jsonl").is_file() for row in after)
    same = ("accuracy", "correct", "mean_tokens", "mean_calls", "params", "subsampled")
    assert [{k: r[k] for k in same} for r in after] == [{k: r[k] for k in same} for r in before]


def test_a_run_cached_with_another_value_is_drawn_again(problems: Path, tmp_path: Path) -> None:
    out = tmp_path / "b"
    with FakeOpenAIServer(quiz=QUIZ, seed=1) as server:
        assert bench(server, problems, out, "single").exit_code == 0
        first = server.requests
        # As if the default temperature had been 0.5 when this run was cached.
        _recache(out, "single", lambda params: params.update(temperature=0.5))
        assert bench(server, problems, out, "single").exit_code == 0
        assert server.requests == 2 * first


def test_a_pool_is_never_taken_from_a_judge_run(problems: Path, tmp_path: Path) -> None:
    out = tmp_path / "b"
    with FakeOpenAIServer(quiz=QUIZ, seed=1) as server:
        assert bench(server, problems, out, "best_of_n n=4 temperature=0.7 selector=judge"
                     ).exit_code == 0
        first = server.requests
        # Same drawing parameters, but the judge run's samples carry no confidence.
        assert bench(server, problems, out, "best_of_n n=1,2 temperature=0.7").exit_code == 0
        assert server.requests == first + len(QUIZ)
