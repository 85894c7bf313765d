"""ponder on a Ray cluster: problems solved by Ray workers, rows written by the driver through
the local run's writer, so a run gives one row per problem and the answers a local run gives;
a killed driver leaves no Ray process behind and `--resume` finishes the run; a Ray Dataset of
problems maps to a Ray Dataset of results. The slow tests start small local clusters (2 CPUs)
and are skipped without the 'ray' extra; the others need no Ray."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import ponder.ray
from ponder.backends.scripted import ScriptedBackend
from ponder.cli import app
from ponder.core.budget import Budget
from ponder.core.errors import ConfigError
from ponder.core.types import Problem, Result
from ponder.ray.job import SolverWorker
from ponder.ray.run import BackendSpec, SolveJob
from ponder.runs.results import ResultsWriter
from ponder.runs.results_reader import read_results
from ponder.runs.solve_many import RowSink, record_rows
from ponder.strategies.effort import strategy_for
from ponder.testing import FakeOpenAIServer
from tests.conftest import REPO

PROBLEMS = 40


@pytest.fixture(scope="module")
def ray() -> Any:
    return pytest.importorskip("ray", reason="the 'ray' extra is not installed: "
                                             "pip install -e '.[ray]'")


def write_problems(path: Path) -> Path:
    """`What is i + i?` with gold 2i: the fake server answers each with 2i, as verified."""
    with path.open("w") as file:
        for i in range(PROBLEMS):
            file.write(json.dumps({"id": f"p{i}", "problem": f"What is {i} + {i}?",
                                   "answer": str(2 * i)}) + "\n")
    return path


def answers(path: Path) -> dict[str, str | None]:
    rows = read_results(path)
    assert len(rows) == len({row.id for row in rows}), "a problem has two rows"
    return {row.id: row.answer for row in rows}


def rows_written(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.is_file() else 0


# -- the processes a driver started -----------------------------------------------------------

def process_table() -> dict[int, tuple[int, int, str]]:
    """pid -> (parent pid, start time, state), from /proc."""
    table = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                stat = Path(f"/proc/{name}/stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            table[int(name)] = (int(fields[1]), int(fields[19]), fields[0])
    return table


def note_descendants(root: int, seen: dict[int, int]) -> None:
    """Add every process below `root` now to `seen` (pid -> start time)."""
    table = process_table()
    todo = [root]
    while todo:
        parent = todo.pop()
        for pid, (ppid, started, _) in table.items():
            if ppid == parent:
                seen.setdefault(pid, started)
                todo.append(pid)


def still_running(seen: dict[int, int], within_s: float) -> list[str]:
    """The processes of `seen` still running after up to `within_s` seconds, by command line."""
    deadline = time.monotonic() + within_s
    while True:
        table = process_table()
        left = [pid for pid, started in seen.items()
                if pid in table and table[pid][1] == started and table[pid][2] not in "ZX"]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    names = []
    for pid in left:
        with contextlib.suppress(OSError):  # it ended meanwhile
            names.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
                         .decode(errors="replace")[:120])
    return names


# -- a killed driver, resumed: every problem exactly one row, no Ray process left -------------


@pytest.mark.slow
def test_a_killed_driver_leaves_no_ray_process_and_resume_finishes(
        tmp_path: Path, ray: Any) -> None:
    # First in the file: the cluster the other tests share is not up yet, so the processes
    # below the driver are the driver's own.
    problems = write_problems(tmp_path / "problems.jsonl")
    out = tmp_path / "run.jsonl"
    with FakeOpenAIServer(latency_s=0.4) as server:
        command = [sys.executable, "-m", "ponder", "solve", str(problems), "--base-url",
                   server.base_url, "-o", str(out), "--ray", "local", "--ray-workers", "2",
                   "--concurrency", "4", "--quiet", "--resume"]
        killed = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE)
        started: dict[int, int] = {}
        deadline = time.monotonic() + 90
        while rows_written(out) < 5 and killed.poll() is None and time.monotonic() < deadline:
            note_descendants(killed.pid, started)
            time.sleep(0.02)
        note_descendants(killed.pid, started)
        killed.send_signal(signal.SIGKILL)
        _, stderr = killed.communicate(timeout=30)
        assert killed.returncode == -signal.SIGKILL, stderr.decode()
        at_kill = rows_written(out)
        assert 5 <= at_kill < PROBLEMS
        # The GCS server, the raylet, its workers and agents, and the watchdog that stops
        # the agents a SIGKILL would leave (they outlive a killed driver by up to a minute).
        assert len(started) >= 5
        assert still_running(started, within_s=15) == []

        resumed = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE)
        started = {}
        while resumed.poll() is None:
            note_descendants(resumed.pid, started)
            time.sleep(0.05)
        assert resumed.wait() == 0, resumed.stderr.read().decode() if resumed.stderr else ""
        assert still_running(started, within_s=10) == []

    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == PROBLEMS
    assert sorted(row["id"] for row in rows) == sorted(f"p{i}" for i in range(PROBLEMS))
    assert all(row["answer"] == str(2 * int(row["id"][1:])) for row in rows)


# -- on a shared cluster ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(ray: Any) -> Iterator[None]:
    with ponder.ray.cluster("local", num_cpus=2):
        yield


@pytest.fixture(scope="module")
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(latency_s=0.02) as fake:
        yield fake


@pytest.mark.slow
def test_a_run_on_ray_gives_one_row_each_and_the_local_answers(
        tmp_path: Path, cluster: None, server: FakeOpenAIServer) -> None:
    problems = write_problems(tmp_path / "problems.jsonl")
    runner = CliRunner()
    local = runner.invoke(app, ["solve", str(problems), "--base-url", server.base_url,
                                "-o", str(tmp_path / "local.jsonl"), "--quiet"])
    assert local.exit_code == 0, local.output
    # The CLI joins the cluster this process already has (it would start one for `local`).
    on_ray = runner.invoke(app, ["solve", str(problems), "--base-url", server.base_url,
                                 "-o", str(tmp_path / "ray.jsonl"), "--ray", "local",
                                 "--ray-workers", "2", "--json"])
    assert on_ray.exit_code == 0, on_ray.output
    summary = json.loads(on_ray.stdout[on_ray.stdout.index("{"):])
    assert summary["done"] == summary["solved"] == PROBLEMS

    assert answers(tmp_path / "ray.jsonl") == answers(tmp_path / "local.jsonl")
    assert len(answers(tmp_path / "ray.jsonl")) == PROBLEMS
    # The trace came back from the workers: each problem's start note, call and verdict.
    trace = (tmp_path / "ray.trace.jsonl").read_text().splitlines()
    assert len(trace) == len((tmp_path / "local.trace.jsonl").read_text().splitlines())


@pytest.mark.slow
# Ray Data's own settings warn about themselves; nothing of ponder's.
@pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context")
def test_solve_dataset_maps_problem_rows_to_result_rows(
        ray: Any, cluster: None, server: FakeOpenAIServer) -> None:
    items = [{"id": f"p{i}", "problem": f"What is {i} + {i}?", "answer": str(2 * i)}
             for i in range(PROBLEMS)]
    items.append({"question": "What is 1 + 2?"})  # no id: named by its content
    items.append({"id": "code", "problem": "2 + 2?", "verifier": "os:system"})  # refused

    out = ponder.ray.solve_dataset(ray.data.from_items(items), backend=server.base_url,
                                   concurrency=8, workers=2)
    rows = {row["id"]: row for row in out.take_all()}

    assert len(rows) == len(items)
    assert all(rows[f"p{i}"]["answer"] == str(2 * i) and rows[f"p{i}"]["correct"]
               for i in range(PROBLEMS))
    unnamed = next(row for name, row in rows.items() if name.startswith("row-"))
    assert unnamed["answer"] == "3" and unnamed["correct"] is None
    assert rows["code"]["stop_reason"] == "error"
    assert "would run code" in rows["code"]["error"]
    whole = ponder.Result.model_validate_json(rows["p3"]["result"])
    assert whole.answer == "6" and whole.usage.total_tokens == rows["p3"]["total_tokens"]


@pytest.mark.slow
def test_a_worker_that_cannot_make_its_backend_stops_the_run(
        tmp_path: Path, cluster: None) -> None:
    problems = write_problems(tmp_path / "problems.jsonl")
    missing = tmp_path / "no-such-model.gguf"
    done = CliRunner().invoke(app, ["solve", str(problems), "-o", str(tmp_path / "run.jsonl"),
                                    "--model-path", str(missing), "--ray", "local",
                                    "--ray-workers", "1"])
    assert done.exit_code == 1
    assert "a Ray worker could not start: BackendError: model file" in done.output
    assert str(missing) in done.output


# -- no Ray needed ------------------------------------------------------------------------------


async def test_any_producer_s_rows_go_through_the_one_writer(tmp_path: Path) -> None:
    """`record_rows` is what a local run and a Ray run share: whatever solves, each row it
    emits is in the file before `on_result` hears of it."""
    path = tmp_path / "run.jsonl"
    on_disk: list[int] = []

    async def produce(emit: RowSink) -> None:  # a stand-in for Ray workers
        for i in range(3):
            emit(Result(id=f"p{i}", answer=str(i)))

    with ResultsWriter(path) as writer:
        rows = await record_rows(produce, writer=writer,
                                 on_result=lambda r: on_disk.append(rows_written(path)))
    assert [r.id for r in rows] == [r.id for r in read_results(path)] == ["p0", "p1", "p2"]
    assert on_disk == [1, 2, 3]


async def test_a_worker_solves_with_the_session_its_job_describes() -> None:
    """What a Ray actor runs, in this process: the job's backend, budget and trace flag."""
    spec, config = strategy_for(None, "self_refine", {"max_iters": 3})
    with FakeOpenAIServer() as fake:
        job = SolveJob(spec, config, BackendSpec.of(fake.base_url), budget=Budget(calls=2),
                       trace=True)
        worker = SolverWorker(job)
        result, events = await worker.solve(Problem(id="p1", problem="What is 2 + 3?",
                                                    answer="5"))
        [again] = await worker.solve_all([Problem(id="p2", problem="What is 1 + 1?")], 2)
        await worker.close()
    assert (result.answer, result.correct, result.usage.calls) == ("5", True, 1)
    assert events and {event.problem_id for event in events} == {"p1"}
    assert again.answer == "2" and again.usage.calls <= 2


