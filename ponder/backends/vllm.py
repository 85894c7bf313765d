"""vLLM's async engine in this process (the `vllm` extra), with prefix caching on.

Each call is one engine request, scheduled as it arrives: vLLM batches the requests running at
each step (continuous batching), so a short call made while a long one decodes finishes first,
and a tree search's later steps do not queue behind its earlier ones. `n` samples are one
request (`SamplingParams(n=…)`), so the prompt is computed and charged once. Chat messages
become a prompt as `LLM.chat` and vLLM's OpenAI server make it: the model's chat template,
then the tokenizer with no special tokens added (the template holds them). Each sample's token
log-probabilities (`SamplingParams(logprobs=k)`) become its `Confidence`.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import threading
import uuid
from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import Any

from ponder.backends.base import GREEDY_TEMPERATURE, Backend, confidence_asked, greedy_copies
from ponder.core.confidence import DEFAULT_TOP_LOGPROBS, DEFAULT_WINDOW, TokenLogprobs, summarize
from ponder.core.errors import BackendError, MissingDependency
from ponder.core.types import Completion, Confidence, Message, Usage

INSTALL_HINT = 'pip install "ponder[vllm]"'


class VLLMBackend(Backend):
    """A model run by vLLM's async engine in this process. `engine_kwargs` go to
    `vllm.AsyncEngineArgs` (prefix caching is on and periodic stats logging off unless they say
    otherwise); pass `engine=` to use an `AsyncLLM` you built yourself (it is left open).
    `top_logprobs` and `confidence_window` are as for `OpenAIBackend` (vLLM serves up to 20
    log-probs per token unless `engine_kwargs` raise `max_logprobs`).

    The engine starts on first use (or in `async with`) and stays bound to that event loop, as
    vLLM's `AsyncLLM` is; `ponder.solve` runs every call on one loop, so it can be shared.

    >>> backend = VLLMBackend("Qwen/Qwen2.5-1.5B-Instruct",  # doctest: +SKIP
    ...                       engine_kwargs={"gpu_memory_utilization": 0.8})
    >>> ponder.solve("What is 17 * 23?", strategy="best_of_n", backend=backend)  # doctest: +SKIP
    """

    def __init__(self, model: str, *, engine_kwargs: Mapping[str, Any] | None = None,
                 engine: Any | None = None, top_logprobs: int | None = DEFAULT_TOP_LOGPROBS,
                 confidence_window: int = DEFAULT_WINDOW) -> None:
        if (top_logprobs is not None and top_logprobs < 0) or confidence_window < 1:
            raise BackendError(f"top_logprobs={top_logprobs}, confidence_window="
                               f"{confidence_window}: top_logprobs must be None or >= 0, "
                               f"confidence_window >= 1")
        self.model = model
        self.name = f"vllm:{model}"
        # `LLM` keeps stats logging off by default; the async engine would log every few
        # seconds through a whole run.
        self.engine_kwargs: dict[str, Any] = {"enable_prefix_caching": True,
                                              "disable_log_stats": True,
                                              **(engine_kwargs or {})}
        self.engine: Any | None = engine
        self._owns_engine = engine is None
        self.top_logprobs = top_logprobs
        self.confidence_window = confidence_window
        self._vllm: ModuleType | None = None
        self._starting: asyncio.Future[Any] | None = None
        self._tokenizer: Any | None = None
        # Our prompt encodes run in worker threads; a Hugging Face fast tokenizer can fail
        # ("Already borrowed") when two threads use it at once.
        self._tokenizer_lock = threading.Lock()

    # -- Backend protocol ---------------------------------------------------------------------

    def prompt_copies(self, n: int) -> int:
        return 1

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
        engine = await self._started()
        vllm = self._module()
        prompt_ids = await self._prompt_ids(messages)
        greedy = temperature < GREEDY_TEMPERATURE
        sampling: dict[str, Any] = {"n": 1 if greedy else n, "temperature": temperature,
                                    "max_tokens": max_tokens, "seed": seed,
                                    **_final_only_kind()}
        if stop:
            sampling["stop"] = list(stop)
        top_k = self.top_logprobs if confidence_asked() else None
        if top_k is not None:
            sampling["logprobs"] = top_k
        request_id = f"ponder-{uuid.uuid4().hex}"
        final: Any | None = None
        try:
            params = vllm.SamplingParams(**sampling)
            # A token prompt, as `LLM.chat` passes: a text prompt would be encoded again by
            # the engine with special tokens added (a second BOS on Llama's template).
            async for output in engine.generate({"prompt_token_ids": prompt_ids}, params,
                                                request_id):
                final = output  # FINAL_ONLY yields just this one; older vLLM, every step
        except asyncio.CancelledError:
            # vLLM's generator aborts its request when cancelled; abort by our id as well, so
            # the GPU stops decoding for a caller who left even where it does not (aborting a
            # finished or unknown request does nothing). A failed abort must not hide the
            # cancellation.
            with contextlib.suppress(Exception):
                await engine.abort(request_id)
            raise
        except Exception as exc:
            raise _as_error(exc, self.model) from exc
        if final is None:
            raise BackendError(f"vLLM ({self.model}) ended request {request_id} with no output")
        completions = _completions(final, len(prompt_ids), top_k, self.confidence_window)
        return greedy_copies(completions[0], n) if greedy and n > 1 else completions

    async def count_prompt_tokens(self, messages: Sequence[Message]) -> int | None:
        """The prompt's tokens as the engine gets them: the chat template, then encode."""
        return len(await self._prompt_ids(messages))

    async def aclose(self) -> None:
        starting, self._starting = self._starting, None
        engine, self._tokenizer = self.engine, None
        if starting is not None and not starting.done():
            # A load still in its thread finishes there and is dropped; `AsyncLLM` shuts
            # itself down when collected.
            starting.cancel()
        if self._owns_engine and engine is not None:
            self.engine = None
            _shut_down(engine)

    async def start(self) -> None:
        await self._started()

    # -- the engine -------------------------------------------------------------------------------

    def _module(self) -> ModuleType:
        if self._vllm is None:
            try:
                self._vllm = importlib.import_module("vllm")
            except ImportError as exc:
                raise MissingDependency(
                    f"the vLLM backend needs vllm, which is not installed; run: {INSTALL_HINT}"
                ) from exc
        return self._vllm

    async def _started(self) -> Any:
        """The engine, built on first use by one load that concurrent first calls share. The
        load takes minutes, so it runs in a worker thread (vLLM's `AsyncLLM` may be built with
        no running loop; it starts its output handler on the first request)."""
        if self.engine is not None:
            return self.engine
        if self._starting is None:
            self._starting = asyncio.ensure_future(asyncio.to_thread(self._build))
        starting = self._starting
        try:
            # Shielded: a caller cancelled mid-load must not lose an engine that holds the GPU.
            engine = await asyncio.shield(starting)
        except BaseException:
            if starting.done() and self._starting is starting:
                self._starting = None  # a failed load is tried again by the next call
            raise
        self.engine = engine
        return engine

    def _build(self) -> Any:
        vllm = self._module()
        try:
            args = vllm.AsyncEngineArgs(model=self.model, **self.engine_kwargs)
            return _engine_class(vllm).from_engine_args(args)
        except Exception as exc:
            raise BackendError(f"vLLM could not load {self.model!r}: {exc}") from exc

    async def _prompt_ids(self, messages: Sequence[Message]) -> list[int]:
        if self._tokenizer is None:
            engine = await self._started()
            tokenizer = engine.get_tokenizer()
            # A coroutine in earlier vLLM versions, a plain method in current ones.
            self._tokenizer = await tokenizer if inspect.isawaitable(tokenizer) else tokenizer
        conversation = [m.model_dump() for m in messages]
        try:
            return await asyncio.to_thread(self._encode, self._tokenizer, conversation)
        except Exception as exc:  # the template refuses these messages (a system role, ...)
            raise BackendError(f"vLLM ({self.model}) could not apply the chat template: "
                               f"{type(exc).__name__}: {exc}", status=400) from exc

    def _encode(self, tokenizer: Any, conversation: list[dict[str, str]]) -> list[int]:
        with self._tokenizer_lock:
            text = tokenizer.apply_chat_template(conversation, tokenize=False,
                                                 add_generation_prompt=True)
            # Chat templates carry their own special tokens, so encode adds none (as
            # LLM.chat and the OpenAI server do).
            return list(tokenizer.encode(text, add_special_tokens=False))


