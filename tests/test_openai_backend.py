"""The OpenAI backend against a real HTTP server (the fake one), never a mocked client."""

from __future__ import annotations

import asyncio
import itertools
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest

import ponder
from ponder.backends.openai import OpenAIBackend
from ponder.backends.spec import make_backend as resolve_backend
from ponder.core.errors import BackendError, ConfigError
from ponder.core.types import Message
from ponder.testing import FakeOpenAIServer
from ponder.testing.tokens import count_prompt_tokens
from tests.conftest import json_server

QUESTION = "Tom has 3 apples and buys 5 more. How many apples does Tom have now?"
MESSAGES = [Message(role="system", content="Answer briefly."),
            Message(role="user", content=QUESTION)]
PROMPT_TOKENS = count_prompt_tokens([m.model_dump() for m in MESSAGES])


def fast(server: FakeOpenAIServer, **kwargs: object) -> OpenAIBackend:
    """A backend that gives up quickly, for tests."""
    options: dict[str, object] = {"timeout": 2.0, "max_retries": 2, "backoff_initial": 0.01,
                                  "backoff_max": 0.05}
    options.update(kwargs)
    return OpenAIBackend(server.base_url, **options)  # type: ignore[arg-type]


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as fake:
        yield fake


@pytest.fixture(params=[True, False], ids=["lean_http", "sdk_http"])
def lean_http(request: pytest.FixtureRequest) -> bool:
    """Failures end the same way whichever client carries the chat request."""
    return bool(request.param)


async def test_native_n_is_one_request_charging_the_prompt_once(server: FakeOpenAIServer) -> None:
    async with fast(server) as backend:
        assert backend.prompt_copies(4) == 4  # not known yet: reserve for the worst case
        completions = await backend.generate(MESSAGES, n=4, max_tokens=100, temperature=0.7)
        assert backend.prompt_copies(4) == 1  # learned

    assert len(completions) == 4
    assert server.requests == 1 and server.received[0]["n"] == 4
    assert sum(c.usage.prompt_tokens for c in completions) == PROMPT_TOKENS
    assert all(c.text.endswith("Final answer: 8") for c in completions)
    assert not any(c.usage.estimated for c in completions)


async def test_server_ignoring_n_is_topped_up_with_concurrent_requests() -> None:
    with FakeOpenAIServer(native_n=False) as server:
        async with fast(server) as backend:
            completions = await backend.generate(MESSAGES, n=3, max_tokens=100, seed=7,
                                                  temperature=0.7)
            assert len(completions) == 3
            # one request asked for n=3 and got one choice; two single requests made up the rest
            assert [body.get("n") for body in server.received] == [3, None, None]
            assert sorted(body["seed"] for body in server.received) == [7, 8, 9]
            # each request charged the prompt: as often as prompt_copies(3) promised, no more
            assert sum(c.usage.prompt_tokens for c in completions) == 3 * PROMPT_TOKENS

            assert backend.prompt_copies(3) == 3
            await backend.generate(MESSAGES, n=3, max_tokens=100, temperature=0.7)
            assert [body.get("n") for body in server.received[3:]] == [None, None, None]


async def test_server_trusted_with_n_returning_fewer_leaves_the_rest_to_the_caller() -> None:
    with FakeOpenAIServer(native_n=False) as server:
        async with fast(server, native_n=True) as backend:
            completions = await backend.generate(MESSAGES, n=3, max_tokens=100, temperature=0.7)
            assert len(completions) == 1  # the budget reserved one prompt copy, so no top-up
            assert server.requests == 1
            assert backend.prompt_copies(3) == 1


async def test_greedy_samples_are_one_reply_asked_for_once(server: FakeOpenAIServer) -> None:
    async with fast(server) as backend:
        completions = await backend.generate(MESSAGES, n=3, max_tokens=100, temperature=0.0)
    assert server.requests == 1 and "n" not in server.received[0]
    assert len({c.text for c in completions}) == 1 and len(completions) == 3
    assert sum(c.usage.total_tokens for c in completions) == completions[0].usage.total_tokens


async def test_usage_is_read_from_the_reply(server: FakeOpenAIServer) -> None:
    async with fast(server) as backend:
        [completion] = await backend.generate(MESSAGES, max_tokens=5)
    assert completion.finish_reason == "length"
    assert len(completion.text.split()) == 5
    assert completion.usage.prompt_tokens == PROMPT_TOKENS
    assert completion.usage.completion_tokens == 5
    assert completion.usage.estimated is False


async def test_missing_usage_is_estimated_as_an_upper_bound_and_marked() -> None:
    with FakeOpenAIServer(include_usage=False) as server:
        async with fast(server) as backend:
            completions = await backend.generate(MESSAGES, n=2, max_tokens=100, temperature=0.7)
    assert all(c.usage.estimated for c in completions)
    words = sum(len(c.text.split()) for c in completions)
    assert sum(c.usage.completion_tokens for c in completions) >= words
    assert sum(c.usage.prompt_tokens for c in completions) >= PROMPT_TOKENS


