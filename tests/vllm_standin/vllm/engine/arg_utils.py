"""`vllm.engine.arg_utils.AsyncEngineArgs`: the engine's settings. A field it lacks is a
TypeError, as with vLLM's dataclass."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ModelConfig:
    model: str
    max_model_len: int
    max_logprobs: int


@dataclass
class CacheConfig:
    enable_prefix_caching: bool


@dataclass
class VllmConfig:
    model_config: ModelConfig
    cache_config: CacheConfig
    engine_args: AsyncEngineArgs = field(repr=False)  # stand-in only, for tests to read


@dataclass
class AsyncEngineArgs:
    model: str = "facebook/opt-125m"
    max_model_len: int | None = None
    max_logprobs: int = 20
    enable_prefix_caching: bool | None = None
    gpu_memory_utilization: float = 0.9
    disable_log_stats: bool = False
    enable_log_requests: bool = False
    # Stand-in only: how long loading blocks its thread, and each decoding step takes.
    load_seconds: float = 0.0
    seconds_per_token: float = 0.0

    def create_engine_config(self, usage_context: object = None) -> VllmConfig:
        return VllmConfig(
            model_config=ModelConfig(self.model, self.max_model_len or 4096, self.max_logprobs),
            # V1 turns prefix caching on unless told otherwise.
            cache_config=CacheConfig(self.enable_prefix_caching is not False),
            engine_args=self)
