"""ponder: make language models think harder where it pays, within a token budget."""

from typing import TYPE_CHECKING

from ponder.core.lazy import lazy_names

if TYPE_CHECKING:
    from ponder.api import asolve, asolve_many, averify, solve, solve_many, verify
    from ponder.backends import LocalBackend, OpenAIBackend, ScriptedBackend, VLLMBackend
    from ponder.backends.base import Backend
    from ponder.backends.pool import BackendPool
    from ponder.backends.spec import BackendSpec
    from ponder.core.budget import Budget
    from ponder.core.errors import (
        BackendError,
        BudgetExhausted,
        ConfigError,
        MissingDependency,
        PonderError,
        TemplateError,
    )
    from ponder.core.tracing import JsonlTraceWriter
    from ponder.core.types import (
        Candidate,
        Completion,
        Confidence,
        Message,
        Outcome,
        Problem,
        Result,
        StopReason,
        TraceEvent,
        Usage,
        Verdict,
    )
    from ponder.runs.refusals import BackendRefused
    from ponder.session import Session
    from ponder.strategies import StrategyConfig, register_strategy
    from ponder.strategies.context import Context
    from ponder.verifiers import (
        ModelAccess,
        Verifier,
        all_of,
        any_of,
        get_verifier,
        register_verifier,
        weighted,
    )

# Public name -> the module that defines it. `import ponder` loads none of them; each loads on
# its first use (PEP 562), so that `ponder --help` or a script using only `ponder.Budget` does
# not pay for the openai SDK (half a second) or the pydantic models it never touches.
_LAZY: dict[str, str] = {
    **dict.fromkeys(["asolve", "asolve_many", "averify", "solve", "solve_many", "verify"],
                    "ponder.api"),
    "Backend": "ponder.backends.base",
    "BackendPool": "ponder.backends.pool",
    "LocalBackend": "ponder.backends.local",
    "OpenAIBackend": "ponder.backends.openai",
    "ScriptedBackend": "ponder.backends.scripted",
    "VLLMBackend": "ponder.backends.vllm",
    "Budget": "ponder.core.budget",
    "Context": "ponder.strategies.context",
    **dict.fromkeys(["BackendError", "BudgetExhausted", "ConfigError", "MissingDependency",
                     "PonderError", "TemplateError"], "ponder.core.errors"),
    "StrategyConfig": "ponder.strategies",
    "register_strategy": "ponder.strategies",
    "JsonlTraceWriter": "ponder.core.tracing",
    **dict.fromkeys(["Candidate", "Completion", "Confidence", "Message", "Outcome", "Problem",
                     "Result", "StopReason", "TraceEvent", "Usage", "Verdict"],
                    "ponder.core.types"),
    "Session": "ponder.session",
    "BackendSpec": "ponder.backends.spec",
    "BackendRefused": "ponder.runs.refusals",
    **dict.fromkeys(["ModelAccess", "Verifier", "all_of", "any_of", "get_verifier",
                     "register_verifier", "weighted"], "ponder.verifiers"),
}


__getattr__, __dir__ = lazy_names(__name__, _LAZY, globals())


__version__ = "0.1.0"

__all__ = [
    "Backend",
    "BackendError",
    "BackendPool",
    "BackendRefused",
    "BackendSpec",
    "Budget",
    "BudgetExhausted",
    "Candidate",
    "Completion",
    "Confidence",
    "ConfigError",
    "Context",
    "JsonlTraceWriter",
    "LocalBackend",
    "Message",
    "MissingDependency",
    "ModelAccess",
    "OpenAIBackend",
    "Outcome",
    "PonderError",
    "Problem",
    "Result",
    "ScriptedBackend",
    "Session",
    "StopReason",
    "StrategyConfig",
    "TemplateError",
    "TraceEvent",
    "Usage",
    "VLLMBackend",
    "Verdict",
    "Verifier",
    "all_of",
    "any_of",
    "asolve",
    "asolve_many",
    "averify",
    "get_verifier",
    "register_strategy",
    "register_verifier",
    "solve",
    "solve_many",
    "verify",
    "weighted",
]
