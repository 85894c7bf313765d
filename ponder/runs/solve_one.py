"""Runs one strategy on one problem and turns what happened into a `Result`."""

from __future__ import annotations

import logging
import time
from typing import Any

from ponder.core.errors import BackendError, BudgetExhausted, PonderError
from ponder.core.types import Outcome, Problem, Result
from ponder.runs.gold_selection import label_selection
from ponder.strategies.base import StrategyConfig, StrategySpec, as_outcome
from ponder.strategies.context import Context
from ponder.strategies.wiring import Wiring

log = logging.getLogger(__name__)


async def run_problem(problem: Problem, spec: StrategySpec[Any], config: StrategyConfig,
                      wiring: Wiring) -> Result:
    """Solve `problem` with the parts `wiring` carries. Never raises for a model or budget
    failure: the result says what failed and carries the best answer found before it."""
    ctx = Context.wired(problem, wiring)
    verifier = wiring.verifier
    started = time.monotonic()
    error: str | None = None
    outcome: Outcome | None = None
    try:
        outcome = as_outcome(ctx, await spec.run(ctx, config), spec.name)
    except BudgetExhausted as exc:
        log.debug("problem %s: budget exhausted: %s", problem.id, exc)
    except (BackendError, PonderError) as exc:
        error = f"{type(exc).__name__}: {exc}"
    meter = ctx.meter
    exhausted = meter.exhausted_reason is not None
    if outcome is None:  # cut short: the best of what was seen
        outcome = ctx.finish(await ctx.best(), "error" if error else "budget")
        exhausted = exhausted or error is None
    exhausted = exhausted or outcome.reason == "budget"
    chosen = outcome.candidate
    if chosen is None and outcome.reason != "error":
        chosen = await ctx.best()
    picked = chosen is not None and chosen.verdict is not None  # the strategy judged its pick
    if chosen is not None and chosen.verdict is None and ctx.verifier is not None:
        try:
            await ctx.verify(chosen)
        except BudgetExhausted:
            exhausted = True
    info = dict(outcome.info)
    await label_selection(ctx, verifier, info, verifier_picked=picked)  # gold picked: pass@k
    if exhausted and meter.exhausted_reason:
        info.setdefault("budget_note", meter.exhausted_reason)
    return Result(
        id=problem.id,
        answer=chosen.answer if chosen else None,
        text=chosen.text if chosen else None,
        answer_given=chosen.answer_given if chosen else False,
        verdict=chosen.verdict if chosen else None,
        usage=meter.used,
        elapsed_s=time.monotonic() - started,
        strategy=spec.name,
        params=config.model_dump(),
        stop_reason=outcome.reason,
        budget_exhausted=exhausted,
        info=info,
        error=error,
        trace=ctx.trace.events,
    )

