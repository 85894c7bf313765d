"""Backends: OpenAI-compatible servers, the embedded local model, vLLM in-process, scripted,
and a pool spreading calls over several of them.

The heavy ones load lazily, so `import ponder` stays fast and works without the extras.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ponder.backends.base import Backend
from ponder.backends.scripted import ScriptedBackend
from ponder.core.lazy import lazy_names

if TYPE_CHECKING:
    from ponder.backends.local import LocalBackend
    from ponder.backends.openai import OpenAIBackend
    from ponder.backends.pool import BackendPool
    from ponder.backends.vllm import VLLMBackend

_LAZY = {
    "OpenAIBackend": "ponder.backends.openai",
    "BackendPool": "ponder.backends.pool",
    "LocalBackend": "ponder.backends.local",
    "VLLMBackend": "ponder.backends.vllm",
}


__getattr__, __dir__ = lazy_names(__name__, _LAZY, globals())


__all__ = ["Backend", "BackendPool", "LocalBackend", "OpenAIBackend", "ScriptedBackend",
           "VLLMBackend"]
