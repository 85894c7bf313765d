"""The app's state and route handlers (`Service`, one per `create_app`, nothing global): each
chat request planned (`ponder.serve.plan`), solved by the session's solver on the shared
backend as an asyncio task that a client's disconnect cancels, its trace kept, and answered
as a completion or a refusal."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.types import Receive

from ponder.backends.noting import NotingBackend
from ponder.core.answers import canonical_answer
from ponder.core.budget import Budget
from ponder.core.errors import ConfigError
from ponder.core.types import Result, SamplingInfo
from ponder.serve.body import read_body
from ponder.serve.errors import Refusal, check_outcome
from ponder.serve.openai_wire import FinishReason, Reply
from ponder.serve.plan import Plan, Planner
from ponder.serve.traces import TRACE_HEADER, TraceStore
from ponder.session import Session
from ponder.strategies import REGISTRY as STRATEGIES
from ponder.verifiers import Verifier

log = logging.getLogger(__name__)


class Service:
    """Serves `session` as `model`. `budget` and `program_seconds` bound every request (see
    `Planner`); the last `max_traces` traces are kept, within `max_trace_bytes`; a request
    body must be at most `max_body_bytes` and arrive within `client_timeout_s`."""

    def __init__(self, session: Session, *, model: str, budget: Budget, max_traces: int,
                 max_trace_bytes: int, max_body_bytes: int, program_seconds: float,
                 client_timeout_s: float) -> None:
        if program_seconds <= 0 or client_timeout_s <= 0:
            raise ConfigError(f"program_seconds ({program_seconds}) and client_timeout_s "
                              f"({client_timeout_s}) must be positive")
        self.session = session
        self.model = model
        self.planner = Planner(session, model=model, budget=budget,
                               program_seconds=program_seconds)
        self.traces = TraceStore(max_traces, max_trace_bytes)
        self.max_body_bytes = max_body_bytes
        self.client_timeout_s = client_timeout_s

    async def chat(self, request: Request) -> Response:
        plan = self.planner.plan(await read_body(request, max_bytes=self.max_body_bytes,
                                                 timeout_s=self.client_timeout_s))
        trace_id = plan.problem.id
        watched = NotingBackend(self.session.backend)
        solver = self.session.solver(plan.spec, plan.config, budget=plan.budget,
                                     seed=plan.request.seed, backend=watched)
        result = await _unless_disconnected(solver.solve(plan.problem), request.receive)
        if result is None:
            log.info("request %s: the client went away; its run was cancelled", trace_id)
            return Response(status_code=499)
        # A failed run's trace is kept too (the error reply names it, and it holds the whole
        # upstream error); it counts against the byte budget like any other.
        self.traces.add(trace_id, plan.request.model, result)
        headers = {TRACE_HEADER: trace_id}
        check_outcome(result, watched.failures[0] if watched.failures else None, headers)
        return completion(plan, result, trace_id, headers)

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


def completion(plan: Plan, result: Result, trace_id: str, headers: dict[str, str]) -> Response:
    """The chat completion for a run that succeeded: JSON, or `chat.completion.chunk` events
    when the request streams."""
    answers = distinct_answers(result, plan.n, plan.verifier)
    finish: FinishReason = "length" if result.budget_exhausted else "stop"
    ponder = {"trace_id": trace_id, "strategy": result.strategy, "params": result.params,
              "budget": plan.budget.model_dump(exclude={"min_completion_tokens"}),
              "stop_reason": result.stop_reason, "calls": result.usage.calls,
              "budget_exhausted": result.budget_exhausted, "verified": result.correct,
              "elapsed_s": round(result.elapsed_s, 3)}
    reply = Reply(reply_id=f"chatcmpl-{trace_id}", created=int(time.time()),
                  model=plan.request.model, answers=answers, finish_reason=finish,
                  usage=result.usage, ponder=ponder,
                  reasoning=result.text if result.text != answers[0] else None)
    if not plan.request.stream:
        return JSONResponse(reply.body(), headers=headers)
    options = plan.request.stream_options
    include_usage = options is not None and options.include_usage

    async def events() -> AsyncIterator[str]:
        for chunk in reply.chunks(include_usage=include_usage):
            yield f"data: {json.dumps(chunk)}\n\n"
        yield "data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={**headers, "cache-control": "no-cache"})


def distinct_answers(result: Result, n: int, verifier: Verifier | None) -> list[str]:
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
