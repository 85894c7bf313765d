"""Shared fixtures: paths to the shared data sets, and a scripted context for strategy tests."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from ponder.core.types import Candidate, Problem, Verdict

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def load_jsonl(name: str) -> list[dict[str, Any]]:
    path = DATA / name
    if not path.is_file():
        pytest.skip(f"shared data {path} not present")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture
def data_dir() -> Path:
    return DATA


class PartialChecker:
    """A verifier that scores partial work (a step holding `6 * 4` is on the right track) and
    passes the answer 24: tree searches value nodes with it instead of the value prompt."""

    name = "partial"

    def score_partial(self, problem: Problem, partial: str) -> float:
        return 1.0 if "6 * 4" in partial else 0.0

    async def verify(self, problem: Problem, candidate: Candidate) -> Verdict:
        return Verdict.from_bool(candidate.answer == "24")


@contextmanager
def json_server(answer: Callable[[BaseHTTPRequestHandler], tuple[int, Any]]) -> Iterator[str]:
    """A hand-written HTTP server on 127.0.0.1 for what the fake server will not do (lie,
    quote credentials back): each POST gets `answer(handler)`'s status and JSON. Yields its
    `host:port`."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            status, payload = answer(self)
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"127.0.0.1:{httpd.server_port}"
    finally:
        httpd.shutdown()
        httpd.server_close()
