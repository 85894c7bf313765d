"""Any OpenAI-compatible chat server (OpenAI, vLLM's, llama.cpp's): async, with retries."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Sequence
from typing import Any

import openai
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from ponder.errors import BackendError
from ponder.tokens import prompt_upper_bound
from ponder.types import Completion, Message, Usage

log = logging.getLogger(__name__)

RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in RETRYABLE_STATUS or exc.status_code >= 500
    # Timeouts, dropped connections, and a 200 whose body is not the JSON it should be.
    return isinstance(exc, openai.APIConnectionError | openai.APIResponseValidationError
                      | json.JSONDecodeError | _MalformedReply)


class _MalformedReply(Exception):
    pass


class _RetryAfterOrBackoff:
    """Waits what the server's `Retry-After` asks (capped), else exponential backoff + jitter."""

    def __init__(self, initial: float, maximum: float) -> None:
        self.backoff = wait_exponential_jitter(initial=initial, max=maximum, jitter=initial)
        self.maximum = maximum

    def __call__(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        response = getattr(exc, "response", None)
        header = response.headers.get("retry-after") if response is not None else None
        if header:
            try:
                return min(max(float(header), 0.0), self.maximum)
            except ValueError:
                pass
        return float(self.backoff(state))


class OpenAIBackend:
    """A chat-completions server. Base URL and key come from the arguments or
    `OPENAI_BASE_URL` / `OPENAI_API_KEY`; with no model named, the server's first is used.

    >>> backend = OpenAIBackend(base_url="http://127.0.0.1:8000/v1", model="qwen")
    """

    def __init__(
        self,
        base_url: str | None = None,
        model: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 120.0,
        max_retries: int = 5,
        native_n: bool | None = None,
        backoff_initial: float = 0.5,
        backoff_max: float = 8.0,
        name: str | None = None,
    ) -> None:
        base_url = base_url or os.environ.get("OPENAI_BASE_URL")
        if not base_url:
            raise BackendError("no base URL: pass base_url= or set OPENAI_BASE_URL")
        self.base_url = base_url.rstrip("/")
        self.model = model or os.environ.get("PONDER_MODEL")
        self.name = name or f"openai:{self.base_url}"
        self.timeout = timeout
        self.max_retries = max_retries
        self._wait = _RetryAfterOrBackoff(backoff_initial, backoff_max)
        # The SDK's own retries are off: tenacity owns them, so they are counted and traced.
        self.client = openai.AsyncOpenAI(
            base_url=self.base_url,
            api_key=api_key or os.environ.get("OPENAI_API_KEY") or "not-needed",
            max_retries=0,
            timeout=timeout,
        )
        # Whether the server honours `n` (None: learn it from the first reply with n > 1).
        self._native_n = native_n
        self._tokenize: str | None = None  # "vllm", "llama.cpp", or "none" once probed
        self._model_lock = asyncio.Lock()

    # -- Backend protocol ---------------------------------------------------------------------

    def prompt_copies(self, n: int) -> int:
        return 1 if self._native_n else n

    async def generate(
        self,
        messages: Sequence[Message],
        *,
        n: int = 1,
        max_tokens: int,
        temperature: float = 0.0,
        stop: Sequence[str] | None = None,
        seed: int | None = None,
    ) -> list[Completion]:
        model = await self._model_name()
        request = _Request(model, messages, max_tokens, temperature, stop, seed)
        if n == 1 or self._native_n is False:
            batches = await asyncio.gather(*(request.send(self, 1, i) for i in range(n)))
            return [c for batch in batches for c in batch]
        believed_native = self._native_n
        first = await request.send(self, n, 0)
        self._native_n = len(first) >= n
        if len(first) >= n or believed_native:
            # A server we trusted with n that now returns fewer: the caller asks again, so the
            # prompt is never charged more often than prompt_copies() promised.
            return first[:n]
        missing = n - len(first)
        rest = await asyncio.gather(*(request.send(self, 1, i + 1) for i in range(missing)))
        return first + [c for batch in rest for c in batch]

    async def count_prompt_tokens(self, messages: Sequence[Message]) -> int | None:
        """Ask the server's tokenizer (vLLM's `/tokenize`, llama.cpp's `/apply-template` +
        `/tokenize`); None where the server has neither."""
        if self._tokenize == "none":
            return None
        root = self.base_url.removesuffix("/v1")
        payload = [m.model_dump() for m in messages]
        try:
            if self._tokenize in (None, "vllm"):
                reply = await self._post(f"{root}/tokenize",
                                         {"model": await self._model_name(), "messages": payload})
                if isinstance(reply, dict) and "count" in reply:
                    self._tokenize = "vllm"
                    return int(reply["count"])
            templated = await self._post(f"{root}/apply-template", {"messages": payload})
            if isinstance(templated, dict) and "prompt" in templated:
                reply = await self._post(f"{root}/tokenize",
                                         {"content": templated["prompt"], "add_special": True})
                if isinstance(reply, dict) and "tokens" in reply:
                    self._tokenize = "llama.cpp"
                    return len(reply["tokens"])
        except BackendError as exc:
            log.debug("tokenize probe failed at %s: %s", root, exc)
        self._tokenize = "none"
        return None

    async def _post(self, url: str, body: dict[str, Any]) -> Any:
        """POST JSON to a server route outside the OpenAI API (the SDK takes absolute URLs)."""
        try:
            return await self.client.post(url, body=body, cast_to=object)
        except (openai.APIError, ValueError) as exc:
            raise BackendError(f"{url}: {exc}") from None

    async def aclose(self) -> None:
        await self.client.close()

    async def __aenter__(self) -> OpenAIBackend:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- internals ------------------------------------------------------------------------------

    async def _model_name(self) -> str:
        if self.model:
            return self.model
        async with self._model_lock:
            if not self.model:
                models = await self._with_retries(lambda: self.client.models.list())
                first = next(iter(models.data), None)
                if first is None:
                    raise BackendError(f"{self.base_url} lists no models; pass model=")
                self.model = first.id
        return self.model

    async def _with_retries(self, fn: Any) -> Any:
        attempts = 0
        try:
            async for attempt in AsyncRetrying(
                retry=retry_if_exception(_retryable),
                stop=stop_after_attempt(self.max_retries + 1),
                wait=self._wait,
                reraise=True,
            ):
                with attempt:
                    attempts = attempt.retry_state.attempt_number
                    return await fn(), attempts - 1
        except openai.APIStatusError as exc:
            raise BackendError(
                f"{self.base_url} answered {exc.status_code}: {_server_message(exc)}",
                status=exc.status_code, retries=attempts - 1,
            ) from None
        except openai.APITimeoutError:
            raise BackendError(
                f"{self.base_url} did not answer within {self.timeout}s "
                f"({attempts} attempt(s))", retries=attempts - 1,
            ) from None
        except openai.APIConnectionError as exc:
            raise BackendError(
                f"cannot reach {self.base_url} after {attempts} attempt(s): {exc}",
                retries=attempts - 1,
            ) from None
        except (openai.APIResponseValidationError, json.JSONDecodeError, _MalformedReply) as exc:
            raise BackendError(
                f"{self.base_url} sent a malformed reply after {attempts} attempt(s): {exc}",
                retries=attempts - 1,
            ) from None
        raise AssertionError("unreachable")


class _Request:
    """One chat request's fixed parts; `send` makes it with a given n."""

    def __init__(self, model: str, messages: Sequence[Message], max_tokens: int,
                 temperature: float, stop: Sequence[str] | None, seed: int | None) -> None:
        self.model = model
        self.messages = [m.model_dump() for m in messages]
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.stop = list(stop) if stop else None
        self.seed = seed
        self.prompt_bound = prompt_upper_bound(messages)

    async def send(self, backend: OpenAIBackend, n: int, index: int) -> list[Completion]:
        kwargs: dict[str, Any] = {
            "model": self.model, "messages": self.messages, "max_tokens": self.max_tokens,
            "temperature": self.temperature,
        }
        if n > 1:
            kwargs["n"] = n
        if self.stop:
            kwargs["stop"] = self.stop
        if self.seed is not None:
            kwargs["seed"] = self.seed + index  # distinct samples from parallel requests

        async def call() -> Any:
            response = await backend.client.chat.completions.create(**kwargs)
            if not getattr(response, "choices", None):
                raise _MalformedReply("reply has no choices")
            return response

        response, retries = await backend._with_retries(call)
        return self._completions(response, retries)

    def _completions(self, response: Any, retries: int) -> list[Completion]:
        texts = [(c.message.content or "") if c.message else "" for c in response.choices]
        reasons = [c.finish_reason for c in response.choices]
        usage = response.usage
        if usage is not None and usage.prompt_tokens is not None:
            prompt, completion, estimated = usage.prompt_tokens, usage.completion_tokens or 0, False
        else:
            # Bounds, not guesses, so that a budget still holds: bytes bound BPE tokens.
            prompt = self.prompt_bound
            completion = sum(min(self.max_tokens, len(t.encode())) for t in texts)
            estimated = True
        shares = _split(completion, [len(t) for t in texts])
        return [
            Completion(
                text=text, finish_reason=reason, retries=retries,
                usage=Usage(prompt_tokens=prompt if i == 0 else 0, completion_tokens=share,
                            estimated=estimated),
            )
            for i, (text, reason, share) in enumerate(zip(texts, reasons, shares, strict=True))
        ]


def _split(total: int, weights: list[int]) -> list[int]:
    """Share `total` tokens among choices by text length; the shares add up exactly."""
    if not weights:
        return []
    weight_sum = sum(weights) or len(weights)
    shares = [total * (w or (1 if not sum(weights) else 0)) // weight_sum for w in weights]
    shares[-1] += total - sum(shares)
    return shares


def _server_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
        if isinstance(inner, str):
            return inner
    return exc.message
