"""`tree_search`: search over reasoning steps, each partial solution scored on the way: a beam
search here, or Monte Carlo tree search (`algorithm="mcts"`, in `ponder.strategies.mcts`)."""

from __future__ import annotations

from typing import Any

from ponder.core.errors import BudgetExhausted
from ponder.core.types import Candidate, Outcome, StopReason
from ponder.strategies.context import Context
from ponder.strategies.mcts import mcts
from ponder.strategies.steps import Node, TreeSearchConfig, expand, score
from ponder.strategies.voting import gather_within_budget, tally

__all__ = ["TreeSearchConfig", "tree_search"]  # the config lives with the parts both share


async def tree_search(ctx: Context, cfg: TreeSearchConfig) -> Outcome:
    """Beam search over steps, or Monte Carlo tree search with `algorithm="mcts"`.

    MCTS is described in `ponder.strategies.mcts.mcts`; the rest of this describes the beam.

    Each kept node gets `branching` children from ONE `n=k` request on its shared prefix
    (`tree_search/step.j2`, cut at `step_stop`); the last depth's prompt asks for the final
    answer. Every child is scored: by the verifier's `score_partial(problem, text)` where the
    verifier has one and it returns a number, else by the model rating progress 0-10
    (`tree_search/value.j2`). A child whose step holds `final_marker` or a `\\boxed{}` answer
    is a finished solution; with a verifier it is verified at once, and a pass ends the search
    (`verified`).

    The top `beam_width` children (finished or not; a finished one first among equal scores)
    are kept; finished ones leave the beam.
    The search ends when the beam is empty (`done`), at `max_depth` (`max_depth`), or when the
    budget runs out (`budget`). The answer is the highest-scoring finished solution (ties to
    the answer more finished solutions share), else the best pruned finished one, else the
    best partial one.

    `info`: `beam`, one entry per depth listing the nodes `kept` and `dropped` with their
    scores and whether each was finished.
    """
    if cfg.algorithm == "mcts":
        return await mcts(ctx, cfg)
    beam = [Node(id="root")]
    finished: list[tuple[Node, Candidate]] = []
    pruned_finished: list[Node] = []
    history: list[dict[str, Any]] = []
    reason: StopReason = "max_depth"
    try:
        for depth in range(1, cfg.max_depth + 1):
            last = depth == cfg.max_depth
            expanded, refused = await gather_within_budget(
                expand(ctx, cfg, node, last) for node in beam)
            children = [child for group in expanded if group for child in group]
            if not children:  # keep the beam we have: it is still the best partial work
                reason = "budget" if refused else "done"
                break
            _, unscored = await gather_within_budget(score(ctx, cfg, c) for c in children)
            # An unscored child (the budget refused its rating) ranks last, not out; among
            # equal scores a finished solution goes first, since it needs no further guessing.
            ranked = sorted(children, key=lambda c: (
                -(c.score if c.score is not None else -1.0), not c.final))
            kept, dropped = ranked[: cfg.beam_width], ranked[cfg.beam_width :]
            history.append(_record(ctx, depth, kept, dropped))
            pruned_finished.extend(n for n in dropped if n.final)
            beam = []
            for node in kept:
                if not node.final:
                    beam.append(node)
                    continue
                cand = ctx.candidate(node.text, source=f"node {node.id}")
                finished.append((node, cand))
                verdict = await ctx.verify(cand)
                if verdict is not None and verdict.passed:
                    return ctx.finish(cand, "verified", beam=history)
            if refused or unscored:
                reason = "budget"
                break
            if not beam:
                reason = "done"
                break
    except BudgetExhausted:
        reason = "budget"
    return ctx.finish(_choose(ctx, finished, pruned_finished, beam), reason, beam=history)


def _record(ctx: Context, depth: int, kept: list[Node], dropped: list[Node]) -> dict[str, Any]:
    entry = {
        "depth": depth,
        "kept": [{"id": n.id, "score": n.score, "final": n.final} for n in kept],
        "dropped": [{"id": n.id, "score": n.score, "final": n.final} for n in dropped],
    }
    ctx.note("beam", **entry)
    return entry


def _choose(ctx: Context, finished: list[tuple[Node, Candidate]], pruned_finished: list[Node],
            beam: list[Node]) -> Candidate | None:
    """The best kept finished solution; else the best finished one that was pruned (a whole
    solution beats a partial one); else the best partial solution."""
    if not finished and pruned_finished:
        best = max(pruned_finished, key=lambda n: n.score or 0.0)
        return ctx.candidate(best.text, source=f"node {best.id} (pruned)")
    if finished:
        votes = tally(ctx, [cand for _, cand in finished])
        _, cand = max(
            finished,  # max keeps the first of equals: the earlier node
            key=lambda pair: (pair[1].score, pair[0].score or 0.0,
                              votes.votes_for(ctx.canonical(pair[1].answer))),
        )
        return cand
    if beam:
        best = max(beam, key=lambda n: n.score or 0.0)
        return ctx.candidate(best.text, source=f"node {best.id} (unfinished)")
    return None
