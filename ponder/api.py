"""`ponder.solve` and friends: the Python front door."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ponder.backends.base import Backend
from ponder.budget import Budget
from ponder.errors import ConfigError
from ponder.prompts import PromptLibrary
from ponder.runner import run_problem
from ponder.strategies import REGISTRY as STRATEGIES
from ponder.tracing import TraceSink
from ponder.types import Problem, Result
from ponder.verifiers import Verifier, get_verifier

ProblemLike = Problem | str | dict[str, Any]
BackendLike = Backend | str | None
VerifierLike = Verifier | str | Callable[..., Any] | None


def as_problem(problem: ProblemLike) -> Problem:
    if isinstance(problem, Problem):
        return problem
    if isinstance(problem, str):
        return Problem(problem=problem)
    return Problem.model_validate(problem)


def resolve_backend(backend: BackendLike, *, model: str | None = None,
                    model_path: str | os.PathLike[str] | None = None) -> tuple[Backend, bool]:
    """The backend to use, and whether ponder made it (and so must close it).

    None means the embedded local model; a string is a base URL of an OpenAI-compatible server,
    "local", or "vllm:<model>" for vLLM in this process.
    """
    if backend is None or backend == "local":
        from ponder.backends.local import LocalBackend

        return LocalBackend(model_path=model_path), True
    if isinstance(backend, str) and backend.startswith("vllm:"):
        from ponder.backends.vllm import VLLMBackend

        return VLLMBackend(backend.removeprefix("vllm:")), True
    if isinstance(backend, str):
        from ponder.backends.openai import OpenAIBackend

        return OpenAIBackend(base_url=backend, model=model), True
    if not isinstance(backend, Backend):
        raise ConfigError(f"backend {backend!r} is not a Backend, a base URL, or None")
    return backend, False


def default_verifier(problem: Problem) -> str | None:
    """The verifier a problem's fields call for: its own `verifier`, else `math` for a gold
    answer and `unit_tests` for tests, else none."""
    if problem.verifier:
        return problem.verifier
    if problem.test is not None or problem.tests is not None:
        return "unit_tests"
    if problem.answer is not None:
        return "math"
    return None


def resolve_verifier(verifier: VerifierLike, problem: Problem) -> Verifier | None:
    spec = verifier if verifier is not None else default_verifier(problem)
    return None if spec is None else get_verifier(spec)


async def asolve(
    problem: ProblemLike,
    *,
    strategy: str = "single",
    backend: BackendLike = None,
    verifier: VerifierLike = None,
    budget: Budget | None = None,
    templates_dir: str | Path | None = None,
    seed: int | None = None,
    trace: TraceSink | None = None,
    model_path: str | os.PathLike[str] | None = None,
    **params: Any,
) -> Result:
    """Solve one problem with `strategy`; `params` go to the strategy's config.

    >>> result = await ponder.asolve("What is 17 * 23?", strategy="best_of_n", n=5)
    >>> result.answer, result.usage.total_tokens
    """
    spec = STRATEGIES.get(strategy)
    config = spec.make_config(params)
    prob = as_problem(problem)
    resolved_verifier = resolve_verifier(verifier, prob)
    prompts = PromptLibrary(templates_dir)
    client, owned = resolve_backend(backend, model_path=model_path)
    try:
        return await run_problem(
            prob, spec, config, backend=client, verifier=resolved_verifier,
            budget=budget or Budget(), prompts=prompts, seed=seed, trace_sink=trace,
        )
    finally:
        if owned:
            await client.aclose()


def solve(problem: ProblemLike, **kwargs: Any) -> Result:
    """`asolve` for plain scripts (not for use inside a running event loop).

    >>> ponder.solve("Tom has 3 apples and buys 5 more. How many apples does Tom have now?").answer
    '8'
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(asolve(problem, **kwargs))
    raise ConfigError("ponder.solve() was called inside a running event loop; "
                      "use `await ponder.asolve(...)` there")
