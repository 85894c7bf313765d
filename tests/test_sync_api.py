"""The sync API runs every call on one event loop kept for the process, so a backend works
across any number of `solve`/`verify` calls and the default model starts once."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

import ponder
from ponder import ConfigError, OpenAIBackend, ScriptedBackend
from ponder.api import DefaultSessions
from ponder.portal import SyncPortal
from ponder.testing import FakeOpenAIServer

QUESTION = "Tom has 3 apples and buys 5 more. How many apples does Tom have now?"


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as fake:
        yield fake


def test_twenty_sync_solves_share_one_http_backend(server: FakeOpenAIServer) -> None:
    backend = OpenAIBackend(server.base_url, timeout=5.0)
    results = [ponder.solve(QUESTION, backend=backend) for _ in range(20)]
    assert [r.answer for r in results] == ["8"] * 20
    assert all(r.error is None for r in results)
    assert server.requests == 20
    # The same backend also serves ponder.verify with a model-calling judge.
    verdict = ponder.verify({"problem": QUESTION, "answer": "8"}, "Final answer: 8",
                            "llm_judge", backend=backend)
    assert verdict.details["score_parsed"] is not None
    assert server.requests == 21


class Counting:
    """A default-backend factory that counts what it made and what was closed."""

    def __init__(self) -> None:
        self.made: list[ScriptedBackend] = []
        self.closed = 0

    def __call__(self, model_path: Any = None) -> ScriptedBackend:
        backend = ScriptedBackend("Final answer: 8")
        original = backend.aclose

        async def aclose() -> None:
            self.closed += 1
            await original()

        backend.aclose = aclose  # type: ignore[method-assign]
        self.made.append(backend)
        return backend


def test_the_default_backend_starts_once_for_three_calls_and_closes_with_the_portal() -> None:
    factory = Counting()
    portal = SyncPortal()
    shells = DefaultSessions(portal, factory)
    try:
        answers = [shells.solve(QUESTION).answer for _ in range(3)]
        assert answers == ["8", "8", "8"]
        assert len(factory.made) == 1 and len(factory.made[0].requests) == 3
        assert factory.closed == 0  # a call does not close the shared default
    finally:
        portal.close()
    assert factory.closed == 1
    assert shells.solve(QUESTION).answer == "8"  # usable again: a fresh loop, a fresh default
    portal.close()
    assert len(factory.made) == 2


def test_threads_calling_solve_at_once_share_the_loop_and_the_default() -> None:
    factory = Counting()
    portal = SyncPortal()
    shells = DefaultSessions(portal, factory)
    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            results = list(pool.map(lambda _: shells.solve(QUESTION), range(16)))
        assert {r.answer for r in results} == {"8"}
        assert len(factory.made) == 1
        thread = portal._thread
    finally:
        portal.close()
    assert thread is not None and not thread.is_alive()  # close stops the loop's thread


@pytest.mark.parametrize("call", [
    lambda: ponder.solve(QUESTION, backend=ScriptedBackend()),
    lambda: ponder.verify({"problem": "1+1?", "answer": "2"}, "2"),
])
async def test_the_sync_api_inside_a_running_loop_says_to_await(call: Any) -> None:
    with pytest.raises(ConfigError, match=r"inside a running event loop; use `await ponder\.a"):
        call()


def test_the_error_names_the_async_twin() -> None:
    async def inside() -> None:
        ponder.verify({"problem": "1+1?", "answer": "2"}, "2")

    with pytest.raises(ConfigError, match=r"ponder\.verify\(\).*await ponder\.averify"):
        asyncio.run(inside())


@pytest.mark.slow
def test_plain_solve_starts_the_embedded_model_once_for_three_calls() -> None:
    pytest.importorskip("xllamacpp")
    from ponder.backends.local import LocalBackend

    made: list[LocalBackend] = []

    def embedded(model_path: Any = None) -> LocalBackend:
        made.append(LocalBackend(model_path=model_path))
        return made[-1]

    portal = SyncPortal()
    shells = DefaultSessions(portal, embedded)
    try:
        results = [shells.solve(QUESTION, max_tokens=64) for _ in range(3)]
        assert all(r.error is None and r.usage.calls == 1 for r in results)
        assert len(made) == 1 and made[0].base_url is not None  # one model, still serving
    finally:
        portal.close()


class CountingStarts(ScriptedBackend):
    """Counts its starts, and how many ran at once; the first `failures` fail."""

    def __init__(self, *replies: str, failures: int = 0) -> None:
        super().__init__(*replies)
        self.failures, self.starts, self.running, self.most = failures, 0, 0, 0

    async def start(self) -> None:
        self.starts += 1
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            await asyncio.sleep(0.01)
            if self.starts <= self.failures:
                raise RuntimeError("not up yet")
        finally:
            self.running -= 1


async def test_a_bad_argument_is_refused_before_the_backend_starts() -> None:
    backend = CountingStarts("Final answer: 8")
    with pytest.raises(ConfigError, match="best_of_nn"):
        await ponder.asolve(QUESTION, backend=backend, strategy="best_of_nn")
    with pytest.raises(ConfigError):
        await ponder.asolve("   ", backend=backend)
    assert backend.starts == 0
    assert (await ponder.asolve(QUESTION, backend=backend)).answer == "8"
    assert backend.starts == 1


async def test_a_failed_start_is_tried_again_once_not_by_every_caller_that_waited() -> None:
    backend = CountingStarts("Final answer: 8", failures=1)
    session = ponder.Session(backend)
    failed = await asyncio.gather(*(session.start() for _ in range(3)), return_exceptions=True)
    assert all(isinstance(f, RuntimeError) for f in failed)
    await asyncio.gather(*(session.start() for _ in range(3)))
    assert (backend.starts, backend.most) == (2, 1)


def test_a_session_used_in_async_code_names_its_async_twin() -> None:
    async def inside() -> None:
        ponder.Session(ScriptedBackend("Final answer: 8")).close()

    with pytest.raises(ConfigError, match=r"session\.close\(\).*await session\.aclose"):
        asyncio.run(inside())