async def test_estimated_prompt_uses_the_servers_tokenizer_once_it_is_known() -> None:
    with FakeOpenAIServer(include_usage=False) as server:
        async with fast(server) as backend:
            assert await backend.count_prompt_tokens(MESSAGES) == PROMPT_TOKENS
            [completion] = await backend.generate(MESSAGES, max_tokens=100)
    assert completion.usage.estimated
    assert completion.usage.prompt_tokens == PROMPT_TOKENS


async def test_stop_sequences_reach_the_server(server: FakeOpenAIServer) -> None:
    async with fast(server) as backend:
        [completion] = await backend.generate(MESSAGES, max_tokens=100, stop=["Final answer"])
    assert server.received[0]["stop"] == ["Final answer"]
    assert "Final answer" not in completion.text and completion.finish_reason == "stop"


@pytest.mark.parametrize(
    ("fake", "backend_kwargs", "status", "message"),
    [
        ({"api_key": "sk-right"}, {"api_key": "sk-wrong"}, 401, "Incorrect API key provided"),
        ({}, {"model": "no-such-model"}, 404, "The model `no-such-model` does not exist"),
        ({"max_context": 50}, {}, 400, "maximum context length is 50"),
    ],
)
async def test_client_errors_fail_fast_with_the_servers_message(
    fake: dict[str, object], backend_kwargs: dict[str, object], status: int, message: str,
    lean_http: bool,
) -> None:
    with FakeOpenAIServer(**fake) as server:  # type: ignore[arg-type]
        async with fast(server, **{"model": "fake-model", "lean_http": lean_http,
                                   **backend_kwargs}) as backend:
            with pytest.raises(BackendError, match=message) as caught:
                await backend.generate(MESSAGES, max_tokens=100)
        assert caught.value.status == status
        assert caught.value.retries == 0
        assert server.requests == 1  # not retried


async def test_transient_errors_are_retried_and_counted(lean_http: bool) -> None:
    replies = itertools.count()
    with FakeOpenAIServer(status_for=lambda body: 503 if next(replies) < 2 else None) as server:
        async with fast(server, lean_http=lean_http) as backend:
            [completion] = await backend.generate(MESSAGES, max_tokens=100)
    assert completion.retries == 2
    assert server.requests == 3


async def test_retry_after_is_honoured_over_a_longer_backoff(lean_http: bool) -> None:
    with FakeOpenAIServer(fault_rate=1.0, faults=["429"], retry_after_s=0.05) as server:
        # Were the backoff used instead of Retry-After, the three attempts would take minutes.
        async with fast(server, max_retries=2, backoff_initial=60, backoff_max=120,
                        lean_http=lean_http) as backend:
            with pytest.raises(BackendError, match="answered 429") as caught:
                await asyncio.wait_for(backend.generate(MESSAGES, max_tokens=100), timeout=10)
    assert caught.value.retries == 2
    assert server.requests == 3


@pytest.mark.parametrize(
    ("fault", "message"),
    [("hang", "did not answer within"), ("drop", "cannot reach"), ("malformed", "malformed"),
     ("500", "answered 500")],
)
async def test_each_fault_ends_in_a_clear_error_after_the_retries(fault: str, message: str,
                                                                  lean_http: bool) -> None:
    with FakeOpenAIServer(fault_rate=1.0, faults=[fault], hang_s=30) as server:
        async with fast(server, model="fake-model", timeout=0.3, max_retries=1,
                        lean_http=lean_http) as backend:
            started = time.monotonic()
            with pytest.raises(BackendError, match=message) as caught:
                await backend.generate(MESSAGES, max_tokens=100)
            elapsed = time.monotonic() - started
    assert caught.value.retries == 1 and server.requests == 2
    assert elapsed < 2 * (0.3 + 0.05) + 1.0


async def test_samples_already_paid_for_are_kept_when_a_top_up_fails() -> None:
    replies = itertools.count()
    # The second request (a top-up) is refused for good; the first and third succeed.
    status_for = lambda body: 400 if next(replies) == 1 else None  # noqa: E731
    with FakeOpenAIServer(native_n=False, status_for=status_for) as server:
        async with fast(server) as backend:
            completions = await backend.generate(MESSAGES, n=3, max_tokens=100, temperature=0.7)
    assert len(completions) == 2
    assert sum(c.usage.prompt_tokens for c in completions) == 2 * PROMPT_TOKENS


async def test_count_prompt_tokens_asks_the_servers_tokenizer(server: FakeOpenAIServer) -> None:
    async with fast(server) as backend:
        counted = await backend.count_prompt_tokens(MESSAGES)
        [completion] = await backend.generate(MESSAGES, max_tokens=100)
    assert counted == completion.usage.prompt_tokens == PROMPT_TOKENS


async def test_server_without_a_tokenizer_counts_none() -> None:
    with FakeOpenAIServer() as server:
        base_url = server.base_url
    # Nothing listens there now; a server that is down is not taken to lack a tokenizer.
    async with OpenAIBackend(base_url, model="m", max_retries=0, timeout=1) as backend:
        assert await backend.count_prompt_tokens(MESSAGES) is None
        assert backend._tokenize is None


