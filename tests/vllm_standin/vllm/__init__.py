"""A stand-in for vLLM's offline API, for tests only: `LLM`, `SamplingParams` and the outputs,
with vLLM's call shapes and attribute names, a whitespace tokenizer and a deterministic model.

Tests put `tests/vllm_standin` on `sys.path` so that `import vllm` finds this package; it is
never installed. Where vLLM checks its inputs (greedy with n > 1, a prompt longer than the
model's context, checked for every request before any runs) this does too.

Log-probs come in vLLM's shape: with `SamplingParams(logprobs=k)`, each `CompletionOutput` has
`logprobs`, one dict per generated token of token id → `Logprob(logprob, rank,
decoded_token)`, holding the k most likely tokens plus the sampled one (which may rank below
them: then the dict has k + 1 entries), and `cumulative_logprob`; `logprobs=0` gives the
sampled token's alone. The values are derived from the word, so tests can predict them.
"""

from __future__ import annotations

import math
import random
import re
import time
import zlib
from dataclasses import dataclass
from typing import Any

VOCAB = 50_000
BOS_ID = VOCAB  # added by encode(add_special_tokens=True), which chat templates do not want
_TOKEN = re.compile(r"<\|im_start\|>|<\|im_end\|>|\S+")


@dataclass
class Logprob:
    logprob: float
    rank: int | None = None
    decoded_token: str | None = None


@dataclass
class SamplingParams:
    n: int = 1
    temperature: float = 1.0
    max_tokens: int | None = 16
    stop: list[str] | None = None
    seed: int | None = None
    logprobs: int | None = None

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"n must be at least 1, got {self.n}.")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1, got {self.max_tokens}.")
        if self.temperature < 1e-5 and self.n > 1:
            raise ValueError(f"n must be 1 when using greedy sampling, got {self.n}.")
        if self.logprobs is not None and self.logprobs < 0:
            raise ValueError(f"logprobs must be non-negative, got {self.logprobs}.")


@dataclass
class CompletionOutput:
    index: int
    text: str
    token_ids: list[int]
    cumulative_logprob: float | None = None
    logprobs: Any = None
    finish_reason: str | None = None
    stop_reason: int | str | None = None


@dataclass
class RequestOutput:
    request_id: str
    prompt: str | None
    prompt_token_ids: list[int] | None
    prompt_logprobs: Any
    outputs: list[CompletionOutput]
    finished: bool = True


class Tokenizer:
    """Qwen's chat template; a token is a template marker or a whitespace-separated word."""

    def apply_chat_template(self, conversation: list[dict[str, str]], tokenize: bool = True,
                            add_generation_prompt: bool = False) -> str | list[int]:
        text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n"
                       for m in conversation)
        if add_generation_prompt:
            text += "<|im_start|>assistant\n"
        return self.encode(text) if tokenize else text

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        ids = [zlib.crc32(t.encode()) % VOCAB for t in _TOKEN.findall(text)]
        return [BOS_ID, *ids] if add_special_tokens else ids


