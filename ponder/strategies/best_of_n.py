"""`best_of_n`: sample N answers in one request and keep the best; self-consistency voting when
there is nothing to judge them by."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from ponder.context import Context
from ponder.errors import BudgetExhausted
from ponder.replies import parse_choice
from ponder.strategies.base import StrategyConfig
from ponder.strategies.outcome import Votes, pick_best, tally
from ponder.types import Candidate, Outcome, StopReason


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


async def best_of_n(ctx: Context, cfg: BestOfNConfig) -> Outcome:
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

    `info`: `samples` (how many were drawn), `votes` (canonical answer → votes), and with
    `selector="judge"` `judge_choice` (the 1-based candidate the judge named, or None).
    """
    samples: list[Candidate] = []
    use_verifier = cfg.selector == "auto" and ctx.verifier is not None
    reason: StopReason = "done"
    try:
        while len(samples) < cfg.n:
            want = _batch(cfg, len(samples))
            got = await ctx.generate("best_of_n/generate", n=want, max_tokens=cfg.max_tokens,
                                     temperature=cfg.temperature, step="sample")
            batch = ctx.candidates(got, source="sample")
            samples.extend(batch)
            if use_verifier and await _any_passes(ctx, batch):
                reason = "verified"
                break
            if len(got) < want:  # the context sends fewer samples only when the budget is short
                reason = "budget"
                break
            if cfg.adaptive and not use_verifier and (
                    settled := _settled(cfg, tally(ctx, samples), len(samples))):
                reason = settled
                break
    except BudgetExhausted:
        reason = "budget"
    votes = tally(ctx, samples)
    info: dict[str, Any] = {"samples": len(samples), "votes": votes.counts()}
    ctx.note("votes", samples=len(samples), counts=votes.counts(), share=votes.share)
    winner: Candidate | None
    if not samples:
        winner = None
    elif use_verifier:
        winner = pick_best(ctx, samples)
    elif cfg.selector == "judge" and len(votes.groups) > 1:
        try:
            winner, info["judge_choice"] = await _judge(ctx, cfg, votes)
        except BudgetExhausted:
            reason, winner = "budget", votes.winner
    else:
        winner = votes.winner or samples[0]
    return ctx.finish(winner, reason, **info)


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


def _settled(cfg: BestOfNConfig, votes: Votes, drawn: int) -> StopReason | None:
    """Why sampling may stop here without a verifier, or None to go on."""
    if drawn < cfg.min_samples:
        return None
    if votes.share >= cfg.agreement:
        return "consensus"
    if votes.top_votes - votes.runner_up_votes > cfg.n - drawn:
        return "majority"
    return None


async def _judge(ctx: Context, cfg: BestOfNConfig,
                 votes: Votes) -> tuple[Candidate | None, int | None]:
    """One sample per distinct answer, most-voted first, for the model to choose among; the
    winner and the 1-based choice the judge made (None: it named none, the vote wins)."""
    shown = [group.members[0] for group in votes.groups]
    [reply] = await ctx.generate("best_of_n/judge", max_tokens=cfg.judge_max_tokens,
                                 temperature=0.0, step="judge", candidates=shown)
    choice = parse_choice(reply.text, len(shown))
    named = None if choice is None else choice + 1
    ctx.note("judge", choice=named, shown=[c.answer for c in shown])
    return (votes.winner if choice is None else shown[choice]), named
