"""Credentials never reach a results file, a trace, stderr or `ponder show`; model output never
drives the terminal."""

from __future__ import annotations

import json
import socket
from pathlib import Path

from typer.testing import CliRunner

from ponder.cli import app
from ponder.core.redact import redact_secrets, redact_url
from ponder.core.tracing import START_STEP, JsonlTraceWriter
from ponder.core.types import Completion, Result, TraceEvent, Verdict
from ponder.runs.results import ResultsWriter

PASSWORD = "s3cret-pass"
KEY = "k3y-in-the-query"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_redact_masks_userinfo_key_parameters_and_named_secrets() -> None:
    assert redact_url(f"https://bob:{PASSWORD}@api.example.com/v1?api_key={KEY}&model=q") == \
        "https://***@api.example.com/v1?api_key=***&model=q"
    assert redact_url("http://127.0.0.1:8000/v1") == "http://127.0.0.1:8000/v1"
    assert redact_secrets(f"401: Incorrect API key provided: sk-live-1234 (see "
                          f"http://u:{PASSWORD}@h/v1?token=abc)", ["sk-live-1234"]) == \
        "401: Incorrect API key provided: *** (see http://***@h/v1?token=***)"


def test_credentials_in_the_base_url_reach_no_file_stream_or_show(tmp_path: Path) -> None:
    problems = tmp_path / "p.jsonl"
    problems.write_text(json.dumps({"id": "q1", "problem": "What is 2 + 3?"}) + "\n")
    out = tmp_path / "r.jsonl"
    url = f"http://alice:{PASSWORD}@127.0.0.1:{closed_port()}/v1?api_key={KEY}"
    runner = CliRunner(env={"COLUMNS": "300"})  # no line of the error is wrapped
    solved = runner.invoke(app, ["solve", str(problems), "--base-url", url, "--retries", "0",
                                 "-o", str(out)])
    assert solved.exit_code == 3, solved.stderr  # its one row failed
    assert "cannot reach http://***@127.0.0.1:" in solved.stderr  # the error is still told
    shown = runner.invoke(app, ["show", str(out)])
    detail = runner.invoke(app, ["show", str(out), "--id", "q1", "--full"])
    assert "cannot reach http://***@127.0.0.1:" in detail.stdout
    for text in (solved.stdout, solved.stderr, out.read_text(),
                 (tmp_path / "r.trace.jsonl").read_text(), shown.stdout, detail.stdout):
        assert PASSWORD not in text and KEY not in text


def test_show_masks_credentials_in_rows_written_before_they_were_masked(tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    with ResultsWriter(out) as writer:
        writer.write(Result(id="q1", answer=None, stop_reason="error",
                            error=f"BackendError: cannot reach http://a:{PASSWORD}@h/v1"))
    shown = CliRunner().invoke(app, ["show", str(out), "--id", "q1"])
    assert "cannot reach http://***@h/v1" in shown.stdout and PASSWORD not in shown.stdout


HOSTILE = "A\x1b]0;pwned\x07B\x1b[2J\x1b[31mC\x9b31mD\rE"  # retitle, clear, colour, C1 CSI


def test_show_prints_escape_sequences_in_model_output_as_text(tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    with ResultsWriter(out) as writer:
        writer.write(Result(id=f"q{HOSTILE}", answer=HOSTILE, text=f"reply {HOSTILE}",
                            verdict=Verdict(passed=False, score=0.0, feedback=HOSTILE),
                            strategy=HOSTILE, error=HOSTILE))
    with JsonlTraceWriter(tmp_path / "r.trace.jsonl") as sink:
        sink(TraceEvent(kind="note", step=START_STEP, problem_id=f"q{HOSTILE}"))
        sink(TraceEvent(kind="generate", step=HOSTILE, problem_id=f"q{HOSTILE}",
                        completions=[Completion(text=HOSTILE)], error=HOSTILE))
    runner = CliRunner()
    for args in (["show", str(out)], ["show", str(out), "--id", f"q{HOSTILE}", "--full"]):
        shown = runner.invoke(app, args)
        assert shown.exit_code == 0, shown.stderr
        assert not any(ch in shown.stdout for ch in "\x1b\x07\x9b\r"), repr(shown.stdout)
    assert "A\\x1b]0;pwned\\x07B\\x1b[2J\\x1b[31mC\\x9b31mD\\x0dE" in shown.stdout
