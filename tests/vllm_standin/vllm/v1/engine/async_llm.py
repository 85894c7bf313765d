"""`vllm.v1.engine.async_llm.AsyncLLM`: vLLM's async engine, with its call shapes.

`generate(prompt, sampling_params, request_id)` is an async generator of `RequestOutput`s: one
per decoding step (`RequestOutputKind.CUMULATIVE`, the default, or `DELTA`) or only the
finished one (`FINAL_ONLY`); the last has `finished=True`. Each request decodes on its own, one
token per `seconds_per_token`, as under vLLM's continuous batching. A request whose generator
is cancelled or closed is aborted, as vLLM does (`abort(request_id, internal=True)`).

For tests: `requests` holds each request's `SamplingParams` by id, in the order they came;
`running` the ids still decoding; `finished` the ids in the order they finished; `aborted`
each `abort` call as (request id, internal).

With prefix caching on (V1's default), each `RequestOutput` says in `num_cached_tokens` how
many of its prompt's tokens an earlier request's prompt had already computed, in whole blocks
of `BLOCK_SIZE` tokens and never the last token, as vLLM's block cache reuses them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Iterable
from typing import Any

from vllm._model import BOS_ID, Sample, Tokenizer, reply
from vllm.engine.arg_utils import AsyncEngineArgs, VllmConfig
from vllm.exceptions import VLLMValidationError
from vllm.outputs import CompletionOutput, RequestOutput
from vllm.sampling_params import RequestOutputKind, SamplingParams
from vllm.v1.engine.exceptions import EngineDeadError

BLOCK_SIZE = 16  # vLLM's default KV cache block: only whole blocks are reused


class AsyncLLM:
    def __init__(self, vllm_config: VllmConfig, **kwargs: Any) -> None:
        self.vllm_config = vllm_config
        self.model_config = vllm_config.model_config
        self.errored = False
        self.requests: dict[str, SamplingParams] = {}
        self.running: set[str] = set()
        self.finished: list[str] = []
        self.aborted: list[tuple[str, bool]] = []
        self._tokenizer = Tokenizer()
        self._blocks: set[tuple[int, ...]] = set()  # every block-aligned prefix computed

    @classmethod
    def from_engine_args(cls, engine_args: AsyncEngineArgs, start_engine_loop: bool = True,
                         usage_context: Any = None, stat_loggers: Any = None) -> AsyncLLM:
        if engine_args.model.startswith("missing/"):
            raise OSError(f"{engine_args.model} is not a local folder and is not a valid model "
                          f"identifier")
        time.sleep(engine_args.load_seconds)  # a real load blocks its thread for minutes
        return cls(engine_args.create_engine_config(usage_context))

    async def get_tokenizer(self) -> Tokenizer:
        return self._tokenizer

    async def generate(self, prompt: Any, sampling_params: SamplingParams, request_id: str,
                       **kwargs: Any) -> AsyncGenerator[RequestOutput, None]:
        if self.errored:
            raise EngineDeadError()
        text, prompt_ids = self._prompt(prompt)
        self._check(prompt_ids, sampling_params, request_id)
        self.requests[request_id] = sampling_params
        self.running.add(request_id)
        cached = self._cache(prompt_ids)
        try:
            async for output in self._decode(request_id, text, prompt_ids, sampling_params,
                                             cached):
                yield output
        except (asyncio.CancelledError, GeneratorExit):
            await self.abort(request_id, internal=True)
            raise

    async def abort(self, request_id: str | Iterable[str], internal: bool = False) -> None:
        for rid in [request_id] if isinstance(request_id, str) else list(request_id):
            self.aborted.append((rid, internal))
            self.running.discard(rid)  # its decoding loop ends at the next step

    def shutdown(self, timeout: float | None = None) -> None:
        self.errored = True

    # -- the simulation ---------------------------------------------------------------------------

    def _prompt(self, prompt: Any) -> tuple[str | None, list[int]]:
        if isinstance(prompt, dict) and "prompt_token_ids" in prompt:
            return prompt.get("prompt"), list(prompt["prompt_token_ids"])
        text = prompt["prompt"] if isinstance(prompt, dict) else prompt
        return text, self._tokenizer.encode(text)  # vLLM adds special tokens to text prompts

    def _cache(self, prompt_ids: list[int]) -> int:
        """The prompt's tokens the prefix cache holds, then caches its whole blocks."""
        if not self.vllm_config.cache_config.enable_prefix_caching:
            return 0
        hit = 0
        while hit + BLOCK_SIZE < len(prompt_ids) and \
                tuple(prompt_ids[:hit + BLOCK_SIZE]) in self._blocks:
            hit += BLOCK_SIZE
        for end in range(BLOCK_SIZE, len(prompt_ids) + 1, BLOCK_SIZE):
            self._blocks.add(tuple(prompt_ids[:end]))
        return hit

    def _check(self, prompt_ids: list[int], params: SamplingParams, request_id: str) -> None:
        """vLLM's checks of a request, made before it starts."""
        if request_id in self.running:
            raise ValueError(f"Request id {request_id} already running.")
        config = self.model_config
        if params.logprobs is not None and params.logprobs > config.max_logprobs:
            raise VLLMValidationError(
                f"Requested sample logprobs of {params.logprobs}, which is greater than max "
                f"allowed: {config.max_logprobs}", parameter="logprobs", value=params.logprobs)
        if not [i for i in prompt_ids if i != BOS_ID]:
            raise VLLMValidationError("The decoder prompt cannot be empty")
        if len(prompt_ids) > config.max_model_len:
            raise VLLMValidationError(
                f"The decoder prompt (length {len(prompt_ids)}) is longer than the maximum "
                f"model length of {config.max_model_len}. Make sure that `max_model_len` is "
                f"no smaller than the number of text tokens.")

    async def _decode(self, request_id: str, text: str | None, prompt_ids: list[int],
                      params: SamplingParams, cached: int) -> AsyncGenerator[RequestOutput, None]:
        samples = [reply(prompt_ids, params, i, self._tokenizer) for i in range(params.n)]
        steps = max(1, *(len(s.token_ids) for s in samples))
        delay = self.vllm_config.engine_args.seconds_per_token
        shown = 0  # the tokens already yielded (DELTA yields only the new ones)
        for step in range(1, steps + 1):
            await asyncio.sleep(delay)
            if self.errored:
                raise EngineDeadError()
            aborted = request_id not in self.running
            done = aborted or step == steps
            if params.output_kind is RequestOutputKind.FINAL_ONLY and not done:
                continue
            start = shown if params.output_kind is RequestOutputKind.DELTA else 0
            outputs = [_sample_output(i, s, start, step, aborted) for i, s in enumerate(samples)]
            shown = step
            if done:
                self.running.discard(request_id)
                self.finished.append(request_id)
            yield RequestOutput(request_id=request_id, prompt=text, prompt_token_ids=prompt_ids,
                                prompt_logprobs=None, outputs=outputs, finished=done,
                                num_cached_tokens=cached)
            if done:
                return


def _sample_output(index: int, sample: Sample, start: int, step: int,
                   aborted: bool) -> CompletionOutput:
    """A sample after `step` decoding steps, from token `start` on."""
    end = min(step, len(sample.token_ids))
    first = min(start, end)
    finished = end == len(sample.token_ids)
    text_from = sample.ends[first - 1] if first else 0
    # Finished, the text runs on to its end (whitespace before a stop string, say).
    text_to = len(sample.text) if finished else sample.ends[end - 1] if end else 0
    logprobs = None if sample.logprobs is None else sample.logprobs[first:end]
    cumulative = None if sample.logprobs is None else sum(
        position[token].logprob
        for position, token in zip(sample.logprobs[:end], sample.token_ids, strict=False))
    return CompletionOutput(
        index=index, text=sample.text[text_from:text_to], token_ids=sample.token_ids[first:end],
        cumulative_logprob=cumulative, logprobs=logprobs,
        finish_reason=sample.finish_reason if finished else "abort" if aborted else None,
        stop_reason=sample.stop_reason if finished else None)
