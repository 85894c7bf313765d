"""`best_of_n`: sample N answers in one request and keep the best; self-consistency voting when
there is nothing to judge them by."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ponder.context import Context
from ponder.errors import BudgetExhausted
from ponder.replies import parse_choice
from ponder.strategies.outcome import Votes, tally
from ponder.strategies.sampling import (
    SamplingConfig,
    choose,
    sample_until_settled,
    vote_info,
)
from ponder.types import Candidate, Outcome


class BestOfNConfig(SamplingConfig):
    temperature: float = Field(default=0.7, ge=0.0, le=2.0, description="sampling temperature")
    selector: Literal["auto", "vote", "judge"] = Field(
        default="auto",
        description="auto: verifier score if there is a verifier, else vote; vote: majority of "
                    "canonical answers; judge: the model picks among the distinct answers")
    judge_max_tokens: int = Field(default=256, gt=0, description="completion tokens for the judge")


async def best_of_n(ctx: Context, cfg: BestOfNConfig) -> Outcome:
    """Sample N answers with one `n=N` request (adaptive: in batches) and pick a winner.

    Winner (`selector`): with a verifier (`auto`), the first sample it passes, else the highest
    score; without one (or `vote`), the answer most samples agree on, compared by
    `ctx.canonical` (so `0.50` and `1/2` are one vote); with `judge`, the model picks among
    one sample per distinct answer (`best_of_n/judge.j2`), falling back to the vote when its
    reply names no candidate.

    Adaptive rule (`adaptive=True`, see `sampling.sample_until_settled`): draw `min_samples`
    first, then `batch_size` at a time up to `n`. Stop as soon as the verifier passes a sample
    (`verified`); without a verifier (or with `selector` vote/judge) also stop when the top
    answer holds at least `agreement` of the votes (`consensus`), or leads the runner-up by
    more votes than samples remain, so the rest could not change the winner (`majority`).
    With defaults (n=5, min 3, 0.7) three agreeing samples end the run; 2 of 3 does not,
    since two more could overturn it.

    `info`: `samples` (how many were drawn), `votes` (canonical answer → votes),
    `vote_answer` (the vote's winner: with gold as the verifier the result is pass@k, this is
    the answer without it), and with `selector="judge"` `judge_choice` (the 1-based
    candidate the judge named, or None).
    """
    use_verifier = cfg.selector == "auto" and ctx.verifier is not None

    async def draw(k: int) -> list[Candidate]:
        replies = await ctx.generate("best_of_n/generate", n=k, max_tokens=cfg.max_tokens,
                                     temperature=cfg.temperature, step="sample")
        return ctx.candidates(replies, source="sample")

    samples, reason = await sample_until_settled(ctx, cfg, draw, use_verifier=use_verifier)
    votes = tally(ctx, samples)
    info = vote_info(ctx, samples, votes)
    winner = choose(ctx, samples, votes, use_verifier)
    if cfg.selector == "judge" and not use_verifier and len(votes.groups) > 1:
        try:
            winner, info["judge_choice"] = await _judge(ctx, cfg, votes)
        except BudgetExhausted:
            reason = "budget"
    return ctx.finish(winner, reason, **info)


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
