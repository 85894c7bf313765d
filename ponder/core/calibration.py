"""Prompt bounds that learn: what a call reserves for its prompt before it is made.

The byte bound (`prompt_upper_bound`) holds for any byte-level BPE tokenizer, but for English
it is three to four times the real count, and a small budget that must reserve it cannot pay
for a call. So, in order of preference:

1. the backend's tokenizer (vLLM's engine, `/tokenize` on vLLM and llama.cpp servers, the
   embedded runtime) counts the prompt exactly, when the Context asks it;
2. elsewhere (OpenAI's API, a server without `/tokenize`), the `prompt_tokens` servers reported
   for earlier calls of the same backend, template and message count calibrate a ratio to the
   byte bound: the bound is the largest ratio seen, times a margin that shrinks from 1.5 toward
   1.05 as replies agree, and never above the byte bound;
3. the byte bound: the first call of a run for each (backend, template), a prompt far outside
   the sizes seen, and a while after the calibration broke.

Every reply is checked against the bound that was reserved for it: a prompt count above it is
charged as a lying server's is (the call's whole reservation, marked estimated; see
`ponder.core.charging`), and widens that calibration (the byte bound again for a few calls,
then a wider margin). So no count a server reports can push a call's charge past what was
reserved, and the budget is never exceeded.

One `PromptCalibration` belongs to whoever owns the backend for a run (a `Session`, a
`Solver`), shared by the contexts of all its problems; none is global. It also keeps how long
the run's replies ran (`ReplyLengths`): under a total budget a sample is cut no shorter than
replies to the same template have needed (`BudgetMeter.reserve`).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from ponder.core.tokens import prompt_upper_bound
from ponder.core.types import Completion, Message

# Calls of one backend (its label: the model, hence the tokenizer), rendered from one template
# (None: messages a strategy built itself) with one number of messages (so the chat template's
# per-message tokens are the same share of each prompt).
CalibrationKey = tuple[str, str | None, int]

BoundSource = Literal["bytes", "tokenizer", "calibration"]

# The margin over the largest ratio seen: FIRST_MARGIN after one reply, then shrinking as
# FLOOR_MARGIN + (FIRST_MARGIN - FLOOR_MARGIN) / replies. The ratio is the largest seen, not a
# mean, so the margin need only cover a prompt denser than every one before it. Tokens per
# byte vary with the text alone (GSM8K on one template: 16% from least to most dense on the
# fake server, no trend with length), so a floor of 1.1 would leave one call in twenty
# reserving over 1.25x its prompt; at 1.05, a dozen replies in, a break is rare and safe.
FIRST_MARGIN = 1.5
FLOOR_MARGIN = 1.05
# Each break widens the margin by this much for good (the spread was larger than believed),
# on top of the breaking reply's ratio, and pays the byte bound until this many replies have
# come back since.
WIDEN = 1.1
REPLIES_AFTER_BREAK = 3
# A prompt more than this many times longer or shorter (by the byte bound) than any the
# calibration saw pays the byte bound: the chat template's fixed tokens are a different share
# of it, so the ratio seen need not hold.
SIZE_RANGE = 2.0


@dataclass(frozen=True)
class PromptBound:
    """What a call reserves for each copy of its prompt (`tokens`), how that was found, and
    the byte bound it is never above (`bytes_bound`)."""

    tokens: int
    source: BoundSource
    key: CalibrationKey
    bytes_bound: int
    # The calibration's breaks when this bound was made: calls in flight together all hold
    # the bound one bad belief made, and their replies are one break, not many.
    breaks: int = 0

    def traced(self) -> dict[str, dict[str, int | str]]:
        """The trace event's note of a learned bound (the byte bound, a rule, goes unsaid)."""
        return {"prompt_bound": {"tokens": self.tokens, "by": self.source}} \
            if self.learned else {}

    @property
    def learned(self) -> bool:
        """Below the byte bound: a reply's count above it breaks no law of tokenizers, only
        what this bound believed, so the reply is checked against it."""
        return self.tokens < self.bytes_bound


@dataclass
class _Evidence:
    """Replies seen for one key: how many since the last break, the largest ratio of reported
    tokens to the byte bound, the range of byte bounds seen, and the breaks so far."""

    replies: int = 0
    ratio: float = 0.0
    smallest: int = 0
    largest: int = 0
    breaks: int = 0
    # A reply counted more than the backend's own tokenizer said: its counts are not asked for
    # this key again (each such reply is charged its whole reservation).
    tokenizer_broke: bool = False

    def add(self, ratio: float, size: int, *, vouches: bool) -> None:
        self.smallest = size if not self.smallest else min(self.smallest, size)
        self.largest = max(self.largest, size)
        self.ratio = max(self.ratio, ratio)
        self.replies += vouches

    @property
    def margin(self) -> float:
        replies = max(1, self.replies - (REPLIES_AFTER_BREAK - 1 if self.breaks else 0))
        return (FLOOR_MARGIN + (FIRST_MARGIN - FLOOR_MARGIN) / replies) * WIDEN ** self.breaks

    def estimate(self, size: int) -> int | None:
        """The calibrated bound for a prompt whose byte bound is `size`; None while the
        evidence cannot vouch for it."""
        needed = REPLIES_AFTER_BREAK if self.breaks else 1
        if self.replies < needed or not self.smallest <= size * SIZE_RANGE \
                or size > self.largest * SIZE_RANGE:
            return None
        return math.ceil(self.ratio * self.margin * size)


