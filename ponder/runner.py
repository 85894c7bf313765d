"""Runs one strategy on one problem and turns what happened into a `Result`."""

from __future__ import annotations

import logging
import time
from typing import Any

from ponder.backends.base import Backend
from ponder.budget import Budget
from ponder.context import Context
from ponder.errors import BackendError, BudgetExhausted, PonderError
from ponder.prompts import PromptLibrary
from ponder.strategies.base import StrategyConfig, StrategySpec
from ponder.tracing import Trace, TraceSink
from ponder.types import Candidate, Problem, Result
from ponder.verifiers.base import Verifier

log = logging.getLogger(__name__)


async def run_problem(
    problem: Problem,
    spec: StrategySpec[Any],
    config: StrategyConfig,
    *,
    backend: Backend,
    verifier: Verifier | None,
    budget: Budget,
    prompts: PromptLibrary,
    seed: int | None = None,
    trace_sink: TraceSink | None = None,
) -> Result:
    """Solve `problem`. Never raises for a model or budget failure: the result says what failed
    and carries the best answer found before it."""
    meter = budget.start()
    ctx = Context(problem, backend=backend, meter=meter, trace=Trace(problem.id, trace_sink),
                  prompts=prompts, verifier=verifier, seed=seed)
    started = time.monotonic()
    error: str | None = None
    exhausted = False
    chosen: Candidate | None = None
    try:
        out = await spec.run(ctx, config)
        chosen = ctx.candidate(out, source=spec.name) if isinstance(out, str) else out
    except BudgetExhausted as exc:
        exhausted = True
        log.debug("problem %s: budget exhausted: %s", problem.id, exc)
    except (BackendError, PonderError) as exc:
        error = f"{type(exc).__name__}: {exc}"
    if chosen is None:
        chosen = ctx.best
    exhausted = exhausted or meter.exhausted_reason is not None
    if chosen is not None and chosen.verdict is None and verifier is not None:
        try:
            await ctx.verify(chosen)
        except BudgetExhausted:
            exhausted = True
    stop = ctx.stop_reason or ("budget" if exhausted else "error" if error else "done")
    if exhausted and meter.exhausted_reason:
        ctx.info.setdefault("budget_note", meter.exhausted_reason)
    return Result(
        id=problem.id,
        answer=chosen.answer if chosen else None,
        text=chosen.text if chosen else None,
        verdict=chosen.verdict if chosen else None,
        usage=meter.used,
        elapsed_s=time.monotonic() - started,
        strategy=spec.name,
        params=config.model_dump(),
        stop_reason=stop,
        budget_exhausted=exhausted,
        info=ctx.info,
        error=error,
        trace=ctx.trace.events,
    )
