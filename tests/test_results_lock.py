"""One run at a time writes a results file; a file that is not one is never cut or rewritten;
a problem edited since its row was written is solved again on `--resume`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ponder.cli import app
from ponder.core.errors import PonderError
from ponder.core.types import Problem, Result
from ponder.runs.results import ResultsWriter, problem_hash
from ponder.runs.results_reader import read_results
from ponder.runs.run_lock import ResultsLocked, RunLock, lock_path
from ponder.runs.solve_many import resume_plan
from ponder.testing import FakeOpenAIServer
from tests.conftest import REPO


def solve(*args: object) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["solve", *(str(a) for a in args)])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stderr


def write_problems(path: Path, rows: list[dict[str, str]], *, newline: bool = True) -> Path:
    text = "\n".join(json.dumps(row) for row in rows)
    path.write_text(text + ("\n" if newline else ""))
    return path


def sums(count: int) -> list[dict[str, str]]:
    return [{"id": f"s{i}", "problem": f"What is {i} + {i + 1}?", "answer": str(2 * i + 1)}
            for i in range(count)]


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as fake:
        yield fake


# -- two writers --------------------------------------------------------------------------------


def test_a_second_lock_on_a_results_file_names_the_holders_pid(tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    with RunLock(out) as held:
        assert held.lock_path.read_text() == f"{os.getpid()}\n"
        with pytest.raises(ResultsLocked) as caught:
            RunLock(out).acquire()
        assert f"{out} is being written by another ponder run (pid {os.getpid()};" \
            in str(caught.value)
    assert held.lock_path == tmp_path / ".r.jsonl.ponder-lock"
    assert not held.lock_path.exists()
    with RunLock(out):  # free again once released
        pass


def test_a_second_run_on_the_same_results_file_fails_at_once_and_the_first_is_intact(
        tmp_path: Path) -> None:
    problems = write_problems(tmp_path / "p.jsonl", sums(40))
    out = tmp_path / "r.jsonl"
    with FakeOpenAIServer(latency_s=0.05) as server:
        first = subprocess.Popen(
            [sys.executable, "-m", "ponder", "solve", str(problems), "--base-url",
             server.base_url, "--concurrency", "1", "-o", str(out), "--quiet"],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        while not (out.is_file() and out.stat().st_size) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert first.poll() is None, "the first run ended before the second began"

        # Each way a second writer could come: afresh, resuming, retrying errors.
        for extra in (["--overwrite"], ["--resume"], ["--resume", "--retry-errors"]):
            started = time.monotonic()
            code, stderr = solve(problems, "--base-url", server.base_url, "-o", out, *extra)
            assert code == 1, stderr
            assert stderr == (f"error: {out} is being written by another ponder run (pid "
                              f"{first.pid}; see {lock_path(out)}); wait for it to finish, or "
                              "write elsewhere with -o\n")
            assert time.monotonic() - started < 5
        assert first.poll() is None, "the checks took longer than the first run"
        _, stderr = first.communicate(timeout=60)
    assert first.returncode == 0, stderr
    rows = read_results(out)
    assert sorted(r.id for r in rows) == sorted(f"s{i}" for i in range(40))
    assert server.requests == 40


def test_the_trace_is_locked_too(server: FakeOpenAIServer, tmp_path: Path) -> None:
    problems = write_problems(tmp_path / "p.jsonl", sums(2))
    trace = tmp_path / "shared.trace.jsonl"
    with RunLock(trace):
        code, stderr = solve(problems, "--base-url", server.base_url, "-o", tmp_path / "r.jsonl",
                             "--trace", trace)
    assert code == 1
    assert stderr.startswith(f"error: {trace} is being written by another ponder run (pid ")
    assert server.requests == 0


# -- other tools' files beside the results --------------------------------------------------


@pytest.mark.parametrize("name", ["uv", "poetry", "Gemfile", "flake"])
def test_results_named_like_a_project_leave_its_lock_file_alone(
        server: FakeOpenAIServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        name: str) -> None:
    # `-o uv` locked `uv.lock`: truncated it to this run's pid, then deleted it.
    monkeypatch.chdir(tmp_path)
    problems = write_problems(tmp_path / "p.jsonl", sums(2))
    (tmp_path / "sub").mkdir()
    theirs = {tmp_path / f"{name}.lock": b"# keep me\nversion = 1\n",
              tmp_path / "sub" / f"{name}.lock": b"# and me\n"}
    for path, content in theirs.items():
        path.write_bytes(content)
    code, stderr = solve(problems, "--base-url", server.base_url, "-o", name)
    assert code == 0, stderr
    code, stderr = solve(problems, "--base-url", server.base_url, "-o", "r.jsonl",
                         "--trace", f"sub/{name}")  # the trace's lock, too
    assert code == 0, stderr
    assert {path: path.read_bytes() for path in theirs} == theirs
    assert len(read_results(tmp_path / name)) == 2
    assert not list(tmp_path.rglob(".*ponder-lock"))  # ponder's own locks are gone


def test_a_file_at_the_lock_name_that_is_not_a_lock_is_refused_and_left_alone(
        server: FakeOpenAIServer, tmp_path: Path) -> None:
    problems = write_problems(tmp_path / "p.jsonl", sums(2))
    out = tmp_path / "r.jsonl"
    theirs = lock_path(out)
    theirs.write_text("not a pid: someone else's file\n")
    code, stderr = solve(problems, "--base-url", server.base_url, "-o", out)
    assert code == 1
    assert stderr == (f"error: {theirs} is in the way of {out}'s lock and is not a lock ponder "
                      "made; it was left untouched: move it, or write elsewhere with -o\n")
    assert theirs.read_text() == "not a pid: someone else's file\n"
    assert server.requests == 0 and not out.exists()


def test_a_link_at_the_lock_name_is_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "precious.txt"
    target.write_text("1234\n")  # reads as a pid: only the link itself may not be trusted
    lock_path(tmp_path / "r.jsonl").symlink_to(target)
    with pytest.raises(PonderError, match="cannot make its lock file"):
        RunLock(tmp_path / "r.jsonl").acquire()
    assert target.read_text() == "1234\n" and lock_path(tmp_path / "r.jsonl").is_symlink()


@pytest.mark.parametrize("left", ["4194305\n", ""])  # a killed run's pid, or none written yet
def test_a_lock_a_killed_run_left_is_cleared_and_a_fresh_one_made(tmp_path: Path,
                                                                  left: str) -> None:
    out = tmp_path / "r.jsonl"
    stale = lock_path(out)
    stale.write_text(left)
    with RunLock(out) as held:
        assert held.lock_path.read_text() == f"{os.getpid()}\n"
    assert not stale.exists()


def test_releasing_removes_only_the_lock_file_this_run_made(tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    held = RunLock(out)
    held.acquire()
    held.lock_path.unlink()
    held.lock_path.write_text("a file someone put here meanwhile\n")
    held.release()
    assert held.lock_path.read_text() == "a file someone put here meanwhile\n"


def test_a_rewrite_on_resume_leaves_a_file_at_its_old_scratch_name_alone(
        server: FakeOpenAIServer, tmp_path: Path) -> None:
    # The rewrite went through `.<results>.rewrite`: a file of that name was appended to, then
    # moved over the results.
    problems = write_problems(tmp_path / "p.jsonl", sums(3))
    out = tmp_path / "r.jsonl"
    assert solve(problems, "--base-url", server.base_url, "-o", out)[0] == 0
    out.chmod(0o640)
    scratch = tmp_path / ".r.jsonl.rewrite"
    scratch.write_text("my notes\n")
    write_problems(problems, [*sums(2), {"id": "s2", "problem": "What is 9 + 9?",
                                         "answer": "18"}])  # s2 edited: its row goes
    code, stderr = solve(problems, "--base-url", server.base_url, "-o", out, "--resume")
    assert code == 0, stderr
    assert scratch.read_text() == "my notes\n"
    assert sorted(r.id for r in read_results(out)) == ["s0", "s1", "s2"]
    assert out.stat().st_mode & 0o777 == 0o640  # the rewritten file keeps the results' mode
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == \
        [".r.jsonl.rewrite"]


def test_the_trace_cannot_be_the_results_file(server: FakeOpenAIServer, tmp_path: Path) -> None:
    problems = write_problems(tmp_path / "p.jsonl", sums(2))
    out = tmp_path / "r.jsonl"
    code, stderr = solve(problems, "--base-url", server.base_url, "-o", out, "--trace", out)
    assert (code, stderr) == (2, f"error: --trace {out} is the results file; name another file\n")


# -- files that are not results files -----------------------------------------------------------


@pytest.mark.parametrize("content", [
    b"notes I keep: do not lose",                       # one line, no newline
    b"first\nsecond line without newline",              # lines that are not rows
    b'{"id": "a", "answer": "1", "problem": "x"}\n',      # a problem row, not a result row
])
def test_resume_refuses_a_file_that_is_not_a_results_file_and_leaves_it_untouched(
        server: FakeOpenAIServer, tmp_path: Path, content: bytes) -> None:
    problems = write_problems(tmp_path / "p.jsonl", sums(2))
    out = tmp_path / "notes.txt"
    out.write_bytes(content)
    code, stderr = solve(problems, "--base-url", server.base_url, "-o", out, "--resume",
                         "--retry-errors")
    assert code == 2
    assert stderr.startswith(f"error: cannot resume: {out}")
    assert len(stderr.strip().splitlines()) == 1
    assert out.read_bytes() == content
    assert server.requests == 0


def test_resume_with_the_problem_file_as_its_own_results_leaves_it_untouched(
        server: FakeOpenAIServer, tmp_path: Path) -> None:
    # GSM8K-like rows (`id`, `answer`) parse as results; a last row without its newline looked
    # like a torn write and was cut.
    problems = write_problems(tmp_path / "p.jsonl", sums(3), newline=False)
    before = problems.read_bytes()
    code, stderr = solve(problems, "--base-url", server.base_url, "-o", problems, "--resume")
    assert code == 2
    assert stderr == (f"error: cannot resume: {problems}:1: not a result row: no field "
                      "'stop_reason', 'usage'\n")
    assert problems.read_bytes() == before


def test_resume_refuses_a_trace_that_is_not_a_trace(server: FakeOpenAIServer,
                                                    tmp_path: Path) -> None:
    problems = write_problems(tmp_path / "p.jsonl", sums(2))
    trace = tmp_path / "notes.md"
    trace.write_text("# my notes\n")
    code, stderr = solve(problems, "--base-url", server.base_url, "-o", tmp_path / "r.jsonl",
                         "--trace", trace, "--resume")
    assert code == 2
    assert stderr == (f"error: cannot resume: {trace}: not a trace file ponder wrote (it does "
                      "not begin with a trace event); it was left untouched\n")
    assert trace.read_text() == "# my notes\n"


# -- problems edited since their rows ---------------------------------------------------------


def test_resume_solves_again_the_problems_edited_since_and_says_how_many(
        server: FakeOpenAIServer, tmp_path: Path) -> None:
    rows = sums(3)
    problems = write_problems(tmp_path / "p.jsonl", rows)
    out = tmp_path / "r.jsonl"
    assert solve(problems, "--base-url", server.base_url, "-o", out)[0] == 0
    rows[1] = {"id": "s1", "problem": "What is 10 + 20?", "answer": "30"}  # same id, new problem
    write_problems(problems, rows)

    code, stderr = solve(problems, "--base-url", server.base_url, "-o", out, "--resume")
    assert code == 0, stderr
    assert "resuming" in stderr and "2 done, 1 to go" in stderr
    assert "warning: 1 problem (s1) was edited since its row was written; solving it again" \
        in stderr
    assert server.requests == 4
    results = {r.id: r for r in read_results(out)}
    assert len(read_results(out)) == 3  # the stale row gave way to the new one
    assert (results["s1"].answer, results["s1"].correct) == ("30", True)
    assert results["s1"].problem_hash == problem_hash(Problem.model_validate(rows[1]))

    # Nothing changed now: nothing to solve.
    code, stderr = solve(problems, "--base-url", server.base_url, "-o", out, "--resume")
    assert code == 0 and "edited" not in stderr and server.requests == 4


def test_the_problem_hash_covers_content_not_id_nor_key_order() -> None:
    base = Problem(id="a", problem="2+2?", answer="4", metadata={"x": 1, "y": [1, 2]})
    assert problem_hash(base) == problem_hash(
        Problem(id="b", problem="2+2?", answer="4", metadata={"y": [1, 2], "x": 1}))
    for changed in ({"problem": "2+3?"}, {"answer": "5"}, {"verifier": "exact"},
                    {"metadata": {"x": 2, "y": [1, 2]}}, {"test": "assert f() == 4"}):
        assert problem_hash(base.model_copy(update=changed)) != problem_hash(base), changed


def test_rows_written_before_problem_hashes_are_kept_on_resume(tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    with ResultsWriter(out) as writer:
        writer.write(Result(id="a", answer="4"))  # no problem_hash: an older ponder's row
    todo, previous, changed = resume_plan([Problem(id="a", problem="2+2?")], out)
    assert (todo, [r.id for r in previous], changed) == ([], ["a"], [])
