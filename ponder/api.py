"""`ponder.solve` and friends: the Python front door."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from ponder.backends.base import Backend
from ponder.core.budget import Budget
from ponder.core.errors import ConfigError
from ponder.core.tracing import TraceSink
from ponder.core.types import Problem, Result
from ponder.prompts import PromptLibrary
from ponder.runs.solve_one import run_problem
from ponder.strategies.effort import strategy_for
from ponder.verifiers import Verifier, VerifierChoice

ProblemLike = Problem | str | dict[str, Any]
BackendLike = Backend | str | Sequence[str] | None
VerifierLike = Verifier | str | Callable[..., Any] | None


def as_problem(problem: ProblemLike) -> Problem:
    if isinstance(problem, Problem):
        return problem
    if isinstance(problem, str):
        return Problem(problem=problem)
    return Problem.model_validate(problem)


def resolve_backend(
    backend: BackendLike,
    *,
    model: str | None = None,
    model_path: str | os.PathLike[str] | None = None,
    local_model: str | None = None,
    api_key: str | None = None,
    request_timeout: float | None = None,
    max_retries: int | None = None,
    backoff_max: float | None = None,
    parallel: int | None = None,
) -> tuple[Backend, bool]:
    """The backend to use, and whether ponder made it (and so must close it).

    None means the embedded local model; a string is a base URL of an OpenAI-compatible server,
    "local", or "vllm:<model>" for vLLM in this process; a list of base URLs is a
    `BackendPool` of those servers (one URL: the plain server backend), each retrying a
    failed request once, unless `max_retries` says otherwise, before the pool moves the call
    to another server. The options shape a backend ponder makes; one left None keeps that
    backend's default. `model_path`, `local_model` (which embedded model: "0.5b", "1.5b", …)
    and `parallel` (its slots) are the embedded model's;
    `model`, `api_key`, `max_retries` and `backoff_max` a server's; `request_timeout` (seconds
    one request may take) is either's.
    """
    if isinstance(backend, list | tuple) and len(backend) == 1:
        backend = backend[0]  # one URL: the plain server backend, as before pools
    if backend is None or backend == "local":
        from ponder.backends.local import LocalBackend

        return LocalBackend(model_path=model_path, model=local_model,
                            **_given(parallel=parallel, timeout=request_timeout)), True
    if model_path is not None:
        raise ConfigError(f"model_path runs the embedded model; it cannot go with {backend!r}")
    if local_model is not None:
        raise ConfigError(f"local_model picks the embedded model; it cannot go with {backend!r}")
    if isinstance(backend, list | tuple):
        # A server that fails is better retried on another than again and again: one retry.
        return _pool(backend, model=model, api_key=api_key,
                     **_given(timeout=request_timeout, backoff_max=backoff_max),
                     max_retries=1 if max_retries is None else max_retries), True
    if isinstance(backend, str) and backend.startswith("vllm:"):
        from ponder.backends.vllm import VLLMBackend

        return VLLMBackend(backend.removeprefix("vllm:")), True
    if isinstance(backend, str):
        from ponder.backends.openai import OpenAIBackend

        return OpenAIBackend(base_url=backend, model=model, api_key=api_key,
                             **_given(timeout=request_timeout, max_retries=max_retries,
                                      backoff_max=backoff_max)), True
    if not isinstance(backend, Backend):
        raise ConfigError(f"backend {backend!r} is not a Backend, a base URL, or None")
    return backend, False


def _pool(urls: Sequence[object], **options: Any) -> Backend:
    """A `BackendPool` of OpenAI-compatible servers, one per base URL in `urls`."""
    from ponder.backends.openai import OpenAIBackend
    from ponder.backends.pool import BackendPool
    from ponder.core.redact import redact_url

    if not urls:
        raise ConfigError("backend=[]: a list of backends needs at least one base URL")
    seen: set[str] = set()
    for url in urls:
        if not isinstance(url, str) or not url or url == "local" or url.startswith("vllm:"):
            shown = redact_url(url) if isinstance(url, str) else url
            raise ConfigError(f"backend list item {shown!r} is not a base URL: a list of "
                              "backends pools OpenAI-compatible servers")
        if url.rstrip("/") in seen:
            raise ConfigError(f"base URL {redact_url(url)!r} is listed twice")
        seen.add(url.rstrip("/"))
    return BackendPool([OpenAIBackend(base_url=str(url), **options) for url in urls])


def _given(**options: Any) -> dict[str, Any]:
    """The options that were set, so that the rest keep the backend's own defaults."""
    return {name: value for name, value in options.items() if value is not None}


async def asolve(
    problem: ProblemLike,
    *,
    strategy: str = "single",
    effort: str | None = None,
    backend: BackendLike = None,
    verifier: VerifierLike = None,
    budget: Budget | None = None,
    templates_dir: str | Path | None = None,
    seed: int | None = None,
    trace: TraceSink | None = None,
    model_path: str | os.PathLike[str] | None = None,
    local_model: str | None = None,
    **params: Any,
) -> Result:
    """Solve one problem with `strategy`; `params` go to the strategy's config. `effort`
    ("low", "medium" or "high", see `ponder.strategies.effort`) picks the strategy and its
    parameters instead; `params` given with it override the tier's, and another strategy is refused.

    >>> result = await ponder.asolve("What is 17 * 23?", strategy="best_of_n", n=5)
    >>> result.answer, result.usage.total_tokens
    """
    spec, config = strategy_for(effort, strategy, params)
    prob = as_problem(problem)
    resolved_verifier = VerifierChoice(verifier).for_problem(prob)
    prompts = PromptLibrary(templates_dir)
    client, owned = resolve_backend(backend, model_path=model_path, local_model=local_model)
    try:
        return await run_problem(
            prob, spec, config, backend=client, verifier=resolved_verifier,
            budget=budget or Budget(), prompts=prompts, seed=seed, trace_sink=trace,
        )
    finally:
        if owned:
            await client.aclose()


