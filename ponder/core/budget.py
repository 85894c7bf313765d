"""Token, call and wall-time limits for one problem, never exceeded.

`Budget` is the limit a user asks for; `BudgetMeter` spends it during one run. Before a call
the meter *reserves* the most that call can cost (an upper bound on the prompt plus
`n × max_tokens`), capping `max_tokens` to what is left; after the call it *charges* what the
backend reported and releases the rest. Reservations are held while calls are in flight, so
concurrent calls (agents in a round, samples in parallel) can never overspend together.

`RunMeter` is one token budget for a whole run (`ponder.runs.allocation`): every problem's meter
takes it as its `parent`, and a reservation, charge or release moves both, so problems solved
at once can never overspend the run's total together either.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field

from ponder.core.errors import BudgetExhausted
from ponder.core.types import Usage


class Budget(BaseModel):
    """Limits for solving one problem. `None` means unlimited.

    >>> Budget(tokens=4000, calls=10, seconds=60)
    Budget(tokens=4000, calls=10, seconds=60.0, min_completion_tokens=16)
    """

    model_config = ConfigDict(frozen=True)

    tokens: int | None = Field(default=None, gt=0, description="prompt + completion tokens")
    calls: int | None = Field(default=None, gt=0, description="model calls (n samples = 1 call)")
    seconds: float | None = Field(default=None, gt=0, description="wall-clock time")
    min_completion_tokens: int = Field(
        default=16, ge=1, description="a call that could write fewer tokens than this is not made"
    )

    def start(self, parent: RunMeter | None = None) -> BudgetMeter:
        """A meter spending this budget; with `parent`, also the run's total (`RunMeter`)."""
        return BudgetMeter(self, parent=parent)


@dataclass
class RunMeter:
    """One token budget for every problem of a run, never exceeded: each problem's
    `BudgetMeter` reserves, charges and releases here too (its `parent`), so that what is
    reserved (upper bounds) plus what was charged never passes `tokens`. `spent` may start
    above zero: a resumed run's rows already spent it.

    >>> run = RunMeter(tokens=100_000)
    >>> meter = Budget(tokens=2000).start(run)  # capped by both
    """

    tokens: int
    spent: int = 0
    reserved: int = 0

    @property
    def remaining(self) -> int:
        """Tokens neither charged nor reserved by a call in flight."""
        return self.tokens - self.spent - self.reserved


@dataclass
class Reservation:
    """What one in-flight call may cost at most."""

    tokens: int
    n: int
    max_tokens: int
    released: bool = False
    prompt_copies: int = 1  # of the prompt bound, within `tokens`


