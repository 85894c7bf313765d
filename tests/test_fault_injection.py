"""Hundreds of calls against a server that fails one request in five, every way it can.

Each call must end in completions or a clear `BackendError`, within the time its timeout and
retries allow, and every injected fault must show up as a counted retry or a failed call.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

import ponder
from ponder.backends.openai import OpenAIBackend
from ponder.core.errors import BackendError
from ponder.core.types import Completion, Message
from ponder.testing import FakeOpenAIServer
from ponder.testing.chat import FAULTS

TIMEOUT_S = 1.0
MAX_RETRIES = 2
BACKOFF_MAX_S = 0.05
# The most one call may take: every attempt times out, with the longest wait between them.
CALL_BOUND_S = (MAX_RETRIES + 1) * (TIMEOUT_S + BACKOFF_MAX_S) + 1.5


@pytest.fixture
def faulty() -> Iterator[FakeOpenAIServer]:
    # A "hang" lasts far past the client's timeout: only the timeout can end it.
    with FakeOpenAIServer(fault_rate=0.2, faults=FAULTS, seed=1, hang_s=60.0,
                          retry_after_s=0.02) as server:
        yield server


def backend_for(server: FakeOpenAIServer) -> OpenAIBackend:
    return OpenAIBackend(server.base_url, model="fake-model", timeout=TIMEOUT_S,
                         max_retries=MAX_RETRIES, backoff_initial=0.01, backoff_max=BACKOFF_MAX_S)


async def test_every_call_ends_in_a_result_or_a_clear_error(faulty: FakeOpenAIServer) -> None:
    gate = asyncio.Semaphore(16)

    async def one(i: int) -> tuple[list[Completion] | BackendError, float]:
        messages = [Message(role="user", content=f"What is {i} plus {i + 1}?")]
        async with gate:
            started = time.monotonic()
            try:
                out: list[Completion] | BackendError = await backend.generate(
                    messages, n=1 + i % 3, max_tokens=64, temperature=0.7)
            except BackendError as exc:
                out = exc
            return out, time.monotonic() - started

    started = time.monotonic()
    async with backend_for(faulty) as backend:
        outcomes = await asyncio.gather(*(one(i) for i in range(200)))
    total_s = time.monotonic() - started

    completed = [out for out, _ in outcomes if isinstance(out, list)]
    failed = [out for out, _ in outcomes if isinstance(out, BackendError)]
    assert len(completed) + len(failed) == 200
    assert all(out for out in completed)
    assert all(str(exc) and exc.retries == MAX_RETRIES for exc in failed)
    assert max(elapsed for _, elapsed in outcomes) <= CALL_BOUND_S
    assert total_s < 25

    injected = faulty.faults_injected
    assert all(injected[kind] > 0 for kind in FAULTS), injected
    # Each faulted request was either retried (and counted) or ended its call.
    retried = sum(out[0].retries for out in completed)
    assert retried + sum(exc.retries + 1 for exc in failed) == sum(injected.values())
    assert faulty.requests == 200 + retried + sum(exc.retries for exc in failed)


async def test_solving_through_faults_traces_retries_and_errors(faulty: FakeOpenAIServer) -> None:
    async with backend_for(faulty) as backend:
        results = await asyncio.gather(*(
            ponder.asolve(f"Sam has {i} pens and finds {i + 2} more. How many pens now?",
                          backend=backend)
            for i in range(60)))

    for i, result in enumerate(results):
        [event] = [e for e in result.trace if e.kind == "generate"]
        if result.error is None:
            assert result.answer == str(2 * i + 2)
        else:
            assert result.error.startswith("BackendError") and event.error is not None
    assert sum(e.retries for r in results for e in r.trace) > 0