def _engine_class(vllm: ModuleType) -> Any:
    """`AsyncLLM` (the V1 engine, current vLLM); before it, `AsyncLLMEngine`. Both are built
    by `from_engine_args` and serve `generate`, `abort` and `get_tokenizer` alike."""
    try:
        return importlib.import_module("vllm.v1.engine.async_llm").AsyncLLM
    except (ImportError, AttributeError):
        return vllm.AsyncLLMEngine


def _shut_down(engine: Any) -> None:
    """Stop the engine core process, which frees the GPU; requests still running end with an
    error. On the loop, not in a thread: `AsyncLLM.shutdown` cancels its output handler task.
    (`AsyncLLMEngine`, before V1, stops its background loop and frees the GPU when collected.)"""
    shutdown = getattr(engine, "shutdown", None) or getattr(engine, "shutdown_background_loop",
                                                            None)
    if shutdown is not None:
        shutdown()


def _final_only_kind() -> dict[str, Any]:
    """`output_kind=FINAL_ONLY` where vLLM has it (0.6 on): the engine then yields only the
    finished output rather than every step's, which this backend would discard."""
    try:
        kind = importlib.import_module("vllm.sampling_params").RequestOutputKind
    except (ImportError, AttributeError):
        return {}
    return {"output_kind": kind.FINAL_ONLY}