async def test_base_url_and_key_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with FakeOpenAIServer(api_key="sk-from-env") as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
        async with OpenAIBackend() as backend:
            [completion] = await backend.generate(MESSAGES, max_tokens=100)
            assert backend.model == "fake-model"  # the server's first model
    assert completion.text.endswith("Final answer: 8")


def test_no_base_url_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(BackendError, match="OPENAI_BASE_URL"):
        OpenAIBackend()


async def test_resolve_backend_makes_a_server_backend_from_its_options() -> None:
    backend, owned = resolve_backend("http://127.0.0.1:9/v1", model="m", api_key="sk-given",
                                     request_timeout=3.0, max_retries=1, backoff_max=0.5)
    assert owned and isinstance(backend, OpenAIBackend)
    async with backend:
        assert (backend.model, backend.client.api_key, backend.client.timeout) == \
            ("m", "sk-given", 3.0)
    with pytest.raises(ConfigError, match="model_path runs the embedded model"):
        resolve_backend("http://127.0.0.1:9/v1", model_path="other.gguf")


def test_solve_with_a_base_url(server: FakeOpenAIServer) -> None:
    result = ponder.solve(QUESTION, backend=server.base_url)

    assert result.answer == "8" and result.error is None
    [event] = [e for e in result.trace if e.kind == "generate"]
    assert event.usage.prompt_tokens == count_prompt_tokens(server.received[0]["messages"])
    assert result.usage.calls == 1
    assert result.usage.total_tokens == event.usage.total_tokens > 0


# -- the fake server itself ------------------------------------------------------------------


async def test_fake_server_answers_64_connections_at_once() -> None:
    with FakeOpenAIServer(latency_s=0.3) as server:
        async with fast(server) as backend:
            started = time.monotonic()
            replies = await asyncio.gather(*(backend.generate(MESSAGES, max_tokens=100)
                                             for _ in range(64)))
            elapsed = time.monotonic() - started
    assert len(replies) == 64 and server.requests == 64
    assert elapsed < 3.0  # one at a time would take 64 × 0.3 s


def test_fake_server_runs_as_a_process() -> None:
    command = [sys.executable, "-m", "ponder.testing.fake_server", "--port", "0", "--seed", "1"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        base_url = proc.stdout.readline().strip()
        try:
            result = ponder.solve(QUESTION, backend=base_url)
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=10) == 0
    assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/v1")
    assert result.answer == "8"


async def test_max_in_flight_caps_concurrent_requests():
    import time as _time

    lock, state = threading.Lock(), {"now": 0, "peak": 0}

    def slow_reply(messages):
        with lock:
            state["now"] += 1
            state["peak"] = max(state["peak"], state["now"])
        _time.sleep(0.05)
        with lock:
            state["now"] -= 1
        return "Final answer: 1"

    from ponder.backends.openai import OpenAIBackend
    from ponder.core.types import Message
    from ponder.testing import FakeOpenAIServer

    with FakeOpenAIServer(reply=slow_reply) as server:
        backend = OpenAIBackend(base_url=server.base_url, model="fake-model", max_in_flight=2,
                                native_n=False)
        try:
            out = await backend.generate([Message(role="user", content="hi")], n=6,
                                         max_tokens=8, temperature=0.7)
        finally:
            await backend.aclose()
    assert len(out) == 6
    assert state["peak"] == 2


def quote_the_key(handler: BaseHTTPRequestHandler) -> tuple[int, dict[str, Any]]:
    """A server's (or proxy's) 401 quoting the key it was sent back, as OpenAI's does."""
    key = handler.headers.get("Authorization", "").removeprefix("Bearer ")
    return 401, {"error": {"message": f"Incorrect API key provided: {key}"}}


@pytest.fixture
def echo_key_server() -> Iterator[str]:
    """The `host:port` of a server that quotes back the credentials it was sent."""
    with json_server(quote_the_key) as address:
        yield address


async def test_the_api_key_never_appears_in_a_backend_error(echo_key_server: str,
                                                            lean_http: bool) -> None:
    url = f"http://{echo_key_server}/v1"
    async with OpenAIBackend(url, model="m", api_key="sk-live-0123456789",
                             max_retries=0, lean_http=lean_http) as backend:
        with pytest.raises(BackendError) as caught:
            await backend.generate(MESSAGES, max_tokens=10)
    assert str(caught.value) == f"{url} answered 401: Incorrect API key provided: ***"
    assert caught.value.status == 401


async def test_the_url_password_never_appears_in_a_backend_error(echo_key_server: str) -> None:
    url = f"http://bob:hunter2-pass@{echo_key_server}/v1"
    async with OpenAIBackend(url, model="m", max_retries=0) as backend:
        assert backend.name == f"openai:http://***@{echo_key_server}/v1"
        with pytest.raises(BackendError) as caught:
            await backend.generate(MESSAGES, max_tokens=10)
    # The client sends the URL's user and password as `Basic <base64>`, which comes back.
    assert str(caught.value) == (f"http://***@{echo_key_server}/v1 answered 401: "
                                 "Incorrect API key provided: Basic ***")
