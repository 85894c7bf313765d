"""Any OpenAI-compatible chat server (OpenAI, vLLM's, llama.cpp's): async, with retries.

One request asks for all `n` samples; a server that returns fewer is topped up with
concurrent single-sample requests. At temperature 0 the `n` samples are one greedy reply,
asked for once. 429, 5xx, timeouts, dropped connections and malformed
replies are retried with bounded exponential backoff and jitter (a `Retry-After` header is
honoured); 400, 401 and 404 fail at once with the server's own message (`openai_retry`).

Each request asks for token log-probabilities (`logprobs`, `top_logprobs`), from which every
completion gets its `Confidence`; a server that refuses them (a 400 or 422 naming logprobs) is
asked again without, and never asked for them again.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence
from contextlib import nullcontext
from typing import Any

import openai

from ponder.backends.base import GREEDY_TEMPERATURE, Backend, confidence_asked, greedy_copies
from ponder.backends.lean_http import LeanHTTP, Redirected, lean_target
from ponder.backends.openai_messages import ChatReply, ChatRequest
from ponder.backends.openai_retry import RetryPolicy, refuses_logprobs
from ponder.core.confidence import DEFAULT_TOP_LOGPROBS, DEFAULT_WINDOW
from ponder.core.errors import BackendError
from ponder.core.redact import redact_url, url_secrets
from ponder.core.tokens import prompt_upper_bound
from ponder.core.types import Completion, Message

log = logging.getLogger(__name__)


class OpenAIBackend(Backend):
    """A chat-completions server. Base URL and key come from the arguments or
    `OPENAI_BASE_URL` / `OPENAI_API_KEY`; with no model named (nor `PONDER_MODEL`), the
    server's first model is used.

    `timeout` bounds each attempt as a whole; a call makes at most `max_retries + 1` attempts
    and waits at most `backoff_max` seconds between them. `native_n` says whether the server
    honours `n` (None: learn it from the first reply to a request with n > 1).
    `max_in_flight` caps concurrent requests: a server that queues requests beyond its slots
    (llama.cpp) would otherwise let the queueing eat into each request's timeout.

    `top_logprobs` is how many candidates' log-probs to ask for per token (0: the sampled
    token's only; None: no log-probs at all), on the calls that want a confidence (a strategy
    choosing by it, or code inside `ponder.backends.base.askingchoice_confidence()`): other calls
    skip them, since they slow the server and swell the reply. `confidence_window` is the
    group size for each completion's `Confidence.lowest_group` (see `ponder.core.confidence`).

    Chat requests to a plain-http server (no proxy, no credentials in the URL) go through
    `ponder.backends.lean_http`, a fifth of the openai SDK's CPU per request, with the same
    headers, errors and retries; `lean_http=False` sends them through the SDK's client, as
    https servers and every other request always are.

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
        max_in_flight: int | None = None,
        top_logprobs: int | None = DEFAULT_TOP_LOGPROBS,
        confidence_window: int = DEFAULT_WINDOW,
        name: str | None = None,
        lean_http: bool = True,
    ) -> None:
        base_url = base_url or os.environ.get("OPENAI_BASE_URL")
        if not base_url:
            raise BackendError("no base URL: pass base_url= or set OPENAI_BASE_URL")
        if timeout <= 0 or max_retries < 0 or backoff_initial < 0 or backoff_max < 0:
            raise BackendError(
                f"timeout={timeout}, max_retries={max_retries}, backoff_initial="
                f"{backoff_initial}, backoff_max={backoff_max}: timeout must be > 0, the rest >= 0"
            )
        if (top_logprobs is not None and top_logprobs < 0) or confidence_window < 1:
            raise BackendError(f"top_logprobs={top_logprobs}, confidence_window="
                               f"{confidence_window}: top_logprobs must be None or >= 0, "
                               f"confidence_window >= 1")
        self.base_url = base_url.rstrip("/")
        # What messages and names show: the URL with its user, password and key masked.
        self.shown_url = redact_url(self.base_url)
        self._slots = asyncio.Semaphore(max_in_flight) if max_in_flight else None
        self.model = model or os.environ.get("PONDER_MODEL")
        self.name = name or f"openai:{self.shown_url}"
        api_key = api_key or os.environ.get("OPENAI_API_KEY")
        self._retry = RetryPolicy(self.base_url, timeout=timeout, max_retries=max_retries,
                                  backoff_initial=backoff_initial, backoff_max=backoff_max,
                                  secrets=[api_key, *url_secrets(self.base_url)])
        # The SDK's own retries are off: tenacity owns them, so they are counted and traced.
        self.client = openai.AsyncOpenAI(
            base_url=self.base_url,
            api_key=api_key or "not-needed",
            max_retries=0,
            timeout=timeout,
        )
        # Chat requests to a plain-http server go through ponder's lean client, the SDK's
        # costing five times its CPU per request (`lean_http`); the rest through the SDK.
        self._lean = _lean_client(self.base_url, self.client) if lean_http else None
        self._native_n = native_n
        # Set to None, for good, once the server refuses log-probs (as `_native_n` is learned).
        self.top_logprobs = top_logprobs
        self.confidence_window = confidence_window
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
        # `_native_n` only ever leaves None (never True -> False), so whatever this reads, a
        # call reserved under an earlier value charges the prompt no more often than that
        # value's prompt_copies(n) promised. Read once, so one call acts on one belief.
        native = self._native_n
        if n > 1 and temperature < GREEDY_TEMPERATURE:
            [reply] = await self.generate(messages, n=1, max_tokens=max_tokens,
                                          temperature=temperature, stop=stop, seed=seed)
            return greedy_copies(reply, n)
        model = await self._model_name()
        request = ChatRequest(model, messages, max_tokens, temperature, stop, seed)
        if n == 1 or native is False:
            return await self._singles(request, range(n), partial_ok=False)
        first = await self._send(request, n, 0)
        if len(first) >= n or native:
            # A server trusted with n that returns fewer: the caller asks again for the rest,
            # so the prompt is charged once, as promised.
            if native is None:
                self._native_n = True
            return first
        # Only a server not yet known comes here, and prompt_copies(n) was n: one copy went
        # into the first request, and each top-up request adds one.
        self._native_n = False
        rest = await self._singles(request, range(1, 1 + n - len(first)), partial_ok=True)
        return first + rest

    async def count_prompt_tokens(self, messages: Sequence[Message]) -> int | None:
        """Ask the server's tokenizer (vLLM's `/tokenize`, llama.cpp's `/apply-template` +
        `/tokenize`); None where the server has neither, or is failing just now."""
        if self._tokenize == "none":
            return None
        root = self.base_url.removesuffix("/v1")
        payload = [m.model_dump() for m in messages]
        try:
            if self._tokenize in (None, "vllm"):
                reply = await self._probe(f"{root}/tokenize",
                                          {"model": await self._model_name(),
                                           "messages": payload})
                if isinstance(reply, dict) and isinstance(reply.get("count"), int):
                    self._tokenize = "vllm"
                    return int(reply["count"])
            if self._tokenize in (None, "llama.cpp"):
                templated = await self._probe(f"{root}/apply-template", {"messages": payload})
                if isinstance(templated, dict) and "prompt" in templated:
                    reply = await self._probe(f"{root}/tokenize",
                                              {"content": templated["prompt"],
                                               "add_special": True})
                    if isinstance(reply, dict) and isinstance(reply.get("tokens"), list):
                        self._tokenize = "llama.cpp"
                        return len(reply["tokens"])
        except BackendError as exc:
            # A passing failure (5xx, timeout): try again next time rather than give up.
            log.debug("tokenize at %s failed: %s", redact_url(root), exc)
            return None
        self._tokenize = "none"
        return None

    async def aclose(self) -> None:
        if self._lean is not None:
            await self._lean.aclose()
        await self.client.close()

    # -- internals ------------------------------------------------------------------------------

    async def _singles(self, request: ChatRequest, indices: range, *,
                       partial_ok: bool) -> list[Completion]:
        """One single-sample request per index, concurrently. Samples already paid for are
        kept when some requests fail for good (the caller may ask again for the rest); the
        first failure is raised only when none succeeded and `partial_ok` is false."""
        outcomes = await asyncio.gather(*(self._send(request, 1, i) for i in indices),
                                        return_exceptions=True)
        done: list[Completion] = []
        failures: list[BackendError] = []
        for outcome in outcomes:
            if isinstance(outcome, BackendError):
                failures.append(outcome)
            elif isinstance(outcome, BaseException):
                raise outcome
            else:
                done.extend(outcome)
        if failures and not done and not partial_ok:
            raise failures[0]
        if failures:
            log.warning("%d of %d requests to %s failed; keeping %d sample(s): %s",
                        len(failures), len(indices), self.shown_url, len(done), failures[0])
        return done

    async def _probe(self, url: str, body: dict[str, Any]) -> Any:
        """POST JSON to a route outside the OpenAI API; None when the server has no such route
        or refuses it (a 4xx), so probing moves on."""
        try:
            reply, _ = await self._retry.run(lambda: self.client.post(url, body=body,
                                                                      cast_to=object))
            return reply
        except BackendError as exc:
            if exc.status is not None and 400 <= exc.status < 500 and exc.status != 429:
                return None
            raise

    async def _model_name(self) -> str:
        if self.model:
            return self.model
        async with self._model_lock:
            if not self.model:
                models, _ = await self._retry.run(self.client.models.list)
                first = next(iter(getattr(models, "data", None) or []), None)
                if first is None:
                    raise BackendError(f"{self.shown_url} lists no models; pass model=")
                self.model = str(first.id)
        return self.model

    async def _send(self, request: ChatRequest, n: int, index: int) -> list[Completion]:
        """At most `n` completions; raises `BackendError` when the request fails for good."""
        top_logprobs = self.top_logprobs if confidence_asked() else None
        window = self.confidence_window

        async def call(body: dict[str, Any]) -> ChatReply:
            lean = self._lean
            if lean is not None:
                try:
                    return ChatReply.parse(await lean.post_json("/chat/completions", body), window)
                except Redirected as exc:  # the SDK's client follows redirects; leave it to it
                    log.info("%s redirects chat requests (%s); sending them through the openai "
                             "SDK from now on", self.shown_url, exc)
                    self._lean = None
                    await lean.aclose()
            # The SDK's plain `post`, not `chat.completions.create`: the typed method walks the
            # arguments against its TypedDicts and builds models of the reply, about a third
            # of its CPU per call (benchmarks/results/client_overhead.md).
            reply = await self.client.post("/chat/completions", body=body, cast_to=object)
            return ChatReply.parse(reply, window)

        async with self._slots or nullcontext():
            try:
                reply, retries = await self._retry.run(
                    lambda: call(request.body(n, index, top_logprobs)))
            except BackendError as exc:
                if top_logprobs is None or not refuses_logprobs(exc):
                    raise
                if self.top_logprobs is not None:
                    log.warning("%s refuses token log-probabilities (%s); asking without them, "
                                "so its completions carry no confidence", self.shown_url, exc)
                    self.top_logprobs = None
                reply, retries = await self._retry.run(lambda: call(request.body(n, index)))
                retries += 1 + exc.retries  # the refused attempts were round trips too
        prompt, completion = reply.prompt_tokens, reply.completion_tokens
        if prompt is not None and completion is not None:
            return request.completions(reply, n, retries, prompt=prompt, completion=completion,
                                       estimated=False)
        # A field the server left out is bounded, not guessed, so that a budget still holds
        # (a reply with a prompt count and no completion count cost more than its prompt):
        # bytes bound BPE tokens, and the server's tokenizer (where the budget asked it too)
        # bounds the prompt tighter.
        if prompt is None:
            prompt = prompt_upper_bound(request.message_models)
            if self._tokenize not in (None, "none"):
                exact = await self.count_prompt_tokens(request.message_models)
                prompt = prompt if exact is None else min(prompt, exact)
        if completion is None:
            completion = sum(min(request.max_tokens, len(t.encode())) for t in reply.texts)
        return request.completions(reply, n, retries, prompt=prompt, completion=completion,
                                   estimated=True)


def _lean_client(base_url: str, client: openai.AsyncOpenAI) -> LeanHTTP | None:
    """The lean client for `base_url`, sending the SDK's headers (its key among them); None
    where it cannot serve it (https, a proxy, credentials in the URL), and the SDK does."""
    target = lean_target(base_url)
    if target is None:
        return None
    headers = {**client.default_headers, **client.auth_headers}
    try:
        return LeanHTTP(target, {k: v for k, v in headers.items() if isinstance(v, str)})
    except ValueError:  # a header the lean client would not send as it is; httpx judges it
        return None
