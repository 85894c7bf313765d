"""`vllm.v1.engine.exceptions`: what a request hears when the engine is gone."""

from __future__ import annotations


class EngineDeadError(Exception):
    def __init__(self) -> None:
        super().__init__("EngineCore encountered an issue. See stack trace (above) for the "
                         "root cause.")
