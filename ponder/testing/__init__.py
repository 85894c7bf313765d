"""Helpers for testing code built on ponder: a context on a scripted backend, and a fake
OpenAI-compatible server with injected faults (`FakeOpenAIServer`).

>>> ctx = make_context("What is 2 + 3?", backend=ScriptedBackend(["Final answer: 5"]))
>>> [completion] = await ctx.generate("single/answer", max_tokens=64)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ponder.backends.base import Backend
from ponder.backends.scripted import ScriptedBackend, by_step
from ponder.core.budget import Budget
from ponder.core.tracing import TraceSink
from ponder.core.types import Problem
from ponder.strategies.context import Context
from ponder.verifiers.base import Verifier

if TYPE_CHECKING:
    from ponder.testing.fake_server import FakeOpenAIServer


def make_context(
    problem: Problem | str = "What is 2 + 3?",
    *,
    backend: Backend | None = None,
    budget: Budget | None = None,
    verifier: Verifier | None = None,
    seed: int | None = None,
    sink: TraceSink | None = None,
) -> Context:
    """A `Context` as `ponder.solve` builds one, on a `ScriptedBackend` unless told otherwise."""
    prob = problem if isinstance(problem, Problem) else Problem(problem=problem)
    return Context(prob, backend=backend or ScriptedBackend(), budget=budget, verifier=verifier,
                   seed=seed, trace_sink=sink)


def __getattr__(name: str) -> Any:
    # Lazy, so `python -m ponder.testing.fake_server` does not find its module half-imported.
    if name == "FakeOpenAIServer":
        from ponder.testing.fake_server import FakeOpenAIServer

        return FakeOpenAIServer
    raise AttributeError(f"module 'ponder.testing' has no attribute {name!r}")


__all__ = ["FakeOpenAIServer", "by_step", "make_context"]
