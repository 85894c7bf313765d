"""How a strategy ends: grouping candidates by answer, picking the winner, and running
concurrent calls so that a budget refusal ends a round cleanly.

Shared by every built-in strategy so that "majority", "best verdict" and "out of budget" mean
the same thing in each of them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from ponder.core.errors import BudgetExhausted
from ponder.core.types import Candidate
from ponder.strategies.context import Context

T = TypeVar("T")


class Canonicalizer(Protocol):
    """What a vote needs of its context: the key under which equal answers group. A `Context`
    is one; so is `ponder.strategies.sample_pool.PlainCanonical`, for re-voting recorded
    samples offline."""

    def canonical(self, answer: str) -> str | None: ...


@dataclass
class Group:
    """Candidates whose answers share one canonical key, and the votes they carry."""

    key: str
    members: list[Candidate] = field(default_factory=list)
    votes: float = 0.0


@dataclass
class Votes:
    """A vote over candidates' canonical answers. Groups are largest first; equal groups keep
    the order in which their first member appeared. Candidates with no answer count towards
    `total` but vote for nothing."""

    groups: list[Group]
    total: float

    @property
    def top_votes(self) -> float:
        return self.groups[0].votes if self.groups else 0.0

    @property
    def runner_up_votes(self) -> float:
        return self.groups[1].votes if len(self.groups) > 1 else 0.0

    @property
    def share(self) -> float:
        """The top answer's share of all votes (0 when nothing voted)."""
        return self.top_votes / self.total if self.total else 0.0

    @property
    def winner(self) -> Candidate | None:
        return self.groups[0].members[0] if self.groups else None

    def votes_for(self, key: str | None) -> float:
        return next((g.votes for g in self.groups if g.key == key), 0.0)

    def counts(self) -> dict[str, float]:
        return {g.key: g.votes for g in self.groups}


def tally(ctx: Canonicalizer, candidates: Sequence[Candidate],
          weights: Sequence[float] | None = None) -> Votes:
    """Group `candidates` under `ctx.canonical` (so `0.5` and `1/2` vote together when the
    verifier knows math); `weights` lets one candidate carry more than one vote."""
    weights = weights if weights is not None else [1.0] * len(candidates)
    groups: dict[str, Group] = {}
    for cand, weight in zip(candidates, weights, strict=True):
        key = ctx.canonical(cand.answer)
        if key is None:
            continue
        group = groups.setdefault(key, Group(key))
        group.members.append(cand)
        group.votes += weight
    ordered = sorted(groups.values(), key=lambda g: -g.votes)  # stable: ties keep first-seen order
    return Votes(groups=ordered, total=float(sum(weights)))


def pick_best(ctx: Context, candidates: Sequence[Candidate],
              weights: Sequence[float] | None = None) -> Candidate | None:
    """The winner: the highest verdict score where a verifier judged any candidate (ties go to
    the answer with more votes, then to the earliest), else the majority answer."""
    if not candidates:
        return None
    votes = tally(ctx, candidates, weights)
    if not any(c.verdict is not None for c in candidates):
        return votes.winner or candidates[0]
    order = {id(c): i for i, c in enumerate(candidates)}
    return max(candidates, key=lambda c: (c.score, votes.votes_for(ctx.canonical(c.answer)),
                                          -order[id(c)]))


async def gather_within_budget(aws: Iterable[Awaitable[T]]) -> tuple[list[T | None], bool]:
    """Run `aws` concurrently and wait for all of them (none is left running behind the
    strategy's back). A call the budget refused gives None in its place; the flag says whether
    any was refused. Any other error is raised once all have finished."""
    results = await asyncio.gather(*aws, return_exceptions=True)
    out: list[T | None] = []
    refused = False
    for result in results:
        if isinstance(result, BudgetExhausted):
            refused = True
            out.append(None)
        elif isinstance(result, BaseException):
            raise result
        else:
            out.append(result)
    return out, refused