def test_a_backend_goes_to_workers_as_a_spec() -> None:
    spec = BackendSpec.of(["http://bob:hunter2@gpu1:8000/v1", "http://gpu2:8000/v1"],
                          model="qwen", api_key="sk-secret-1")
    assert spec.target == ("http://bob:hunter2@gpu1:8000/v1", "http://gpu2:8000/v1")
    assert "hunter2" not in repr(spec) and "sk-secret-1" not in repr(spec)
    with pytest.raises(ConfigError, match="live client"):
        BackendSpec.of(ScriptedBackend("Final answer: 1"))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="twice"):
        BackendSpec(("http://gpu1:8000/v1", "http://gpu1:8000/v1")).check()


def test_ray_options_are_checked_before_anything_starts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    problems = write_problems(tmp_path / "problems.jsonl")
    out = str(tmp_path / "run.jsonl")
    runner = CliRunner()
    alone = runner.invoke(app, ["solve", str(problems), "-o", out, "--ray-workers", "2"])
    assert alone.exit_code == 2
    assert "--ray-workers goes with --ray" in alone.output

    monkeypatch.setitem(sys.modules, "ray", None)  # as if the extra were not installed
    missing = runner.invoke(app, ["solve", str(problems), "-o", out, "--ray", "local",
                                  "--base-url", "http://127.0.0.1:9/v1"])
    assert missing.exit_code == 1
    assert "pip install 'ponder[ray]'" in missing.output

