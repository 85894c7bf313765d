"""`single`: one call, the baseline every other strategy is measured against."""

from __future__ import annotations

from ponder.context import Context
from ponder.strategies.base import StrategyConfig
from ponder.types import Candidate


class SingleConfig(StrategyConfig):
    pass


async def single(ctx: Context, cfg: SingleConfig) -> Candidate | None:
    """One call, answer extracted, verified if a verifier is given."""
    [completion] = await ctx.generate("single/answer", max_tokens=cfg.max_tokens,
                                      temperature=cfg.temperature)
    candidate = ctx.candidate(completion.text, source="single")
    await ctx.verify(candidate)
    return candidate
