"""A stand-in for vLLM's async engine, for tests only: `AsyncLLM` (`vllm.v1.engine.async_llm`),
`AsyncEngineArgs`, `SamplingParams` and the outputs, with vLLM's module paths, call shapes and
attribute names, a whitespace tokenizer and a deterministic model (`_model`).

Tests put `tests/vllm_standin` on `sys.path` so that `import vllm` finds this package; it is
never installed. Where vLLM checks a request (greedy with n > 1, a prompt longer than the
model's context, more log-probs than it serves, a request id already running) this does too,
with vLLM's messages, before the request starts.

Requests run as in vLLM's continuous batching: each is scheduled when it arrives and decodes
one token per `AsyncEngineArgs.seconds_per_token` (a stand-in field), independently of the
others, so a short request finishes before a long one that started earlier.

Log-probs come in vLLM's shape: with `SamplingParams(logprobs=k)`, each `CompletionOutput` has
`logprobs`, one dict per generated token of token id → `Logprob(logprob, rank,
decoded_token)`, holding the k most likely tokens plus the sampled one (which may rank below
them: then the dict has k + 1 entries), and `cumulative_logprob`; `logprobs=0` gives the
sampled token's alone. The values are derived from the word, so tests can predict them.
"""

from __future__ import annotations

from vllm._model import Tokenizer, position_logprobs
from vllm.engine.arg_utils import AsyncEngineArgs
from vllm.logprobs import Logprob
from vllm.outputs import CompletionOutput, RequestOutput
from vllm.sampling_params import RequestOutputKind, SamplingParams
from vllm.v1.engine.async_llm import AsyncLLM


class AsyncLLMEngine(AsyncLLM):
    """vLLM's async engine before V1 (an alias of `AsyncLLM` since); a subclass here, so a
    test can tell which one a backend built."""


__all__ = ["AsyncEngineArgs", "AsyncLLM", "AsyncLLMEngine", "CompletionOutput", "Logprob",
           "RequestOutput", "RequestOutputKind", "SamplingParams", "Tokenizer",
           "position_logprobs"]