# What a sample needs is the length this share of the replies to its template stayed within
# (a cut at it stops one reply in ten short), from the last REPLIES_KEPT; under ten replies
# that is the longest.
REPLY_QUANTILE = 0.9
REPLIES_KEPT = 256
ReplyKey = tuple[str, str | None]  # backend label, template (or step)


@dataclass
class ReplyLengths:
    """How many completion tokens a run's replies took, per backend and template. A reply
    cut short counts as long as the call asked for (`max_tokens`): it may have needed it."""

    _seen: dict[ReplyKey, deque[int]] = field(default_factory=dict)

    def observe(self, key: ReplyKey, completions: Sequence[Completion], max_tokens: int) -> None:
        seen = self._seen.setdefault(key, deque(maxlen=REPLIES_KEPT))
        for completion in completions:
            cut = completion.finish_reason == "length" or completion.truncated
            seen.append(max_tokens if cut else completion.usage.completion_tokens)

    def needed(self, key: ReplyKey) -> int | None:
        """The completion tokens a sample of `key` needs (None: no reply yet)."""
        seen = self._seen.get(key)
        if not seen:
            return None
        ordered = sorted(seen)
        return ordered[min(len(ordered) - 1, math.ceil(REPLY_QUANTILE * len(ordered)) - 1)]


@dataclass
class PromptCalibration:
    """The prompt bounds of one run's calls (see the module's docstring). Owned by whoever
    owns the backend for the run and shared by every problem's `Context`; not thread-safe, as
    a run's calls share one event loop, and nothing awaits between reading and updating it."""

    _evidence: dict[CalibrationKey, _Evidence] = field(default_factory=dict)
    replies: ReplyLengths = field(default_factory=ReplyLengths)

    async def bound(self, key: CalibrationKey, messages: Sequence[Message], *,
                    count: Callable[[], Awaitable[int | None]] | None = None) -> PromptBound:
        """The bound a call with `messages` reserves per prompt copy. `count` asks the
        backend's tokenizer (None: not worth a round trip); its answer, where it gives one,
        is the bound, never above the byte bound."""
        size = prompt_upper_bound(messages)
        evidence = self._evidence.get(key)
        if count is not None and not (evidence is not None and evidence.tokenizer_broke) \
                and (exact := await count()) is not None and exact >= 0:
            return PromptBound(min(size, exact), "tokenizer", key, size)
        evidence = self._evidence.get(key)  # another call may have made it while counting
        estimate = None if evidence is None else evidence.estimate(size)
        if evidence is None or estimate is None or estimate >= size:
            return PromptBound(size, "bytes", key, size)
        return PromptBound(max(1, estimate), "calibration", key, size, evidence.breaks)

    def observe(self, bound: PromptBound, reported: int, *, trusted: bool) -> bool:
        """Learn from a reply's prompt count (one copy's). Returns whether it broke `bound`
        (more than was reserved): then the calibration widens. An untrusted count (one the
        charging rejected, or estimated) is learned only where it widens: a server's word
        may make the bound more careful, never less."""
        evidence = self._evidence.setdefault(bound.key, _Evidence())
        trusted = trusted and reported > 0  # no prompt is free: 0 is a count left out
        ratio = reported / bound.bytes_bound
        broke = bound.learned and reported > bound.tokens
        if broke and bound.source == "tokenizer":
            evidence.tokenizer_broke = True
        elif broke and bound.breaks == evidence.breaks:
            evidence.breaks += 1
            evidence.replies = 0
        if trusted or ratio > evidence.ratio:
            evidence.add(ratio, bound.bytes_bound, vouches=trusted and not broke)
        return broke

    def describe(self, key: CalibrationKey) -> dict[str, float | int] | None:
        """What the calibration knows for `key`, for a benchmark or a debugging session."""
        evidence = self._evidence.get(key)
        if evidence is None:
            return None
        return {"replies": evidence.replies, "ratio": round(evidence.ratio, 4),
                "margin": round(evidence.margin, 4), "breaks": evidence.breaks}


def per_copy_prompt(prompts: Sequence[int], copies: int) -> int:
    """One prompt copy's count from the completions' reported prompt tokens: the sum where
    the call charged the prompt once, else the largest (each request of a call that charges a
    copy per sample reports its own, and greedy copies carry none). A backend that splits one
    count over its completions reads low, so the next bound may be too tight: the reply that
    shows it breaks the calibration, which the charging makes safe."""
    return sum(prompts) if copies <= 1 else max(prompts, default=0)