class LLM:
    """Answers with the sum of the numbers in the last user message. `delay_s` makes each
    `chat` call block that long, as a real engine's would; `batches` counts the prompts of
    each `chat` call, for tests."""

    def __init__(self, model: str, *, enable_prefix_caching: bool = False,
                 max_model_len: int = 4096, max_logprobs: int = 20, delay_s: float = 0.0,
                 **kwargs: Any) -> None:
        if model.startswith("missing/"):
            raise OSError(f"{model} is not a local folder and is not a valid model identifier")
        self.model = model
        self.enable_prefix_caching = enable_prefix_caching
        self.max_model_len = max_model_len
        self.max_logprobs = max_logprobs
        self.delay_s = delay_s
        self.kwargs = kwargs
        self.batches: list[int] = []
        self._tokenizer = Tokenizer()

    def get_tokenizer(self) -> Tokenizer:
        return self._tokenizer

    def chat(self, messages: list[Any], sampling_params: Any = None, use_tqdm: bool = True,
             add_generation_prompt: bool = True, **kwargs: Any) -> list[RequestOutput]:
        conversations = messages if messages and isinstance(messages[0], list) else [messages]
        params = sampling_params if sampling_params is not None else SamplingParams()
        if not isinstance(params, list):
            params = [params] * len(conversations)
        if len(params) != len(conversations):
            raise ValueError("The lengths of prompts and sampling_params must be the same.")
        prompts = []
        for p in params:
            if p.logprobs is not None and p.logprobs > self.max_logprobs:
                raise ValueError(f"Requested sample logprobs of {p.logprobs}, which is greater "
                                 f"than max allowed: {self.max_logprobs}")
        for conversation in conversations:  # every request is checked before any runs
            text = self._tokenizer.apply_chat_template(
                conversation, tokenize=False, add_generation_prompt=add_generation_prompt)
            assert isinstance(text, str)
            ids = self._tokenizer.encode(text, add_special_tokens=False)
            if len(ids) > self.max_model_len:
                raise ValueError(f"The decoder prompt (length {len(ids)}) is longer than the "
                                 f"maximum model length of {self.max_model_len}.")
            prompts.append((text, ids, conversation))
        self.batches.append(len(conversations))
        if self.delay_s:
            time.sleep(self.delay_s)
        pairs = enumerate(zip(prompts, params, strict=True))
        return [RequestOutput(request_id=str(i), prompt=text, prompt_token_ids=ids,
                              prompt_logprobs=None, outputs=self._sample(conversation, p))
                for i, ((text, ids, conversation), p) in pairs]

    def _sample(self, conversation: list[dict[str, str]],
                params: SamplingParams) -> list[CompletionOutput]:
        last = next((m["content"] for m in reversed(conversation) if m["role"] == "user"), "")
        total = sum(int(x) for x in re.findall(r"-?\d+", last))
        outputs = []
        for index in range(params.n):
            if params.temperature < 1e-5:
                text = f"The numbers add up to {total}.\nFinal answer: {total}"
            else:
                rng = random.Random(zlib.crc32(f"{params.seed}/{index}/{last}".encode()))
                mood = rng.choice(["Surely", "Perhaps", "Clearly", "Counting"])
                text = f"{mood}, the numbers add up to {total}.\nFinal answer: {total}"
            finish, stop_reason = "stop", None
            for s in params.stop or []:
                if s and s in text:
                    text, stop_reason = text[: text.index(s)], s
            words = text.split()
            if params.max_tokens is not None and len(words) > params.max_tokens:
                text, finish = " ".join(words[: params.max_tokens]), "length"
            token_ids = self._tokenizer.encode(text, False)
            logprobs = None if params.logprobs is None else [
                position_logprobs(word, token_id, params.logprobs)
                for word, token_id in zip(_TOKEN.findall(text), token_ids, strict=True)]
            outputs.append(CompletionOutput(
                index=index, text=text, token_ids=token_ids,
                cumulative_logprob=None if logprobs is None else sum(
                    p[t].logprob for p, t in zip(logprobs, token_ids, strict=True)),
                logprobs=logprobs, finish_reason=finish, stop_reason=stop_reason))
        return outputs


def position_logprobs(word: str, token_id: int, k: int) -> dict[int, Logprob]:
    """One generated token's log-probs: the top `k` plus the sampled token. The rank-r
    candidate has probability p (0.5-0.99, from the word) at rank 1, then (1 - p) halving
    down the ranks; the sampled token ranks first, or (one word in four) second to fourth."""
    h = zlib.crc32(word.encode())
    p = 0.5 + (h % 50) / 100
    rank = 1 if h % 4 else 2 + (h // 4) % 3
    probs = [p, *((1 - p) / 2 ** r for r in range(1, max(k, rank)))]
    ids = [(token_id + r) % VOCAB for r in range(1, len(probs) + 1)]
    ids[rank - 1] = token_id
    return {tid: Logprob(math.log(prob), r, None)
            for r, (tid, prob) in enumerate(zip(ids, probs, strict=True), start=1)
            if r <= k or tid == token_id}


__all__ = ["LLM", "CompletionOutput", "Logprob", "RequestOutput", "SamplingParams"]
