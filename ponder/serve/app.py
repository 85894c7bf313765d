"""`ponder serve`: an OpenAI-compatible chat endpoint where each request is one problem solved
by a strategy, within a budget.

    POST /v1/chat/completions   model "<strategy>:<model>" (or the plain model: the server's
                                strategy); a `ponder` field may name the strategy, its params,
                                an effort, a budget, a verifier and a gold answer; OpenAI's
                                `reasoning_effort` (low, medium, high) picks an effort tier
    GET  /v1/models             the plain model and one "<strategy>:<model>" per strategy
    GET  /v1/traces/{id}        a request's trace (its id is the `x-ponder-trace-id` header)
    GET  /health                unauthenticated liveness

The problem is the conversation's last user message: a strategy renders its own prompts from
its templates, so earlier messages (a system message too) do not reach it. The reply's
`content` is the final answer, its `reasoning_content` the winning reply's whole text, and its
`usage` the sum over every model call the strategy made. With `n` > 1 a strategy that samples
and votes (`best_of_n`, `program`, `auto`) returns up to `n` distinct answers, the winner
first, then the other answers by votes; fewer when the samples agreed more. `stream: true`
sends the finished answer as `chat.completion.chunk` events, so errors still get their HTTP status.

The app serves one `Session`: it starts the session's backend (the embedded model loads) when
the server starts and closes the session when the server stops. Each request is an asyncio
task; a client that disconnects cancels its run. No request can take the server: each runs
within a budget (the server's unless it asks for less), its program runs within the server's
seconds, and the strategies' count parameters have ceilings. Traces are kept in memory for the
last `max_traces` requests, within `max_trace_bytes` of JSON. `server_config` sets uvicorn's
limits on purpose, and cuts off a client that stalls sending its request or reading its reply.

The parts: `plan` (a request to the run it asks for), `service` (the route handlers), `body`
(reading a request within limits), `errors` (refusals), `traces` (the trace store),
`http_server` (uvicorn's settings), `openai_wire` (the JSON shapes). Starlette and uvicorn are
imported by these modules, which only `ponder serve` imports, so `import ponder` does not pay
for them.

>>> app = create_app(OpenAIBackend(base_url="http://127.0.0.1:8000/v1", model="qwen"),
...                  model="qwen", strategy="best_of_n", params={"n": 5})
>>> app = create_app(session=ponder.Session("http://127.0.0.1:8000/v1", model="qwen",
...                                         budget=Budget(tokens=50_000)), model="qwen")
>>> uvicorn.Server(server_config(app, port=8080)).run()
"""

from __future__ import annotations

import contextlib
import hmac
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ponder.backends.base import Backend
from ponder.core.budget import Budget
from ponder.core.errors import ConfigError
from ponder.serve.body import DEFAULT_MAX_BODY_BYTES
from ponder.serve.errors import Refusal, crash, http_error, internal_error
from ponder.serve.http_server import server_config
from ponder.serve.openai_wire import (
    DEFAULT_BUDGET,
    DEFAULT_CLIENT_TIMEOUT_S,
    DEFAULT_MAX_TRACE_BYTES,
    DEFAULT_PROGRAM_SECONDS,
)
from ponder.serve.service import Service
from ponder.serve.traces import DEFAULT_MAX_TRACES
from ponder.session import Session

# `ponder serve` imports both from here.
__all__ = ["create_app", "server_config"]