def _refusals() -> tuple[type[BaseException], ...]:
    """What vLLM raises for a request it refuses: a ValueError (its `VLLMValidationError` is
    one) and, in versions that have it, anything of its 4xx family `VLLMClientError`."""
    try:
        client_error = importlib.import_module("vllm.exceptions").VLLMClientError
    except (ImportError, AttributeError):
        return (ValueError,)
    return (ValueError, client_error)


def _as_error(exc: Exception, model: str) -> BackendError:
    """A refused request is a 400, so a `BackendPool` does not send it to another server, where
    it would fail the same way; anything else (a dead engine, a failed step) is the engine's
    fault, with no status."""
    if isinstance(exc, _refusals()):
        return BackendError(f"vLLM ({model}) refused the request: {type(exc).__name__}: {exc}",
                            status=400)
    return BackendError(f"vLLM ({model}) failed: {type(exc).__name__}: {exc}")


def _completions(output: Any, prompt_tokens: int, top_k: int | None,
                 window: int) -> list[Completion]:
    """Completions from one finished `RequestOutput`: the prompt charged once, on the first
    sample, with the prompt tokens the engine's prefix cache served (`num_cached_tokens`,
    where this vLLM has it)."""
    prompt_ids = getattr(output, "prompt_token_ids", None)
    prompt = len(prompt_ids) if prompt_ids is not None else prompt_tokens
    cached = getattr(output, "num_cached_tokens", None)
    # None before vLLM counted them; anything but a count within the prompt is not one.
    if isinstance(cached, bool) or not isinstance(cached, int) or not 0 <= cached <= prompt:
        cached = 0
    return [
        Completion(
            text=sample.text, finish_reason=sample.finish_reason,
            confidence=_confidence(sample, top_k, window),
            usage=Usage(prompt_tokens=prompt if i == 0 else 0,
                        completion_tokens=len(sample.token_ids),
                        cached_prompt_tokens=cached if i == 0 else 0),
        )
        for i, sample in enumerate(output.outputs)
    ]


def _confidence(sample: Any, top_k: int | None, window: int) -> Confidence | None:
    """A `CompletionOutput`'s confidence from its `logprobs`: per generated token, a dict of
    token id → `Logprob` holding the top `top_k` and the sampled token, which may rank below
    them (a list of dicts, or vLLM's `FlatLogprobs`, which reads as one)."""
    positions = getattr(sample, "logprobs", None)
    if top_k is None or not positions:
        return None
    tokens = []
    try:
        for token_id, position in zip(sample.token_ids, positions, strict=False):
            if not position:
                return None
            ranked = sorted((float(lp.logprob) for lp in position.values()), reverse=True)
            chosen = position.get(token_id)
            sampled = float(chosen.logprob) if chosen is not None else ranked[0]
            tokens.append(TokenLogprobs(sampled, tuple(ranked[:top_k])))
    except (AttributeError, TypeError, ValueError):
        return None
    return summarize(tokens, window=window)
