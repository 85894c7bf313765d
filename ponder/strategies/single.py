"""`single`: one call, the baseline every other strategy is measured against."""

from __future__ import annotations

from pydantic import Field

from ponder.core.types import Outcome
from ponder.strategies.base import StrategyConfig
from ponder.strategies.context import Context


class SingleConfig(StrategyConfig):
    few_shot: bool = Field(default=False, description="worked examples in the prompt")


async def single(ctx: Context, cfg: SingleConfig) -> Outcome:
    """One call, answer extracted, verified if a verifier is given (`verified` or `done`)."""
    [completion] = await ctx.generate("single/answer", max_tokens=cfg.max_tokens,
                                      temperature=cfg.temperature, few_shot=cfg.few_shot)
    candidate = ctx.candidate(completion.text, source="single")
    await ctx.verify(candidate)
    return ctx.finish(candidate)
