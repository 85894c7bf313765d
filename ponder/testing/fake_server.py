"""An OpenAI-compatible chat server on 127.0.0.1 for tests and benchmarks, with injected faults.

It speaks enough of the API for any OpenAI client: `POST /v1/chat/completions` (with `n`,
`max_tokens`, `stop`, `usage`, and `logprobs` / `top_logprobs`), `GET /v1/models`, and vLLM's
`POST /tokenize`. A token is a whitespace-separated word, so tests can reason about usage (and
log-probs, see `token_logprobs`) exactly. Faults ("429", "500", "hang", "drop", "malformed")
are drawn per chat request from a seeded RNG.

>>> with FakeOpenAIServer(fault_rate=0.2, seed=1) as server:  # doctest: +SKIP
...     ponder.solve("What is 2 + 3?", backend=server.base_url)

As a process (prints the base URL on one line, serves until SIGTERM or SIGINT):

    python -m ponder.testing.fake_server --port 0 --latency 0.05 --fault-rate 0.1 --seed 1

(`--exit-with-parent` stops it when the process that started it is gone.)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import random
import re
import signal
import socket
import sys
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

from ponder.backends.scripted import apply_stop

log = logging.getLogger(__name__)

FAULTS = ("429", "500", "hang", "drop", "malformed")
LOGPROBS_MODES = ("serve", "refuse", "ignore")
# Tokens the fake charges around the messages, as a chat template would (role markers, a
# generation prompt). Kept below ponder.tokens' upper bound, which budgets rely on.
PER_MESSAGE_OVERHEAD = 4
PER_PROMPT_OVERHEAD = 3

Reply = Callable[[list[dict[str, Any]]], str]
StatusFor = Callable[[dict[str, Any]], int | None]


def count_prompt_tokens(messages: Sequence[dict[str, Any]]) -> int:
    """The prompt tokens the fake charges: each message's words plus a fixed overhead."""
    words = sum(len(_content(m).split()) for m in messages)
    return words + PER_MESSAGE_OVERHEAD * len(messages) + PER_PROMPT_OVERHEAD


def token_logprobs(word: str, top_logprobs: int) -> dict[str, Any]:
    """The log-probs the fake gives one word, in OpenAI's shape: the word has probability
    0.5-0.99 (from its hash) and ranks first; `top_logprobs` candidates follow it, the rest
    of the probability halving down the ranks."""
    p = 0.5 + (zlib.crc32(word.encode()) % 50) / 100
    probs = [p, *((1 - p) / 2 ** (i + 1) for i in range(max(top_logprobs - 1, 0)))]
    names = [word, *(f"{word}~{i}" for i in range(1, len(probs)))]
    top = [{"token": t, "logprob": math.log(q), "bytes": list(t.encode())}
           for t, q in zip(names, probs, strict=True)][:top_logprobs]
    return {"token": word, "logprob": math.log(p), "bytes": list(word.encode()),
            "top_logprobs": top}


def default_reply(messages: list[dict[str, Any]]) -> str:
    """A deterministic reply: the sum of the numbers in the last user message, as a final
    answer (so "Tom has 3 apples and buys 5 more" gets 8)."""
    last = next((_content(m) for m in reversed(messages) if m.get("role") == "user"), "")
    numbers = [int(x) for x in re.findall(r"-?\d+", last)]
    if not numbers:
        return "There are no numbers to work with.\nFinal answer: 0"
    terms, total = " + ".join(str(x) for x in numbers), sum(numbers)
    return f"Adding the numbers in the question: {terms} = {total}.\nFinal answer: {total}"


