"""A lean HTTP/1.1 client for the request a run makes thousands of times: a JSON POST to an
OpenAI-compatible server over plain http (a local vLLM or llama.cpp, the fake server).

Why not the openai SDK's client, which serves everything else: a chat request through
`OpenAIBackend` costs 2.2 ms of CPU through it (its request options and headers, httpx's
models, anyio) and 0.4 ms through this one, and with 32 requests in flight it is the client's
CPU, not the server, that bounds a run: 1,000 requests at 200 ms take 1.15x the ideal wall
time through the SDK's client alone, 1.05x through this (benchmarks/results/client_overhead.md).

It speaks what such servers answer: keep-alive connections (an idle one the server has closed
is dropped before use), a body by Content-Length, chunked or up to the connection's end, and
gzip or deflate. It sends the SDK's own headers. It does not follow redirects, nor go through
proxies: `lean_target` leaves a URL the environment names a proxy for to the SDK, and a
redirect is raised as `Redirected` for the caller to send through the SDK.

Failures keep the classes the SDK's would have, as `openai_retry` sees them: `StatusError` for
a reply that is not 2xx (its status, headers and body, as `openai.APIStatusError` carries them),
`ConnectError` for everything that goes wrong on the connection (refused, reset, closed before
the reply ended, not HTTP), and `json.JSONDecodeError` for a 2xx body that is not JSON. There
are no timeouts here: `RetryPolicy` bounds each attempt, and a request cancelled midway closes
its connection.

>>> client = LeanHTTP(lean_target("http://127.0.0.1:8000/v1"), {"Authorization": "Bearer k"})
>>> reply = await client.post_json("/chat/completions", {"model": "m", "messages": []})
"""

from __future__ import annotations

import asyncio
import json
import zlib
from collections.abc import Mapping
from typing import Any, NamedTuple
from urllib.parse import urlsplit
from urllib.request import getproxies, proxy_bypass


class StatusError(Exception):
    """A reply that is not 2xx, with what `openai.APIStatusError` would carry: the status,
    the headers (names in lower case) and the body (its JSON where it parses, else its text).
    The message is the SDK's: the status and the body's `error.message` where it has one."""

    def __init__(self, status_code: int, headers: dict[str, str], body: object) -> None:
        error = body.get("error", body) if isinstance(body, dict) else None
        said = error.get("message") if isinstance(error, dict) else None
        self.message = f"Error code: {status_code}" + (
            f" - {said}" if isinstance(said, str) and said else "")
        super().__init__(self.message)
        self.status_code = status_code
        self.headers = headers
        self.body = body


class ConnectError(ConnectionError):
    """The server could not be reached, or the connection failed before the reply was whole
    (what the SDK raises as `openai.APIConnectionError`)."""


class Redirected(Exception):
    """The server answered with a redirect, which this client does not follow."""


class Target(NamedTuple):
    """Where requests go: the connection's host and port, the `Host` header, and the path the
    routes are under (`/v1`)."""

    host: str
    port: int
    authority: str
    prefix: str


def lean_target(base_url: str) -> Target | None:
    """Where a base URL's requests go, when this client can send them: plain http, no
    credentials, query or fragment in the URL, and no proxy named for it in the environment
    (`HTTP_PROXY`, `ALL_PROXY`, less `NO_PROXY`), which the SDK's client would go through.
    None otherwise."""
    parts = urlsplit(base_url)
    if parts.scheme != "http" or not parts.hostname or parts.username is not None \
            or parts.password is not None or parts.query or parts.fragment:
        return None
    try:
        port = parts.port or 80
    except ValueError:  # a port that is not a number
        return None
    proxies = getproxies()
    if ("http" in proxies or "all" in proxies) and not proxy_bypass(parts.hostname):
        return None
    return Target(parts.hostname, port, parts.netloc, parts.path.rstrip("/"))


def header_block(headers: Mapping[str, object]) -> str | None:
    """`headers` as request header lines; None when one cannot go on the wire as it is (a
    value with a line break or a character outside ASCII), which httpx would refuse too.
    Values that are not strings (the SDK's markers for a header left out) are skipped."""
    lines = []
    for name, value in headers.items():
        if not isinstance(value, str):
            continue
        if not (name.isascii() and value.isascii()) or any(c in name + value for c in "\r\n"):
            return None
        lines.append(f"{name}: {value}\r\n")
    return "".join(lines)


_Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]
# What a connection failing midway raises (a short read is an EOFError, a bad length or chunk
# size a ValueError), each the SDK's connection error.
# The most a reply may hold, decompressed: n=256 samples of 4,096 tokens with top-5 log-probs
# fit (~300 bytes a token); anything larger is a broken or hostile server.
MAX_REPLY_BYTES = 512 * 2**20
_BROKEN = (OSError, EOFError, ValueError, asyncio.LimitOverrunError, zlib.error)


