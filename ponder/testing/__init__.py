"""Helpers for testing code built on ponder: a context on a scripted backend, and a fake
OpenAI-compatible server with injected faults (`FakeOpenAIServer`), which can stand in for a
model of known skill (quiz mode: `QuizItem`, `Quiz`).

>>> ctx = make_context("What is 2 + 3?", backend=ScriptedBackend(["Final answer: 5"]))
>>> [completion] = await ctx.generate("single/answer", max_tokens=64)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ponder.backends.base import Backend
from ponder.backends.scripted import ScriptedBackend, by_step
from ponder.core.budget import Budget
from ponder.core.lazy import lazy_names
from ponder.core.tracing import TraceSink
from ponder.core.types import Problem
from ponder.strategies.context import Context
from ponder.verifiers.base import Verifier

if TYPE_CHECKING:
    from ponder.testing.fake_server import FakeOpenAIServer
    from ponder.testing.quiz import Quiz, QuizFileError, QuizItem


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


# Public name -> the module that defines it, loaded on first use (PEP 562), so that
# `python -m ponder.testing.fake_server` does not find its module half-imported.
_LAZY: dict[str, str] = {
    "FakeOpenAIServer": "ponder.testing.fake_server",
    **dict.fromkeys(["Quiz", "QuizFileError", "QuizItem"], "ponder.testing.quiz"),
}


__getattr__, __dir__ = lazy_names(__name__, _LAZY, globals())


__all__ = ["FakeOpenAIServer", "Quiz", "QuizFileError", "QuizItem", "by_step", "make_context"]
