"""`vllm.sampling_params`: `SamplingParams`, checked as vLLM checks it, and `RequestOutputKind`."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from vllm.exceptions import VLLMValidationError


class RequestOutputKind(Enum):
    CUMULATIVE = 0  # every step: the outputs so far
    DELTA = 1  # every step: only the new tokens
    FINAL_ONLY = 2  # once, when the request finishes


@dataclass
class SamplingParams:
    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: str | list[str] | None = None
    max_tokens: int | None = 16
    logprobs: int | None = None
    output_kind: RequestOutputKind = RequestOutputKind.CUMULATIVE

    def __post_init__(self) -> None:
        if isinstance(self.stop, str):
            self.stop = [self.stop]
        if self.n < 1:
            raise VLLMValidationError(f"n must be at least 1, got {self.n}.", parameter="n")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise VLLMValidationError(f"max_tokens must be at least 1, got {self.max_tokens}.",
                                      parameter="max_tokens")
        if self.temperature < 1e-5 and self.n > 1:
            raise VLLMValidationError(f"n must be 1 when using greedy sampling, got {self.n}.",
                                      parameter="n")
        if self.logprobs is not None and self.logprobs < 0:
            raise VLLMValidationError(f"logprobs must be non-negative, got {self.logprobs}.",
                                      parameter="logprobs")
