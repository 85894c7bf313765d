"""`BackendPool` over real fake servers on 127.0.0.1: routing, failover, back-off, recovery,
and usage that stays exact through it all."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import ponder
from ponder.backends.openai import OpenAIBackend
from ponder.backends.pool import BackendPool
from ponder.backends.spec import make_backend as resolve_backend
from ponder.cli import app
from ponder.core.errors import BackendError, ConfigError
from ponder.core.types import Message, Problem, Result
from ponder.runs.results_reader import read_results
from ponder.runs.solve_many import Solver, run_all
from ponder.strategies import REGISTRY
from ponder.strategies.ice import Agent
from ponder.testing import FakeOpenAIServer

MESSAGES = [Message(role="user", content="What is 3 plus 5?")]
SINGLE = REGISTRY.get("single")


@contextmanager
def serving(*configs: dict[str, Any]) -> Iterator[list[FakeOpenAIServer]]:
    """One started fake server per config."""
    with ExitStack() as stack:
        yield [stack.enter_context(FakeOpenAIServer(**config)) for config in configs]


def member(server: FakeOpenAIServer) -> OpenAIBackend:
    """A server backend that gives up quickly (one retry), so that failover is fast."""
    return OpenAIBackend(server.base_url, model="fake-model", timeout=10.0, max_retries=1,
                         backoff_initial=0.01, backoff_max=0.02)


def pool_of(servers: list[FakeOpenAIServer], **options: Any) -> BackendPool:
    return BackendPool([member(s) for s in servers], **options)


def failing_while(flag: threading.Event, status: int = 503) -> dict[str, Any]:
    """A server config that answers `status` to every chat request while `flag` is set."""
    return {"status_for": lambda body: status if flag.is_set() else None}


def pens(i: int) -> Problem:
    """A problem the fake server answers right: it adds the numbers it is given."""
    return Problem(id=f"p{i}", problem=f"Sam has {i} pens and finds {i + 2} more. How many?",
                   answer=str(2 * i + 2))


def served_tokens(server: FakeOpenAIServer) -> int:
    served = server.usage_served
    return served["prompt_tokens"] + served["completion_tokens"]


# -- routing ----------------------------------------------------------------------------------


async def test_concurrent_calls_spread_evenly_over_the_endpoints() -> None:
    with serving(*[{"latency_s": 0.2}] * 3) as servers:
        async with pool_of(servers) as pool:
            replies = await asyncio.gather(*(pool.generate(MESSAGES, max_tokens=32)
                                             for _ in range(9)))
    assert all(reply[0].text.endswith("Final answer: 8") for reply in replies)
    # Answered calls, not server requests: on a loaded machine a member may retry a slow one.
    assert [h.answered for h in pool.health()] == [3, 3, 3]
    assert pool.name == f"pool({', '.join(m.name for m in pool.backends)})"


async def test_each_call_goes_to_the_endpoint_with_the_fewest_in_flight() -> None:
    with serving({"latency_s": 1.0}, {}, {}) as servers:
        async with pool_of(servers) as pool:
            slow = asyncio.create_task(pool.generate(MESSAGES, max_tokens=32))
            await asyncio.sleep(0)  # it is placed (on the first endpoint) and in flight
            assert [h.in_flight for h in pool.health()] == [1, 0, 0]
            for _ in range(4):
                await pool.generate(MESSAGES, max_tokens=32)
            await slow
    # Round robin would have sent one of the four to the busy server.
    assert [s.requests for s in servers] == [1, 2, 2]


# -- failover -----------------------------------------------------------------------------------


async def test_a_server_failing_mid_run_loses_no_problem_and_usage_stays_exact() -> None:
    broken = threading.Event()
    with serving({"latency_s": 0.02}, {"latency_s": 0.02},
                 {"latency_s": 0.02, **failing_while(broken)}) as servers:
        async with pool_of(servers, backoff_initial=0.05, backoff_max=0.2) as pool:
            solver = Solver(SINGLE, SINGLE.make_config({"max_tokens": 64}), pool)

            def on_result(result: Result) -> None:
                done.append(result)
                if len(done) == 6:
                    broken.set()  # from here on the third server answers 503

            done: list[Result] = []
            results = await run_all([pens(i) for i in range(30)], solver, concurrency=6,
                                    on_result=on_result)

    assert len(results) == 30
    assert all(r.error is None and r.answer == pens(int(r.id[1:])).answer for r in results)
    # Every token charged is one a server served and reported; the 503s charged nothing.
    assert sum(r.usage.total_tokens for r in results) == sum(served_tokens(s) for s in servers)
    assert sum(r.usage.calls for r in results) == 30
    assert sum(s.usage_served["replies"] for s in servers) == 30
    third = pool.health()[2]
    assert third.failures >= 1 and third.failed >= 1 and third.answered < 10
    assert servers[2].usage_served["replies"] == third.answered
    # The failed attempts show as retries in the trace of the calls they delayed.
    assert sum(e.retries for r in results for e in r.trace) >= third.failed


async def test_a_server_stopped_mid_run_loses_no_problem() -> None:
    with serving(*[{"latency_s": 0.03}] * 3) as servers:
        async with pool_of(servers, backoff_initial=0.5) as pool:
            gate = asyncio.Semaphore(6)
            finished = 0

            async def solve(i: int) -> Result:
                nonlocal finished
                async with gate:
                    result = await ponder.asolve(pens(i).problem, backend=pool)
                finished += 1
                if finished == 6:
                    # Calls are in flight to it: they fail over, as do later ones.
                    await asyncio.to_thread(servers[2].stop)
                return result

            results = await asyncio.gather(*(solve(i) for i in range(30)))

    assert all(r.error is None and r.answer == pens(i).answer for i, r in enumerate(results))
    health = pool.health()
    assert health[2].failures >= 1
    # Usage is what the endpoints that answered reported: exactly what the live ones served.
    assert sum(r.usage.total_tokens for r in results) == sum(h.usage.total_tokens
                                                              for h in health)
    for server, endpoint in zip(servers[:2], health[:2], strict=True):
        assert endpoint.usage.total_tokens == served_tokens(server)
    # The stopped one may have served replies that never got out; those are not charged.
    assert health[2].usage.total_tokens <= served_tokens(servers[2])


async def test_a_failing_endpoint_backs_off_doubling_then_comes_back() -> None:
    broken = threading.Event()
    broken.set()
    with serving({}, failing_while(broken)) as (good, bad):
        async with pool_of([good, bad], backoff_initial=0.5, backoff_max=4.0) as pool:
            async def two_calls() -> None:
                replies = await asyncio.gather(*(pool.generate(MESSAGES, max_tokens=32)
                                                 for _ in range(2)))
                assert all(reply for reply in replies)

            await two_calls()  # one lands on the failing server and moves to the good one
            out = pool.health()[1]
            assert (out.failures, out.answered) == (1, 0) and 0 < out.out_for_s <= 0.5
            assert good.usage_served["replies"] == 2

            tried = bad.requests
            await two_calls()  # while it is out, no call goes there
            assert bad.requests == tried and good.usage_served["replies"] == 4

            await asyncio.sleep(pool.health()[1].out_for_s + 0.02)
            await two_calls()  # back on probation: one call finds it still failing
            out = pool.health()[1]
            assert out.failures == 2 and out.out_for_s > 0.5  # the back-off doubled

            broken.clear()
            await asyncio.sleep(out.out_for_s + 0.02)
            await two_calls()  # one call finds it answering: healthy again
            back = pool.health()[1]
            assert (back.failures, back.out_for_s, back.answered) == (0, 0.0, 1)
            assert bad.usage_served["replies"] == 1

            await two_calls()  # and it takes its share again
            assert bad.usage_served["replies"] == 2


async def test_with_every_endpoint_out_a_call_waits_for_one_to_come_back() -> None:
    broken = threading.Event()
    broken.set()
    with serving(failing_while(broken), failing_while(broken)) as servers:
        async with pool_of(servers, backoff_initial=0.3, timeout=10.0) as pool:
            async def heal() -> None:
                while any(h.failures == 0 for h in pool.health()):
                    await asyncio.sleep(0.01)
                broken.clear()  # both are out now; the call is waiting

            started = time.monotonic()
            [reply], _ = await asyncio.gather(pool.generate(MESSAGES, max_tokens=32), heal())
            waited = time.monotonic() - started
    assert reply.text.endswith("Final answer: 8")
    assert 0.25 <= waited < 5
    assert reply.retries >= 2  # the two failed attempts (each with its own retry)
    assert sum(h.answered for h in pool.health()) == 1


async def test_a_call_waits_no_longer_than_the_pool_timeout() -> None:
    broken = threading.Event()
    broken.set()
    with serving(failing_while(broken), failing_while(broken)) as servers:
        async with pool_of(servers, backoff_initial=0.2, timeout=0.5) as pool:
            started = time.monotonic()
            with pytest.raises(BackendError) as failure:
                await pool.generate(MESSAGES, max_tokens=32)
            elapsed = time.monotonic() - started
    assert 0.45 <= elapsed < 3
    assert failure.value.status == 503
    assert "every endpoint of pool(" in str(failure.value) and "503" in str(failure.value)


async def test_a_bad_request_is_not_retried_elsewhere() -> None:
    with serving({"status_for": lambda body: 400}, {}) as (refusing, other):
        async with pool_of([refusing, other]) as pool:
            with pytest.raises(BackendError) as failure:
                await pool.generate(MESSAGES, max_tokens=32)
    assert failure.value.status == 400
    assert (refusing.requests, other.requests) == (1, 0)
    # The request was at fault, not the endpoint: it stays in.
    assert [(h.failures, h.out_for_s) for h in pool.health()] == [(0, 0.0), (0, 0.0)]


# -- the pool as a backend -------------------------------------------------------------------


async def test_prompt_copies_holds_for_whichever_member_answers() -> None:
    with serving({}, {}) as (learned, unknown):
        async with BackendPool([OpenAIBackend(learned.base_url, native_n=True),
                                OpenAIBackend(unknown.base_url)]) as pool:
            # A call may land on the member that has not learned `n` yet: it may charge the
            # prompt once per sample, and the budget must reserve for that.
            assert pool.prompt_copies(4) == 4
            assert await pool.count_prompt_tokens(MESSAGES) is not None


async def test_a_pool_is_refused_when_its_members_cannot_be_one_backend() -> None:
    with serving({}, {}) as (a, b):
        one = OpenAIBackend(a.base_url)
        with pytest.raises(ConfigError, match="at least one"):
            BackendPool([])
        with pytest.raises(ConfigError, match="twice"):
            BackendPool([one, one])
        with pytest.raises(ConfigError, match=r"same model.*'qwen'.*'llama'"):
            BackendPool([OpenAIBackend(a.base_url, model="qwen"),
                         OpenAIBackend(b.base_url, model="llama")])
        with pytest.raises(ConfigError, match="backoff_initial"):
            BackendPool([one], backoff_initial=5.0, backoff_max=1.0)
        await one.aclose()


async def test_an_ice_agent_may_run_on_a_pool() -> None:
    with serving({}, {}, {}) as (shared, *pooled):
        async with OpenAIBackend(shared.base_url) as backend, BackendPool(
                [OpenAIBackend(s.base_url) for s in pooled]) as pool:
            agents = [Agent(name="pooled", backend=pool), Agent(name="plain")]
            result = await ponder.asolve(pens(4).problem, strategy="ice", backend=backend,
                                         agents=agents)
    assert result.answer == "10" and result.stop_reason == "consensus"
    assert sum(h.answered for h in pool.health()) == 1 and shared.requests == 1


async def test_resolve_backend_pools_a_list_of_base_urls() -> None:
    with serving({}, {}) as (a, b):
        backend, owned = resolve_backend([a.base_url, b.base_url], model="fake-model")
        assert owned and isinstance(backend, ponder.BackendPool)
        members = [m for m in backend.backends if isinstance(m, OpenAIBackend)]
        assert [m.base_url for m in members] == [a.base_url, b.base_url]
        # Each server retries once, then the pool moves the call on.
        assert all(m._retry.max_retries == 1 for m in members)
        await backend.aclose()

        single, _ = resolve_backend([a.base_url])
        assert isinstance(single, OpenAIBackend) and single._retry.max_retries == 5
        await single.aclose()

        for bad, message in [([a.base_url, a.base_url + "/"], "listed twice"),
                             ([a.base_url, "vllm:qwen"], "not a base URL"),
                             ([], "at least one")]:
            with pytest.raises(ConfigError, match=message):
                resolve_backend(bad)


# -- command line -------------------------------------------------------------------------------


def test_the_cli_takes_several_base_urls(tmp_path: Path) -> None:
    problems = tmp_path / "pens.jsonl"
    problems.write_text("".join(json.dumps(pens(i).model_dump(exclude_none=True)) + "\n"
                                for i in range(6)))
    out = tmp_path / "run.jsonl"
    with serving({"latency_s": 0.05}, {"latency_s": 0.05}) as (a, b):
        result = CliRunner().invoke(app, ["solve", str(problems), "--base-url", a.base_url,
                                          "--base-url", b.base_url, "--verifier", "exact",
                                          "-o", str(out), "--json"])
        assert result.exit_code == 0, result.stderr
        assert a.requests > 0 and b.requests > 0 and a.requests + b.requests == 6

        again = CliRunner().invoke(app, ["solve", str(problems), "--base-url", a.base_url,
                                         "--base-url", a.base_url, "-o", str(tmp_path / "x")])
        assert again.exit_code == 2 and "listed twice" in again.stderr
    summary = json.loads(result.stdout)
    assert (summary["done"], summary["solved"]) == (6, 6)
    assert sum(r.usage.total_tokens for r in read_results(out)) == \
        served_tokens(a) + served_tokens(b)
