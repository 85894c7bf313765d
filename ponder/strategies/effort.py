"""Effort tiers: `effort="low" | "medium" | "high"` (`ponder.solve(..., effort=...)`, `ponder
solve --effort`) names a strategy and its parameters, so that a caller says how hard to think
rather than how.

| effort | strategy | params |
|---|---|---|
| `low` | `single` | `temperature=0` |
| `medium` | `program` | zero-shot, greedy |
| `high` | `auto` | its defaults |

`low` is the baseline: one greedy call. `medium` is the cheapest step up that paid on the
embedded coder model: one greedy zero-shot program, for little more than one call's tokens,
fixes the model's arithmetic (not its reading of the problem); on GSM8K it did better than
the few-shot program and than a vote over 5 prose samples, which costs several times its
tokens. `high` starts from medium's program and low's answer and escalates to voted samples
only where they disagree (`ponder.strategies.auto`), so it spends more only on the problems
that leave it unsure. Each tier was fixed before the held-out problems were run, so those
check the tiers rather than fit them. The figures (accuracy and tokens per tier, on both
halves of GSM8K and on the work-precision curve, and the paired comparisons) are in
docs/benchmarks.md, "Effort tiers", from benchmarks/results/strategies_gsm8k*.md and
curve_gsm8k*/.

Parameters given with an effort override its tier's (`effort="medium", n=5`); a strategy given
with it is refused ("choose one"), unless it is the default (`single`, which cannot be told
from one left unset) or the tier's own. A result solved at an effort says so in
`info["effort"]`, and its trace has an `effort` note.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ponder.core.errors import BudgetExhausted, ConfigError
from ponder.core.types import Candidate, Outcome
from ponder.strategies.base import StrategyConfig, StrategyFn, StrategySpec, as_outcome
from ponder.strategies.context import Context

DEFAULT_STRATEGY = "single"  # `ponder.solve`'s and `ponder solve`'s


@dataclass(frozen=True)
class Tier:
    """What one effort runs: a strategy and its parameters."""

    strategy: str
    params: Mapping[str, Any] = field(default_factory=dict)


TIERS: dict[str, Tier] = {
    "low": Tier("single", {"temperature": 0.0}),
    "medium": Tier("program", {"few_shot": False, "temperature": 0.0}),
    "high": Tier("auto"),
}
EFFORTS = tuple(TIERS)


def tier(effort: str) -> Tier:
    """The tier of `effort`; a `ConfigError` names the efforts for any other."""
    try:
        return TIERS[effort]
    except (KeyError, TypeError):
        raise ConfigError(f"effort {effort!r}: choose {', '.join(EFFORTS[:-1])} or "
                          f"{EFFORTS[-1]}") from None


def tier_beside(effort: str, strategy: str | None) -> Tier:
    """The tier of `effort`, given with `strategy`: a `ConfigError` unless that is None or
    the tier's own."""
    chosen = tier(effort)
    if strategy not in (None, chosen.strategy):
        raise ConfigError(f"effort {effort!r} runs strategy {chosen.strategy!r} and strategy "
                          f"{strategy!r} was also given; choose one")
    return chosen


def strategy_for(effort: str | None, strategy: str | None,
                 params: Mapping[str, Any] | None = None,
                 ) -> tuple[StrategySpec[Any], StrategyConfig]:
    """The strategy and its checked config that a solve runs: `strategy` with `params` when
    `effort` is None, else the tier's strategy with its parameters, overridden by `params`.
    A `ConfigError` for an unknown effort, strategy or parameter, and for an effort given with
    another strategy."""
    from ponder.strategies import REGISTRY

    params = dict(params or {})
    if effort is None:
        spec = REGISTRY.get(strategy or DEFAULT_STRATEGY)
        return spec, spec.make_config(params)
    # The default cannot be told from a strategy left unset.
    chosen = tier_beside(effort, None if strategy == DEFAULT_STRATEGY else strategy)
    spec = at_effort(effort, REGISTRY.get(chosen.strategy))
    return spec, spec.make_config({**chosen.params, **params})


def at_effort(effort: str, base: StrategySpec[Any]) -> StrategySpec[Any]:
    """`base` (the tier's strategy) run at `effort`: its result and trace say so."""
    return StrategySpec(name=base.name, run=AtEffort(effort, base.run), config=base.config,
                        description=base.description)


@dataclass(frozen=True)
class AtEffort:
    """A strategy run at an effort: the same run, its result saying which effort asked for it
    (`info["effort"]`, and an `effort` note in the trace). A plain class rather than a
    closure, so that a Ray worker can unpickle it."""

    effort: str
    run: StrategyFn[Any]

    async def __call__(self, ctx: Context, cfg: Any) -> Outcome:
        ctx.note("effort", effort=self.effort, strategy=TIERS[self.effort].strategy)
        try:
            returned: Outcome | Candidate | str | None = await self.run(ctx, cfg)
        except BudgetExhausted:  # as the runner ends a run cut short, with the effort said
            return ctx.finish(await ctx.best(), "budget", effort=self.effort)
        outcome = as_outcome(ctx, returned, TIERS[self.effort].strategy)
        return outcome.model_copy(update={"info": {**outcome.info, "effort": self.effort}})
