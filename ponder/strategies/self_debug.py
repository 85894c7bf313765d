"""Self-debugging (Chen et al. 2023) on a coding problem with no verifier: run the code on the
problem's own examples (and the model's tests), show the model what failed, take its rewrite
only if it does better. `self_refine` runs it on coding problems; `auto` debugs the best
cluster's program with it.

The trust rules: the feedback quotes only stated examples while any fails (a model-written
test, often wrong, is shown only once they all pass, and labelled as possibly wrong); a
rewrite that passes fewer stated examples than its parent never replaces it, and one that
passes no more stated examples and no more of the model's tests does not either.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ponder.code.examples import Example
from ponder.code.probe import CallResult
from ponder.core.errors import BudgetExhausted
from ponder.core.types import Behaviour, Candidate, StopReason
from ponder.strategies.code_checks import CodeChecks, failures, run_examples, settled
from ponder.strategies.context import Context


@dataclass
class Debugged:
    """The best version found, why debugging stopped, and each version's record."""

    best: Candidate
    behaviour: Behaviour | None
    reason: StopReason
    versions: list[dict[str, Any]] = field(default_factory=list)


def _standing(behaviour: Behaviour | None) -> tuple[int, int]:
    return (0, 0) if behaviour is None else (behaviour.public_passed, behaviour.model_passed)


async def debug(ctx: Context, start: Candidate, examples: list[Example], checks: CodeChecks, *,
                rounds: int, max_tokens: int, temperature: float = 0.0,
                ran: tuple[Behaviour | None, list[CallResult]] | None = None) -> Debugged:
    """Debug `start` for at most `rounds` rewrites. Stops when it is `settled`
    (`examples_pass`); when a rewrite fails to do better twice running (once, greedy) or
    there is nothing to show the model, as for a reply with no code (`no_improvement`);
    after `rounds` (`max_iters`); or when the budget ends (`budget`). `ran`: `start`'s
    behaviour and call results, where it was run already."""
    best = start
    behaviour, results = ran if ran is not None else \
        await run_examples(ctx, start, examples, checks)
    versions = [_record(start, behaviour)]
    reason: StopReason = "max_iters"
    misses = 0
    try:
        for attempt in range(1, rounds + 1):
            if settled(behaviour):
                reason = "examples_pass"
                break
            shown = failures(examples, results, stated_only=not all(
                behaviour.public if behaviour else []))
            if not shown:
                reason = "no_improvement"
                break
            [reply] = await ctx.generate("self_refine/debug", max_tokens=max_tokens,
                                         temperature=temperature, step="debug",
                                         solution=best.answer, failures=shown)
            rewrite = ctx.candidate(reply.text, source=f"debug {attempt}", usage=reply.usage)
            new_behaviour, new_results = await run_examples(ctx, rewrite, examples, checks)
            versions.append(_record(rewrite, new_behaviour))
            if _standing(new_behaviour) > _standing(behaviour):
                best, behaviour, results, misses = rewrite, new_behaviour, new_results, 0
                continue
            ctx.note("debug_rejected", attempt=attempt, parent=_standing(behaviour),
                     rewrite=_standing(new_behaviour))
            misses += 1
            # Greedy, the same prompt would bring the same rewrite: one miss ends it.
            if misses == (1 if temperature == 0 else 2):
                reason = "no_improvement"
                break
        else:
            if settled(behaviour):
                reason = "examples_pass"
    except BudgetExhausted:
        reason = "budget"
    return Debugged(best=best, behaviour=behaviour, reason=reason, versions=versions)


def _record(candidate: Candidate, behaviour: Behaviour | None) -> dict[str, Any]:
    return {"source": candidate.source,
            "public_passed": None if behaviour is None else behaviour.public_passed,
            "public_total": None if behaviour is None else len(behaviour.public),
            "model_passed": None if behaviour is None else behaviour.model_passed,
            "model_total": None if behaviour is None else len(behaviour.model)}
