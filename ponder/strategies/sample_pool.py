"""A sampling strategy's samples, recorded in its result so that other choices over the same
samples (a smaller `n`, another selector) can be computed later without a model call: the
"one pool, many points" way search-and-learn and its_hub draw their curves, and what
`ponder bench` does for a sweep.

A record is what choosing needs and nothing more: the sample's answer, what it cost, and its
confidence summary.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ponder.core.answers import canonical_answer
from ponder.core.types import Candidate, Confidence


def pool_record(sample: Candidate) -> dict[str, Any]:
    """One sample as `info["pool"]` keeps it. `tokens` is all its call charged for it (its own
    prompt copy included where the backend charged one per sample), so the first k records'
    tokens are what a call for k samples would have cost."""
    conf = sample.confidence
    return {"answer": sample.answer, "tokens": sample.usage.total_tokens,
            "confidence": None if conf is None else conf.model_dump()}


def pool_samples(records: Sequence[Mapping[str, Any]]) -> list[Candidate]:
    """The recorded samples as candidates again (without their texts), for the vote."""
    return [Candidate(text="", answer=str(r.get("answer") or ""),
                      confidence=None if r.get("confidence") is None
                      else Confidence.model_validate(r["confidence"]))
            for r in records]


class PlainCanonical:
    """The grouping a strategy with no verifier votes under (`Context.canonical` then), for
    re-voting recorded samples outside a run."""

    def canonical(self, answer: str) -> str | None:
        return canonical_answer(answer)
