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
from ponder.types import Candidate, Completion, Message, Problem, Result, TraceEvent, Usage, Verdict
from ponder.verification import averify, verify
from ponder.verifiers import Verifier, get_verifier, register_verifier

__version__ = "0.1.0"

__all__ = [
    "Backend",
    "BackendError",
    "Budget",
    "BudgetExhausted",
    "Candidate",
    "Completion",
    "ConfigError",
    "Context",
    "LocalBackend",
    "Message",
    "MissingDependency",
    "OpenAIBackend",
    "PonderError",
    "Problem",
    "Result",
    "ScriptedBackend",
    "StrategyConfig",
    "TemplateError",
    "TraceEvent",
    "Usage",
    "VLLMBackend",
    "Verdict",
    "Verifier",
    "asolve",
    "averify",
    "get_verifier",
    "register_strategy",
    "register_verifier",
    "solve",
    "verify",
]
