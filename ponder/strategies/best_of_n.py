"""`best_of_n`: sample N answers in one request and keep the best; self-consistency voting when
there is nothing to judge them by."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ponder.context import Context
from ponder.errors import BudgetExhausted
from ponder.strategies.base import StrategyConfig
from ponder.strategies.outcome import Tally, pick_best, stop_for_budget, tally
from ponder.strategies.replies import parse_choice
from ponder.types import Candidate


class BestOfNConfig(StrategyConfig):
    temperature: float = Field(default=0.7, ge=0.0, le=2.0, description="sampling temperature")
    n: int = Field(default=5, ge=1, le=256, description="samples, at most")
    selector: Literal["auto", "vote", "judge"] = Field(
        default="auto",
        description="auto: verifier score if there is a verifier, else vote; vote: majority of "
                    "canonical answers; judge: the model picks among the distinct answers")
    adaptive: bool = Field(default=False, description="sample in batches and stop early")
    min_samples: int = Field(default=3, ge=1, description="adaptive: samples before any stop")
    batch_size: int = Field(default=1, ge=1, description="adaptive: samples per later batch")
    agreement: float = Field(default=0.7, gt=0.0, le=1.0,
                             description="adaptive: top answer's vote share that ends sampling")
    judge_max_tokens: int = Field(default=256, gt=0, description="completion tokens for the judge")


async def best_of_n(ctx: Context, cfg: BestOfNConfig) -> Candidate | None:
    """Sample N answers with one `n=N` request (adaptive: in batches) and pick a winner.

    Winner (`selector`): with a verifier (`auto`), the first sample it passes, else the highest
    score; without one (or `vote`), the answer most samples agree on, compared by
    `ctx.canonical` (so `0.50` and `1/2` are one vote); with `judge`, the model picks among
    one sample per distinct answer (`best_of_n/judge.j2`), falling back to the vote when its
    reply names no candidate.

    Adaptive rule (`adaptive=True`): draw `min_samples` first, then `batch_size` at a time up
    to `n`. Stop as soon as the verifier passes a sample (`verified`); without a verifier
    (or with `selector` vote/judge) also stop when the top answer holds at least `agreement`
    of the votes (`consensus`), or leads the runner-up by more votes than samples remain, so
    the rest could not change the winner (`majority`). With defaults (n=5, min 3, 0.7) three
    agreeing samples end the run; 2 of 3 does not, since two more could overturn it.
    `ctx.info["samples"]` records how many samples were drawn.
    """
    samples: list[Candidate] = []
    use_verifier = cfg.selector == "auto" and ctx.verifier is not None
    try:
        while len(samples) < cfg.n:
            want = _batch(cfg, len(samples))
            got = await ctx.generate("best_of_n/generate", n=want, max_tokens=cfg.max_tokens,
                                     temperature=cfg.temperature, step="sample")
            batch = ctx.candidates(got, source="sample")
            samples.extend(batch)
            if use_verifier and await _any_passes(ctx, batch):
                ctx.stop_reason = "verified"
                break
            if len(got) < want:  # the context sends fewer samples only when the budget is short
                stop_for_budget(ctx)
                break
            if cfg.adaptive and not use_verifier and _settled(ctx, cfg, samples):
                break
    except BudgetExhausted:
        stop_for_budget(ctx)
    ctx.info["samples"] = len(samples)
    votes = tally(ctx, samples)
    ctx.info["votes"] = votes.counts()
    ctx.note("votes", samples=len(samples), counts=votes.counts(), share=votes.share)
    return await _select(ctx, cfg, samples, votes, use_verifier)


def _batch(cfg: BestOfNConfig, drawn: int) -> int:
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


def _settled(ctx: Context, cfg: BestOfNConfig, samples: list[Candidate]) -> bool:
    if len(samples) < cfg.min_samples:
        return False
    votes = tally(ctx, samples)
    if votes.share >= cfg.agreement:
        ctx.stop_reason = "consensus"
        return True
    if votes.top_votes - votes.runner_up_votes > cfg.n - len(samples):
        ctx.stop_reason = "majority"
        return True
    return False


async def _select(ctx: Context, cfg: BestOfNConfig, samples: list[Candidate], votes: Tally,
                  use_verifier: bool) -> Candidate | None:
    if not samples:
        return None
    if use_verifier:
        return pick_best(ctx, samples)
    if cfg.selector == "judge" and len(votes.groups) > 1:
        try:
            return await _judge(ctx, cfg, votes)
        except BudgetExhausted:
            stop_for_budget(ctx)
    return votes.winner or samples[0]


async def _judge(ctx: Context, cfg: BestOfNConfig, votes: Tally) -> Candidate | None:
    """One sample per distinct answer, most-voted first, for the model to choose among."""
    shown = [group.members[0] for group in votes.groups]
    [reply] = await ctx.generate("best_of_n/judge", max_tokens=cfg.judge_max_tokens,
                                 temperature=0.0, step="judge", candidates=shown)
    choice = parse_choice(reply.text, len(shown))
    ctx.info["judge_choice"] = None if choice is None else choice + 1
    ctx.note("judge", choice=ctx.info["judge_choice"], shown=[c.answer for c in shown])
    return votes.winner if choice is None else shown[choice]
