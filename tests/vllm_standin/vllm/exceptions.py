"""`vllm.exceptions`: what vLLM raises for a request it refuses (a ValueError)."""

from __future__ import annotations

from typing import Any


class VLLMValidationError(ValueError):
    def __init__(self, message: str, *, parameter: str | None = None,
                 value: Any = None) -> None:
        super().__init__(message)
        self.parameter = parameter
        self.value = value

    def __str__(self) -> str:
        base = super().__str__()
        extras = [f"{name}={value}" for name, value in
                  (("parameter", self.parameter), ("value", self.value)) if value is not None]
        return f"{base} ({', '.join(extras)})" if extras else base
