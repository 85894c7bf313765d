"""What a strategy is: an async function of a `Context` and its pydantic config that returns
`ctx.finish(candidate, reason, **info)` (a bare `Candidate`, reply text or None also works).
Its config and registration live in `ponder.strategies.spec`, its return value becomes an
`Outcome` through `as_outcome`; this module gathers them for a strategy's author."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from ponder.strategies.context import Context, as_outcome
from ponder.strategies.spec import C, Returned, StrategyConfig, StrategySpec

# A strategy function, with the precise type of its context (`StrategySpec.run` holds one).
StrategyFn = Callable[[Context, C], Awaitable[Returned]]

__all__ = ["StrategyConfig", "StrategyFn", "StrategySpec", "as_outcome"]
