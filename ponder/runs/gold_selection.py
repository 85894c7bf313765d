"""Saying when an oracle chose the answer. A verifier that reads a problem's gold (its answer or
tests) and picks among several candidates measures pass@k, not accuracy: the run is right when
any candidate was. Each such result row says so (its `Selection`: `selected_by`), with the
honest figure beside it (`vote_correct`: whether the strategy's own vote, what it would have
answered without the verifier, was right), and the run summary counts both.

Judged once per row by `label_selection`, which `runner.run_problem` calls after the strategy
returns, so `ponder solve`, `ponder.solve` and `ponder serve` rows all carry it. It costs no
model call with a gold verifier (a unit-test verifier runs the tests once more, when the vote's
answer was not judged already).
"""

from __future__ import annotations

import logging
import re
from typing import Any

from ponder.core.errors import BudgetExhausted
from ponder.core.types import Candidate, Problem, SamplingInfo, Selection
from ponder.strategies.context import Context
from ponder.verifiers.base import Verifier

log = logging.getLogger(__name__)

# The built-in verifiers that judge by the problem's gold: its answer, or its tests.
GOLD_VERIFIERS = frozenset({"math", "unit_tests", "unit_tests_full_feedback", "exact", "regex",
                            "contains"})


def reads_gold(problem: Problem, verifier: Verifier) -> bool:
    """Whether `verifier` judges by `problem`'s gold: a built-in gold verifier (`math`,
    `unit_tests`, `exact`, `regex`, `contains`), a combination with one among its parts, or
    the verifier the problem's own `verifier` field names (the problem's own check, which
    `VerifierChoice` loads from its fields)."""
    if verifier.name in GOLD_VERIFIERS:
        return True
    parts = getattr(verifier, "parts", None)  # all_of, any_of, weighted
    if isinstance(parts, list | tuple) and any(
            isinstance(part, Verifier) and reads_gold(problem, part) for part in parts):
        return True
    return problem.verifier is not None and verifier.name in _names_of(problem.verifier)


def _names_of(spec: str) -> set[str]:
    """The names a verifier loaded from `spec` may carry: the spec itself (a registered name),
    or its attribute (`file.py:check` → `check`), as given or in snake case (a class)."""
    attr = spec.rpartition(":")[2]
    return {spec, attr, re.sub(r"(?<!^)(?=[A-Z])", "_", attr).lower()}


async def label_selection(ctx: Context, verifier: Verifier | None, info: dict[str, Any], *,
                          verifier_picked: bool) -> None:
    """When the verifier chose among several candidates (`verifier_picked`: the strategy judged
    its answer, and its `info` holds a `SamplingInfo` of more than one sample), add its
    `Selection` to `info`: `selected_by` ("gold" for a verifier that reads the problem's gold,
    else "verifier:<name>") and `vote_correct`, the same verifier's verdict on the vote's
    answer (None when it could not be judged). Never raises: a verifier that fails here
    leaves `vote_correct` None."""
    sampled = SamplingInfo.of(info)
    if verifier is None or not verifier_picked or sampled is None or sampled.samples < 2:
        return
    gold = reads_gold(ctx.problem, verifier)
    selection = Selection(selected_by="gold" if gold else f"verifier:{verifier.name}",
                          vote_correct=await _vote_verdict(ctx, sampled.vote_answer))
    info.update(selection.model_dump())
    ctx.note("selection", selected_by=selection.selected_by, vote_answer=sampled.vote_answer,
             vote_correct=selection.vote_correct)


async def _vote_verdict(ctx: Context, answer: str | None) -> bool | None:
    """Whether the verifier passes the vote's `answer`, judged on the answer alone (a verdict
    already given to a candidate that was judged so is reused). Candidates with the same answer
    can be judged differently (a math verifier reads a prose reply's text too, which may hold
    another answer), so which of them happened to be judged must not decide. No answer is not
    right."""
    if not answer:
        return False
    alone = next((c.verdict for c in ctx.seen
                  if c.answer == answer and c.answer_given and c.verdict is not None), None)
    if alone is not None:
        return alone.passed
    candidate = Candidate(text=answer, answer=answer, source="vote", answer_given=True)
    try:
        verdict = await ctx.verify(candidate)
    except BudgetExhausted:
        return None
    except Exception:  # a user's verifier may fail in any way; the row stands without it
        log.debug("problem %s: judging the vote's answer failed", ctx.problem.id, exc_info=True)
        return None
    return None if verdict is None else verdict.passed
