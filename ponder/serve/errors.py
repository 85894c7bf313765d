"""What `ponder serve` answers instead of a completion: a `Refusal` (an OpenAI-style error with
its HTTP status), the refusal for a run that failed (the upstream model server, the strategy,
a budget too small), and Starlette's own errors in the same shape."""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ponder.core.errors import BackendError, ConfigError
from ponder.core.types import Result
from ponder.serve.openai_wire import ErrorType, error_body
from ponder.serve.traces import TRACE_HEADER

log = logging.getLogger(__name__)


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


def check_outcome(result: Result, failure: BackendError | None,
                  headers: dict[str, str]) -> None:
    """Raise the refusal for a run that failed: the upstream model server (after its
    retries), the strategy, or a budget too small for a single call."""
    if result.error is not None and failure is not None:
        raise upstream_refusal(failure, headers)
    if result.error is not None:
        # The runner writes "<ExceptionType>: <message>"; a ConfigError is the request's doing.
        if result.error.startswith(f"{ConfigError.__name__}:"):
            raise Refusal(400, result.error.partition(": ")[2], param="ponder.params",
                          code="invalid_value", headers=headers)
        log.warning("strategy %s failed (trace %s): %s", result.strategy,
                    headers.get(TRACE_HEADER), result.error)
        raise Refusal(500, f"strategy {result.strategy!r} failed: {result.error}",
                      kind="server_error", code="strategy_failed", headers=headers)
    if result.usage.calls == 0 and result.budget_exhausted:
        note = result.info.get("budget_note", "the budget is exhausted")
        raise Refusal(400, f"the budget leaves no room for one model call: {note}",
                      param="ponder.budget", code="budget_too_small", headers=headers)


def upstream_refusal(failure: BackendError, headers: dict[str, str]) -> Refusal:
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


def internal_error(request: Request, exc: Exception) -> Response:
    """A handler's unexpected failure: never a traceback to the client; the log keeps it."""
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return Refusal(500, f"internal error ({type(exc).__name__}); the server log has the "
                        "details", kind="server_error", code="internal_error").response()


async def http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (no such route, wrong method) in OpenAI's error shape."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    detail = exc.detail if isinstance(exc, HTTPException) else str(exc)
    kind: ErrorType = "not_found_error" if status == 404 else "invalid_request_error"
    return JSONResponse(error_body(f"{request.method} {request.url.path}: {detail}", kind=kind),
                        status_code=status)


async def crash(request: Request, exc: Exception) -> Response:
    """What escapes the routes' own guard (a failure in Starlette's middleware)."""
    return internal_error(request, exc)