class LeanHTTP:
    """JSON POSTs to one server over a pool of keep-alive connections, as many as there are
    requests in flight. Connections belong to the event loop that opened them (as the SDK's
    do); `aclose` closes the idle ones."""

    def __init__(self, target: Target, headers: Mapping[str, str]) -> None:
        self.target = target
        fixed = {name: value for name, value in headers.items()
                 if name.lower() not in ("host", "content-length", "connection")}
        block = header_block({"Host": target.authority, **fixed})
        if block is None:
            raise ValueError("headers that cannot be sent as they are")
        self._headers = block
        self._idle: list[_Connection] = []
        self._closed = False  # requests still in flight then close their connections after

    async def post_json(self, path: str, body: Any) -> Any:
        """POST `body` as JSON to `path` (under the target's prefix); the reply's JSON."""
        data = json.dumps(body).encode("ascii")
        head = (f"POST {self.target.prefix}{path} HTTP/1.1\r\n{self._headers}"
                f"Content-Length: {len(data)}\r\n\r\n").encode("ascii")
        reader, writer = await self._connection()
        try:
            writer.write(head + data)
            await writer.drain()
            status, headers, content, reusable = await _read_reply(reader)
        except BaseException as exc:  # cancelled, timed out or failed: the connection is done
            writer.close()
            if isinstance(exc, _BROKEN) and not isinstance(exc, ConnectError | TimeoutError):
                raise ConnectError(_describe(exc)) from exc
            raise
        if reusable and not self._closed:
            self._idle.append((reader, writer))
        else:
            writer.close()
        text = content.decode("utf-8", "replace")
        if 300 <= status < 400:
            raise Redirected(f"{status} to {headers.get('location', '?')}")
        if not 200 <= status < 300:
            try:
                error_body: object = json.loads(text)
            except ValueError:
                error_body = text.strip()
            raise StatusError(status, headers, error_body)
        return json.loads(text)

    async def aclose(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for _, writer in idle:
            writer.close()
        # Let the sockets close before the event loop may end; a reset on the way is no matter.
        await asyncio.gather(*(writer.wait_closed() for _, writer in idle),
                             return_exceptions=True)

    async def _connection(self) -> _Connection:
        """An idle connection the server has not closed, else a new one."""
        while self._idle:
            reader, writer = self._idle.pop()
            if not (reader.at_eof() or writer.is_closing() or reader.exception()):
                return reader, writer
            writer.close()
        try:
            return await asyncio.open_connection(self.target.host, self.target.port)
        except OSError as exc:
            raise ConnectError(_describe(exc)) from exc


async def _read_reply(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes, bool]:
    """(status, headers, body, whether the connection may carry another request)."""
    while True:
        status, version, headers = _parse_head(await reader.readuntil(b"\r\n\r\n"))
        if status >= 200:
            break  # a 1xx is an interim reply; the real one follows
    reusable = version == "HTTP/1.1" and "close" not in headers.get("connection", "").lower()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        content = await _read_chunked(reader)
    elif "content-length" in headers:
        content = await reader.readexactly(_within_cap(int(headers["content-length"])))
    elif status in (204, 304):
        content = b""
    else:  # the body runs to the end of the connection
        content = await _read_to_end(reader)
        reusable = False
    encoding = headers.get("content-encoding", "identity").lower()
    if encoding in ("gzip", "x-gzip"):
        content = _inflate(content, 16 + zlib.MAX_WBITS)
    elif encoding == "deflate":
        try:
            content = _inflate(content, zlib.MAX_WBITS)
        except zlib.error:  # deflate without its zlib header, as some servers send it
            content = _inflate(content, -zlib.MAX_WBITS)
    elif encoding not in ("identity", ""):
        raise ConnectError(f"the reply is encoded as {encoding!r}, which was not asked for")
    return status, headers, content, reusable


def _within_cap(size: int) -> int:
    # A server can lie: a claimed or decompressed size past the cap is refused before it is
    # held in memory (a gzip bomb inflates a few KiB into gigabytes).
    if size > MAX_REPLY_BYTES:
        raise ConnectError(f"the reply is over {MAX_REPLY_BYTES} bytes; refused")
    return size


async def _read_to_end(reader: asyncio.StreamReader) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while block := await reader.read(1 << 16):
        total = _within_cap(total + len(block))
        chunks.append(block)
    return b"".join(chunks)


def _inflate(content: bytes, wbits: int) -> bytes:
    inflater = zlib.decompressobj(wbits)
    out = inflater.decompress(content, MAX_REPLY_BYTES + 1)
    _within_cap(len(out) + (1 if inflater.unconsumed_tail else 0))
    return out


def _parse_head(head: bytes) -> tuple[int, str, dict[str, str]]:
    status_line, *lines = head.decode("latin-1").split("\r\n")
    version, _, rest = status_line.partition(" ")
    code = rest[:3]
    if not version.startswith("HTTP/1.") or not code.isdigit():
        raise ConnectError(f"not an HTTP reply: {status_line[:80]!r}")
    headers: dict[str, str] = {}
    for line in lines:
        if line:
            name, sep, value = line.partition(":")
            if not sep:
                raise ConnectError(f"not an HTTP header: {line[:80]!r}")
            headers[name.strip().lower()] = value.strip()
    return int(code), version, headers


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0].strip(), 16)
        total = _within_cap(total + size)
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers, unused
                pass
            return b"".join(chunks)
        chunks.append(await reader.readexactly(size))
        await reader.readexactly(2)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, asyncio.IncompleteReadError):
        return ("the server closed the connection before its reply ended" if exc.partial
                else "the server closed the connection without replying")
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
