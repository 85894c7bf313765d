"""How calls to an OpenAI-compatible server are retried, and what a call that fails for good
becomes: 429, 408/409/425, 5xx, timeouts, dropped connections and malformed replies are retried
with bounded exponential backoff and jitter (a `Retry-After` header is honoured); anything else,
and the last failure once retries run out, is a `BackendError` that names the server, its
credentials (a URL's password, the API key) masked wherever they turn up in the message.

Imported only by `ponder.backends.openai`, which loads lazily: the `openai` SDK stays unloaded
until a server backend is made.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TypeVar

import openai
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from ponder.backends.lean_http import ConnectError, StatusError
from ponder.core.errors import RETRYABLE_STATUS, BackendError
from ponder.core.redact import redact_secrets, redact_url

T = TypeVar("T")


class MalformedReply(Exception):
    """A 200 whose body is not the chat completion it should be."""


class RetryPolicy:
    """Runs a call to the server at `where` with retries: each attempt capped at `timeout`
    seconds as a whole, at most `max_retries + 1` attempts, at most `backoff_max` seconds
    between them. `secrets` (the API key) are masked in the errors it raises, as is any
    URL's userinfo; `where` is shown masked too."""

    def __init__(self, where: str, *, timeout: float, max_retries: int, backoff_initial: float,
                 backoff_max: float, secrets: Iterable[str | None] = ()) -> None:
        self.where = redact_url(where)
        self.secrets = [s for s in secrets if s]
        self.timeout = timeout
        self.max_retries = max_retries
        self._wait = RetryAfterOrBackoff(backoff_initial, backoff_max)

    async def run(self, fn: Callable[[], Awaitable[T]]) -> tuple[T, int]:
        """`fn()`'s value and how many retries it took; a `BackendError` once retries run out
        or the failure is not one to retry."""
        attempts = 0
        try:
            async for attempt in AsyncRetrying(
                retry=retry_if_exception(retryable),
                stop=stop_after_attempt(self.max_retries + 1),
                wait=self._wait,
                reraise=True,
            ):
                with attempt:
                    attempts = attempt.retry_state.attempt_number
                    # The SDK's timeout is per read; this caps the attempt as a whole (a
                    # trickling reply).
                    async with asyncio.timeout(self.timeout):
                        return await fn(), attempts - 1
        except Exception as exc:
            error = self._as_backend_error(exc, attempts)
            if error is None:
                raise
            # The SDK's own texts, and a server's, may quote the URL or echo the key.
            masked = redact_secrets(str(error), self.secrets)
            raise BackendError(masked, status=error.status, retries=error.retries) from None
        raise AssertionError("unreachable: AsyncRetrying either returns or raises")

    def _as_backend_error(self, exc: Exception, attempts: int) -> BackendError | None:
        """The `BackendError` a call's last failure stands for; None for one that is not the
        server's doing (a bug, say), which goes up as it is."""
        retries = attempts - 1
        # The lean client's errors (`lean_http`) stand for the SDK's, and read the same.
        if isinstance(exc, openai.APIStatusError | StatusError):
            return BackendError(
                f"{self.where} answered {exc.status_code}: {server_message(exc)}"
                + (f" (after {attempts} attempts)" if attempts > 1 else ""),
                status=exc.status_code, retries=retries,
            )
        # Before the connection errors: the SDK's timeout is one of them.
        if isinstance(exc, openai.APITimeoutError | TimeoutError):
            return BackendError(f"{self.where} did not answer within {self.timeout}s "
                                f"({attempts} attempt(s))", retries=retries)
        if isinstance(exc, openai.APIConnectionError | ConnectError):
            return BackendError(f"cannot reach {self.where} after {attempts} attempt(s): {exc}",
                                retries=retries)
        if isinstance(exc, openai.APIResponseValidationError | json.JSONDecodeError
                      | MalformedReply):
            return BackendError(f"{self.where} sent a malformed reply after {attempts} "
                                f"attempt(s): {exc}", retries=retries)
        return None


def retryable(exc: BaseException) -> bool:
    if isinstance(exc, openai.APIStatusError | StatusError):
        return exc.status_code in RETRYABLE_STATUS or exc.status_code >= 500
    # Timeouts (the SDK's, or our own cap on a whole attempt), dropped connections, bad JSON.
    return isinstance(exc, openai.APIConnectionError | ConnectError
                      | openai.APIResponseValidationError | json.JSONDecodeError
                      | MalformedReply | TimeoutError)


class RetryAfterOrBackoff:
    """Waits what the server's `Retry-After` asks (capped), else exponential backoff + jitter."""

    def __init__(self, initial: float, maximum: float) -> None:
        self.backoff = wait_exponential_jitter(multiplier=initial, max=maximum, jitter=initial)
        self.maximum = maximum

    def __call__(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        response = getattr(exc, "response", None)
        asked = retry_after(getattr(exc if response is None else response, "headers", None))
        if asked is not None:
            return min(asked, self.maximum)
        return min(float(self.backoff(state)), self.maximum)


def retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds a response's `retry-after-ms` / `retry-after` header asks to wait, if any
    (`headers` looked up by lower-case name)."""
    if headers is None:
        return None
    for header, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(header)
        if value:
            try:
                return max(float(value) / scale, 0.0)
            except ValueError:
                continue  # an HTTP date: fall back to our own backoff
    return None


def refuses_logprobs(error: BackendError) -> bool:
    """Whether a failed request was refused for asking for log-probabilities: a 400 (422 from
    servers that validate with pydantic) whose message names them."""
    return error.status in (400, 422) and "logprob" in str(error).lower()


def server_message(exc: openai.APIStatusError | StatusError) -> str:
    """The server's own words for a failed request, where its body carries them."""
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
        if isinstance(inner, str):
            return inner
    return exc.message
