"""Drawing samples until they settle, and picking among them: the loop `best_of_n` and
`program` share, so that "adaptive", "consensus" and "the vote" mean one thing in both.

A strategy gives `sample_until_settled` a `draw(k)` that makes k candidates (one `n=k`
request, then whatever the strategy does with each reply: extract an answer, run a program);
this module decides how many to draw, when to stop, and which candidate wins: by the verifier,
by the vote, or by the confidence-weighted vote (`confidence_vote`).
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import Field

from ponder.core.confidence import Metric, score, weight
from ponder.core.errors import BudgetExhausted
from ponder.core.types import Behaviour, Candidate, PoolRecord, SamplingInfo, StopReason
from ponder.strategies.context import Context
from ponder.strategies.spec import StrategyConfig
from ponder.strategies.voting import Canonicalizer, Votes, pick_best, tally

Draw = Callable[[int], Awaitable[list[Candidate]]]
# Why sampling may stop after these samples (None: go on), where the plain vote is not the rule.
Settle = Callable[[list[Candidate]], StopReason | None]


# The most samples one run draws: far past where a vote stops changing (curves flatten by
# 16-32 samples), and a ceiling for a request to `ponder serve`, whose budget is the finer bound.
MAX_SAMPLES = 256


class SamplingConfig(StrategyConfig):
    """What every sampling strategy has: how many samples, and the adaptive stopping rule."""

    samples_field: ClassVar[str | None] = "n"

    n: int = Field(default=5, ge=1, le=MAX_SAMPLES, description="samples, at most")
    adaptive: bool = Field(default=False, description="sample in batches and stop early")
    min_samples: int = Field(default=3, ge=1, le=MAX_SAMPLES,
                             description="adaptive: samples before any stop")
    batch_size: int = Field(default=1, ge=1, le=MAX_SAMPLES,
                            description="adaptive: samples per later batch")
    agreement: float = Field(default=0.7, gt=0.0, le=1.0,
                             description="adaptive: top answer's vote share that ends sampling")


async def sample_until_settled(ctx: Context, cfg: SamplingConfig, draw: Draw, *,
                               use_verifier: bool, settle: Settle | None = None,
                               ) -> tuple[list[Candidate], StopReason]:
    """Draw `cfg.n` samples (adaptive: `min_samples`, then `batch_size` at a time) and say why
    drawing stopped.

    Stops as soon as the verifier passes a sample (`verified`, when `use_verifier`); when the
    budget gives fewer samples than asked, or none (`budget`); and with `adaptive` and no
    verifier in use, when `settle` says so: by default when the top answer holds at least
    `agreement` of the votes (`consensus`) or leads the runner-up by more votes than samples
    remain, so the rest could not change the winner (`majority`). Otherwise `done` after `n`.
    """
    if settle is None:
        def settle(drawn: list[Candidate]) -> StopReason | None:
            return settled_by_vote(cfg, tally(ctx, drawn), len(drawn))

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
            if cfg.adaptive and not use_verifier and (settled := settle(samples)):
                return samples, settled
    except BudgetExhausted:
        return samples, "budget"
    return samples, "done"


def settled_by_vote(cfg: SamplingConfig, votes: Votes, drawn: int, *,
                    weighted: bool = False) -> StopReason | None:
    """Why sampling may stop here without a verifier, or None to go on. A `weighted` vote
    (samples' votes are their confidence) settles by `consensus` only: no bound on what a
    remaining sample could weigh says when the rest could not change the winner."""
    if drawn < cfg.min_samples:
        return None
    if votes.share >= cfg.agreement:
        return "consensus"
    if not weighted and votes.top_votes - votes.runner_up_votes > cfg.n - drawn:
        return "majority"
    return None


@dataclass
class ConfidenceVote:
    """A confidence-weighted vote (DeepConf): the `votes` of the `kept` samples, each weighing
    its confidence, the `dropped` ones left out. With `unavailable` (why), the samples had no
    confidence to weigh and `votes` is the plain vote of all of them."""

    votes: Votes
    kept: list[int]
    dropped: list[int] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)  # per kept sample
    scores: list[float] = field(default_factory=list)  # per sample, in draw order
    measure: str | None = None
    unavailable: str | None = None

    def info(self, metric: Metric, keep: float) -> dict[str, Any] | str:
        """What a result's `info["confidence"]` says: the summary of the weighing, or
        "unavailable: <why>"."""
        if self.unavailable is not None:
            return f"unavailable: {self.unavailable}"
        return {"measure": self.measure, "metric": metric, "keep": keep,
                "kept": self.kept, "dropped": self.dropped, "scores": self.scores,
                "weights": {k: round(v, 6) for k, v in self.votes.counts().items()},
                "answer": self.votes.winner.answer if self.votes.winner else None}


def confidence_vote(ctx: Canonicalizer, samples: Sequence[Candidate], *, keep: float,
                    metric: Metric = "lowest_group") -> ConfidenceVote:
    """DeepConf's offline selection: rank samples by confidence (`metric`, higher surer; ties
    to the earlier), keep the most confident `keep` share (at least one), and vote among them,
    each weighing `ponder.core.confidence.weight`. Falls back to the plain vote of all samples when
    any lacks a confidence, or their measures differ (they would not be comparable)."""
    everyone = list(range(len(samples)))
    missing = [i for i, s in enumerate(samples) if s.confidence is None]
    measures = {s.confidence.measure for s in samples if s.confidence is not None}
    why = None
    if not samples:
        why = "no samples"
    elif missing:
        why = (f"the backend gave no token log-probabilities for {len(missing)} of "
               f"{len(samples)} samples")
    elif len(measures) > 1:
        why = "the samples' confidences mix top-k and sampled-token measures"
    if why is not None:
        return ConfidenceVote(votes=tally(ctx, samples), kept=everyone, unavailable=why)
    confidences = [s.confidence for s in samples if s.confidence is not None]
    scores = [score(c, metric) for c in confidences]
    ranked = sorted(everyone, key=lambda i: -scores[i])  # stable: ties keep draw order
    # A hair under the product, so that 0.5 of 4 keeps 2 despite float rounding.
    count = max(1, math.ceil(keep * len(samples) - 1e-9))
    kept, dropped = sorted(ranked[:count]), sorted(ranked[count:])
    weights = [weight(confidences[i], metric) for i in kept]
    return ConfidenceVote(votes=tally(ctx, [samples[i] for i in kept], weights), kept=kept,
                          dropped=dropped, weights=weights, scores=scores,
                          measure=next(iter(measures)))


def choose(ctx: Context, samples: list[Candidate], votes: Votes,
           use_verifier: bool) -> Candidate | None:
    """The winner: the best verdict when the verifier judged them, else the vote."""
    if not samples:
        return None
    if use_verifier:
        return pick_best(ctx, samples)
    return votes.winner or samples[0]


def vote_info(ctx: Context, samples: list[Candidate], votes: Votes,
              behaviours: Sequence[Behaviour | None] | None = None) -> SamplingInfo:
    """What every sampling strategy records, and notes in the trace: how many samples, the
    votes, one answer per distinct answer (so a caller can show the runners-up, as `ponder
    serve` does for `n`), the vote's own answer and its share of the votes (`agreement`), and
    `pool`: every sample in draw order, from which `ponder bench` computes a smaller `n` (or
    another selector) without new calls, with each sample's `behaviour` on a coding problem's
    inputs where it was run (`behaviours`, one per sample). Its fields go into `info` as they are
    (`ctx.finish(winner, reason, **vote_info(...).model_dump())`)."""
    ctx.note("votes", samples=len(samples), counts=votes.counts(), share=votes.share)
    return SamplingInfo(samples=len(samples), votes=votes.counts(),
                        answers={g.key: g.members[0].answer for g in votes.groups},
                        vote_answer=votes.winner.answer if votes.winner else None,
                        agreement=round(votes.share, 4),
                        pool=[PoolRecord.of(s, None if behaviours is None else behaviours[i])
                              for i, s in enumerate(samples)])


def _batch(cfg: SamplingConfig, drawn: int) -> int:
    if not cfg.adaptive:
        return cfg.n - drawn
    first = drawn == 0
    return min(cfg.min_samples if first else cfg.batch_size, cfg.n - drawn)


async def _any_passes(ctx: Context, batch: list[Candidate]) -> bool:
    for cand in batch:
        if cand.answer_given and not cand.answer:
            continue  # a program that printed nothing: there is nothing to judge
        verdict = await ctx.verify(cand)
        if verdict is not None and verdict.passed:
            return True
    return False
