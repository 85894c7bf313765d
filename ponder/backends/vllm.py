"""vLLM in-process (filled in by the vLLM backend work)."""


class VLLMBackend:  # replaced by the real engine wrapper
    name = "vllm"
