"""A run killed with SIGKILL at random moments, resumed each time, ends with every problem's row
exactly once and no torn line."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from ponder.core.types import Result
from ponder.runs.results import result_line
from ponder.runs.run_lock import lock_path
from ponder.testing import FakeOpenAIServer
from tests.conftest import DATA, REPO, load_jsonl


def rows_written(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.is_file() else 0


def test_three_sigkills_then_resume_leave_300_unique_whole_rows(tmp_path: Path) -> None:
    gsm8k = load_jsonl("gsm8k_test_public.jsonl")
    out = tmp_path / "run.jsonl"
    rng = random.Random(20261123)
    kills: list[tuple[int, int]] = []  # (rows the run was to reach, rows when killed)
    (tmp_path / "checks.py").write_text(
        "def same(problem, candidate):\n    return candidate.answer == problem.answer\n")
    with FakeOpenAIServer(latency_s=0.02) as server:
        command = [sys.executable, "-m", "ponder", "solve", str(DATA / "gsm8k_test_public.jsonl"),
                   "--base-url", server.base_url, "--concurrency", "16", "-o", str(out),
                   "--verifier", f"{tmp_path / 'checks.py'}:same", "--quiet", "--resume"]
        for kill in range(3):
            before = rows_written(out)
            # Kill once this run has added a random number of rows, a random instant later:
            # mid-problem, mid-write or mid-startup alike.
            target = before + rng.randint(0 if kill == 0 else 5, 70)
            proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE)
            deadline = time.monotonic() + 60
            while rows_written(out) < target and proc.poll() is None \
                    and time.monotonic() < deadline:
                time.sleep(0.001)
            time.sleep(rng.uniform(0.0, 0.03))
            proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=30)
            assert proc.returncode == -signal.SIGKILL, "the run finished before it was killed"
            kills.append((target, rows_written(out)))
            if kill == 1:
                # What a kill in the middle of a write leaves: half a line, no newline.
                with out.open("ab") as file:
                    file.write(result_line(Result(id="gsm8k-test-299", answer="1"))
                               .encode()[:40])

        finished = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0, finished.stderr
    assert all(after >= target for target, after in kills)
    # A killed run's lock died with it: each resumed run took the file over, and let it go.
    assert not lock_path(out).exists() and not lock_path(out.with_suffix(".trace.jsonl")).exists()

    data = out.read_bytes()
    assert data.endswith(b"\n")
    rows = [json.loads(line) for line in data.decode().splitlines()]
    assert len(rows) == 300
    assert sorted(r["id"] for r in rows) == sorted(row["id"] for row in gsm8k)
