"""Ctrl-C in two steps: the first lets the problems in flight finish and starts no more (their
rows are kept, the run exits 130 and resumes); the second stops at once."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from ponder.testing import FakeOpenAIServer
from tests.conftest import REPO, load_jsonl

LATENCY_S = 3.0  # each request's; long enough that a run is caught with problems in flight


def problems_file(tmp_path: Path, count: int = 6) -> Path:
    path = tmp_path / "problems.jsonl"
    rows = load_jsonl("gsm8k_test_public.jsonl")[:count]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def rows_in(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.is_file() else 0


def interrupt_when_busy(command: list[str], server: FakeOpenAIServer, *, times: int
                        ) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run `command`, send SIGINT `times` once two requests are in flight; the finished
    process and how long it took after the first signal."""
    proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 60
    while server.requests < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, proc.communicate()[1]
    signalled = time.monotonic()
    for _ in range(times):
        proc.send_signal(signal.SIGINT)
        time.sleep(0.2)
    stdout, stderr = proc.communicate(timeout=60)
    return (subprocess.CompletedProcess(command, proc.returncode, stdout, stderr),
            time.monotonic() - signalled)


def test_a_first_ctrl_c_finishes_the_problems_in_flight_and_starts_no_more(
        tmp_path: Path) -> None:
    out = tmp_path / "run.jsonl"
    with FakeOpenAIServer(latency_s=LATENCY_S) as server:
        command = [sys.executable, "-m", "ponder", "solve", str(problems_file(tmp_path)),
                   "--base-url", server.base_url, "--concurrency", "2", "-o", str(out)]
        stopped, _ = interrupt_when_busy(command, server, times=1)
        asked = server.requests
        assert stopped.returncode == 130, stopped.stderr
        assert "stopping: the problems in flight finish" in stopped.stderr
        assert (asked, rows_in(out)) == (2, 2)  # both in flight finished; none started after

        resumed = subprocess.run([*command, "--resume", "--quiet"], cwd=REPO,
                                 capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert rows_in(out) == 6


def test_a_second_ctrl_c_stops_at_once(tmp_path: Path) -> None:
    out = tmp_path / "run.jsonl"
    with FakeOpenAIServer(latency_s=3 * LATENCY_S) as server:
        command = [sys.executable, "-m", "ponder", "solve", str(problems_file(tmp_path)),
                   "--base-url", server.base_url, "--concurrency", "2", "-o", str(out)]
        stopped, took = interrupt_when_busy(command, server, times=2)
    assert stopped.returncode == 130, stopped.stderr
    assert took < 2 * LATENCY_S  # not the 9 s the requests in flight still had to go
    assert rows_in(out) == 0


def test_a_bench_stopped_by_ctrl_c_keeps_its_rows_and_writes_the_curve_so_far(
        tmp_path: Path) -> None:
    out_dir = tmp_path / "bench"
    with FakeOpenAIServer(latency_s=LATENCY_S) as server:
        command = [sys.executable, "-m", "ponder", "bench", str(problems_file(tmp_path)),
                   "--base-url", server.base_url, "--concurrency", "2", "-o", str(out_dir),
                   "--run", "single", "--run", "single temperature=0.7 label=sampled"]
        stopped, _ = interrupt_when_busy(command, server, times=1)
        assert stopped.returncode == 130, stopped.stderr
        assert server.requests == 2
    runs = sorted((out_dir / "runs").glob("*.jsonl"))
    assert [rows_in(path) for path in runs] == [2]  # the second run never started
    with (out_dir / "curve.csv").open() as file:
        points = [(row["label"], row["problems"]) for row in csv.DictReader(file)]
    assert points == [("single", "2")]


def test_a_cached_bench_solves_nothing_and_draws_the_rows_there(tmp_path: Path) -> None:
    out_dir = tmp_path / "bench"
    problems = problems_file(tmp_path, count=3)
    with FakeOpenAIServer() as server:
        base = [sys.executable, "-m", "ponder", "bench", str(problems), "--base-url",
                server.base_url, "-o", str(out_dir), "--quiet", "--run", "single"]
        made = subprocess.run([*base, "--limit", "2"], cwd=REPO, capture_output=True,
                              text=True, timeout=120)
        assert made.returncode == 0, made.stderr
        asked = server.requests
        drawn = subprocess.run([*base, "--cached", "--run", "best_of_n n=2"], cwd=REPO,
                               capture_output=True, text=True, timeout=120)
        assert drawn.returncode == 0, drawn.stderr
        assert server.requests == asked  # nothing solved: not the third problem, nor n=2
    with (out_dir / "curve.csv").open() as file:
        assert [(row["label"], row["problems"]) for row in csv.DictReader(file)] \
            == [("single", "2")]
    assert "--cached" not in (out_dir / "curve.md").read_text()
