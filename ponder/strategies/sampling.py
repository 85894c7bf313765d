"""Drawing samples until they settle, and picking among them: the loop `best_of_n` and
`program` share, so that "adaptive", "consensus" and "the vote" mean one thing in both.

A strategy gives `sample_until_settled` a `draw(k)` that makes k candidates (one `n=k`
request, then whatever the strategy does with each reply: extract an answer, run a program);
this module decides how many to draw, when to stop, and which candidate wins.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import Field

from ponder.context import Context
from ponder.errors import BudgetExhausted
from ponder.strategies.base import StrategyConfig
from ponder.strategies.outcome import Votes, pick_best, tally
from ponder.types import Candidate, StopReason

Draw = Callable[[int], Awaitable[list[Candidate]]]


class SamplingConfig(StrategyConfig):
    """What every sampling strategy has: how many samples, and the adaptive stopping rule."""

    n: int = Field(default=5, ge=1, le=256, description="samples, at most")
    adaptive: bool = Field(default=False, description="sample in batches and stop early")
    min_samples: int = Field(default=3, ge=1, description="adaptive: samples before any stop")
    batch_size: int = Field(default=1, ge=1, description="adaptive: samples per later batch")
    agreement: float = Field(default=0.7, gt=0.0, le=1.0,
                             description="adaptive: top answer's vote share that ends sampling")


async def sample_until_settled(ctx: Context, cfg: SamplingConfig, draw: Draw, *,
                               use_verifier: bool) -> tuple[list[Candidate], StopReason]:
    """Draw `cfg.n` samples (adaptive: `min_samples`, then `batch_size` at a time) and say why
    drawing stopped.

    Stops as soon as the verifier passes a sample (`verified`, when `use_verifier`); when the
    budget gives fewer samples than asked, or none (`budget`); and with `adaptive` and no
    verifier in use, when the top answer holds at least `agreement` of the votes
    (`consensus`) or leads the runner-up by more votes than samples remain, so the rest could
    not change the winner (`majority`). Otherwise `done` after `n`.
    """
    samples: list[Candidate] = []
    try:
        while len(samples) < cfg.n:
            want = _batch(cfg, len(samples))
            batch = await draw(want)
            samples.extend(batch)
            if use_verifier and await _any_passes(ctx, batch):
                return samples, "verified"
            if len(batch) < want:  # the context sends fewer samples only when the budget is short
                return samples, "budget"
            if cfg.adaptive and not use_verifier and (
                    settled := settled_by_vote(cfg, tally(ctx, samples), len(samples))):
                return samples, settled
    except BudgetExhausted:
        return samples, "budget"
    return samples, "done"


def settled_by_vote(cfg: SamplingConfig, votes: Votes, drawn: int) -> StopReason | None:
    """Why sampling may stop here without a verifier, or None to go on."""
    if drawn < cfg.min_samples:
        return None
    if votes.share >= cfg.agreement:
        return "consensus"
    if votes.top_votes - votes.runner_up_votes > cfg.n - drawn:
        return "majority"
    return None


def choose(ctx: Context, samples: list[Candidate], votes: Votes,
           use_verifier: bool) -> Candidate | None:
    """The winner: the best verdict when the verifier judged them, else the vote."""
    if not samples:
        return None
    if use_verifier:
        return pick_best(ctx, samples)
    return votes.winner or samples[0]


def vote_info(ctx: Context, samples: list[Candidate], votes: Votes) -> dict[str, Any]:
    """What every sampling strategy records: how many samples, the votes, and the vote's own
    answer (what a run with no verifier to pick would have answered: with gold as the
    verifier, the result is pass@k and this is the honest figure beside it)."""
    ctx.note("votes", samples=len(samples), counts=votes.counts(), share=votes.share)
    return {"samples": len(samples), "votes": votes.counts(),
            "vote_answer": votes.winner.answer if votes.winner else None}


def _batch(cfg: SamplingConfig, drawn: int) -> int:
    if not cfg.adaptive:
        return cfg.n - drawn
    first = drawn == 0
    return min(cfg.min_samples if first else cfg.batch_size, cfg.n - drawn)


async def _any_passes(ctx: Context, batch: list[Candidate]) -> bool:
    for cand in batch:
        verdict = await ctx.verify(cand)
        if verdict is not None and verdict.passed:
            return True
    return False
