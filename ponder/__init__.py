"""ponder: make language models think harder where it pays, within a token budget."""

from ponder.api import asolve, solve
from ponder.backends import LocalBackend, OpenAIBackend, ScriptedBackend, VLLMBackend
from ponder.backends.base import Backend
from ponder.budget import Budget
from ponder.context import Context
from ponder.errors import (
    BackendError,
    BudgetExhausted,
    ConfigError,
    MissingDependency,
    PonderError,
    TemplateError,
)
from ponder.strategies import StrategyConfig, register_strategy
from ponder.tracing import JsonlTraceWriter
from ponder.types import (
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
from ponder.verification import averify, verify
from ponder.verifiers import (
    ModelAccess,
    Verifier,
    all_of,
    any_of,
    get_verifier,
    register_verifier,
    weighted,
)

__version__ = "0.1.0"

__all__ = [
    "Backend",
    "BackendError",
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
    "averify",
    "get_verifier",
    "register_strategy",
    "register_verifier",
    "solve",
    "verify",
    "weighted",
]
