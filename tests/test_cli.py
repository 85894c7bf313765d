"""`ponder` on the command line, against the fake OpenAI-compatible server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ponder.cli import app, default_trace
from ponder.runs.results_reader import read_results
from ponder.strategies import REGISTRY as STRATEGIES
from ponder.testing import FakeOpenAIServer
from ponder.verifiers import REGISTRY as VERIFIERS
from tests.conftest import DATA, REPO, load_jsonl

runner = CliRunner()

CHECKS = """\
from ponder.core.answers import canonical_number

def same_number(problem, candidate):
    return canonical_number(candidate.answer) == canonical_number(problem.answer or "")
"""


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as fake:
        yield fake


@pytest.fixture
def sums(tmp_path: Path) -> Path:
    """Three problems the fake server answers right (it adds the numbers it is given)."""
    path = tmp_path / "sums.jsonl"
    path.write_text("".join(
        json.dumps({"id": f"s{i}", "problem": f"What is {i} + {i + 1}?", "answer": str(2 * i + 1)})
        + "\n" for i in range(3)))
    return path


@pytest.fixture
def checks(tmp_path: Path) -> str:
    (tmp_path / "checks.py").write_text(CHECKS)
    return f"{tmp_path / 'checks.py'}:same_number"


def ponder(*args: object) -> tuple[int, str, str]:
    result = runner.invoke(app, [str(a) for a in args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def test_solve_writes_a_row_per_problem_and_prints_the_summary(
        server: FakeOpenAIServer, sums: Path, checks: str, tmp_path: Path) -> None:
    out = tmp_path / "run.jsonl"
    code, stdout, _ = ponder("solve", sums, "--base-url", server.base_url, "--verifier", checks,
                             "-o", out, "--json")
    assert code == 0
    summary = json.loads(stdout)
    assert (summary["problems"], summary["done"], summary["solved"]) == (3, 3, 3)
    assert summary["accuracy"] == 1.0
    assert summary["calls"] == 3 and summary["total_tokens"] > 0
    assert summary["results_path"] == str(out)
    assert summary["trace_path"] == str(tmp_path / "run.trace.jsonl")
    rows = read_results(out)
    assert sorted(r.id for r in rows) == ["s0", "s1", "s2"]
    row = next(r for r in rows if r.id == "s1")
    assert (row.answer, row.correct, row.strategy, row.stop_reason) == \
        ("3", True, "single", "verified")
    assert row.usage.calls == 1 and row.usage.total_tokens > 0


def test_the_summary_table_names_what_a_person_wants_to_know(
        server: FakeOpenAIServer, sums: Path, checks: str, tmp_path: Path) -> None:
    code, stdout, _ = ponder("solve", sums, "--base-url", server.base_url, "--verifier", checks,
                             "-o", tmp_path / "run.jsonl")
    assert code == 0
    for label in ("problems", "3 / 3", "solved", "100.0%", "tokens", "mean tokens", "calls",
                  "wall time", "failures", "none"):
        assert label in stdout


def test_quiet_prints_nothing_when_all_goes_well(
        server: FakeOpenAIServer, sums: Path, checks: str, tmp_path: Path) -> None:
    code, stdout, stderr = ponder("solve", sums, "--base-url", server.base_url,
                                  "--verifier", checks, "-o", tmp_path / "r.jsonl", "--quiet")
    assert (code, stdout, stderr) == (0, "", "")
    assert len(read_results(tmp_path / "r.jsonl")) == 3


def test_params_are_parsed_as_json_and_reach_the_model(
        server: FakeOpenAIServer, sums: Path, checks: str, tmp_path: Path) -> None:
    code, _, _ = ponder("solve", sums, "--base-url", server.base_url, "-p", "max_tokens=33",
                        "-p", "temperature=0.5", "-o", tmp_path / "r.jsonl", "--verifier",
                        checks, "--quiet")
    assert code == 0
    assert {(b["max_tokens"], b["temperature"]) for b in server.received} == {(33, 0.5)}
    assert read_results(tmp_path / "r.jsonl")[0].params == {"max_tokens": 33, "temperature": 0.5,
                                                             "few_shot": False}


def test_a_bad_param_is_refused_with_the_valid_ones(
        server: FakeOpenAIServer, sums: Path, tmp_path: Path) -> None:
    code, _, stderr = ponder("solve", sums, "--base-url", server.base_url, "-p", "beams=3",
                             "-o", tmp_path / "r.jsonl")
    assert code == 2
    assert "beams" in stderr and "Valid parameters: max_tokens=512, temperature=0.0" in stderr
    code, _, stderr = ponder("solve", sums, "--base-url", server.base_url,
                             "-p", "max_tokens=lots", "-o", tmp_path / "r.jsonl")
    assert code == 2 and "max_tokens" in stderr
    code, _, stderr = ponder("solve", sums, "--base-url", server.base_url, "-p", "novalue")
    assert code == 2 and "expected key=value" in stderr
    assert server.requests == 0


def test_bad_input_is_refused_before_any_model_call(
        server: FakeOpenAIServer, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1, "problem": "a"}\n{"id": 1, "problem": "b"}\n{"answer": "3"}\n'
                   '{"problem": "c", "verifier": "no-such-verifier"}\nnot json\n')
    code, _, stderr = ponder("solve", bad, "--base-url", server.base_url,
                             "-o", tmp_path / "r.jsonl")
    assert code == 2
    lines = stderr.strip().splitlines()
    assert lines[0] == f"error: {bad}:2: field 'id': duplicate id '1' (first on line 1)"
    assert lines[1] == f"error: {bad}:3: field 'problem': missing"
    assert lines[2].startswith(f"error: {bad}:5: malformed JSON")
    assert lines[3].startswith(f"error: {bad}:4: field 'verifier': unknown verifier")
    assert len(lines) == 4
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    code, _, stderr = ponder("solve", empty, "--base-url", server.base_url)
    assert code == 2 and "empty" in stderr
    assert server.requests == 0
    assert not (tmp_path / "r.jsonl").exists()


def test_unknown_strategy_verifier_and_conflicting_options_are_usage_errors(
        server: FakeOpenAIServer, sums: Path, checks: str, tmp_path: Path) -> None:
    out = ["-o", tmp_path / "r.jsonl", "--verifier", checks]  # a later --verifier wins
    cases = [
        (["-s", "no-such-strategy"], "unknown strategy 'no-such-strategy'"),
        (["--verifier", "no-such-verifier"], "unknown verifier 'no-such-verifier'"),
        (["--verifier", f"{tmp_path}/missing.py:f"], "not found"),
        (["--model-path", "x.gguf"], "--model-path"),
        (["--api-key-env", "PONDER_TEST_NO_SUCH_VAR"], "PONDER_TEST_NO_SUCH_VAR"),
        (["--resume", "--overwrite"], "contradict"),
    ]
    for extra, message in cases:
        code, _, stderr = ponder("solve", sums, "--base-url", server.base_url, *out, *extra)
        assert code == 2, extra
        assert message in stderr, (extra, stderr)
    assert server.requests == 0


def test_the_api_key_comes_from_the_named_environment_variable(
        sums: Path, checks: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_SERVER_KEY", "sekrit")
    with FakeOpenAIServer(api_key="sekrit") as server:
        code, stdout, _ = ponder("solve", sums, "--base-url", server.base_url, "--verifier",
                                 checks, "--api-key-env", "MY_SERVER_KEY", "-o",
                                 tmp_path / "r.jsonl", "--json", "--retries", "0")
    assert code == 0
    assert json.loads(stdout)["solved"] == 3


def test_an_existing_run_is_refused_unless_resumed_or_overwritten(
        server: FakeOpenAIServer, sums: Path, checks: str, tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    args = ["solve", sums, "--base-url", server.base_url, "--verifier", checks, "-o", out]
    assert ponder(*args, "--quiet")[0] == 0
    code, _, stderr = ponder(*args)
    assert code == 2
    assert "--resume" in stderr and "--overwrite" in stderr
    assert server.requests == 3
    code, stdout, _ = ponder(*args, "--overwrite", "--json")
    assert code == 0 and json.loads(stdout)["resumed"] == 0
    assert server.requests == 6
    assert len(read_results(out)) == 3


def test_resume_solves_only_what_is_missing(
        server: FakeOpenAIServer, sums: Path, checks: str, tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    first_two = tmp_path / "two.jsonl"
    first_two.write_text("".join(sums.read_text().splitlines(keepends=True)[:2]))
    assert ponder("solve", first_two, "--base-url", server.base_url, "--verifier", checks,
                  "-o", out, "--quiet")[0] == 0
    code, stdout, _ = ponder("solve", sums, "--base-url", server.base_url, "--verifier", checks,
                             "-o", out, "--resume", "--json")
    assert code == 0
    summary = json.loads(stdout)
    assert (summary["done"], summary["resumed"], summary["solved"]) == (3, 2, 3)
    assert server.requests == 3
    assert sorted(r.id for r in read_results(out)) == ["s0", "s1", "s2"]


def test_timeout_is_each_problems_wall_clock_budget(sums: Path, checks: str,
                                                    tmp_path: Path) -> None:
    with FakeOpenAIServer(latency_s=2.0) as server:
        started = time.monotonic()
        code, stdout, _ = ponder("solve", sums, "--base-url", server.base_url, "--verifier",
                                 checks, "--timeout", "0.2", "-o", tmp_path / "r.jsonl",
                                 "--json")
        elapsed = time.monotonic() - started
    assert code == 0
    assert elapsed < 1.9
    summary = json.loads(stdout)
    assert summary["budget_exhausted"] == 3
    assert summary["stop_reasons"] == {"budget": 3}


def test_gsm8k_300_rows_through_10_percent_faults_are_all_recorded(tmp_path: Path) -> None:
    """The shared GSM8K file as it is, the verifier chosen from its fields, one request in ten
    failing in every way a server can fail."""
    out = tmp_path / "gsm8k.jsonl"
    with FakeOpenAIServer(fault_rate=0.1, seed=7, hang_s=30.0, retry_after_s=0.01) as server:
        started = time.monotonic()
        code, stdout, stderr = ponder(
            "solve", DATA / "gsm8k_test_public.jsonl", "--base-url", server.base_url,
            "--concurrency", "32", "--request-timeout", "1", "--backoff-max", "0.05",
            "-o", out, "--json")
        elapsed = time.monotonic() - started
        injected = sum(server.faults_injected.values())
    summary = json.loads(stdout)
    assert code == (3 if summary["errors"] else 0), stderr  # 3: rows failed, kept to retry
    rows = read_results(out)
    assert len(rows) == len({r.id for r in rows}) == 300
    assert summary["done"] == 300 and summary["remaining"] == 0
    assert summary["judged"] == 300  # every row has a gold answer, so math judged it
    assert injected > 15
    assert summary["errors"] == sum(summary["failures"].values())
    assert summary["errors"] <= 3  # five attempts per call: a fault rarely wins them all
    assert elapsed < 60


def test_strategies_lists_every_strategy_with_its_parameters() -> None:
    code, stdout, _ = ponder("strategies", "--json")
    assert code == 0
    listed = json.loads(stdout)
    assert set(listed) == {spec.name for spec in STRATEGIES.all()}
    assert listed["single"]["params"]["max_tokens"]["default"] == 512
    code, stdout, _ = ponder("strategies")
    assert code == 0 and "single" in stdout and "max_tokens" in stdout


def test_verifiers_lists_every_verifier() -> None:
    code, stdout, _ = ponder("verifiers")
    assert code == 0
    for name in VERIFIERS.names():
        assert name in stdout
    assert "file.py:func" in stdout


def test_show_prints_a_result_and_its_timeline(
        server: FakeOpenAIServer, sums: Path, checks: str, tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    assert ponder("solve", sums, "--base-url", server.base_url, "--verifier", checks,
                  "-o", out, "--quiet")[0] == 0
    code, stdout, _ = ponder("show", out, "--id", "s2")
    assert code == 0
    for expected in ("problem s2", "answer", "5", "✓ 1.00", "timeline", "generate single/answer",
                     "What is 2 + 3?", "Final answer: 5", "verify same_number", "passed"):
        assert expected in stdout, expected
    code, stdout, _ = ponder("show", out)
    assert code == 0 and all(f"s{i}" in stdout for i in range(3)) and "3 / 3" in stdout
    code, _, stderr = ponder("show", out, "--id", "nope")
    assert code == 2 and "no row with id 'nope'" in stderr


def test_show_skips_a_torn_trace_line_and_an_earlier_attempt(
        server: FakeOpenAIServer, sums: Path, checks: str, tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    trace = default_trace(out)
    # An attempt at s0 that a killed run began (and tore its last trace line) ...
    trace.write_text(
        json.dumps({"kind": "note", "step": "problem/start", "problem_id": "s0", "ts": 1.0})
        + "\n" + json.dumps({"kind": "generate", "step": "OLD-ATTEMPT", "problem_id": "s0",
                             "ts": 2.0}) + "\n" + '{"kind": "gener')
    # ... then a resumed run that finished it.
    assert ponder("solve", sums, "--base-url", server.base_url, "--verifier", checks,
                  "-o", out, "--resume", "--quiet")[0] == 0
    code, stdout, _ = ponder("show", out, "--id", "s0")
    assert code == 0
    assert "generate single/answer" in stdout and "OLD-ATTEMPT" not in stdout


def test_show_names_a_bad_trace_line(
        server: FakeOpenAIServer, sums: Path, checks: str, tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    assert ponder("solve", sums, "--base-url", server.base_url, "--verifier", checks,
                  "-o", out, "--quiet")[0] == 0
    trace = default_trace(out)
    lines = trace.read_text().splitlines(keepends=True)
    trace.write_text('{"problem_id": "s1", "kind": 7}\n' + "".join(lines))
    code, _, stderr = ponder("show", out, "--id", "s1")
    assert code == 2 and f"{trace}:1: not a trace event" in stderr.replace("\n", "")


def test_ctrl_c_keeps_finished_rows_and_says_how_many_remain(tmp_path: Path,
                                                             checks: str) -> None:
    out = tmp_path / "r.jsonl"
    with FakeOpenAIServer(latency_s=0.05) as server:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ponder", "solve", str(DATA / "gsm8k_test_public.jsonl"),
             "--base-url", server.base_url, "--concurrency", "4", "--verifier", checks,
             "-o", str(out)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
            env={**os.environ, "COLUMNS": "200"})
        deadline = time.monotonic() + 30
        while (not out.is_file() or out.read_bytes().count(b"\n") < 10) \
                and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    rows = read_results(out)
    assert 10 <= len(rows) < 300
    assert out.read_bytes().endswith(b"\n")
    assert f"{300 - len(rows)} of 300 problems remain" in stderr
    assert "--resume" in stderr
    assert f"{len(rows)} / 300" in stdout  # the summary still prints


def test_retry_errors_solves_failed_problems_again_and_keeps_one_row_each(
        sums: Path, checks: str, tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    args = ["solve", sums, "--verifier", checks, "-o", out, "--quiet"]

    def refuse_s1(body: dict[str, object]) -> int | None:
        return 400 if "1 + 2" in json.dumps(body) else None

    with FakeOpenAIServer(status_for=refuse_s1) as server:
        code, _, stderr = ponder(*args, "--base-url", server.base_url)
    # A run that finished with failed rows says so, in its exit code and one line.
    assert code == 3
    assert stderr.splitlines()[-1] == (
        f"error: 1 of 3 problems failed (their rows are in {out}); run the same command with "
        "--resume --retry-errors to solve them again")
    assert [r.id for r in read_results(out) if r.error] == ["s1"]
    with FakeOpenAIServer() as server:
        assert ponder(*args, "--base-url", server.base_url, "--resume")[0] == 3
        assert server.requests == 0  # a failed row counts as done ...
        assert ponder(*args, "--base-url", server.base_url, "--resume", "--retry-errors")[0] == 0
        assert server.requests == 1  # ... until --retry-errors
    rows = read_results(out)
    assert sorted(r.id for r in rows) == ["s0", "s1", "s2"]
    assert all(r.error is None and r.correct for r in rows)


def test_humaneval_as_it_is_runs_with_unit_tests_and_no_gold_reaches_the_server(
        server: FakeOpenAIServer, tmp_path: Path) -> None:
    out = tmp_path / "he.jsonl"
    code, stdout, stderr = ponder("solve", DATA / "humaneval_public.jsonl", "--base-url",
                                  server.base_url, "--concurrency", "16", "-o", out, "--json")
    assert code == 0, stderr
    summary = json.loads(stdout)
    assert (summary["done"], summary["judged"], summary["errors"]) == (100, 100, 0)
    rows = read_results(out)
    assert all(r.verdict is not None for r in rows)
    sent = json.dumps(server.received)
    for raw in load_jsonl("humaneval_public.jsonl"):
        assert json.dumps(raw["canonical_solution"])[1:-1] not in sent
        assert json.dumps(raw["test"].strip())[1:-1] not in sent


def test_bench_needs_a_run_and_a_folder() -> None:
    code, _, stderr = ponder("bench", "problems.jsonl")
    assert code == 2
    assert "--run" in stderr or "--out" in stderr


def test_sandbox_none_is_named_and_said_in_every_verdict_and_the_summary(
        server: FakeOpenAIServer, tmp_path: Path) -> None:
    """A subprocess: the choice is the process's, so it must not leak into this one."""
    problems = tmp_path / "add.jsonl"
    problems.write_text(json.dumps({"id": "a", "problem": "Write add(a, b).",
                                    "tests": ["assert add(1, 2) == 3"]}) + "\n")
    out = tmp_path / "r.jsonl"
    done = subprocess.run(
        [sys.executable, "-m", "ponder", "solve", str(problems), "--base-url", server.base_url,
         "-o", str(out), "--json", "--sandbox", "none"],
        capture_output=True, text=True, cwd=REPO, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert (summary["unsandboxed"], summary["sandbox"]) == (1, "none")
    [row] = read_results(out)
    assert row.verdict is not None
    assert row.verdict.details["isolation"]["sandbox"].startswith("none (opted out")
    table = subprocess.run(
        [sys.executable, "-m", "ponder", "solve", str(problems), "--base-url", server.base_url,
         "-o", str(out), "--overwrite", "--sandbox", "none"],
        capture_output=True, text=True, cwd=REPO, timeout=120, check=False,
        env={**os.environ, "COLUMNS": "200"})
    assert "no sandbox" in table.stdout and "unsandboxed (--sandbox none)" in table.stdout
    refused = subprocess.run(
        [sys.executable, "-m", "ponder", "solve", str(problems), "--sandbox", "off"],
        capture_output=True, text=True, cwd=REPO, timeout=120, check=False)
    assert refused.returncode == 2 and "--sandbox must be 'isolated' or 'none'" in refused.stderr


def test_the_sandbox_option_names_the_sandboxs_own_variable() -> None:
    from ponder import cli
    from ponder.sandbox import SANDBOX_ENV

    assert cli.SANDBOX_ENV == SANDBOX_ENV


def test_an_empty_file_at_the_output_path_is_written_into_not_removed(
        server: FakeOpenAIServer, sums: Path, checks: str, tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    out.touch()
    out.chmod(0o640)
    inode = out.stat().st_ino
    assert ponder("solve", sums, "--base-url", server.base_url, "--verifier", checks,
                  "-o", out, "--quiet")[0] == 0
    assert out.stat().st_ino == inode and out.stat().st_mode & 0o777 == 0o640
    assert len(read_results(out)) == 3
