"""What a model call is charged when the backend's count cannot be true. A server may lie (or
err) about usage: a count above what the call could cost, or below what its texts must hold,
is replaced by that bound and marked estimated, and a reply longer than its `max_tokens`
could be is cut, so that neither the budget nor the stored trace is at a server's mercy."""

from __future__ import annotations

import math
from collections.abc import Sequence

from ponder.core.budget import Reservation
from ponder.core.calibration import PromptBound, PromptCalibration, per_copy_prompt
from ponder.core.types import Completion, Message, Usage

# No tokenizer spells a token in more characters than this; a longer reply did not come from
# the call it claims to answer, and storing it whole (100 MB for max_tokens=512) is the harm.
MAX_CHARS_PER_TOKEN = 32
CHARS_SLACK = 256  # on top, for a reply's framing (a stop string, a stray newline)


def capped(completion: Completion, max_tokens: int) -> Completion:
    limit = max_tokens * MAX_CHARS_PER_TOKEN + CHARS_SLACK
    if len(completion.text) <= limit:
        return completion
    return completion.model_copy(update={"text": completion.text[:limit], "truncated": True})


def least_usage(messages: Sequence[Message], completions: Sequence[Completion],
                 reservation: Reservation) -> Usage:
    """The fewest tokens the texts of a call can have cost: one prompt copy and each distinct
    reply (greedy copies of one reply are charged once), at `MAX_CHARS_PER_TOKEN` characters
    a token after the slack `capped` allows too. A weak floor, but one no honest count falls
    below, and "0 tokens" for a page of text does."""
    def least(chars: int) -> int:
        return math.ceil(max(0, chars - CHARS_SLACK) / MAX_CHARS_PER_TOKEN)

    prompt = least(sum(len(m.content) for m in messages))
    completion = sum(min(reservation.max_tokens, least(len(text)))
                     for text in {c.text for c in completions})
    return Usage(prompt_tokens=prompt,
                 completion_tokens=min(completion, reservation.n * reservation.max_tokens))


def checked_usage(usage: Usage, reservation: Reservation, least: Usage) -> tuple[Usage, str | None]:
    """The usage to charge: what the backend reported, unless it is negative or more than
    the call could have cost (then the call's upper bound) or less than its texts must have
    cost (then that floor, field by field); marked estimated, with why."""
    fields = (usage.prompt_tokens, usage.completion_tokens)
    reported = f"the backend reported {fields[0]} prompt + {fields[1]} completion tokens"
    floor = Usage(prompt_tokens=max(fields[0], least.prompt_tokens),
                  completion_tokens=max(fields[1], least.completion_tokens), estimated=True)
    bound = reserved_usage(reservation)
    if min(fields) < 0 or usage.total_tokens > reservation.tokens:
        return bound, (f"{reported}; the call could cost at most {reservation.tokens}, "
                       f"which is charged")
    if floor.total_tokens == usage.total_tokens:
        return usage, None
    need = (f"its texts need at least {least.prompt_tokens} + {least.completion_tokens} (a "
            f"token is at most {MAX_CHARS_PER_TOKEN} characters)")
    if floor.total_tokens > reservation.tokens:  # the reservation is the most ever charged
        return bound, f"{reported}; {need}, so the call's bound, {reservation.tokens}, is charged"
    return floor, (f"{reported}; {need}, so {floor.prompt_tokens} + "
                   f"{floor.completion_tokens} are charged")


def reserved_usage(reservation: Reservation) -> Usage:
    """The most a call may be charged: its whole reservation, marked estimated."""
    most_completion = min(reservation.tokens, reservation.n * reservation.max_tokens)
    return Usage(prompt_tokens=reservation.tokens - most_completion,
                 completion_tokens=most_completion, estimated=True)


def charged(messages: Sequence[Message], completions: Sequence[Completion],
            reservation: Reservation, prompt: PromptBound,
            calibration: PromptCalibration) -> tuple[Usage, str | None]:
    """What a finished call is charged (`checked_usage`), and why not what was reported.

    `prompt` is the bound reserved for each of the reservation's prompt copies. Where that
    bound was learned (a tokenizer's count, a calibration) rather than the byte bound, a
    reported prompt above it is charged as a lying server's is, at the
    reservation: the charge stays within what was reserved, and `calibration` widens. Every
    reply teaches `calibration` its prompt count, where the count was trusted."""
    reported = sum((c.usage for c in completions), Usage())
    copies = reservation.prompt_copies
    usage, doubt = checked_usage(reported, reservation,
                                 least_usage(messages, completions, reservation))
    one_copy = per_copy_prompt([c.usage.prompt_tokens for c in completions], copies)
    trusted = doubt is None and not reported.estimated
    if calibration.observe(prompt, one_copy, trusted=trusted) \
            and reported.prompt_tokens > prompt.tokens * copies:
        by = "the tokenizer's count" if prompt.source == "tokenizer" else \
            "the calibrated bound"
        why = (f"the backend reported {reported.prompt_tokens} prompt tokens, above "
               f"{by} of {prompt.tokens} reserved for each of {copies} prompt copies, so the "
               f"call's bound, {reservation.tokens}, is charged")
        return reserved_usage(reservation), why if doubt is None else f"{doubt}; {why}"
    return usage, doubt
