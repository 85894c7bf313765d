"""vLLM's engine in this process (the `vllm` extra), with prefix caching on.

`n` samples are one request (`SamplingParams(n=…)`), so the prompt is computed and charged
once. Calls made at the same time (agents in a round, beams in a tree) are gathered into one
`LLM.chat` batch, which vLLM schedules together; the blocking engine call runs in a worker
thread, so the event loop stays free. Each sample's token log-probabilities
(`SamplingParams(logprobs=k)`) become its `Confidence`.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from ponder.backends.base import GREEDY_TEMPERATURE, confidence_asked, greedy_copies
from ponder.confidence import DEFAULT_TOP_LOGPROBS, DEFAULT_WINDOW, TokenLogprobs, summarize
from ponder.errors import BackendError, MissingDependency, PonderError
from ponder.tokens import prompt_upper_bound
from ponder.types import Completion, Confidence, Message, Usage

log = logging.getLogger(__name__)

INSTALL_HINT = 'pip install "ponder[vllm]"'


@dataclass
class _Call:
    """One `generate` waiting for its batch."""

    messages: list[dict[str, str]]
    sampling: dict[str, Any]
    future: asyncio.Future[list[Completion]] = field(repr=False)


class VLLMBackend:
    """A model run by vLLM in this process. `engine_kwargs` go to `vllm.LLM` (prefix caching is
    on unless they say otherwise); pass `llm=` to use an engine you built yourself.
    `top_logprobs` and `confidence_window` are as for `OpenAIBackend` (vLLM serves up to 20
    log-probs per token unless `engine_kwargs` raise `max_logprobs`).

    >>> backend = VLLMBackend("Qwen/Qwen2.5-1.5B-Instruct",  # doctest: +SKIP
    ...                       engine_kwargs={"gpu_memory_utilization": 0.8})
    >>> ponder.solve("What is 17 * 23?", strategy="best_of_n", backend=backend)  # doctest: +SKIP
    """

    def __init__(self, model: str, *, engine_kwargs: Mapping[str, Any] | None = None,
                 llm: Any | None = None, top_logprobs: int | None = DEFAULT_TOP_LOGPROBS,
                 confidence_window: int = DEFAULT_WINDOW) -> None:
        if (top_logprobs is not None and top_logprobs < 0) or confidence_window < 1:
            raise BackendError(f"top_logprobs={top_logprobs}, confidence_window="
                               f"{confidence_window}: top_logprobs must be None or >= 0, "
                               f"confidence_window >= 1")
        self.model = model
        self.name = f"vllm:{model}"
        self.engine_kwargs: dict[str, Any] = {"enable_prefix_caching": True,
                                              **(engine_kwargs or {})}
        self.llm: Any | None = llm
        self._owns_llm = llm is None
        self.top_logprobs = top_logprobs
        self.confidence_window = confidence_window
        self._vllm: ModuleType | None = None
        self._start_lock = threading.Lock()
        self._engine_lock = threading.Lock()  # one engine call at a time: LLM is not reentrant
        self._pending: list[_Call] = []
        self._drainer: asyncio.Task[None] | None = None

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
        greedy = temperature < GREEDY_TEMPERATURE
        sampling: dict[str, Any] = {"n": 1 if greedy else n, "temperature": temperature,
                                    "max_tokens": max_tokens, "seed": seed}
        if stop:
            sampling["stop"] = list(stop)
        if self.top_logprobs is not None and confidence_asked():
            sampling["logprobs"] = self.top_logprobs
        future: asyncio.Future[list[Completion]] = asyncio.get_running_loop().create_future()
        self._pending.append(_Call([m.model_dump() for m in messages], sampling, future))
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.create_task(self._drain())
        completions = await future
        return greedy_copies(completions[0], n) if greedy and n > 1 else completions

    async def count_prompt_tokens(self, messages: Sequence[Message]) -> int | None:
        """The prompt's tokens as `LLM.chat` counts them: the chat template, then encode."""
        conversation = [m.model_dump() for m in messages]
        return await asyncio.to_thread(self._count_blocking, conversation)

    async def aclose(self) -> None:
        drainer, self._drainer = self._drainer, None
        if drainer is not None and drainer.get_loop() is asyncio.get_running_loop():
            await asyncio.gather(drainer, return_exceptions=True)
        if self._owns_llm and self.llm is not None:
            self.llm = None
            gc.collect()  # vLLM frees GPU memory when the engine object goes

    async def __aenter__(self) -> VLLMBackend:
        await asyncio.to_thread(self._engine)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- batching ---------------------------------------------------------------------------------

    async def _drain(self) -> None:
        """Run every waiting call, in batches, until none waits."""
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                results = await asyncio.to_thread(self._run_blocking, batch)
            except Exception as exc:  # the engine failed: every call in the batch hears why
                results = [_as_error(exc, self.model)] * len(batch)
            for call, result in zip(batch, results, strict=True):
                if call.future.done():  # its caller was cancelled meanwhile
                    continue
                if isinstance(result, BaseException):
                    call.future.set_exception(result)
                else:
                    call.future.set_result(result)

    def _run_blocking(self, batch: list[_Call]) -> list[list[Completion] | PonderError]:
        try:
            outputs = self._chat(batch)
        except ValueError as exc:
            if len(batch) == 1:
                return [_as_error(exc, self.model)]
            # vLLM checks each request before it starts any, so one bad request (a prompt
            # longer than the model's context) refuses the whole batch: run them one by one.
            log.debug("batch of %d refused (%s); running its calls one by one", len(batch), exc)
            return [result for call in batch for result in self._run_blocking([call])]
        return [_completions(output, call, self.confidence_window)
                for output, call in zip(outputs, batch, strict=True)]

    def _chat(self, batch: list[_Call]) -> list[Any]:
        vllm = self._module()
        llm = self._engine()
        params = [vllm.SamplingParams(**call.sampling) for call in batch]
        with self._engine_lock:
            outputs = list(llm.chat([call.messages for call in batch], sampling_params=params,
                                    use_tqdm=False))
        if len(outputs) != len(batch):
            raise BackendError(f"vLLM returned {len(outputs)} outputs for {len(batch)} prompts")
        return outputs

    def _count_blocking(self, conversation: list[dict[str, str]]) -> int:
        llm = self._engine()
        with self._engine_lock:  # the engine uses the same tokenizer, which is not reentrant
            tokenizer = llm.get_tokenizer()
            text = tokenizer.apply_chat_template(conversation, tokenize=False,
                                                 add_generation_prompt=True)
            # Chat templates carry their own special tokens, so encode adds none (as
            # LLM.chat does).
            return len(tokenizer.encode(text, add_special_tokens=False))

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

    def _engine(self) -> Any:
        """The engine, built on first use (it loads the model: minutes, so never on the loop)."""
        with self._start_lock:
            if self.llm is None:
                vllm = self._module()
                try:
                    self.llm = vllm.LLM(model=self.model, **self.engine_kwargs)
                except Exception as exc:
                    raise BackendError(f"vLLM could not load {self.model!r}: {exc}") from exc
            return self.llm


def _completions(output: Any, call: _Call, window: int) -> list[Completion]:
    """Completions from one `RequestOutput`: the prompt charged once, on the first sample."""
    prompt_ids = getattr(output, "prompt_token_ids", None)
    if prompt_ids is not None:
        prompt, estimated = len(prompt_ids), False
    else:
        prompt = prompt_upper_bound([Message.model_validate(m) for m in call.messages])
        estimated = True
    return [
        Completion(
            text=sample.text, finish_reason=sample.finish_reason,
            confidence=_confidence(sample, call.sampling.get("logprobs"), window),
            usage=Usage(prompt_tokens=prompt if i == 0 else 0,
                        completion_tokens=len(sample.token_ids), estimated=estimated),
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


def _as_error(exc: BaseException, model: str) -> PonderError:
    if isinstance(exc, PonderError):  # ours already (a missing extra, a failed load): as it is
        return exc
    return BackendError(f"vLLM ({model}) refused the request: {type(exc).__name__}: {exc}")
