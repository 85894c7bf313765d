"""`self_refine` (Madaan et al., 2023): draft, critique, rewrite, until nothing is left to fix."""

from __future__ import annotations

import itertools
from typing import Any

from pydantic import Field

from ponder.core.errors import BudgetExhausted
from ponder.core.replies import has_marker
from ponder.core.types import Candidate, Outcome, StopReason, Verdict
from ponder.strategies.base import StrategyConfig
from ponder.strategies.code_checks import CodeChecks, gather_examples
from ponder.strategies.context import Context
from ponder.strategies.self_debug import debug
from ponder.strategies.voting import pick_best, tally

# Rewrites of one draft: two calls each, with the critique and the whole draft in every prompt;
# most of the gain comes in the first few (Madaan et al. 2023): 20 is generous, and finite.
MAX_ITERS = 20


class SelfRefineConfig(CodeChecks, StrategyConfig):
    max_iters: int = Field(default=3, ge=0, le=MAX_ITERS,
                           description="rewrites after the first draft, at most")
    stop_marker: str = Field(default="NO ISSUES", min_length=1,
                             description="what the feedback says when nothing needs to change")
    feedback_max_tokens: int | None = Field(
        default=None, gt=0, description="completion tokens for a critique (default: max_tokens)")


async def self_refine(ctx: Context, cfg: SelfRefineConfig) -> Outcome:
    """Draft → feedback → refine, repeated.

    Stops at the first of: the verifier passes a version (`verified`); the feedback holds
    `stop_marker` (`no_improvement`); `max_iters` rewrites (`max_iters`); the budget runs out
    (`budget`). A failing verdict's feedback goes into both the critique and the rewrite, and
    overrides a critique that says nothing needs to change.

    The winner is the best version, not the last: with a verifier, the highest score; without
    one, a vote over the versions' answers in which the version the feedback approved counts
    twice and ties go to the earlier version. A small model's critique often talks a right
    draft into a wrong rewrite, so an unverified change must win a vote to replace the draft.

    On a coding problem with no verifier it is self-debugging (`ponder.strategies.self_debug`,
    Chen et al. 2023): the draft runs on the problem's stated examples and `write_tests`
    tests the model writes; the feedback is the failing examples (call, expected value, what
    came back), never a hidden test; a rewrite that does no better than its parent never
    replaces it; it stops when the examples pass and the model's tests do not contradict
    them (`examples_pass`). Without any example to run, it critiques as below.

    `info`: `iterations` (rewrites made), `versions` (each version's source, answer and
    score), `approved` (the version the feedback approved, or None), `unverified_changes`
    (rewrites that changed the answer with no verifier to check them), `votes` (without a
    verifier: the weighted vote over the versions' answers).
    """
    versions: list[Candidate] = []
    approved: Candidate | None = None
    reason: StopReason = "done"
    try:
        [draft] = await ctx.generate("self_refine/generate", max_tokens=cfg.max_tokens,
                                     temperature=cfg.temperature, step="generate")
        current = ctx.candidate(draft.text, source="draft")
        if ctx.problem.is_code and ctx.verifier is None:
            examples = await gather_examples(ctx, cfg)
            if examples:
                debugged = await debug(ctx, current, examples, cfg, rounds=cfg.max_iters,
                                       max_tokens=cfg.max_tokens, temperature=cfg.temperature)
                return ctx.finish(debugged.best, debugged.reason,
                                  iterations=len(debugged.versions) - 1,
                                  versions=debugged.versions, debugging=True,
                                  probe_s=round(ctx.probe_s, 3))
        versions.append(current)
        for iteration in range(cfg.max_iters + 1):
            verdict = await ctx.verify(current)
            if verdict is not None and verdict.passed:
                reason = "verified"
                break
            if iteration == cfg.max_iters:
                reason = "max_iters"
                break
            feedback = await _critique(ctx, cfg, current, verdict)
            if has_marker(feedback, cfg.stop_marker) and verdict is None:
                approved = current
                reason = "no_improvement"
                break
            current = await _rewrite(ctx, cfg, current, feedback, verdict, iteration + 1)
            versions.append(current)
    except BudgetExhausted:
        reason = "budget"
    info: dict[str, Any] = {
        "iterations": max(0, len(versions) - 1),
        "versions": [{"source": v.source, "answer": v.answer,
                      "score": v.verdict.score if v.verdict is not None else None}
                     for v in versions],
        "approved": None if approved is None else approved.source,
    }
    changed = sum(1 for before, after in itertools.pairwise(versions)
                  if ctx.canonical(before.answer) != ctx.canonical(after.answer))
    if ctx.verifier is None:
        info["unverified_changes"] = changed
        weights = [2.0 if v is approved else 1.0 for v in versions]
        votes = tally(ctx, versions, weights)
        info["votes"] = votes.counts()
        winner = votes.winner or (versions[-1] if versions else None)
    else:
        winner = pick_best(ctx, versions)
    return ctx.finish(winner, reason, **info)


async def _critique(ctx: Context, cfg: SelfRefineConfig, current: Candidate,
                    verdict: Verdict | None) -> str:
    [reply] = await ctx.generate(
        "self_refine/feedback", max_tokens=cfg.feedback_max_tokens or cfg.max_tokens,
        temperature=cfg.temperature, step="feedback", solution=current.text,
        verifier_feedback=verdict.feedback if verdict is not None else None,
        stop_marker=cfg.stop_marker,
    )
    return reply.text


async def _rewrite(ctx: Context, cfg: SelfRefineConfig, current: Candidate, feedback: str,
                   verdict: Verdict | None, iteration: int) -> Candidate:
    [reply] = await ctx.generate(
        "self_refine/refine", max_tokens=cfg.max_tokens, temperature=cfg.temperature,
        step="refine", solution=current.text, feedback=feedback,
        verifier_feedback=verdict.feedback if verdict is not None else None,
    )
    refined = ctx.candidate(reply.text, source=f"refine {iteration}", usage=reply.usage)
    if ctx.verifier is None and ctx.canonical(refined.answer) != ctx.canonical(current.answer):
        ctx.note("unverified_change", before=current.answer, after=refined.answer)
    return refined

