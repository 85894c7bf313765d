"""Choosing among candidate programs by what they do: cluster them by their outputs on the
problem's inputs, and rank the clusters.

The signals and their trust, in order (CodeT, Chen et al. 2022; MBR-exec, Shi et al. 2022):

1. the examples the problem states (its `tests_public`, or those read from its prompt): a
   cluster that passes more of them ranks higher, whatever else holds, so no model-written
   test can flip a candidate that passes the prompt's own examples (Reflexion found 16% of
   self-written tests wrong);
2. agreement, CodeT's dual score: the cluster's size times one plus the model-written tests
   it passes, each weighed `model_weight` (below 1: trusted less than the prompt's);
3. fewer inputs it raised or hung on; then the earliest drawn.

A cluster that raised or hung on every input ranks below every cluster that returned a value
and passes as many stated examples: programs that do not compile all share one behaviour,
and their number says nothing.

The same ranking serves a strategy (`best_of_n`, `auto`) and `ponder bench`, which re-chooses
from the first k of a recorded pool: both read only `Behaviour`s, so a pool ranks offline.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from pydantic import BaseModel, Field, computed_field

from ponder.code.examples import Example, matches
from ponder.code.probe import CallResult
from ponder.core.types import Behaviour

# What a model-written test counts for beside one more member of a cluster: CodeT weighs them
# alike; ours are the 0.5B's own, wrong often enough to count for less.
MODEL_WEIGHT = 0.5

# The examples the problem itself states: whoever wrote them, the model did not.
STATED = frozenset({"public", "prompt", "derived"})


class Cluster(BaseModel):
    """Candidates (by their place in the list ranked) that behaved alike, and its score."""

    members: list[int]
    key: str
    errors: int = 0
    public: list[bool] = Field(default_factory=list, description="each stated example: passed")
    model: list[bool] = Field(default_factory=list, description="each model-written test: passed")
    score: float = Field(default=0.0, description="CodeT's: size × (1 + weighed model passes)")

    # Counts read from the marks, and kept in its dump (the trace's `clusters` note).
    @computed_field  # type: ignore[prop-decorator]
    @property
    def public_passed(self) -> int:
        return sum(self.public)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def public_total(self) -> int:
        return len(self.public)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def model_passed(self) -> int:
        return sum(self.model)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def model_total(self) -> int:
        return len(self.model)


def passed(result: CallResult, example: Example) -> bool:
    """Whether a call's result satisfies its example: no error, and the value expected (a
    check with no expected value passes when it raised nothing)."""
    if not result.ok:
        return False
    return example.expected is None or matches(result.value, example.expected)


def behaviour_of(results: Sequence[CallResult], examples: Sequence[Example]) -> Behaviour:
    """One candidate's `Behaviour` from its results on `examples`' calls, in the same order.
    The key covers every call's outcome (value, exception type, or timeout)."""
    if len(results) != len(examples):
        raise ValueError(f"{len(results)} results for {len(examples)} examples")
    signature = "\x1f".join(r.key() for r in results)
    key = hashlib.sha1(signature.encode()).hexdigest()[:16]
    return Behaviour(
        key=key,
        public=[passed(r, e) for r, e in zip(results, examples, strict=True)
                if e.origin in STATED],
        model=[passed(r, e) for r, e in zip(results, examples, strict=True)
               if e.origin not in STATED],
        errors=sum(1 for r in results if not r.ok))


def rank(behaviours: Sequence[Behaviour | None], *,
         model_weight: float = MODEL_WEIGHT) -> list[Cluster]:
    """The clusters of `behaviours`, best first (see the module's rules). A None (a candidate
    with no code to run) joins no cluster: it can win only when nothing ran."""
    groups: dict[str, list[int]] = {}
    for i, behaviour in enumerate(behaviours):
        if behaviour is not None:
            groups.setdefault(behaviour.key, []).append(i)
    clusters = []
    for key, members in groups.items():
        first = behaviours[members[0]]
        assert first is not None
        clusters.append(Cluster(
            members=members, key=key, errors=first.errors, public=first.public,
            model=first.model,
            score=round(len(members) * (1 + model_weight * first.model_passed), 6)))
    # A cluster that returned nothing on any input (every call raised or hung: programs that do
    # not compile share one such key) goes below any that returned a value, whatever its size.
    clusters.sort(key=lambda c: (-c.public_passed, _all_failed(c), -c.score, c.errors,
                                 c.members[0]))
    return clusters


def _all_failed(cluster: Cluster) -> bool:
    return cluster.errors > 0 and cluster.errors == len(cluster.public) + len(cluster.model)


def choose(behaviours: Sequence[Behaviour | None], *,
           model_weight: float = MODEL_WEIGHT) -> int | None:
    """The place of the candidate to answer with: the first drawn of the best cluster; None
    when no candidate ran."""
    clusters = rank(behaviours, model_weight=model_weight)
    return clusters[0].members[0] if clusters else None
