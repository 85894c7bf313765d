"""An OpenAI-compatible chat server on 127.0.0.1 for tests and benchmarks, with injected faults.

It speaks enough of the API for any OpenAI client: `POST /v1/chat/completions` (with `n`,
`max_tokens`, `stop`, `usage`, and `logprobs` / `top_logprobs`), `GET /v1/models`, and vLLM's
`POST /tokenize`. A token is a whitespace-separated word, so tests can reason about usage and
log-probs exactly (see `ponder.testing.tokens`). Faults ("429", "500", "hang", "drop", "malformed")
are drawn per chat request from a seeded RNG.

>>> with FakeOpenAIServer(fault_rate=0.2, seed=1) as server:  # doctest: +SKIP
...     ponder.solve("What is 2 + 3?", backend=server.base_url)

As a process (prints the base URL on one line, serves until SIGTERM or SIGINT):

    python -m ponder.testing.fake_server --port 0 --latency 0.05 --fault-rate 0.1 --seed 1

(`--exit-with-parent` stops it when the process that started it is gone.)

Quiz mode (`quiz=[QuizItem(...)]`, `FakeOpenAIServer.from_quiz_file(path)`, or
`--quiz FILE.jsonl`) stands in for a model of known skill: each item says a problem's answer
and the chance `p_correct` that a reply gets it right, so accuracy-vs-tokens curves and
allocation can be measured without a real model's noise. See `ponder.testing.quiz`.

What a request gets, faults included, is `FakeChat`'s (`ponder.testing.chat`); this module
carries it over HTTP, and runs it as a process (`main`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import socket
import sys
import threading
import zlib
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ponder.testing.chat import FAULTS, LOGPROBS_MODES, PREFIX_CACHE_MODES, FakeChat
from ponder.testing.quiz import DEFAULT_DISTRACTORS, QuizItem
from ponder.testing.tokens import count_prompt_tokens, message_text

log = logging.getLogger(__name__)


class FakeOpenAIServer(FakeChat):
    """A real HTTP server in a background thread; one thread per connection, keep-alive.

    `status_for(body)` may return an HTTP status to answer a chat request with instead (an
    OpenAI-shaped error body); `api_key` makes the server answer 401 to any other key; an
    unknown model gets 404, and `max_context` a 400 when prompt + `max_tokens` exceed it.
    `logprobs` says what a request for log-probs gets: "serve" (per word, `token_logprobs`),
    "refuse" (a 400 naming them, as some servers answer) or "ignore" (`logprobs: null`).
    `received` keeps every chat request body, for tests to inspect.

    `quiz` (items or mappings of `QuizItem`'s fields) turns on quiz mode: a request about a
    quiz problem gets replies right with the item's `p_correct`, else one of `distractors`
    wrong answers (see `Quiz`; `from_quiz_file` reads the items from JSONL); other requests
    get `reply` as before. Log-probs are served as for any reply, except that a right quiz
    reply's words are surer by `quiz_confidence` (`token_logprobs`'s `lift`; 0 by default,
    when confidence says nothing about rightness). Usage is counted the same way in quiz mode.

    `prefix_cache` simulates a server's prefix cache (unbounded, token by token: a prompt's
    cached tokens are its longest prefix an earlier successful request's prompt began with, all
    but its last token at most) and reports the hits as OpenAI and vLLM do ("openai":
    `usage.prompt_tokens_details.cached_tokens`) or as llama.cpp's server does ("llama.cpp":
    `timings.cache_n`); "off", the default, reports nothing. `prompt_tokens` is the whole
    prompt either way.
    """

    _httpd: _HTTPServer | None = None
    _thread: threading.Thread | None = None

    @classmethod
    def from_quiz_file(cls, path: str | os.PathLike[str], **kwargs: Any) -> FakeOpenAIServer:
        """A server in quiz mode on the items of a JSONL file (`QuizItem.load_jsonl`, which
        raises `QuizFileError` naming each bad line and field)."""
        return cls(quiz=QuizItem.load_jsonl(path), **kwargs)

    @property
    def base_url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("FakeOpenAIServer is not started; call start() first")
        return f"http://127.0.0.1:{self._httpd.server_port}/v1"

    def start(self) -> FakeOpenAIServer:
        if self._httpd is not None:
            return self
        self._stopping.clear()
        self._httpd = _HTTPServer(("127.0.0.1", self._port), _Handler, self)
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.01},
                                        name="fake-openai-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()  # wakes handlers sleeping in a "hang" or latency
        httpd.shutdown()
        httpd.close_connections()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # keep-alive handlers may wait on idle clients; never join them
    request_queue_size = 512

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler],
                 fake: FakeOpenAIServer) -> None:
        self.fake = fake
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._open_lock:
            sockets, self._open = list(self._open), set()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so clients can pool connections
    # Headers and body go out in two writes; with Nagle on, the body would wait for the
    # client's delayed ACK (40 ms a request).
    disable_nagle_algorithm = True
    server: _HTTPServer
    timeout = 120  # an idle keep-alive connection is closed after this

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        fake = self.server.fake
        if self.path.rstrip("/") == "/v1/models":
            self._json(200, {"object": "list", "data": [
                {"id": fake.model, "object": "model", "created": 0, "owned_by": "ponder"}]})
        elif self.path.rstrip("/") in ("/health", "/v1/health"):
            self._json(200, {"status": "ok"})
        else:
            self._error(404, f"no route GET {self.path}")

    def do_POST(self) -> None:
        body = self._read_json()
        if body is None:
            return
        path = self.path.rstrip("/")
        if path == "/v1/chat/completions":
            self._chat(body)
        elif path in ("/tokenize", "/v1/tokenize"):
            self._tokenize(body)
        else:
            self._error(404, f"no route POST {self.path}")

    def _chat(self, body: dict[str, Any]) -> None:
        fake = self.server.fake
        fault = fake._draw_fault()
        fake._sleep(fake.latency_s)
        if fault == "drop":
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        if fault == "hang":
            fake._sleep(fake.hang_s)
        if fault == "429":
            headers = {}
            if fake.retry_after_s is not None:
                headers["Retry-After"] = f"{fake.retry_after_s:g}"
            self._error(429, "Rate limit reached; retry later.", headers)
            return
        if fault == "500":
            self._error(500, "Internal server error (injected).")
            return
        if fault == "malformed":
            self._send(200, b'{"id": "chatcmpl-broken", "choices": [', "application/json")
            return
        refused = fake._check(body, self.headers.get("Authorization"))
        if refused is not None:
            self._error(*refused)
            return
        with fake._lock:
            fake.received.append(body)
        self._json(200, fake._completion(body))

    def _tokenize(self, body: dict[str, Any]) -> None:
        messages = body.get("messages")
        if isinstance(messages, list):
            words = [w for m in messages for w in message_text(m).split()]
            count = count_prompt_tokens(messages)
        elif isinstance(body.get("prompt"), str):
            words = body["prompt"].split()
            count = len(words)
        else:
            self._error(400, "tokenize needs 'messages' or 'prompt'")
            return
        # Ids for the words, then fixed ids standing for the template's overhead tokens.
        tokens = [zlib.crc32(w.encode()) % 50_000 for w in words]
        tokens += [50_000] * (count - len(tokens))
        self._json(200, {"count": count, "max_model_len": self.server.fake.max_context or 32768,
                         "tokens": tokens})

    # -- plumbing ---------------------------------------------------------------------------------

    def _read_json(self) -> dict[str, Any] | None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            self._error(400, "request body is not valid JSON")
            return None
        if not isinstance(body, dict):
            self._error(400, "request body must be a JSON object")
            return None
        return body

    def _json(self, status: int, payload: dict[str, Any],
              headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json", headers)

    def _error(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        kind = "invalid_request_error" if status < 500 else "server_error"
        self._json(status, {"error": {"message": message, "type": kind, "code": status}},
                   headers)

    def _send(self, status: int, data: bytes, content_type: str,
              headers: dict[str, str] | None = None) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)
        except OSError:  # the client gave up (a timeout during a "hang"); nothing to tell it
            self.close_connection = True


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ponder.testing.fake_server",
                                     description="Serve a fake OpenAI-compatible API.")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per chat request")
    parser.add_argument("--fault-rate", type=float, default=0.0)
    parser.add_argument("--faults", default=",".join(FAULTS), help="comma-separated kinds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hang", type=float, default=30.0, help="seconds a 'hang' lasts")
    parser.add_argument("--retry-after", type=float, default=0.05)
    parser.add_argument("--model", default="fake-model")
    parser.add_argument("--no-native-n", action="store_true", help="always return one choice")
    parser.add_argument("--no-usage", action="store_true", help="omit usage from replies")
    parser.add_argument("--logprobs", choices=LOGPROBS_MODES, default="serve",
                        help="what a request for log-probs gets")
    parser.add_argument("--quiz", metavar="FILE.jsonl",
                        help="quiz mode: items {problem, answer, p_correct} a line")
    parser.add_argument("--distractors", type=int, default=DEFAULT_DISTRACTORS,
                        help="wrong answers per quiz problem")
    parser.add_argument("--quiz-confidence", type=float, default=0.0,
                        help="how much surer a right quiz reply's log-probs are, in [0, 1)")
    parser.add_argument("--prefix-cache", choices=PREFIX_CACHE_MODES, default="off",
                        help="simulate a prefix cache and report its hits in this server's "
                             "shape")
    parser.add_argument("--exit-with-parent", action="store_true",
                        help="stop when the process that started this one ends (no leaked "
                             "servers when a benchmark is killed)")
    args = parser.parse_args(argv)
    parent = os.getppid()
    try:
        quiz = QuizItem.load_jsonl(args.quiz) if args.quiz else None
        server = FakeOpenAIServer(
            latency_s=args.latency, fault_rate=args.fault_rate,
            faults=[f for f in args.faults.split(",") if f], seed=args.seed,
            native_n=not args.no_native_n, include_usage=not args.no_usage, hang_s=args.hang,
            retry_after_s=args.retry_after, model=args.model, logprobs=args.logprobs,
            port=args.port, quiz=quiz, distractors=args.distractors,
            quiz_confidence=args.quiz_confidence, prefix_cache=args.prefix_cache,
        )
    except (OSError, ValueError) as exc:
        parser.error(str(exc))
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    with server:
        sys.stdout.write(server.base_url + "\n")
        sys.stdout.flush()
        while not done.wait(0.5):
            if args.exit_with_parent and os.getppid() != parent:
                break


if __name__ == "__main__":
    main()
