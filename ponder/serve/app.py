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

One backend serves every request: the app starts it (the embedded model loads) when the
server starts and closes it when the server stops. Each request is an asyncio task; a client
that disconnects cancels its run. No request can take the server: each runs within a budget
(the server's unless it asks for less), its program runs within the server's seconds, and the
strategies' count parameters have ceilings. Traces are kept in memory for the last
`max_traces` requests, within `max_trace_bytes` of JSON. `server_config` sets uvicorn's limits
on purpose, and cuts off a client that stalls sending its request or reading its reply.
Starlette and uvicorn are imported here, and this module only by `ponder serve`, so `import
ponder` does not pay for them.

>>> app = create_app(OpenAIBackend(base_url="http://127.0.0.1:8000/v1", model="qwen"),
...                  model="qwen", strategy="best_of_n", params={"n": 5})
>>> uvicorn.Server(server_config(app, port=8080)).run()
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import re
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive
from uvicorn.protocols.http.h11_impl import H11Protocol

from ponder.backends.base import Backend
from ponder.core.answers import canonical_answer
from ponder.core.budget import Budget
from ponder.core.errors import BackendError, ConfigError, PonderError
from ponder.core.types import Completion, Message, Problem, Result, SamplingInfo
from ponder.prompts import PromptLibrary
from ponder.runs.solve_one import run_problem
from ponder.serve.openai_wire import (
    DEFAULT_BUDGET,
    DEFAULT_CLIENT_TIMEOUT_S,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_TRACE_BYTES,
    DEFAULT_PROGRAM_SECONDS,
    ChatRequest,
    ErrorType,
    FinishReason,
    PonderOptions,
    Reply,
    error_body,
)
from ponder.strategies import REGISTRY as STRATEGIES
from ponder.strategies.base import StrategyConfig, StrategySpec
from ponder.strategies.effort import Tier, at_effort, tier, tier_beside
from ponder.verifiers import REGISTRY as VERIFIERS
from ponder.verifiers import Verifier, get_verifier, spec_for

# OpenAI's reasoning_effort levels beyond ponder's three, to the nearest tier.
OPENAI_EFFORTS = {"none": "low", "minimal": "low", "xhigh": "high"}

log = logging.getLogger(__name__)

DEFAULT_MAX_TRACES = 1000
# As a problem file's largest line (16 fields of 1 MiB): a request is one problem.
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
TRACE_HEADER = "x-ponder-trace-id"
# A lone surrogate escape (\ud800) in a body: worth the check that the text encodes as UTF-8.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


class Refusal(Exception):
    """A request ponder answers with an OpenAI-style error instead of a completion."""

    def __init__(self, status: int, message: str, *, kind: ErrorType = "invalid_request_error",
                 param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = error_body(message, kind=kind, param=param, code=code)
        self.headers = dict(headers or {})

    def response(self) -> JSONResponse:
        return JSONResponse(self.body, status_code=self.status, headers=self.headers)


class TraceStore:
    """Recent requests' traces by trace id, each kept as the JSON `GET /v1/traces/{id}` sends
    (so what is counted is what is held): at most `capacity` of them and `max_bytes` in all.
    The oldest read or written goes first; a trace over `max_bytes` on its own is not kept."""

    def __init__(self, capacity: int, max_bytes: int = DEFAULT_MAX_TRACE_BYTES) -> None:
        if capacity < 1:
            raise ConfigError(f"max_traces must be at least 1, got {capacity}")
        if max_bytes < 1:
            raise ConfigError(f"max_trace_bytes must be at least 1, got {max_bytes}")
        self.capacity = capacity
        self.max_bytes = max_bytes
        self.bytes = 0
        self._items: OrderedDict[str, bytes] = OrderedDict()

    def add(self, trace_id: str, model: str, result: Result) -> bool:
        """Keep `result`'s trace, making room; False when it alone is over `max_bytes`."""
        body = trace_json(trace_id, model, result)
        self._drop(trace_id)
        if len(body) > self.max_bytes:
            log.warning("trace %s not kept: %s bytes of JSON, over the %s the server keeps",
                        trace_id, f"{len(body):,}", f"{self.max_bytes:,}")
            return False
        self._items[trace_id] = body
        self.bytes += len(body)
        while len(self._items) > self.capacity or self.bytes > self.max_bytes:
            self._drop(next(iter(self._items)))
        return True

    def get(self, trace_id: str) -> bytes | None:
        """The trace's JSON body, or None when it is not (or no longer) kept."""
        body = self._items.get(trace_id)
        if body is not None:
            self._items.move_to_end(trace_id)
        return body

    def _drop(self, trace_id: str) -> None:
        body = self._items.pop(trace_id, None)
        if body is not None:
            self.bytes -= len(body)

    def __len__(self) -> int:
        return len(self._items)


def trace_json(trace_id: str, model: str, result: Result) -> bytes:
    """`GET /v1/traces/{id}`'s body: the result and its every trace event."""
    return json.dumps({
        "id": trace_id, "object": "ponder.trace", "model": model,
        **result.model_dump(mode="json", exclude={"id", "trace", "problem_hash"}),
        "events": [event.model_dump(mode="json") for event in result.trace],
    }).encode()


class _Watched(Backend):
    """The shared backend as one request sees it: it remembers the first call that failed for
    good, because the runner turns that failure into `Result.error` text and the HTTP status
    (429 or 503) depends on the upstream's."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.name = inner.name
        self.failure: BackendError | None = None

    async def generate(self, messages: Sequence[Message], *, n: int = 1, max_tokens: int,
                       temperature: float = 0.0, stop: Sequence[str] | None = None,
                       seed: int | None = None) -> list[Completion]:
        try:
            return await self.inner.generate(messages, n=n, max_tokens=max_tokens,
                                             temperature=temperature, stop=stop, seed=seed)
        except BackendError as exc:
            self.failure = self.failure or exc
            raise

    def prompt_copies(self, n: int) -> int:
        return self.inner.prompt_copies(n)

    async def count_prompt_tokens(self, messages: Sequence[Message]) -> int | None:
        return await self.inner.count_prompt_tokens(messages)

    async def aclose(self) -> None:
        """Nothing: the backend is shared, and the app closes it when the server stops."""


@dataclass
class _Job:
    """One request, checked: everything the run needs, before any model call."""

    request: ChatRequest
    spec: StrategySpec[Any]
    config: StrategyConfig
    budget: Budget
    problem: Problem
    verifier: Verifier | None
    n: int


class _Service:
    """The app's state and handlers: one per `create_app`, nothing global."""

    def __init__(self, backend: Backend, *, model: str, strategy: str,
                 params: dict[str, Any], budget: Budget, api_key: str | None,
                 prompts: PromptLibrary, max_traces: int, max_trace_bytes: int,
                 max_body_bytes: int, program_seconds: float, client_timeout_s: float) -> None:
        self.backend = backend
        spec = STRATEGIES.get(strategy)
        spec.make_config(params)  # a bad default fails now, not on the first request
        if program_seconds <= 0 or client_timeout_s <= 0:
            raise ConfigError(f"program_seconds ({program_seconds}) and client_timeout_s "
                              f"({client_timeout_s}) must be positive")
        self.model = model
        self.strategy = spec.name
        self.params = dict(params)
        self.budget = budget
        self.api_key = api_key
        self.prompts = prompts
        self.traces = TraceStore(max_traces, max_trace_bytes)
        self.max_body_bytes = max_body_bytes
        self.program_seconds = program_seconds
        self.client_timeout_s = client_timeout_s
        self._verifiers: dict[str, Verifier] = {}

    # -- routes --------------------------------------------------------------------------------

    async def chat(self, request: Request) -> Response:
        job = self._plan(await self._body(request))
        trace_id = job.problem.id
        watched = _Watched(self.backend)
        run = run_problem(job.problem, job.spec, job.config, backend=watched,
                          verifier=job.verifier, budget=job.budget, prompts=self.prompts,
                          seed=job.request.seed)
        result = await _unless_disconnected(run, request.receive)
        if result is None:
            log.info("request %s: the client went away; its run was cancelled", trace_id)
            return Response(status_code=499)
        # A failed run's trace is kept too (the error reply names it, and it holds the whole
        # upstream error); it counts against the byte budget like any other.
        self.traces.add(trace_id, job.request.model, result)
        headers = {TRACE_HEADER: trace_id}
        _check_outcome(result, watched.failure, headers)
        return self._reply(job, result, trace_id, headers)

    async def models(self, request: Request) -> Response:
        names = [self.model, *(f"{spec.name}:{self.model}" for spec in STRATEGIES.all())]
        return JSONResponse({"object": "list", "data": [
            {"id": name, "object": "model", "created": 0, "owned_by": "ponder",
             "root": self.model} for name in names]})

    async def trace(self, request: Request) -> Response:
        trace_id = request.path_params["trace_id"]
        found = self.traces.get(trace_id)
        if found is None:
            raise Refusal(404, f"no trace {trace_id!r}: the server keeps the last "
                               f"{self.traces.capacity} requests' traces, within "
                               f"{self.traces.max_bytes:,} bytes",
                          kind="not_found_error", param="id", code="trace_not_found")
        return Response(found, media_type="application/json")

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    # -- checking a request ------------------------------------------------------------------

    async def _body(self, request: Request) -> ChatRequest:
        raw = bytearray()
        try:
            async with asyncio.timeout(self.client_timeout_s):  # a stalled upload
                async for part in request.stream():
                    raw += part
                    if len(raw) > self.max_body_bytes:
                        raise Refusal(413, f"request body over {self.max_body_bytes:,} bytes",
                                      code="request_too_large")
        except TimeoutError:
            raise Refusal(408, f"the request body did not arrive within "
                               f"{self.client_timeout_s:g}s", code="request_timeout",
                          headers={"connection": "close"}) from None
        try:
            data = json.loads(raw)
        except ValueError:
            raise Refusal(400, "request body is not valid JSON", code="invalid_json") from None
        except RecursionError:
            raise Refusal(400, "request body is nested too deeply", code="invalid_json") from None
        if _SURROGATE_ESCAPE.search(raw):
            try:  # a lone surrogate cannot be sent on to the model server as UTF-8
                json.dumps(data, ensure_ascii=False).encode()
            except UnicodeEncodeError:
                raise Refusal(400, "request body holds a lone surrogate (\\ud800-\\udfff), "
                                   "which is not text", code="invalid_json") from None
        try:
            return ChatRequest.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise Refusal(400, f"{where or 'body'}: {first['msg']}", param=where or None,
                          code="invalid_value") from None

    def _plan(self, req: ChatRequest) -> _Job:
        options = req.ponder
        named = self._strategy_of(req.model)  # checked even when the ponder field names one
        # A strategy the request names itself, rather than the server's default.
        explicit = options.strategy if options and options.strategy else (
            named if req.model != self.model else None)
        try:
            spec = STRATEGIES.get(explicit or named)
        except ConfigError as exc:
            param = "ponder.strategy" if options and options.strategy else "model"
            raise Refusal(400, str(exc), param=param, code="unknown_strategy") from None
        at = self._effort(options, req, None if explicit is None else spec.name)
        effort = None if at is None else at[0]
        tier_params: dict[str, Any] = {}
        if at is not None:
            spec, tier_params = STRATEGIES.get(at[1].strategy), dict(at[1].params)
        asked = options.params if options else {}
        # With an effort, the tier and the request's own params are the whole spec: the
        # server's -p defaults are for its plain --strategy.
        defaults = self.params if spec.name == self.strategy and effort is None else {}
        params = {**defaults, **tier_params, **req.standard_params(), **asked}
        if effort is not None:
            spec = at_effort(effort, spec)
        n = req.n or 1
        config = self._bounded(self._config(spec, params, n, asked=asked))
        try:
            text = req.problem_text()
        except ValueError as exc:
            raise Refusal(400, str(exc), param="messages", code="invalid_value") from None
        # The trace id is the problem's id, so that the trace's events carry it.
        problem = Problem(id=uuid.uuid4().hex, problem=text,
                          answer=options.answer if options else None)
        verifier = self._verifier(options.verifier if options else None, problem)
        budget = _within(options.budget if options else None, self.budget)
        return _Job(req, spec, config, budget, problem, verifier, n)

    def _effort(self, options: PonderOptions | None, req: ChatRequest,
                explicit: str | None) -> tuple[str, Tier] | None:
        """The effort a request asks for and its tier, if any. `ponder.effort` is
        ponder's own: an unknown tier, or a strategy named beside it that is not the tier's, is a
        400. OpenAI's `reasoning_effort` is a client's habit as much as a choice: its other levels
        map to the nearest tier, and a strategy the request names wins over it."""
        if options and options.effort:
            try:
                return options.effort, tier_beside(options.effort, explicit)
            except ConfigError as exc:
                raise Refusal(400, str(exc), param="ponder.effort",
                              code="invalid_value") from None
        if req.reasoning_effort is None or explicit is not None:
            return None
        effort = OPENAI_EFFORTS.get(req.reasoning_effort, req.reasoning_effort)
        try:
            return effort, tier(effort)
        except ConfigError as exc:
            raise Refusal(400, f"reasoning_effort {req.reasoning_effort!r}: {exc}",
                          param="reasoning_effort", code="invalid_value") from None

    def _strategy_of(self, model: str) -> str:
        """The strategy a model name asks for: "<strategy>:<model>", or the plain model."""
        if model == self.model:
            return self.strategy
        strategy, sep, rest = model.partition(":")
        if sep and rest == self.model:
            return strategy
        raise Refusal(404, f"model {model!r} does not exist; this server serves {self.model!r} "
                           f"and '<strategy>:{self.model}' for any strategy "
                           f"({', '.join(s.name for s in STRATEGIES.all())}); see GET /v1/models",
                      kind="not_found_error", param="model", code="model_not_found")

    def _config(self, spec: StrategySpec[Any], params: dict[str, Any], n: int, *,
                asked: dict[str, Any]) -> StrategyConfig:
        field = spec.config.samples_field
        if n > 1:
            if field is None:
                voters = [s.name for s in STRATEGIES.all() if s.config.samples_field]
                raise Refusal(400, f"n={n}: strategy {spec.name!r} gives one answer; distinct "
                                   f"answers come from a strategy that samples and votes "
                                   f"({', '.join(voters)})", param="n", code="invalid_value")
            # Enough samples for n distinct answers, unless the request set its own count.
            if field not in asked:
                default = spec.config.model_fields[field].default
                params[field] = max(n, params.get(field, default if isinstance(default, int)
                                                  else n))
        try:
            config = spec.make_config(params)
        except ConfigError as exc:
            raise Refusal(400, str(exc), param="ponder.params", code="invalid_value") from None
        samples = getattr(config, field) if n > 1 and field else n
        if samples < n:
            raise Refusal(400, f"n={n} distinct answers need at least {n} samples; "
                               f"ponder.params sets {field}={samples}", param="n",
                          code="invalid_value")
        return config

    def _bounded(self, config: StrategyConfig) -> StrategyConfig:
        """`config` with every timeout (`timeout_s`, `*_timeout_s`: how long one program may
        run) lowered to the server's `program_seconds`. Runs share the sandbox's few slots
        with every other request, so a client may ask for less time, never more."""
        over = {name: self.program_seconds for name in type(config).model_fields
                if name.endswith("timeout_s")
                and isinstance(value := getattr(config, name), int | float)
                and value > self.program_seconds}
        return config.model_copy(update=over) if over else config

    def _verifier(self, name: str | None, problem: Problem) -> Verifier | None:
        """The named verifier, else the one the gold answer calls for; loaded once per name
        and shared, as a solve run shares them between problems. Only registered names: a
        `module:attr` spec would import code a client chose."""
        if name is not None and not VERIFIERS.is_registered(name):
            raise Refusal(400, f"unknown verifier {name!r}; known: "
                               f"{', '.join(VERIFIERS.names())}", param="ponder.verifier",
                          code="unknown_verifier")
        spec = name or spec_for(problem)
        if spec is None:
            return None
        if spec not in self._verifiers:
            try:
                self._verifiers[spec] = get_verifier(spec)
            except PonderError as exc:
                raise Refusal(400, str(exc), param="ponder.verifier",
                              code="invalid_value") from None
        return self._verifiers[spec]

    # -- the reply -----------------------------------------------------------------------------

    def _reply(self, job: _Job, result: Result, trace_id: str,
               headers: dict[str, str]) -> Response:
        answers = _distinct_answers(result, job.n, job.verifier)
        finish: FinishReason = "length" if result.budget_exhausted else "stop"
        ponder = {"trace_id": trace_id, "strategy": result.strategy, "params": result.params,
                  "budget": job.budget.model_dump(exclude={"min_completion_tokens"}),
                  "stop_reason": result.stop_reason, "calls": result.usage.calls,
                  "budget_exhausted": result.budget_exhausted, "verified": result.correct,
                  "elapsed_s": round(result.elapsed_s, 3)}
        reply = Reply(reply_id=f"chatcmpl-{trace_id}", created=int(time.time()),
                      model=job.request.model, answers=answers, finish_reason=finish,
                      usage=result.usage, ponder=ponder,
                      reasoning=result.text if result.text != answers[0] else None)
        if not job.request.stream:
            return JSONResponse(reply.body(), headers=headers)
        options = job.request.stream_options
        include_usage = options is not None and options.include_usage

        async def events() -> AsyncIterator[str]:
            for chunk in reply.chunks(include_usage=include_usage):
                yield f"data: {json.dumps(chunk)}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={**headers, "cache-control": "no-cache"})


def _within(asked: Budget | None, ceiling: Budget) -> Budget:
    """The request's budget, no limit above the server's; the server's when it asks none."""
    if asked is None:
        return ceiling

    def low(a: float | None, b: float | None) -> Any:
        return b if a is None else a if b is None else min(a, b)

    return Budget(tokens=low(asked.tokens, ceiling.tokens), calls=low(asked.calls, ceiling.calls),
                  seconds=low(asked.seconds, ceiling.seconds),
                  min_completion_tokens=asked.min_completion_tokens)


async def _unless_disconnected(run: Awaitable[Result], receive: Receive) -> Result | None:
    """`run`'s result, or None when the client disconnected first (the run is cancelled: no
    one is left to pay it for)."""
    task = asyncio.ensure_future(run)
    gone = asyncio.ensure_future(_disconnect(receive))
    try:
        await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for pending in (task, gone):
            if not pending.done():
                pending.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await gone
    if not task.done() or task.cancelled():
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return None
    return task.result()


async def _disconnect(receive: Receive) -> None:
    # The body has been read, so the next message the server sends is the disconnect.
    while (await receive())["type"] != "http.disconnect":
        pass


def _check_outcome(result: Result, failure: BackendError | None,
                   headers: dict[str, str]) -> None:
    """Raise the refusal for a run that failed: the upstream model server (after its
    retries), the strategy, or a budget too small for a single call."""
    if result.error is not None and failure is not None:
        raise _upstream_refusal(failure, headers)
    if result.error is not None:
        # The runner writes "<ExceptionType>: <message>"; a ConfigError is the request's doing.
        if result.error.startswith(f"{ConfigError.__name__}:"):
            raise Refusal(400, result.error.partition(": ")[2], param="ponder.params",
                          code="invalid_value", headers=headers)
        raise Refusal(500, f"strategy {result.strategy!r} failed: {result.error}",
                      kind="server_error", code="strategy_failed", headers=headers)
    if result.usage.calls == 0 and result.budget_exhausted:
        note = result.info.get("budget_note", "the budget is exhausted")
        raise Refusal(400, f"the budget leaves no room for one model call: {note}",
                      param="ponder.budget", code="budget_too_small", headers=headers)


def _upstream_refusal(failure: BackendError, headers: dict[str, str]) -> Refusal:
    """The error for a model server that failed for good. The message leaves out the server's
    address; the log and the trace's events keep the whole error."""
    status = failure.status
    log.warning("upstream model server failed (trace %s): %s", headers.get(TRACE_HEADER),
                failure)
    tried = f"after {failure.retries} retries" if failure.retries else "with no retry"
    if status == 429:
        return Refusal(429, f"the model server is overloaded (429 {tried}); try again later",
                       kind="rate_limit_error", code="upstream_overloaded",
                       headers={**headers, "retry-after": "1"})
    if failure.server_fault:  # 5xx, 408/409/425, unreachable, timed out, nonsense
        what = f"answered {status}" if status else "could not be reached or did not answer"
        return Refusal(503, f"the model server {what} {tried}; try again later",
                       kind="server_error", code="upstream_unavailable",
                       headers={**headers, "retry-after": "1"})
    if status == 400:
        return Refusal(400, "the model server refused the request (400), e.g. a prompt over "
                            "its context; the trace has its message", code="upstream_refused",
                       headers=headers)
    return Refusal(502, f"the model server refused ponder's request ({status}); its "
                        "settings on this server need fixing", kind="server_error",
                   code="upstream_refused", headers=headers)


def _distinct_answers(result: Result, n: int, verifier: Verifier | None) -> list[str]:
    """The winner, then up to n - 1 other answers, most votes first (a sampling strategy's
    `SamplingInfo.answers`, one per canonical answer)."""
    first = result.answer if result.answer is not None else (result.text or "")
    answers = [first]
    if n > 1:
        key_of = verifier.canonical if verifier is not None else canonical_answer
        winner = key_of(first)
        sampled = SamplingInfo.of(result)
        others = sampled.answers if sampled is not None else {}
        answers += [answer for key, answer in others.items() if key != winner][:n - 1]
    return answers


def create_app(
    backend: Backend,
    *,
    model: str,
    strategy: str = "single",
    params: dict[str, Any] | None = None,
    budget: Budget | None = None,
    api_key: str | None = None,
    templates_dir: str | Path | None = None,
    max_traces: int = DEFAULT_MAX_TRACES,
    max_trace_bytes: int = DEFAULT_MAX_TRACE_BYTES,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    program_seconds: float = DEFAULT_PROGRAM_SECONDS,
    client_timeout_s: float = DEFAULT_CLIENT_TIMEOUT_S,
) -> Starlette:
    """The ASGI app. It owns `backend` from here: starts it when the server starts (the
    embedded model loads) and closes it when the server stops.

    `model` is the name clients use for the backend's model; `strategy` and `params` serve a
    request for the plain `model`, `params` only when a request picks that same strategy;
    `budget` is every request's budget, and the ceiling of one a request asks for: by default
    `DEFAULT_BUDGET`, and a limit left None in a budget given here is no limit. A program's run
    takes at most `program_seconds`, whatever `timeout_s` a request asks for. The last
    `max_traces` traces are kept, within `max_trace_bytes` of JSON. A request body must arrive
    within `client_timeout_s`. With `api_key`, every route but /health needs
    `Authorization: Bearer <api_key>`. Raises `ConfigError` for an unknown strategy or a bad
    parameter or limit.
    """
    service = _Service(backend, model=model, strategy=strategy, params=params or {},
                       budget=DEFAULT_BUDGET if budget is None else budget, api_key=api_key,
                       prompts=PromptLibrary(templates_dir), max_traces=max_traces,
                       max_trace_bytes=max_trace_bytes, max_body_bytes=max_body_bytes,
                       program_seconds=program_seconds, client_timeout_s=client_timeout_s)

    def guarded(handler: Callable[[Request], Awaitable[Response]], *,
                open_route: bool = False) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                if not open_route:
                    _authorize(request, api_key)
                return await handler(request)
            except Refusal as refusal:
                return refusal.response()
            except Exception as exc:  # never a traceback to the client; the log keeps it
                log.exception("%s %s failed", request.method, request.url.path)
                return Refusal(500, f"internal error ({type(exc).__name__}); the server log "
                                    "has the details", kind="server_error",
                               code="internal_error").response()

        return endpoint

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            start = getattr(backend, "start", None)
            if callable(start):  # the embedded model: load it once, before the first request
                await start()
            yield
        finally:
            await backend.aclose()

    routes = [
        Route("/v1/chat/completions", guarded(service.chat), methods=["POST"]),
        Route("/v1/models", guarded(service.models), methods=["GET"]),
        Route("/v1/traces/{trace_id}", guarded(service.trace), methods=["GET"]),
        Route("/health", guarded(service.health, open_route=True), methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan,
                    exception_handlers={HTTPException: _http_error, Exception: _crash})
    app.state.service = service
    return app


def server_config(app: Starlette, *, host: str = "127.0.0.1", port: int = 8000,
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


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (no such route, wrong method) in OpenAI's error shape."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    detail = exc.detail if isinstance(exc, HTTPException) else str(exc)
    kind: ErrorType = "not_found_error" if status == 404 else "invalid_request_error"
    return JSONResponse(error_body(f"{request.method} {request.url.path}: {detail}", kind=kind),
                        status_code=status)


async def _crash(request: Request, exc: Exception) -> Response:
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return JSONResponse(error_body(f"internal error: {type(exc).__name__}", kind="server_error",
                                   code="internal_error"), status_code=500)
