"""uvicorn's settings for `ponder serve`, each set on purpose, and the h11 protocol that cuts
off a client that stalls sending its request or reading its reply (uvicorn waits for ever on
both)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.h11_impl import H11Protocol

from ponder.core.errors import ConfigError
from ponder.serve.openai_wire import DEFAULT_CLIENT_TIMEOUT_S, DEFAULT_MAX_CONNECTIONS

log = logging.getLogger(__name__)


def server_config(app: ASGIApp, *, host: str = "127.0.0.1", port: int = 8000,
                  log_level: str = "info", client_timeout_s: float = DEFAULT_CLIENT_TIMEOUT_S,
                  max_connections: int = DEFAULT_MAX_CONNECTIONS) -> uvicorn.Config:
    """uvicorn's settings for `app`, each set on purpose rather than left to its defaults.

    A client has `client_timeout_s` to send a request's head (the app times its body), and
    to take a reply it has stopped reading once the server's write buffer is full; then its
    connection is closed. Past `max_connections` connections or requests at once, a new one
    gets a 503: stalled clients (each cut off in time) cannot use up the file descriptors.
    """
    if client_timeout_s <= 0 or max_connections < 1:
        raise ConfigError(f"client_timeout_s ({client_timeout_s}) must be positive and "
                          f"max_connections ({max_connections}) at least 1")
    return uvicorn.Config(
        app, host=host, port=port, log_level=log_level, lifespan="on",
        # h11, the pure-Python parser, with the two timeouts uvicorn does not have.
        http=_guarded_h11(client_timeout_s),
        limit_concurrency=max_connections,
        # An idle connection goes after 5 s: kept for a client's next quick request only.
        timeout_keep_alive=5,
        # At most 64 KiB of an unfinished request head is buffered (a larger head is a 400
        # unless it arrives in one read): a head carries a key and a few names.
        h11_max_incomplete_event_size=64 * 1024,
    )


def _guarded_h11(client_timeout_s: float) -> type[H11Protocol]:
    """uvicorn's h11 protocol, closing a connection whose client takes over `client_timeout_s`
    to send a request's head (counted from its first byte, or from connecting), or to take
    what the server writes once the write buffer is full. uvicorn itself waits for ever on
    both: a client sending a byte a minute, or reading nothing, would hold its connection
    (and the reply's memory) as long as it liked."""

    class Guarded(H11Protocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._head_timer: asyncio.TimerHandle | None = None
            self._write_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)  # type: ignore[arg-type]
            self._head_timer = self.loop.call_later(client_timeout_s, self._head_late)

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if not self._awaiting_head():
                self._cancel_head_timer()
            elif self._head_timer is None:  # a new request began: its head is timed
                self._head_timer = self.loop.call_later(client_timeout_s, self._head_late)

        def pause_writing(self) -> None:
            super().pause_writing()
            if self._write_timer is None:
                self._write_timer = self.loop.call_later(client_timeout_s, self._write_late)

        def resume_writing(self) -> None:
            super().resume_writing()
            if self._write_timer is not None:
                self._write_timer.cancel()
                self._write_timer = None

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel_head_timer()
            if self._write_timer is not None:
                self._write_timer.cancel()
                self._write_timer = None
            super().connection_lost(exc)

        def _awaiting_head(self) -> bool:
            # Between requests: none yet, or the last one answered (uvicorn's keep-alive
            # timer covers an idle connection; this one, a request begun and not finished).
            cycle = getattr(self, "cycle", None)
            return cycle is None or bool(cycle.response_complete)

        def _cancel_head_timer(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_late(self) -> None:
            self._head_timer = None
            if self._awaiting_head() and not self.transport.is_closing():
                log.info("closing a connection from %s: no request head within %gs",
                         self.client, client_timeout_s)
                self.transport.abort()

        def _write_late(self) -> None:
            self._write_timer = None
            if not self.transport.is_closing():
                log.info("closing a connection from %s: it took nothing of the reply for %gs",
                         self.client, client_timeout_s)
                self.transport.abort()  # close() would wait for the client to read the rest

    return Guarded