class FakeOpenAIServer:
    """A real HTTP server in a background thread; one thread per connection, keep-alive.

    `status_for(body)` may return an HTTP status to answer a chat request with instead (an
    OpenAI-shaped error body); `api_key` makes the server answer 401 to any other key; an
    unknown model gets 404, and `max_context` a 400 when prompt + `max_tokens` exceed it.
    `logprobs` says what a request for log-probs gets: "serve" (per word, `token_logprobs`),
    "refuse" (a 400 naming them, as some servers answer) or "ignore" (`logprobs: null`).
    `received` keeps every chat request body, for tests to inspect.
    """

    def __init__(
        self,
        *,
        latency_s: float = 0.0,
        fault_rate: float = 0.0,
        faults: Sequence[str] = FAULTS,
        seed: int = 0,
        reply: Reply | None = None,
        native_n: bool = True,
        include_usage: bool = True,
        hang_s: float = 30.0,
        retry_after_s: float | None = 0.05,
        model: str = "fake-model",
        api_key: str | None = None,
        max_context: int | None = None,
        status_for: StatusFor | None = None,
        logprobs: Literal["serve", "refuse", "ignore"] = "serve",
        port: int = 0,
    ) -> None:
        unknown = set(faults) - set(FAULTS)
        if unknown:
            raise ValueError(f"unknown faults {sorted(unknown)}; choose from {list(FAULTS)}")
        if not 0.0 <= fault_rate <= 1.0:
            raise ValueError(f"fault_rate must lie in [0, 1], got {fault_rate}")
        if fault_rate > 0 and not faults:
            raise ValueError("fault_rate > 0 needs at least one fault kind")
        if logprobs not in LOGPROBS_MODES:
            raise ValueError(f"logprobs must be one of {list(LOGPROBS_MODES)}, got {logprobs!r}")
        self.latency_s = latency_s
        self.fault_rate = fault_rate
        self.faults = tuple(faults)
        self.reply = reply or default_reply
        self.native_n = native_n
        self.include_usage = include_usage
        self.hang_s = hang_s
        self.retry_after_s = retry_after_s
        self.model = model
        self.api_key = api_key
        self.max_context = max_context
        self.status_for = status_for
        self.logprobs = logprobs
        self.faults_injected: dict[str, int] = dict.fromkeys(FAULTS, 0)
        self.received: list[dict[str, Any]] = []
        self._served = {"prompt_tokens": 0, "completion_tokens": 0, "replies": 0}
        self._port = port
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._requests = 0
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def requests(self) -> int:
        """Chat requests received so far, faulted ones included."""
        with self._lock:
            return self._requests

    @property
    def usage_served(self) -> dict[str, int]:
        """What the successful chat replies so far charged: `prompt_tokens` and
        `completion_tokens` summed over them, and how many `replies` (each one request,
        whatever its `n`); faulted and refused requests charge nothing."""
        with self._lock:
            return dict(self._served)

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

    # -- what a chat request gets ---------------------------------------------------------------

    def _draw_fault(self) -> str | None:
        with self._lock:
            self._requests += 1
            if self.fault_rate and self._rng.random() < self.fault_rate:
                fault = self._rng.choice(self.faults)
                self.faults_injected[fault] += 1
                return fault
        return None

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)

    def _check(self, body: dict[str, Any], auth: str | None) -> tuple[int, str] | None:
        """An error status and message for a request a real server would refuse."""
        if self.api_key is not None and auth != f"Bearer {self.api_key}":
            return 401, "Incorrect API key provided."
        if self.status_for is not None:
            status = self.status_for(body)
            if status is not None:
                return status, f"fake server answers {status} to this request"
        if body.get("model") != self.model:
            return 404, f"The model `{body.get('model')}` does not exist."
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return 400, "messages must be a non-empty list"
        n = body.get("n") or 1
        if not isinstance(n, int) or n < 1:
            return 400, f"n must be a positive integer, got {n!r}"
        if self.logprobs == "refuse" and (body.get("logprobs") or "top_logprobs" in body):
            return 400, "logprobs is not supported by this model"
        if self.max_context is not None:
            wanted = count_prompt_tokens(messages) + int(_max_tokens(body) or 0)
            if wanted > self.max_context:
                return 400, (f"This model's maximum context length is {self.max_context} "
                             f"tokens. However, you requested {wanted} tokens.")
        return None

    def _completion(self, body: dict[str, Any]) -> dict[str, Any]:
        messages: list[dict[str, Any]] = body["messages"]
        n = int(body.get("n") or 1) if self.native_n else 1
        max_tokens = _max_tokens(body)
        stop = body.get("stop")
        stops = [stop] if isinstance(stop, str) else list(stop or [])
        top_logprobs = int(body.get("top_logprobs") or 0)
        serve_logprobs = self.logprobs == "serve" and bool(body.get("logprobs"))
        choices, completion_tokens = [], 0
        for i in range(n):
            text, finish = apply_stop(self.reply(messages), stops)
            words = text.split()
            if max_tokens is not None and len(words) > max_tokens:
                text, finish, words = " ".join(words[:max_tokens]), "length", words[:max_tokens]
            completion_tokens += len(words)
            logprobs = {"content": [token_logprobs(w, top_logprobs) for w in words]} \
                if serve_logprobs else None
            choices.append({"index": i, "message": {"role": "assistant", "content": text},
                            "finish_reason": finish, "logprobs": logprobs})
        prompt_tokens = count_prompt_tokens(messages)
        with self._lock:
            serial = self._requests
            self._served["prompt_tokens"] += prompt_tokens
            self._served["completion_tokens"] += completion_tokens
            self._served["replies"] += 1
        reply: dict[str, Any] = {
            "id": f"chatcmpl-fake-{serial}", "object": "chat.completion",
            "created": int(time.time()), "model": self.model, "choices": choices,
        }
        if self.include_usage:
            reply["usage"] = {"prompt_tokens": prompt_tokens,
                              "completion_tokens": completion_tokens,
                              "total_tokens": prompt_tokens + completion_tokens}
        return reply


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
            words = [w for m in messages for w in _content(m).split()]
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


def _content(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, list):  # the multi-part form: [{"type": "text", "text": ...}]
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return str(content or "")


def _max_tokens(body: dict[str, Any]) -> int | None:
    value = body.get("max_completion_tokens", body.get("max_tokens"))
    return int(value) if value is not None else None


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
    parser.add_argument("--exit-with-parent", action="store_true",
                        help="stop when the process that started this one ends (no leaked "
                             "servers when a benchmark is killed)")
    args = parser.parse_args(argv)
    parent = os.getppid()
    server = FakeOpenAIServer(
        latency_s=args.latency, fault_rate=args.fault_rate,
        faults=[f for f in args.faults.split(",") if f], seed=args.seed,
        native_n=not args.no_native_n, include_usage=not args.no_usage, hang_s=args.hang,
        retry_after_s=args.retry_after, model=args.model, logprobs=args.logprobs,
        port=args.port,
    )
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
