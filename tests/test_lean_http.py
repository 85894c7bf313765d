"""The lean HTTP client that carries chat requests to plain-http servers: the same completions as
through the openai SDK, the replies it reads, the servers it leaves to the SDK, and failures
that end as the SDK's would."""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

from ponder.backends import lean_http
from ponder.backends.base import asking_confidence
from ponder.backends.lean_http import header_block, lean_target
from ponder.backends.openai import OpenAIBackend
from ponder.core.errors import BackendError
from ponder.core.types import Message
from ponder.testing import FakeOpenAIServer

MESSAGES = [Message(role="user", content="Tom has 3 apples and buys 5 more. How many now?")]
CHAT = {"id": "c", "object": "chat.completion", "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Final answer: 8"},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}}

Reply = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def raw_server(reply: Reply) -> AsyncIterator[str]:
    """A server on 127.0.0.1 whose replies `reply` writes byte by byte; its base URL."""
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:"))
                await reader.readexactly(length)
                await reply(reader, writer)
                if writer.is_closing():
                    return
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass  # the client went, or the test is over
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}/v1"


def quick(url: str, **kwargs: object) -> OpenAIBackend:
    options: dict[str, object] = {"model": "fake-model", "timeout": 2.0, "max_retries": 1,
                                  "backoff_initial": 0.01, "backoff_max": 0.02, **kwargs}
    return OpenAIBackend(url, **options)  # type: ignore[arg-type]


async def test_both_clients_give_the_same_completions() -> None:
    with FakeOpenAIServer() as server:
        async with quick(server.base_url) as lean, \
                quick(server.base_url, lean_http=False) as sdk:
            assert lean._lean is not None and sdk._lean is None
            with asking_confidence():
                replies = [await b.generate(MESSAGES, n=3, max_tokens=50, temperature=0.7,
                                            seed=1) for b in (lean, sdk)]
    assert replies[0] == replies[1]
    assert replies[0][0].confidence is not None and replies[0][0].usage.prompt_tokens > 0


async def test_a_chunked_gzipped_reply_is_read_whole() -> None:
    async def chunked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        body = gzip.compress(json.dumps(CHAT).encode())
        chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part)
                          for part in (body[:10], body[10:]))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     b"Content-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"
                     + chunks + b"0\r\n\r\n")

    async with raw_server(chunked) as url, quick(url) as backend:
        [completion] = await backend.generate(MESSAGES, max_tokens=50)
    assert completion.text == "Final answer: 8" and completion.usage.completion_tokens == 3


async def test_an_idle_connection_the_server_closed_is_replaced_not_an_error() -> None:
    async def once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        body = json.dumps(CHAT).encode()
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        writer.close()  # without saying so: the client finds out when it next looks

    async with raw_server(once) as url, quick(url, max_retries=0) as backend:
        for _ in range(3):
            [completion] = await backend.generate(MESSAGES, max_tokens=50)
            assert completion.retries == 0
            await asyncio.sleep(0.05)


async def test_a_reply_cut_short_is_a_connection_error_retried() -> None:
    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n{\"choices\": [")
        await writer.drain()
        writer.close()

    async with raw_server(cut) as url, quick(url) as backend:
        with pytest.raises(BackendError, match=r"cannot reach .* after 2 attempt.*closed the "
                                               r"connection before its reply ended") as caught:
            await backend.generate(MESSAGES, max_tokens=50)
    assert caught.value.retries == 1


@pytest.mark.parametrize("bomb", [True, False], ids=["gzip-bomb", "claimed-length"])
async def test_a_reply_over_the_cap_is_refused_before_it_fills_memory(
        bomb: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lean_http, "MAX_REPLY_BYTES", 1 << 20)

    async def hostile(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if bomb:  # ~10 KiB that inflate to 10 MiB of spaces
            body = gzip.compress(b"{" + b" " * (10 << 20) + b"}")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        else:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n{")
        await writer.drain()
        writer.close()

    async with raw_server(hostile) as url, quick(url, max_retries=0) as backend:
        with pytest.raises(BackendError, match="over 1048576 bytes; refused"):
            await backend.generate(MESSAGES, max_tokens=50)


async def test_a_redirecting_server_is_left_to_the_sdk() -> None:
    with FakeOpenAIServer() as fake:
        async def redirect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(f"HTTP/1.1 307 Temporary Redirect\r\nLocation: {fake.base_url}"
                         f"/chat/completions\r\nContent-Length: 0\r\n\r\n".encode())

        async with raw_server(redirect) as url, quick(url) as backend:
            [completion] = await backend.generate(MESSAGES, max_tokens=50)
            assert backend._lean is None  # from now on, straight to the SDK
    assert completion.text.endswith("Final answer: 8") and fake.requests == 1


def test_https_proxies_and_credentials_are_left_to_the_sdk(
        monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    assert lean_target("http://gpu1:8000/v1/") == ("gpu1", 8000, "gpu1:8000", "/v1")
    assert lean_target("http://[::1]/v1").authority == "[::1]"  # type: ignore[union-attr]
    assert lean_target("https://api.openai.com/v1") is None
    assert lean_target("http://user:pw@gpu1:8000/v1") is None
    monkeypatch.setenv("HTTP_PROXY", "http://proxy:3128")
    assert lean_target("http://gpu1:8000/v1") is None
    monkeypatch.setenv("NO_PROXY", "gpu1")
    assert lean_target("http://gpu1:8000/v1") is not None
    assert header_block({"Authorization": "Bearer k\r\nX-Evil: 1"}) is None
    assert header_block({"Authorization": "Bearer k", "OpenAI-Project": None}) == \
        "Authorization: Bearer k\r\n"
