"""`Budget` and `BudgetMeter`: reserve the most a call can cost, charge what it did cost."""

from __future__ import annotations

import asyncio
import time

import pydantic
import pytest

from ponder.backends.scripted import ScriptedBackend
from ponder.core.budget import Budget
from ponder.core.errors import BudgetExhausted
from ponder.core.types import Usage
from ponder.testing import make_context


def test_unlimited_budget_leaves_calls_as_asked() -> None:
    meter = Budget().start()
    res = meter.reserve(prompt_tokens=100, prompt_copies=1, n=8, max_tokens=4096)
    assert (res.n, res.max_tokens) == (8, 4096)
    assert not meter.exhausted


def test_reserve_caps_max_tokens_to_what_remains() -> None:
    meter = Budget(tokens=1000).start()
    res = meter.reserve(prompt_tokens=100, prompt_copies=1, n=1, max_tokens=5000)
    assert res.max_tokens == 900
    assert res.tokens == 1000
    assert meter.remaining_tokens == 0


def test_n_shares_what_remains_then_shrinks_when_samples_get_too_short() -> None:
    meter = Budget(tokens=300, min_completion_tokens=16).start()
    res = meter.reserve(prompt_tokens=100, prompt_copies=1, n=4, max_tokens=100)
    assert (res.n, res.max_tokens) == (4, 50)  # 200 tokens shared by 4 samples

    meter = Budget(tokens=150, min_completion_tokens=16).start()
    res = meter.reserve(prompt_tokens=100, prompt_copies=1, n=4, max_tokens=100)
    assert (res.n, res.max_tokens) == (3, 16)  # 4 samples would get 12 tokens each


def test_a_prompt_charged_per_sample_is_reserved_per_sample() -> None:
    meter = Budget(tokens=500).start()
    res = meter.reserve(prompt_tokens=100, prompt_copies=4, n=4, max_tokens=100)
    assert (res.n, res.max_tokens, res.tokens) == (4, 25, 500)


def test_too_little_left_raises_and_marks_the_meter_exhausted() -> None:
    meter = Budget(tokens=100, min_completion_tokens=16).start()
    with pytest.raises(BudgetExhausted, match="token budget of 100"):
        meter.reserve(prompt_tokens=90, prompt_copies=1, n=1, max_tokens=64)
    assert meter.exhausted and meter.exhausted_reason is not None


def test_min_n_refuses_a_call_that_fits_fewer_samples() -> None:
    meter = Budget(tokens=150, min_completion_tokens=16).start()
    with pytest.raises(BudgetExhausted):
        meter.reserve(prompt_tokens=100, prompt_copies=1, n=4, max_tokens=100, min_n=4)


def test_charge_replaces_the_reservation_with_real_usage() -> None:
    meter = Budget(tokens=1000, calls=3).start()
    res = meter.reserve(prompt_tokens=100, prompt_copies=1, n=1, max_tokens=500)
    assert meter.remaining_tokens == 400
    meter.charge(res, Usage(prompt_tokens=40, completion_tokens=60, calls=1))
    assert meter.remaining_tokens == 900
    assert meter.remaining_calls == 2
    meter.charge(res, Usage())  # charging twice does not free the reservation twice
    assert meter.reserved_tokens == 0 and meter.reserved_calls == 0


def test_release_frees_a_failed_call_without_charging_it() -> None:
    meter = Budget(tokens=1000, calls=1).start()
    res = meter.reserve(prompt_tokens=100, prompt_copies=1, n=1, max_tokens=500)
    meter.release(res)
    meter.release(res)
    assert meter.remaining_tokens == 1000 and meter.remaining_calls == 1


def test_call_limit_counts_calls_in_flight() -> None:
    meter = Budget(calls=2).start()
    meter.reserve(prompt_tokens=10, prompt_copies=1, n=5, max_tokens=10)
    meter.reserve(prompt_tokens=10, prompt_copies=1, n=5, max_tokens=10)
    with pytest.raises(BudgetExhausted, match="call limit of 2"):
        meter.reserve(prompt_tokens=10, prompt_copies=1, n=1, max_tokens=10)


def test_time_limit_refuses_new_calls() -> None:
    meter = Budget(seconds=5).start()
    meter.started = time.monotonic() - 6  # as if the run began six seconds ago
    assert meter.exhausted
    with pytest.raises(BudgetExhausted, match=r"time limit of 5\.0s"):
        meter.reserve(prompt_tokens=10, prompt_copies=1, n=1, max_tokens=10)


def test_limits_must_be_positive() -> None:
    with pytest.raises(pydantic.ValidationError):
        Budget(tokens=0)
    with pytest.raises(pydantic.ValidationError):
        Budget(calls=-1)


def test_reservations_held_together_never_exceed_the_budget() -> None:
    meter = Budget(tokens=1000, min_completion_tokens=16).start()
    held = []
    with pytest.raises(BudgetExhausted):
        while True:
            held.append(meter.reserve(prompt_tokens=50, prompt_copies=1, n=2, max_tokens=200))
    assert sum(r.tokens for r in held) <= 1000
    for res in held:  # each call spends all it reserved
        meter.charge(res, Usage(prompt_tokens=50, completion_tokens=res.tokens - 50, calls=1))
    assert meter.used.total_tokens <= 1000


async def test_concurrent_calls_cannot_overspend_together() -> None:
    # Replies longer than any max_tokens: every call spends all it may.
    ctx = make_context(backend=ScriptedBackend(" ".join(["word"] * 500), latency_s=0.01),
                       budget=Budget(tokens=2000, calls=50))

    async def call() -> int:
        try:
            return len(await ctx.generate("single/answer", n=2, max_tokens=120))
        except BudgetExhausted:
            return 0

    samples = await asyncio.gather(*(call() for _ in range(40)))
    assert ctx.meter.used.total_tokens <= 2000
    assert sum(samples) > 0 and samples.count(0) > 0  # some calls ran, later ones were refused
    assert ctx.meter.reserved_tokens == 0 and ctx.meter.reserved_calls == 0
