"""A sampling strategy's samples, recorded in its result (`SamplingInfo.pool`, one
`PoolRecord` each) so that other choices over the same samples (a smaller `n`, another
selector) can be computed later without a model call: the "one pool, many points" way
search-and-learn and its_hub draw their curves, and what `ponder bench` does for a sweep.
"""

from __future__ import annotations

from collections.abc import Sequence

from ponder.core.answers import answer_key
from ponder.core.types import Candidate, PoolRecord


def pool_samples(records: Sequence[PoolRecord]) -> list[Candidate]:
    """The recorded samples as candidates again (without their texts), for the vote."""
    return [Candidate(text="", answer=r.answer, confidence=r.confidence) for r in records]


class PlainCanonical:
    """The grouping a strategy with no verifier votes under (`Context.canonical` then), for
    re-voting recorded samples outside a run: code by its syntax tree on a coding problem
    (`code`), else answers by value."""

    def __init__(self, *, code: bool = False) -> None:
        self.code = code

    def canonical(self, answer: str) -> str | None:
        return answer_key(answer, code=self.code)
