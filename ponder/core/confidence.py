"""How sure a model was of a reply, from its token log-probabilities: DeepConf's measures (Fu
et al. 2025, "Deep Think with Confidence"), computed here once for every backend.

A backend turns what its server returned into one `TokenLogprobs` per generated token and
calls `summarize`; strategies read the `Confidence` it makes through `score` and `weight`.

>>> summarize([TokenLogprobs(-0.1, (-0.1, -3.0)), TokenLogprobs(-2.0, (-0.2, -2.0))], window=1)
Confidence(measure='top_k', tokens=2, window=1, mean_logprob=-1.05, mean=1.325, lowest_group=1.1)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from ponder.core.types import Confidence

# Top-k candidates asked for per token. DeepConf's token confidence needs at least two (with
# one, minus the top log-prob is *low* when the model is sure); five is cheap on every server.
DEFAULT_TOP_LOGPROBS = 5
# Tokens per group. DeepConf uses 2048 for traces of tens of thousands of tokens; ponder's
# replies run to hundreds, and a group should still be a stretch of the reply, not all of it.
DEFAULT_WINDOW = 32
# OpenAI's stand-in for a log-prob of minus infinity; JSON has no -inf, and an engine's -inf
# (a token masked out) would otherwise make a mean infinite.
LOGPROB_FLOOR = -9999.0

Metric = Literal["lowest_group", "mean"]
METRICS: tuple[Metric, ...] = ("lowest_group", "mean")


@dataclass(frozen=True)
class TokenLogprobs:
    """One generated token: its own log-prob, and the log-probs of the most likely tokens at
    its position (empty when the server gave only the sampled token's)."""

    sampled: float
    top: Sequence[float] = ()


def summarize(tokens: Sequence[TokenLogprobs], *,
              window: int = DEFAULT_WINDOW) -> Confidence | None:
    """The confidence summary of a reply's tokens; None for a reply with none.

    Measure `top_k` when every token came with at least two top candidates (DeepConf's token
    confidence, minus their mean log-prob), else `sampled` (the sampled token's log-prob),
    so that one reply is never scored half one way and half the other. `lowest_group` is
    the lowest mean over `window` consecutive tokens; a reply shorter than `window` is one
    group.
    """
    if window < 1:
        raise ValueError(f"window must be at least 1, got {window}")
    clean = [TokenLogprobs(_finite(t.sampled), tuple(_finite(v) for v in t.top))
             for t in tokens if not math.isnan(t.sampled)]
    if not clean:
        return None
    top_k = all(len(t.top) >= 2 for t in clean)
    values = [-math.fsum(t.top) / len(t.top) if top_k else t.sampled for t in clean]
    return Confidence(
        measure="top_k" if top_k else "sampled",
        tokens=len(clean),
        window=window,
        mean_logprob=_rounded(min(0.0, math.fsum(t.sampled for t in clean) / len(clean))),
        mean=_rounded(math.fsum(values) / len(values)),
        lowest_group=_rounded(min(group_means(values, window))),
    )


def group_means(values: Sequence[float], window: int) -> list[float]:
    """The mean of every `window` consecutive values (sliding by one); the mean of all of
    them when there are fewer than `window`."""
    if not values:
        return []
    if len(values) <= window:
        return [math.fsum(values) / len(values)]
    sums = [0.0]
    for v in values:
        sums.append(sums[-1] + v)
    return [(sums[i + window] - sums[i]) / window for i in range(len(values) - window + 1)]


def score(confidence: Confidence, metric: Metric = "lowest_group") -> float:
    """What samples are ranked by: the chosen summary, higher surer."""
    return confidence.lowest_group if metric == "lowest_group" else confidence.mean


def weight(confidence: Confidence, metric: Metric = "lowest_group") -> float:
    """A sample's vote: DeepConf weighs by the confidence itself, which under `top_k` is
    non-negative; a `sampled` score is a mean log-prob (at most 0), so its vote is the
    probability it stands for (the geometric mean of the tokens' probabilities)."""
    value = score(confidence, metric)
    return max(value, 0.0) if confidence.measure == "top_k" else math.exp(min(value, 0.0))


def _finite(value: float) -> float:
    """A log-prob as it can be: in [LOGPROB_FLOOR, 0]. A server's NaN, infinity (Python's
    JSON reads `Infinity`) or positive value would make a summary non-finite, which pydantic
    writes as null and a resumed run then cannot read back."""
    return min(0.0, max(float(value), LOGPROB_FLOOR)) if not math.isnan(value) else LOGPROB_FLOOR


def _rounded(value: float) -> float:
    # Traces keep the summary; six places say all a ranking needs, and read well.
    return round(value, 6)
