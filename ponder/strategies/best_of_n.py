"""`best_of_n`: sample N answers in one request and keep the best; self-consistency voting when
there is nothing to judge them by, weighted by the model's own confidence if asked (DeepConf,
Fu et al. 2025)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from ponder.core.confidence import Metric
from ponder.core.errors import BudgetExhausted
from ponder.core.replies import parse_choice
from ponder.core.types import Behaviour, Candidate, Outcome, StopReason
from ponder.strategies.code_checks import CodeChecks, select_by_behaviour
from ponder.strategies.context import Context
from ponder.strategies.sampling import (
    ConfidenceVote,
    SamplingConfig,
    Settle,
    choose,
    confidence_vote,
    sample_until_settled,
    settled_by_vote,
    vote_info,
)
from ponder.strategies.voting import Votes, tally


class BestOfNConfig(CodeChecks, SamplingConfig):
    temperature: float = Field(default=0.7, ge=0.0, le=2.0, description="sampling temperature")
    selector: Literal["auto", "vote", "judge", "confidence", "behaviour"] = Field(
        default="auto",
        description="auto: verifier score if there is a verifier, else behaviour on a coding "
                    "problem, else vote; vote: majority of canonical answers; judge: the "
                    "model picks among the distinct answers; confidence: vote of the most "
                    "confident samples, weighted by confidence; behaviour (coding problems): "
                    "candidates clustered by their outputs on the problem's examples and the "
                    "model's tests")
    keep: float = Field(default=0.5, gt=0.0, le=1.0,
                        description="confidence: share of samples kept, most confident first")
    confidence_metric: Metric = Field(
        default="lowest_group",
        description="confidence: lowest_group (the reply's least sure stretch) or mean")
    judge_max_tokens: int = Field(default=256, gt=0, description="completion tokens for the judge")
    few_shot: bool = Field(default=False, description="worked examples in the prompt")


async def best_of_n(ctx: Context, cfg: BestOfNConfig) -> Outcome:
    """Sample N answers with one `n=N` request (adaptive: in batches) and pick a winner.

    Winner (`selector`): with a verifier (`auto`), the first sample it passes, else the highest
    score; without one (or `vote`), the answer most samples agree on, compared by
    `ctx.canonical` (so `0.50` and `1/2` are one vote); with `judge`, the model picks among
    one sample per distinct answer (`best_of_n/judge.j2`), falling back to the vote when its
    reply names no candidate.

    Confidence rule (`selector="confidence"`, DeepConf's offline mode; the verifier is not
    used): each sample's confidence comes from its token log-probabilities
    (`Completion.confidence`, see `ponder.core.confidence`); by default its `lowest_group`, the
    mean token confidence of its least sure stretch of tokens (`confidence_metric="mean"`:
    over the whole reply). The most confident `keep` share of samples is kept (at least one;
    ties to the earlier sample), and they vote, each weighing its confidence, which under
    the top-k measure is the confidence itself and under the sampled-token measure the
    probability its mean log-prob stands for. With keep=0.5 and n=5 the three surest vote.
    When any sample has no confidence (the backend returned no log-probabilities) it is the
    plain vote over all samples, and the result says so: `info["confidence"]` is
    "unavailable: <why>", and the trace has one `confidence_unavailable` note.

    Adaptive rule (`adaptive=True`, see `sampling.sample_until_settled`): draw `min_samples`
    first, then `batch_size` at a time up to `n`. Stop as soon as the verifier passes a sample
    (`verified`); without a verifier (or with `selector` vote/judge) also stop when the top
    answer holds at least `agreement` of the votes (`consensus`), or leads the runner-up by
    more votes than samples remain, so the rest could not change the winner (`majority`).
    With defaults (n=5, min 3, 0.7) three agreeing samples end the run; 2 of 3 does not,
    since two more could overturn it. With `selector="confidence"` the votes are the
    confidence-weighted votes of the kept samples so far (DeepConf's online stop), and only
    `consensus` stops early, as a sample yet to come could weigh any amount; without
    confidence the plain rule applies.

    Behaviour rule (a coding problem with no verifier in use, or `selector="behaviour"`;
    CodeT and MBR-exec): every distinct program runs once on the problem's stated examples
    and `write_tests` tests the model writes (one more call), the samples are clustered by
    their outputs, and the first drawn of the best cluster answers: most stated examples
    passed first, then cluster size × (1 + half the model's tests passed)
    (`ponder.code.behaviour`). No gold is used; without any input to run, the vote decides.

    `info`: the `SamplingInfo` (`samples`, how many were drawn; `votes`, canonical answer →
    votes, every sample one; `vote_answer`, the plain vote's winner: with gold as the verifier
    the result is pass@k, this is the answer without it; `answers`, `agreement`, `pool`), and
    its own: with `selector="judge"` `judge_choice` (the 1-based candidate the judge named, or
    None), and with `selector="confidence"` `confidence`: `measure` ("top_k" or "sampled"),
    `metric`, `keep`, `kept` and `dropped` (0-based sample numbers, in draw order), `scores`
    (each sample's metric), `weights` (canonical answer → summed weight of its kept samples)
    and `answer` (the weighted winner); or "unavailable: <why>"; with the behaviour rule,
    `behaviour`: `examples` (stated, written) and `clusters` (each one's size and tests
    passed, best first), and each pool record's `behaviour`.
    """
    use_verifier = cfg.selector == "auto" and ctx.verifier is not None
    by_confidence = cfg.selector == "confidence"
    # On a coding problem with nothing else to judge by, every sample's behaviour is found
    # and recorded (so that `ponder bench` re-chooses a pool by it), whatever the selector;
    # it picks the winner under `auto` and `behaviour`.
    checks_code = ctx.problem.is_code and (
        cfg.selector == "behaviour" or not use_verifier)
    by_behaviour = checks_code and cfg.selector in ("auto", "behaviour")

    async def draw(k: int) -> list[Candidate]:
        replies = await ctx.generate("best_of_n/generate", n=k, max_tokens=cfg.max_tokens,
                                     temperature=cfg.temperature, step="sample",
                                     confidence=by_confidence, few_shot=cfg.few_shot)
        return ctx.candidates(replies, source="sample")

    def settle_by_confidence(drawn: list[Candidate]) -> StopReason | None:
        weighed = confidence_vote(ctx, drawn, keep=cfg.keep, metric=cfg.confidence_metric)
        return settled_by_vote(cfg, weighed.votes, len(drawn),
                               weighted=weighed.unavailable is None)

    settle: Settle | None = settle_by_confidence if by_confidence else None
    samples, reason = await sample_until_settled(ctx, cfg, draw, use_verifier=use_verifier,
                                                 settle=settle)
    votes = tally(ctx, samples)
    extra: dict[str, Any] = {}
    winner = choose(ctx, samples, votes, use_verifier)
    behaviours: list[Behaviour | None] | None = None
    if checks_code and len(samples) > 1:
        try:
            picked, behaviours, extra["behaviour"] = await select_by_behaviour(ctx, cfg, samples)
            if by_behaviour and picked is not None:
                winner = picked
        except BudgetExhausted:
            reason = "budget"
    sampled = vote_info(ctx, samples, votes, behaviours)
    if by_confidence and samples:
        weighed = confidence_vote(ctx, samples, keep=cfg.keep, metric=cfg.confidence_metric)
        extra["confidence"] = weighed.info(cfg.confidence_metric, cfg.keep)
        _note(ctx, weighed, extra["confidence"])
        winner = weighed.votes.winner or winner
    if cfg.selector == "judge" and not use_verifier and len(votes.groups) > 1:
        try:
            winner, extra["judge_choice"] = await _judge(ctx, cfg, votes)
        except BudgetExhausted:
            reason = "budget"
    return ctx.finish(winner, reason, **sampled.model_dump(), **extra)


def _note(ctx: Context, weighed: ConfidenceVote, summary: object) -> None:
    if weighed.unavailable is not None:
        ctx.note("confidence_unavailable", reason=weighed.unavailable,
                 fallback="plain vote over all samples")
    else:
        ctx.note("confidence_vote", summary=summary)


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