def solve(problem: ProblemLike, **kwargs: Any) -> Result:
    """`asolve` for plain scripts. Every call runs on one event loop kept for the process, so
    a backend passed in works across any number of calls, and the default embedded model
    starts once (on first use) and stops at exit. Not for use inside a running event loop.

    >>> ponder.solve("Tom has 3 apples and buys 5 more. How many apples does Tom have now?").answer
    '8'
    """
    from ponder.portal import default_portal

    return default_portal().solve(problem, **kwargs)


async def asolve_many(
    problems: Iterable[ProblemLike],
    *,
    strategy: str = "single",
    effort: str | None = None,
    backend: BackendLike = None,
    verifier: VerifierLike = None,
    budget: Budget | None = None,
    total_budget: Budget | None = None,
    first_share: float | None = None,
    concurrency: int = 8,
    templates_dir: str | Path | None = None,
    seed: int | None = None,
    trace: TraceSink | None = None,
    model_path: str | os.PathLike[str] | None = None,
    local_model: str | None = None,
    **params: Any,
) -> list[Result]:
    """Solve many problems, at most `concurrency` at a time; the arguments are `asolve`'s,
    and the results come back in the order of `problems`. A problem without an id of its own
    (text, or a dict or `Problem` left at the default id) is given its position ("0", "1", …);
    ids must be unique.

    `budget` bounds each problem; `total_budget` (tokens only) bounds the whole run, never
    exceeded however many problems are in flight, and is spread where it pays
    (`ponder.runs.allocation`): a first pass gives every problem an even part of `first_share` of
    it (default 1.0: all, an equal split); what that leaves goes to the problems the budget
    stopped unsettled, most promising first, which are solved again, going on from their
    first pass's replies. Their results say so (`info["passes"] == 2`, `info["first_pass"]`),
    and their `usage` covers both passes. When the total runs out, the problems left get a
    result with no answer and `stop_reason="budget"`.

    >>> rows = await ponder.asolve_many(problems, strategy="auto", backend=url,
    ...                                 total_budget=ponder.Budget(tokens=100_000))
    >>> sum(r.usage.total_tokens for r in rows) <= 100_000
    True
    """
    from ponder.runs.allocation import FIRST_SHARE, solve_within
    from ponder.runs.solve_many import Solver, run_all

    spec, config = strategy_for(effort, strategy, params)
    items = [_with_id(as_problem(p), index) for index, p in enumerate(problems)]
    ids = [p.id for p in items]
    if len(set(ids)) < len(ids):
        twice = sorted({i for i in ids if ids.count(i) > 1})
        raise ConfigError(f"problem ids must be unique; repeated: {', '.join(twice[:5])}")
    if total_budget is not None and (total_budget.tokens is None or total_budget.calls
                                     is not None or total_budget.seconds is not None):
        raise ConfigError("total_budget takes tokens only: Budget(tokens=T); bound each "
                          "problem's calls and time with budget=")
    if total_budget is None and first_share is not None:
        raise ConfigError("first_share goes with total_budget")
    if concurrency < 1:
        raise ConfigError(f"concurrency must be at least 1, got {concurrency}")
    choice = VerifierChoice(verifier)
    client, owned = resolve_backend(backend, model_path=model_path, local_model=local_model)
    solver = Solver(spec, config, client, budget=budget or Budget(),
                    prompts=PromptLibrary(templates_dir), verifier_for=choice.for_problem,
                    seed=seed, trace_sink=trace)
    try:
        if total_budget is not None and total_budget.tokens is not None:
            return await solve_within(items, solver, total_tokens=total_budget.tokens,
                                      concurrency=concurrency,
                                      first_share=FIRST_SHARE if first_share is None
                                      else first_share)
        rows = {r.id: r for r in await run_all(items, solver, concurrency=concurrency)}
        return [rows[p.id] for p in items]
    finally:
        if owned:
            await client.aclose()


def solve_many(problems: Iterable[ProblemLike], **kwargs: Any) -> list[Result]:
    """`asolve_many` for plain scripts, on the event loop `solve` uses (so the default
    embedded model starts once). Not for use inside a running event loop.

    >>> rows = ponder.solve_many(["What is 2 + 3?", "What is 4 * 4?"], strategy="auto",
    ...                          total_budget=ponder.Budget(tokens=6000))
    """
    from ponder.portal import default_portal

    return default_portal().solve_many(problems, **kwargs)


DEFAULT_ID = Problem.model_fields["id"].default


def _with_id(problem: Problem, index: int) -> Problem:
    """`problem`, given its position as id when it has none of its own."""
    if problem.id != DEFAULT_ID:
        return problem
    return problem.model_copy(update={"id": str(index)})