def create_app(
    backend: Backend | None = None,
    *,
    model: str,
    strategy: str | None = None,
    params: dict[str, Any] | None = None,
    budget: Budget | None = None,
    api_key: str | None = None,
    templates_dir: str | Path | None = None,
    max_traces: int = DEFAULT_MAX_TRACES,
    max_trace_bytes: int = DEFAULT_MAX_TRACE_BYTES,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    program_seconds: float = DEFAULT_PROGRAM_SECONDS,
    client_timeout_s: float = DEFAULT_CLIENT_TIMEOUT_S,
    session: Session | None = None,
) -> Starlette:
    """The ASGI app, serving either `backend` (which it owns from here: it closes it when the
    server stops) with `strategy` (default `single`), `params` and `templates_dir`, or a
    `session`, which brings its own backend, strategy or effort, params, prompts, verifier
    (a session's verifier judges every request) and seed. The app starts the session when the
    server starts (the embedded model loads) and closes it when the server stops.

    `model` is the name clients use for the backend's model; the session's strategy and params
    serve a request for the plain `model`, the params only when a request picks that same
    strategy; `budget` is every request's budget, and the ceiling of one a request asks for: by
    default `DEFAULT_BUDGET` with a backend, and the session's budget with a session (or
    `DEFAULT_BUDGET`, when the session's sets no limit), and a limit left None is no limit. A
    program's run takes at most `program_seconds`, whatever `timeout_s` a request asks for. The
    last `max_traces` traces are kept, within `max_trace_bytes` of JSON. A request body must
    arrive within `client_timeout_s`. With `api_key`, every route but /health needs
    `Authorization: Bearer <api_key>`. Raises `ConfigError` for an unknown strategy or a bad
    parameter or limit.
    """
    served = _session_for(backend, session, strategy=strategy, params=params, budget=budget,
                          templates_dir=templates_dir)
    # A session with no limit of its own would let a request ask for any amount: the
    # server's default bounds it then.
    own = served.budget
    bounded = own.tokens is not None or own.calls is not None or own.seconds is not None
    ceiling = budget or (own if bounded else DEFAULT_BUDGET)
    service = Service(served, model=model, budget=ceiling,
                      max_traces=max_traces, max_trace_bytes=max_trace_bytes,
                      max_body_bytes=max_body_bytes, program_seconds=program_seconds,
                      client_timeout_s=client_timeout_s)

    def guarded(handler: Callable[[Request], Awaitable[Response]], *,
                open_route: bool = False) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                if not open_route:
                    _authorize(request, api_key)
                return await handler(request)
            except Refusal as refusal:
                return refusal.response()
            except Exception as exc:
                return internal_error(request, exc)

        return endpoint

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            await served.start()  # the embedded model: loaded once, before the first request
            yield
        finally:
            await served.aclose()

    routes = [
        Route("/v1/chat/completions", guarded(service.chat), methods=["POST"]),
        Route("/v1/models", guarded(service.models), methods=["GET"]),
        Route("/v1/traces/{trace_id}", guarded(service.trace), methods=["GET"]),
        Route("/health", guarded(service.health, open_route=True), methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan,
                    exception_handlers={HTTPException: http_error, Exception: crash})
    app.state.service = service
    return app


def _session_for(backend: Backend | None, session: Session | None, *, strategy: str | None,
                 params: dict[str, Any] | None, budget: Budget | None,
                 templates_dir: str | Path | None) -> Session:
    """The session the app serves: `session`, or one made around `backend` that closes it."""
    if session is None:
        if backend is None:
            raise ConfigError("create_app needs a backend or a session")
        return Session(backend, strategy=strategy, params=params,
                       budget=DEFAULT_BUDGET if budget is None else budget,
                       templates_dir=templates_dir, close_backend=True)
    given = [name for name, value in (("backend", backend), ("strategy", strategy),
                                      ("params", params), ("templates_dir", templates_dir))
             if value is not None]
    if given:
        raise ConfigError(f"create_app(session=...) serves the session's {', '.join(given)}; "
                          "set them on the Session")
    return session


def _authorize(request: Request, api_key: str | None) -> None:
    if api_key is None:
        return
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    # Constant time, so the key cannot be guessed a byte at a time from response timings.
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(),
                                                             api_key.encode()):
        raise Refusal(401, "missing or wrong API key: send Authorization: Bearer <key>",
                      kind="authentication_error", code="invalid_api_key",
                      headers={"www-authenticate": "Bearer"})