@dataclass
class BudgetMeter:
    """Spends one `Budget`. Not shared between problems; with a `parent`, every token it
    reserves or charges is also the run's (`RunMeter`), and what the run has left caps it."""

    budget: Budget
    used: Usage = field(default_factory=Usage)
    started: float = field(default_factory=time.monotonic)
    reserved_tokens: int = 0
    reserved_calls: int = 0
    exhausted_reason: str | None = None
    parent: RunMeter | None = None

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.started

    @property
    def remaining_tokens(self) -> float:
        """What this problem may still reserve: its own budget's rest, capped by the run's."""
        own = math.inf if self.budget.tokens is None else \
            self.budget.tokens - self.used.total_tokens - self.reserved_tokens
        return own if self.parent is None else min(own, self.parent.remaining)

    @property
    def remaining_calls(self) -> float:
        if self.budget.calls is None:
            return math.inf
        return self.budget.calls - self.used.calls - self.reserved_calls

    @property
    def remaining_seconds(self) -> float:
        if self.budget.seconds is None:
            return math.inf
        return self.budget.seconds - self.elapsed_s

    @property
    def exhausted(self) -> bool:
        return (
            self.exhausted_reason is not None
            or self.remaining_calls <= 0
            or self.remaining_seconds <= 0
            or self.remaining_tokens < self.budget.min_completion_tokens
        )

    def reserve(self, *, prompt_tokens: int, prompt_copies: int, n: int, max_tokens: int,
                min_n: int = 1, reply_tokens: int | None = None) -> Reservation:
        """Reserve one call of `n` samples, capping `max_tokens` (and then `n`) to what remains.

        `prompt_tokens` must be an upper bound; `prompt_copies` is how many times the backend
        will charge the prompt for these `n` samples. Raises `BudgetExhausted` when fewer than
        `min_n` samples of `min_completion_tokens` each (under a total, of what replies
        needed) still fit.

        Under a run's total (a `parent`) samples share what is left no thinner than
        `reply_tokens`, what the run's replies to such calls have needed
        (`ponder.core.calibration.ReplyLengths`; half of `max_tokens` before any came back):
        fewer samples are asked for instead; only where replies run to `max_tokens` anyway
        may the last `min_n` be cut to half of it, no shorter. A reply cut
        short of its answer line votes for a stray number, and under a total the tokens it
        would spend can buy another problem a whole one. Alone, a problem's budget has no
        other use for what is left, so the samples share it down to `min_completion_tokens`.
        """
        if self.remaining_calls < 1:
            self._exhaust(f"call limit of {self.budget.calls} reached")
        if self.remaining_seconds <= 0:
            self._exhaust(f"time limit of {self.budget.seconds}s reached")
        floor = min(self.budget.min_completion_tokens, max_tokens)
        left = self.remaining_tokens
        # Fewer samples may fit where n do not; each sample may carry its own prompt copy.
        per_sample_prompt = prompt_tokens if prompt_copies > 1 else 0
        shared_prompt = prompt_tokens if prompt_copies <= 1 else 0
        last_floor = floor
        if self.parent is not None:
            needed = max_tokens // 2 if reply_tokens is None else min(max_tokens, reply_tokens)
            # Samples share what is left no thinner than a reply needs. Where replies run past
            # max_tokens anyway, whole ones are out of reach: the last resort may then be cut
            # to half (a problem whose prompt is a little longer than its neighbours' still
            # gets its call), never to a stub.
            floor = max(floor, needed)
            last_floor = max(last_floor, needed // 2 if needed >= max_tokens else needed)
        while n >= min_n and n >= 1:
            room = left - shared_prompt - per_sample_prompt * n
            cap = room / n if room != math.inf else math.inf
            if cap >= (last_floor if n <= max(1, min_n) else floor):
                capped = max_tokens if cap == math.inf else min(max_tokens, int(cap))
                cost = shared_prompt + n * (per_sample_prompt + capped)
                res = Reservation(tokens=cost, n=n, max_tokens=capped,
                                  prompt_copies=n if per_sample_prompt else 1)
                self.reserved_tokens += cost
                self.reserved_calls += 1
                if self.parent is not None:
                    self.parent.reserved += cost
                return res
            n -= 1
        whose = f"token budget of {self.budget.tokens}"
        if self.parent is not None and (self.budget.tokens is None
                                        or left >= self.parent.remaining):
            whose = f"run's total budget of {self.parent.tokens}"
        self._exhaust(
            f"{whose} leaves {max(0, int(left))} tokens, too few for "
            f"a prompt of up to {prompt_tokens} tokens and {last_floor} completion tokens"
        )
        raise AssertionError("unreachable")

    def seconds_for(self, wanted: float) -> float:
        """How long work that costs no tokens (running a program) may take: `wanted`, capped
        to the time left. Raises `BudgetExhausted` when no time is left."""
        left = self.remaining_seconds
        if left <= 0:
            self._exhaust(f"time limit of {self.budget.seconds}s reached")
        return min(wanted, left)

    def charge(self, reservation: Reservation, usage: Usage) -> None:
        """Charge a finished call's real usage and free its reservation."""
        self.release(reservation)
        self.used = self.used + usage
        if self.parent is not None:
            self.parent.spent += usage.total_tokens

    def release(self, reservation: Reservation) -> None:
        if not reservation.released:
            reservation.released = True
            self.reserved_tokens -= reservation.tokens
            self.reserved_calls -= 1
            if self.parent is not None:
                self.parent.reserved -= reservation.tokens

    def _exhaust(self, reason: str) -> None:
        self.exhausted_reason = reason
        raise BudgetExhausted(reason)
