"""`ponder serve`: the real app under uvicorn on 127.0.0.1, the fake OpenAI-compatible server
upstream, called with the `openai` client and with raw HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, get_args

import httpx2
import openai
import pytest
import uvicorn
from starlette.applications import Starlette
from typer.testing import CliRunner

from ponder import cli as cli_module
from ponder.backends.openai import OpenAIBackend
from ponder.cli import app as cli
from ponder.core.budget import Budget
from ponder.core.errors import ConfigError
from ponder.core.types import Result, TraceEvent
from ponder.sandbox import shared_sandbox
from ponder.serve import openai_wire
from ponder.serve.app import create_app, server_config
from ponder.serve.openai_wire import DEFAULT_BUDGET
from ponder.serve.traces import TRACE_HEADER, TraceStore, trace_json
from ponder.session import Session
from ponder.strategies import REGISTRY as STRATEGIES
from ponder.testing import FakeOpenAIServer

MODEL = "fake-model"


@contextmanager
def serving(app: Starlette, **limits: Any) -> Iterator[str]:
    """`app` under uvicorn in a thread of its own (its own event loop), on a free port, with
    `ponder serve`'s settings (`server_config`, given `limits`); yields the base URL and stops
    the server (running the app's shutdown) on the way out."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(server_config(app, log_level="warning", **limits))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.005)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def backend_for(fake: FakeOpenAIServer) -> OpenAIBackend:
    return OpenAIBackend(base_url=fake.base_url, model=MODEL, max_retries=1,
                         backoff_initial=0.0, backoff_max=0.0)


@contextmanager
def ponder_server(fake: FakeOpenAIServer, **options: Any) -> Iterator[str]:
    with serving(create_app(backend_for(fake), model=MODEL, **options)) as url:
        yield url


def client(url: str, api_key: str = "unused") -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=api_key, max_retries=0)


def ask(problem: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": problem}]


@pytest.fixture
def fake() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as server:
        yield server


@pytest.fixture
def url(fake: FakeOpenAIServer) -> Iterator[str]:
    with ponder_server(fake) as base:
        yield base


def ponder_of(reply: Any) -> dict[str, Any]:
    """The `ponder` field of a reply or chunk, which the openai client keeps as an extra."""
    extra: dict[str, Any] = reply.model_extra["ponder"]
    return extra


def served_tokens(fake: FakeOpenAIServer) -> tuple[int, int]:
    served = fake.usage_served
    return served["prompt_tokens"], served["completion_tokens"]


# -- answering -------------------------------------------------------------------------------


async def test_a_plain_model_name_runs_the_default_strategy(
        fake: FakeOpenAIServer, url: str) -> None:
    raw = await client(url).chat.completions.with_raw_response.create(
        model=MODEL, messages=ask("Tom has 3 apples and buys 5 more. How many now?"))
    reply = raw.parse()
    assert reply.choices[0].message.content == "8"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.model == MODEL
    ponder = ponder_of(reply)
    assert (ponder["strategy"], ponder["stop_reason"], ponder["calls"]) == ("single", "done", 1)
    assert raw.headers[TRACE_HEADER] == ponder["trace_id"]
    # The winning reply's whole text rides along, as a reasoning model's thinking does.
    assert "3 + 5 = 8" in reply.choices[0].message.model_extra["reasoning_content"]


async def test_the_problem_is_the_last_user_message(fake: FakeOpenAIServer, url: str) -> None:
    messages = [{"role": "system", "content": "You add numbers."},
                {"role": "user", "content": "What is 1 + 1?"},
                {"role": "assistant", "content": "2"},
                {"role": "user", "content": "And 3 + 4?"}]
    reply = await client(url).chat.completions.create(model=MODEL, messages=messages)
    assert reply.choices[0].message.content == "7"
    [sent] = fake.received
    assert "3 + 4" in json.dumps(sent["messages"]) and "1 + 1" not in json.dumps(sent["messages"])


async def test_strategy_colon_model_picks_the_strategy(fake: FakeOpenAIServer, url: str) -> None:
    reply = await client(url).chat.completions.create(
        model=f"best_of_n:{MODEL}", messages=ask("What is 17 + 23?"), max_tokens=40)
    assert reply.choices[0].message.content == "40"
    ponder = ponder_of(reply)
    assert ponder["strategy"] == "best_of_n" and ponder["stop_reason"] == "done"
    assert ponder["params"]["max_tokens"] == 40
    # best_of_n's five samples are one n=5 request, at best_of_n's own temperature.
    assert [(b["n"], b["temperature"], b["max_tokens"]) for b in fake.received] == [(5, 0.7, 40)]


async def test_the_ponder_field_wins_over_the_model_name(fake: FakeOpenAIServer,
                                                        url: str) -> None:
    reply = await client(url).chat.completions.create(
        model=f"best_of_n:{MODEL}", messages=ask("What is 2 + 2?"), max_tokens=64,
        extra_body={"ponder": {"strategy": "self_refine",
                               "params": {"max_iters": 1, "max_tokens": 50},
                               "budget": {"tokens": 4000, "calls": 6}}})
    ponder = ponder_of(reply)
    assert ponder["strategy"] == "self_refine"
    assert ponder["params"]["max_iters"] == 1
    assert ponder["params"]["max_tokens"] == 50  # the field's params win over max_tokens too
    assert ponder["calls"] > 1 and all(b["max_tokens"] <= 50 for b in fake.received)


async def test_reasoning_effort_runs_its_tier(fake: FakeOpenAIServer, url: str) -> None:
    reply = await client(url).chat.completions.create(
        model=MODEL, messages=ask("What is 6 + 7?"), reasoning_effort="medium")
    ponder = ponder_of(reply)
    assert (ponder["strategy"], ponder["params"]["few_shot"]) == ("program", False)
    assert ponder["params"]["temperature"] == 0.0
    assert all(b["temperature"] == 0.0 for b in fake.received)


async def test_the_ponder_fields_effort_wins_and_its_params_override_the_tiers(
        fake: FakeOpenAIServer, url: str) -> None:
    reply = await client(url).chat.completions.create(
        model=MODEL, messages=ask("What is 6 + 7?"), reasoning_effort="medium",
        extra_body={"ponder": {"effort": "low", "params": {"max_tokens": 30}}})
    ponder = ponder_of(reply)
    assert (ponder["strategy"], ponder["params"]["max_tokens"]) == ("single", 30)
    assert [b["max_tokens"] for b in fake.received] == [30]


async def test_openais_other_effort_levels_map_and_a_named_strategy_wins(
        fake: FakeOpenAIServer, url: str) -> None:
    minimal = await client(url).chat.completions.create(
        model=MODEL, messages=ask("What is 6 + 7?"), reasoning_effort="minimal")
    assert ponder_of(minimal)["strategy"] == "single"
    named = await client(url).chat.completions.create(
        model=f"best_of_n:{MODEL}", messages=ask("What is 6 + 7?"), reasoning_effort="high")
    assert ponder_of(named)["strategy"] == "best_of_n"


async def test_the_servers_defaults_do_not_leak_into_an_effort(fake: FakeOpenAIServer) -> None:
    with ponder_server(fake, strategy="program", params={"n": 5, "temperature": 0.7}) as url:
        reply = await client(url).chat.completions.create(
            model=MODEL, messages=ask("What is 6 + 7?"), reasoning_effort="medium")
    params = ponder_of(reply)["params"]
    assert (params["n"], params["temperature"]) == (1, 0.0)


async def test_usage_is_the_sum_of_every_upstream_call(fake: FakeOpenAIServer, url: str) -> None:
    reply = await client(url).chat.completions.create(
        model=f"self_refine:{MODEL}", messages=ask("What is 4 + 5?"),
        extra_body={"ponder": {"params": {"max_iters": 2}}})
    prompt, completion = served_tokens(fake)
    assert reply.usage is not None
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (prompt, completion)
    assert reply.usage.total_tokens == prompt + completion
    assert ponder_of(reply)["calls"] == len(fake.received) > 1


async def test_a_gold_answer_picks_the_math_verifier(url: str) -> None:
    reply = await client(url).chat.completions.create(
        model=MODEL, messages=ask("What is 20 + 22?"), extra_body={"ponder": {"answer": "42"}})
    ponder = ponder_of(reply)
    assert (ponder["verified"], ponder["stop_reason"]) == (True, "verified")


async def test_the_trace_is_fetched_by_its_id(url: str) -> None:
    reply = await client(url).chat.completions.create(
        model=f"self_refine:{MODEL}", messages=ask("What is 6 + 7?"))
    trace_id = ponder_of(reply)["trace_id"]
    async with httpx2.AsyncClient(base_url=url) as http:
        got = await http.get(f"/v1/traces/{trace_id}")
        missing = await http.get("/v1/traces/nope")
    assert got.status_code == 200
    trace = got.json()
    assert (trace["id"], trace["strategy"], trace["answer"]) == (trace_id, "self_refine", "13")
    calls = [e for e in trace["events"] if e["kind"] == "generate"]
    assert len(calls) == ponder_of(reply)["calls"]
    assert sum(e["usage"]["prompt_tokens"] + e["usage"]["completion_tokens"] for e in calls) \
        == reply.usage.total_tokens
    assert all(e["problem_id"] == trace_id for e in trace["events"])
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "trace_not_found"


def test_the_trace_store_forgets_the_least_recent_first() -> None:
    store = TraceStore(2)
    for trace_id in ("a", "b"):
        store.add(trace_id, MODEL, Result(id=trace_id, answer="1"))
    assert store.get("a") is not None  # read: now the most recent
    store.add("c", MODEL, Result(id="c", answer="1"))
    assert (store.get("a") is not None, store.get("b"), len(store)) == (True, None, 2)


# -- streaming and n ---------------------------------------------------------------------------


async def test_streaming_sends_chunks_then_done(fake: FakeOpenAIServer, url: str) -> None:
    stream = await client(url).chat.completions.create(
        model=MODEL, messages=ask("What is 30 + 12?"), stream=True,
        stream_options={"include_usage": True})
    chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "42"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == \
        served_tokens(fake)
    assert ponder_of(chunks[-1])["strategy"] == "single"


async def test_the_stream_is_server_sent_events_ending_with_done(url: str) -> None:
    body = {"model": MODEL, "messages": ask("What is 1 + 2?"), "stream": True}
    async with httpx2.AsyncClient(base_url=url) as http, \
            http.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers[TRACE_HEADER]
        lines = [line async for line in response.aiter_lines() if line]
    assert all(line.startswith("data: ") for line in lines)
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-1]["ponder"]["trace_id"] == response.headers[TRACE_HEADER]


def votes_for(*answers: int) -> Any:
    """A fake-server reply that cycles through `answers`, one per sample."""
    cycle = itertools.cycle(answers)
    lock = threading.Lock()

    def reply(messages: list[dict[str, Any]]) -> str:
        with lock:
            return f"Let me think.\nFinal answer: {next(cycle)}"

    return reply


async def test_n_returns_distinct_answers_winner_first() -> None:
    with FakeOpenAIServer(reply=votes_for(7, 9, 7, 11, 7)) as fake, ponder_server(fake) as url:
        reply = await client(url).chat.completions.create(
            model=f"best_of_n:{MODEL}", messages=ask("Guess a number"), n=3)
        streamed = await client(url).chat.completions.create(
            model=f"best_of_n:{MODEL}", messages=ask("Guess a number"), n=2, stream=True)
        chunks = [c async for c in streamed]
    assert [c.message.content for c in reply.choices] == ["7", "9", "11"]
    assert [c.index for c in reply.choices] == [0, 1, 2]
    by_choice: dict[int, str] = {}
    for chunk in chunks:
        for choice in chunk.choices:
            by_choice[choice.index] = by_choice.get(choice.index, "") + (choice.delta.content or "")
    assert by_choice == {0: "7", 1: "9"}


async def test_n_returns_the_distinct_answers_auto_voted_on() -> None:
    with FakeOpenAIServer(reply=votes_for(7, 9, 7, 11, 7)) as fake, ponder_server(fake) as url:
        reply = await client(url).chat.completions.create(
            model=f"auto:{MODEL}", messages=ask("Guess a number"), n=3,
            extra_body={"ponder": {"params": {"program": False}}})
        with pytest.raises(openai.BadRequestError) as refused:
            await client(url).chat.completions.create(
                model=f"auto:{MODEL}", messages=ask("Guess a number"), n=4,
                extra_body={"ponder": {"params": {"max_samples": 2}}})
    answers = [c.message.content for c in reply.choices]
    assert answers[0] == "7" and sorted(answers[1:]) == ["11", "9"]
    assert "max_samples=2" in str(refused.value)


async def test_n_asks_for_enough_samples(fake: FakeOpenAIServer) -> None:
    with ponder_server(fake, strategy="best_of_n", params={"n": 3}) as url:
        await client(url).chat.completions.create(model=MODEL, messages=ask("1 + 1?"))
        await client(url).chat.completions.create(model=MODEL, messages=ask("1 + 1?"), n=8)
        await client(url).chat.completions.create(model=f"program:{MODEL}",
                                                  messages=ask("1 + 1?"), n=7, temperature=0.8)
    # The server's n=3 is its default; a request for 8 distinct answers draws 8 samples, and
    # program's own default (1 program) is raised to the 7 asked for.
    assert [b["n"] for b in fake.received[:3]] == [3, 8, 7]


async def test_n_is_refused_where_the_strategy_gives_one_answer(url: str) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        await client(url).chat.completions.create(model=MODEL, messages=ask("1 + 1?"), n=2)
    error = refused.value.body
    assert isinstance(error, dict) and error["param"] == "n"
    assert "'single' gives one answer" in error["message"]
    assert all(name in error["message"] for name in ("auto", "best_of_n", "program"))


# -- refusals ----------------------------------------------------------------------------------


async def post(url: str, body: Any, headers: dict[str, str] | None = None) -> httpx2.Response:
    async with httpx2.AsyncClient(base_url=url) as http:
        if isinstance(body, bytes):
            return await http.post("/v1/chat/completions", content=body, headers=headers)
        return await http.post("/v1/chat/completions", json=body, headers=headers)


@pytest.mark.parametrize(("body", "status", "param", "says"), [
    ({"model": f"beam:{MODEL}", "messages": ask("1?")}, 400, "model",
     "known: auto, best_of_n, ice, program, self_refine, single, tree_search"),
    ({"model": MODEL, "messages": ask("1?"), "ponder": {"strategy": "nope"}}, 400,
     "ponder.strategy", "known: auto, best_of_n"),
    ({"model": MODEL, "messages": ask("1?"), "ponder": {"params": {"beams": 3}}}, 400,
     "ponder.params", "Valid parameters: max_tokens=512, temperature=0.0, few_shot=False"),
    ({"model": MODEL, "messages": ask("1?"), "max_tokens": 0}, 400, "max_tokens",
     "greater than 0"),
    ({"model": MODEL, "messages": ask("1?"), "ponder": {"budget": {"tokns": 5}}}, 400,
     "ponder.budget.tokns", "Extra inputs"),
    ({"model": MODEL, "messages": ask("1?"), "ponder": {"verifier": "os:system"}}, 400,
     "ponder.verifier", "known: contains, exact"),
    ({"model": MODEL, "messages": [{"role": "system", "content": "hi"}]}, 400, "messages",
     "no user message"),
    ({"model": "gpt-9", "messages": ask("1?")}, 404, "model", "'<strategy>:fake-model'"),
    ({"model": "best_of_n:gpt-9", "messages": ask("1?")}, 404, "model", "see GET /v1/models"),
    ({"model": MODEL, "messages": ask("1?"), "ponder": {"budget": {"tokens": 5}}}, 400,
     "ponder.budget", "no room for one model call"),
    ({"model": MODEL, "messages": ask("1?"), "reasoning_effort": "maximal"}, 400,
     "reasoning_effort", "choose low, medium or high"),
    ({"model": f"best_of_n:{MODEL}", "messages": ask("1?"), "ponder": {"effort": "low"}}, 400,
     "ponder.effort", "runs strategy 'single' and strategy 'best_of_n' was also given"),
    ({"model": f"beam:{MODEL}", "messages": ask("1?"), "ponder": {"effort": "low"}}, 400,
     "model", "known: auto, best_of_n"),
    ({"model": MODEL, "messages": ask("1?"), "ponder": {"effort": "max"}}, 400,
     "ponder.effort", "choose low, medium or high"),
    ({"model": f"best_of_n:{MODEL}", "messages": ask("1?"), "n": 3,
      "ponder": {"params": {"n": 2}}}, 400, "n", "need at least 3 samples"),
])
async def test_bad_requests_are_refused_naming_what_is_valid(
        fake: FakeOpenAIServer, url: str, body: dict[str, Any], status: int, param: str,
        says: str) -> None:
    response = await post(url, body)
    assert response.status_code == status
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["param"] == param and says in error["message"]
    assert "Traceback" not in response.text


async def test_a_body_that_is_not_json_is_refused(url: str) -> None:
    response = await post(url, b"{not json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"


async def test_unknown_routes_answer_in_the_error_shape(url: str) -> None:
    async with httpx2.AsyncClient(base_url=url) as http:
        missing = await http.get("/v1/nothing")
        wrong = await http.get("/v1/chat/completions")
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "not_found_error"
    assert wrong.status_code == 405 and "error" in wrong.json()


async def test_models_lists_each_strategy_on_the_model(url: str) -> None:
    models = await client(url).models.list()
    ids = [m.id for m in models.data]
    assert ids[0] == MODEL
    assert {f"{s}:{MODEL}" for s in ("single", "best_of_n", "self_refine", "ice", "program",
                                     "tree_search")} <= set(ids)


async def test_an_api_key_is_required_when_set(fake: FakeOpenAIServer) -> None:
    with ponder_server(fake, api_key="s3cret") as url:
        anonymous = await post(url, {"model": MODEL, "messages": ask("1 + 1?")})
        with pytest.raises(openai.AuthenticationError):
            await client(url, api_key="wrong").chat.completions.create(
                model=MODEL, messages=ask("1 + 1?"))
        with pytest.raises(openai.AuthenticationError):
            await client(url, api_key="wrong").models.list()
        reply = await client(url, api_key="s3cret").chat.completions.create(
            model=MODEL, messages=ask("1 + 1?"))
        async with httpx2.AsyncClient(base_url=url) as http:
            health = await http.get("/health")
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["type"] == "authentication_error"
    assert reply.choices[0].message.content == "2"
    assert health.status_code == 200
    assert len(fake.received) == 1  # refused requests never reached the model


@pytest.mark.parametrize(("upstream", "status", "code"), [
    ({"status_for": lambda body: 503}, 503, "upstream_unavailable"),
    ({"fault_rate": 1.0, "faults": ["429"]}, 429, "upstream_overloaded"),
    ({"fault_rate": 1.0, "faults": ["drop"]}, 503, "upstream_unavailable"),
    ({"status_for": lambda body: 401}, 502, "upstream_refused"),
])
async def test_an_upstream_failure_is_an_error_status_not_a_traceback(
        upstream: dict[str, Any], status: int, code: str) -> None:
    with FakeOpenAIServer(**upstream) as fake, ponder_server(fake) as url:
        upstream_url = fake.base_url
        response = await post(url, {"model": MODEL, "messages": ask("1 + 1?")})
        async with httpx2.AsyncClient(base_url=url) as http:
            trace = await http.get(f"/v1/traces/{response.headers[TRACE_HEADER]}")
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == code and upstream_url not in error["message"]
    assert trace.json()["stop_reason"] == "error"  # the trace keeps the whole error
    assert trace.json()["events"][0]["error"]


async def test_the_server_budget_caps_a_requests_budget(fake: FakeOpenAIServer) -> None:
    with ponder_server(fake, budget=Budget(calls=2)) as url:
        reply = await client(url).chat.completions.create(
            model=f"self_refine:{MODEL}", messages=ask("What is 2 + 5?"),
            extra_body={"ponder": {"params": {"max_iters": 5}, "budget": {"calls": 50}}})
    ponder = ponder_of(reply)
    assert ponder["calls"] == 2 and ponder["budget_exhausted"] is True
    assert reply.choices[0].finish_reason == "length"


def test_a_bad_default_strategy_fails_when_the_app_is_made(fake: FakeOpenAIServer) -> None:
    with pytest.raises(ConfigError, match="Valid parameters"):
        create_app(backend_for(fake), model=MODEL, strategy="best_of_n", params={"beams": 2})


# -- serving a Session ---------------------------------------------------------------------------


async def test_an_app_serves_a_sessions_strategy_params_budget_and_backend(
        fake: FakeOpenAIServer) -> None:
    session = Session(fake.base_url, model=MODEL, strategy="best_of_n", params={"n": 3},
                      budget=Budget(tokens=20_000, calls=4, seconds=60), max_retries=1)
    backend = session.backend
    assert isinstance(backend, OpenAIBackend)
    with serving(create_app(session=session, model=MODEL)) as url:
        plain = await client(url).chat.completions.create(
            model=MODEL, messages=ask("What is 2 + 3?"),
            extra_body={"ponder": {"verifier": "exact", "answer": "5"}})
        named = await client(url).chat.completions.create(
            model=f"best_of_n:{MODEL}", messages=ask("What is 2 + 3?"),
            extra_body={"ponder": {"budget": {"calls": 2}}})
        assert not backend.client.is_closed()
    ponder = ponder_of(plain)
    assert (plain.choices[0].message.content, ponder["strategy"]) == ("5", "best_of_n")
    assert (ponder["params"]["n"], ponder["verified"]) == (3, True)
    assert ponder["budget"] == {"tokens": 20_000, "calls": 4, "seconds": 60}
    # The server's strategy named in the model name is the plain model: its params apply.
    assert (ponder_of(named)["params"]["n"], ponder_of(named)["budget"]["calls"]) == (3, 2)
    assert backend.client.is_closed()  # the session made its backend, so it closes it


async def test_a_sessions_effort_serves_the_plain_model(fake: FakeOpenAIServer) -> None:
    session = Session(fake.base_url, model=MODEL, effort="medium")
    with serving(create_app(session=session, model=MODEL)) as url:
        plain = await client(url).chat.completions.create(model=MODEL,
                                                          messages=ask("What is 6 + 7?"))
        named = await client(url).chat.completions.create(model=f"single:{MODEL}",
                                                          messages=ask("What is 6 + 7?"))
    assert (ponder_of(plain)["strategy"], ponder_of(plain)["params"]["few_shot"]) == \
        ("program", False)
    assert ponder_of(named)["strategy"] == "single"


def test_create_app_takes_a_backend_or_a_session(fake: FakeOpenAIServer) -> None:
    with pytest.raises(ConfigError, match="a backend or a session"):
        create_app(model=MODEL)
    session = Session(backend_for(fake))
    with pytest.raises(ConfigError, match="session's strategy, params; set them on"):
        create_app(session=session, model=MODEL, strategy="best_of_n", params={"n": 2})


def test_a_session_with_no_limit_of_its_own_is_served_within_the_default_budget(
        fake: FakeOpenAIServer) -> None:
    unlimited = create_app(session=Session(backend_for(fake)), model=MODEL)
    assert unlimited.state.service.planner.budget == DEFAULT_BUDGET
    bounded = create_app(session=Session(backend_for(fake), budget=Budget(tokens=900)),
                         model=MODEL)
    assert bounded.state.service.planner.budget == Budget(tokens=900)


# -- the server's life -------------------------------------------------------------------------


async def test_the_backend_is_closed_when_the_server_stops(fake: FakeOpenAIServer) -> None:
    backend = backend_for(fake)
    with serving(create_app(backend, model=MODEL)) as url:
        await client(url).chat.completions.create(model=MODEL, messages=ask("1 + 2?"))
        assert not backend.client.is_closed()
    assert backend.client.is_closed()


async def test_a_client_that_goes_away_cancels_its_run() -> None:
    with FakeOpenAIServer(latency_s=0.6) as fake:
        app = create_app(backend_for(fake), model=MODEL)
        with serving(app) as url:
            async with httpx2.AsyncClient(base_url=url, timeout=0.2) as http:
                with pytest.raises(httpx2.TimeoutException):
                    await http.post("/v1/chat/completions",
                                    json={"model": MODEL, "messages": ask("1 + 2?")})
            await asyncio.sleep(1.0)  # the upstream call would have finished by now
            assert len(app.state.service.traces) == 0


async def test_500_concurrent_requests_each_get_valid_json_and_usage_adds_up(
        fake: FakeOpenAIServer, url: str) -> None:
    limits = httpx2.Limits(max_connections=100)
    async with httpx2.AsyncClient(base_url=url, limits=limits, timeout=60) as http:
        responses = await asyncio.gather(*(
            http.post("/v1/chat/completions",
                      json={"model": MODEL, "messages": ask(f"What is {i} + 1?")})
            for i in range(500)))
    bodies = [r.json() for r in responses]
    assert [r.status_code for r in responses] == [200] * 500
    assert [b["choices"][0]["message"]["content"] for b in bodies] == \
        [str(i + 1) for i in range(500)]
    assert len({b["ponder"]["trace_id"] for b in bodies}) == 500
    prompt, completion = served_tokens(fake)
    assert sum(b["usage"]["prompt_tokens"] for b in bodies) == prompt
    assert sum(b["usage"]["completion_tokens"] for b in bodies) == completion
    assert fake.usage_served["replies"] == 500


# -- one request cannot take the server ----------------------------------------------------------


def raw_socket(url: str, *, rcvbuf: int | None = None) -> socket.socket:
    """A plain TCP connection to the server, for clients no HTTP library would be: ones that
    stall, trickle or hang up."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:  # before connecting, so that the window starts small
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect((host, int(port)))
    sock.settimeout(5)
    return sock


def post_head(body: bytes, path: str = "/v1/chat/completions") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: ponder\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()


def closed_by_server(sock: socket.socket) -> bool:
    """Whether the server has closed the connection: EOF or a reset, after any bytes left."""
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return True


async def test_the_default_budget_bounds_a_request_that_asks_for_more(
        fake: FakeOpenAIServer, url: str) -> None:
    # 256 samples of 100k tokens each, and a budget far past the server's: what reaches the
    # model server is held to the server's default budget.
    reply = await client(url).chat.completions.create(
        model=f"best_of_n:{MODEL}", messages=ask("What is 2 + 2?"), max_tokens=100_000,
        extra_body={"ponder": {"params": {"n": 256},
                               "budget": {"tokens": 10**12, "calls": 10**9,
                                          "seconds": 10**8}}})
    assert DEFAULT_BUDGET.tokens is not None and DEFAULT_BUDGET.calls is not None
    [sent] = fake.received
    assert sent["n"] * sent["max_tokens"] <= DEFAULT_BUDGET.tokens
    assert ponder_of(reply)["budget"] == {"tokens": DEFAULT_BUDGET.tokens,
                                          "calls": DEFAULT_BUDGET.calls,
                                          "seconds": DEFAULT_BUDGET.seconds}
    lower = await client(url).chat.completions.create(
        model=MODEL, messages=ask("What is 2 + 2?"), extra_body={"ponder": {"budget": {
            "calls": 3}}})
    assert ponder_of(lower)["budget"]["calls"] == 3  # a request may ask for less


def test_the_serve_commands_limits_are_the_apps_defaults() -> None:
    assert Budget(tokens=cli_module.SERVE_BUDGET_TOKENS, calls=cli_module.SERVE_BUDGET_CALLS,
                  seconds=cli_module.SERVE_BUDGET_SECONDS) == DEFAULT_BUDGET
    assert cli_module.SERVE_PROGRAM_SECONDS == openai_wire.DEFAULT_PROGRAM_SECONDS
    assert cli_module.SERVE_MAX_TRACE_MB * 2**20 == openai_wire.DEFAULT_MAX_TRACE_BYTES
    assert cli_module.SERVE_CLIENT_TIMEOUT_S == openai_wire.DEFAULT_CLIENT_TIMEOUT_S
    assert cli_module.SERVE_MAX_CONNECTIONS == openai_wire.DEFAULT_MAX_CONNECTIONS


def test_every_count_parameter_of_every_strategy_has_a_ceiling() -> None:
    """Each whole-number parameter set absurdly high is refused for being too high, under
    one of the strategy's algorithms at least (a tree search's own counts apply to one)."""
    unbounded = []
    for spec in STRATEGIES.all():
        algorithm = spec.config.model_fields.get("algorithm")
        bases = [{"algorithm": a} for a in get_args(algorithm.annotation)] if algorithm else [{}]
        for name, field in spec.config.model_fields.items():
            # Tokens per call are bounded by the budget's tokens instead, and by the model.
            if name.endswith("max_tokens") or "int" not in str(field.annotation):
                continue
            refusals = []
            for base in bases:
                try:
                    spec.make_config({**base, name: 10**9})
                except ConfigError as exc:
                    refusals.append(str(exc))
            if not any(f"{name}: " in r and ("less than or equal" in r or "at most" in r)
                       for r in refusals):
                unbounded.append(f"{spec.name}.{name}")
    assert unbounded == []


@pytest.mark.parametrize(("strategy", "params"), [
    ("ice", {"agents": 200_000}),
    ("ice", {"agents": [{}] * 33}),
    ("ice", {"max_rounds": 10**6}),
    ("self_refine", {"max_iters": 10**6}),
    ("tree_search", {"beam_width": 10**4}),
    ("tree_search", {"max_depth": 10**4}),
    ("tree_search", {"algorithm": "mcts", "iterations": 10**6}),
    ("tree_search", {"algorithm": "mcts", "branching": 10**4}),
    ("program", {"max_repairs": 10**6}),
    ("auto", {"max_repairs": 10**6}),
    ("best_of_n", {"adaptive": True, "batch_size": 10**6}),
])
async def test_a_count_past_its_ceiling_is_refused_before_any_call(
        fake: FakeOpenAIServer, url: str, strategy: str, params: dict[str, Any]) -> None:
    response = await post(url, {"model": f"{strategy}:{MODEL}", "messages": ask("1 + 1?"),
                                "ponder": {"params": params}})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "ponder.params"
    assert "less than or equal" in response.json()["error"]["message"] \
        or "at most" in response.json()["error"]["message"]
    assert fake.requests == 0


SLEEPER = "Here it is.\n```python\nimport time\ntime.sleep(60)\nprint(1)\n```"


async def test_a_requests_program_timeout_is_bounded_by_the_servers() -> None:
    with FakeOpenAIServer(reply=lambda messages: SLEEPER) as fake, \
            ponder_server(fake, program_seconds=0.5) as url:
        started = time.monotonic()
        reply = await client(url).chat.completions.create(
            model=f"program:{MODEL}", messages=ask("1 + 1?"), extra_body={"ponder": {
                "params": {"timeout_s": 3600, "max_repairs": 0, "fallback": False}}})
        elapsed = time.monotonic() - started
        async with httpx2.AsyncClient(base_url=url) as http:
            trace = (await http.get(f"/v1/traces/{ponder_of(reply)['trace_id']}")).json()
    assert ponder_of(reply)["params"]["timeout_s"] == 0.5  # lowered to the server's, and said
    [run] = [e for e in trace["events"] if e["kind"] == "execute"]
    assert "did not finish within 0.5s" in run["error"]
    assert run["latency_s"] < 5 and elapsed < 10  # not the program's 60 s


async def test_a_requests_queued_programs_stop_when_its_time_does() -> None:
    # More sleeping programs than the sandbox has slots: queued behind each other they would
    # hold every slot for rounds of runs after the request's time had ended.
    n = min(4 * shared_sandbox().max_concurrency, 256)
    with FakeOpenAIServer(reply=lambda messages: SLEEPER) as fake, \
            ponder_server(fake, program_seconds=5.0) as url:
        started = time.monotonic()
        reply = await client(url).chat.completions.create(
            model=f"program:{MODEL}", messages=ask("1 + 1?"), extra_body={"ponder": {
                "params": {"n": n, "temperature": 0.7, "max_repairs": 0, "fallback": False},
                "budget": {"seconds": 1.5}}})
        elapsed = time.monotonic() - started
    assert elapsed < 1.5 + 3.0  # the request's 1.5 s and some start-up, not 4 rounds of 1.5 s
    assert ponder_of(reply)["budget_exhausted"] is True


def _result_with_trace(trace_id: str, size: int) -> Result:
    event = TraceEvent(kind="note", step="bulk", data={"text": "x" * size})
    return Result(id=trace_id, answer="1", trace=[event])


def test_the_trace_store_keeps_within_its_byte_budget() -> None:
    one = len(trace_json("t0", MODEL, _result_with_trace("t0", 100_000)))
    store = TraceStore(1000, max_bytes=3 * one + one // 2)
    for i in range(10):  # by count alone, all ten would be kept
        assert store.add(f"t{i}", MODEL, _result_with_trace(f"t{i}", 100_000))
    assert store.bytes <= store.max_bytes and len(store) == 3
    assert [store.get(f"t{i}") is not None for i in range(10)] == [False] * 7 + [True] * 3
    assert store.bytes == sum(len(store.get(f"t{i}") or b"") for i in range(7, 10))
    # A trace larger than the whole budget is not kept, and evicts nothing.
    assert not store.add("huge", MODEL, _result_with_trace("huge", 10 * one))
    assert (store.get("huge"), len(store)) == (None, 3)


async def test_the_server_keeps_traces_within_its_byte_budget(fake: FakeOpenAIServer) -> None:
    budget = 40_000
    with ponder_server(fake, max_trace_bytes=budget) as url:
        ids = []
        for i in range(12):
            reply = await client(url).chat.completions.create(
                model=f"self_refine:{MODEL}", messages=ask(f"What is {i} + 1?"))
            ids.append(ponder_of(reply)["trace_id"])
        async with httpx2.AsyncClient(base_url=url) as http:
            kept = [(await http.get(f"/v1/traces/{i}")).status_code for i in ids]
    assert kept[-1] == 200 and kept[0] == 404  # the newest kept, the oldest gone
    assert 1 < kept.count(200) < 12


async def test_a_client_that_hangs_up_mid_stream_stops_its_model_calls() -> None:
    with FakeOpenAIServer(latency_s=0.05) as fake:
        app = create_app(backend_for(fake), model=MODEL)
        with serving(app) as url:
            # Up to 41 calls, one after another; the client hangs up after the third.
            body = json.dumps({"model": f"self_refine:{MODEL}", "stream": True,
                               "messages": ask("What is 2 + 2?"),
                               "ponder": {"params": {"max_iters": 20,
                                                     "stop_marker": "NEVER SAID"}}}).encode()
            sock = raw_socket(url)
            sock.sendall(post_head(body) + body)
            deadline = time.monotonic() + 10
            while fake.requests < 3:
                assert time.monotonic() < deadline, "the run never reached the model"
                await asyncio.sleep(0.01)
            sock.close()
            await asyncio.sleep(0.3)  # the call in flight when it hung up is cancelled
            after_hang_up = fake.requests
            await asyncio.sleep(1.0)  # 20 more calls' worth of time
            assert fake.requests == after_hang_up < 41
            assert len(app.state.service.traces) == 0


async def test_a_client_that_trickles_its_request_head_is_cut_off(
        fake: FakeOpenAIServer) -> None:
    app = create_app(backend_for(fake), model=MODEL)
    with serving(app, client_timeout_s=0.5) as url:
        sock = raw_socket(url)
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: ponder\r\n")
        started = time.monotonic()
        cut = False
        while time.monotonic() - started < 4 and not cut:  # a header byte every 0.1 s
            try:
                sock.sendall(b"X")
            except (BrokenPipeError, ConnectionResetError):
                cut = True
            await asyncio.sleep(0.1)
        assert cut or closed_by_server(sock)
        assert time.monotonic() - started < 4
        sock.close()


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends before it closes (the head and body may come apart)."""
    received = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            received += chunk
    return received


async def test_a_client_that_stalls_its_body_gets_a_408(fake: FakeOpenAIServer) -> None:
    app = create_app(backend_for(fake), model=MODEL, client_timeout_s=0.5)
    with serving(app, client_timeout_s=0.5) as url:
        body = json.dumps({"model": MODEL, "messages": ask("1 + 1?")}).encode()
        sock = raw_socket(url)
        sock.sendall(post_head(body) + body[:10])  # and the rest never comes
        answer = await asyncio.to_thread(read_until_closed, sock)
        sock.close()
    assert answer.startswith(b"HTTP/1.1 408")
    assert b"request_timeout" in answer
    assert fake.requests == 0


async def test_a_client_that_stops_reading_its_reply_is_cut_off() -> None:
    # One reply of 8 MB (room for it in max_tokens): its trace is more than socket buffers hold.
    big = "Final answer: " + "7" * (8 << 20)
    with FakeOpenAIServer(reply=lambda messages: big) as fake:
        app = create_app(backend_for(fake), model=MODEL, budget=Budget())
        with serving(app, client_timeout_s=0.5) as url:
            reply = await post(url, {"model": MODEL, "messages": ask("1?"),
                                     "max_tokens": 300_000})
            trace_id = reply.headers[TRACE_HEADER]
            sock = raw_socket(url, rcvbuf=4096)
            sock.sendall(f"GET /v1/traces/{trace_id} HTTP/1.1\r\nHost: ponder\r\n\r\n"
                         .encode())
            await asyncio.sleep(2.5)  # reading nothing, well past the 0.5 s
            received = b""
            try:
                while chunk := sock.recv(1 << 20):
                    received += chunk
            except ConnectionResetError:
                pass
            sock.close()
    head, _, body = received.partition(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:")))
    assert length > 8 << 20
    assert len(body) < length  # cut off, not sent the whole trace


async def test_connections_past_the_limit_get_a_503(fake: FakeOpenAIServer) -> None:
    app = create_app(backend_for(fake), model=MODEL)
    with serving(app, max_connections=2) as url:
        idle = [raw_socket(url), raw_socket(url)]
        await asyncio.sleep(0.1)
        response = await post(url, {"model": MODEL, "messages": ask("1 + 1?")})
        for sock in idle:
            sock.close()
    assert response.status_code == 503


@pytest.mark.parametrize(("body", "says"), [
    (b"[" * 200_000 + b"]" * 200_000, "nested too deeply"),
    (b'{"model": "x", "messages": ' + b'{"a": ' * 100_000 + b"1" + b"}" * 100_001,
     "nested too deeply"),
    (json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "1 + \ud800"}]})
     .encode(), "lone surrogate"),
    (json.dumps({"model": MODEL, "messages": ask("1?"),
                 "ponder": {"budget": {"tokens": int("9" * 400)}}}).encode(), "ponder.budget"),
])
async def test_hostile_bodies_get_a_400_not_a_500(
        fake: FakeOpenAIServer, url: str, body: bytes, says: str) -> None:
    response = await post(url, body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert says in error["message"] or says in (error["param"] or "")
    assert fake.requests == 0


# -- the command ---------------------------------------------------------------------------------


def test_serve_help_lists_its_options() -> None:
    result = CliRunner().invoke(cli, ["serve", "--help"])
    assert result.exit_code == 0
    for option in ("--base-url", "--strategy", "--param", "--budget-tokens", "--budget-calls",
                   "--budget-seconds", "--api-key", "--host", "--port", "--max-program-seconds",
                   "--max-trace-mb", "--client-timeout", "--max-connections"):
        assert option in result.stdout


def test_serve_sets_the_operators_limits(fake: FakeOpenAIServer,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    configs: list[uvicorn.Config] = []

    def run(server: uvicorn.Server, sockets: Any = None) -> None:
        configs.append(server.config)
        server.started = True

    monkeypatch.setattr(uvicorn.Server, "run", run)
    result = CliRunner().invoke(cli, [
        "serve", "--base-url", fake.base_url, "--model", MODEL, "--budget-tokens", "5000",
        "--max-program-seconds", "2", "--max-trace-mb", "1", "--client-timeout", "7",
        "--max-connections", "9"])
    assert result.exit_code == 0, result.output
    [config] = configs
    service = config.app.state.service
    assert service.planner.budget == Budget(tokens=5000, calls=DEFAULT_BUDGET.calls,
                                            seconds=DEFAULT_BUDGET.seconds)
    assert (service.planner.program_seconds, service.traces.max_bytes) == (2, 1 << 20)
    assert (service.client_timeout_s, config.limit_concurrency) == (7, 9)
    assert config.timeout_keep_alive == 5 and config.h11_max_incomplete_event_size == 64 << 10


def test_serve_refuses_a_bad_strategy_before_listening(fake: FakeOpenAIServer) -> None:
    result = CliRunner().invoke(cli, ["serve", "--base-url", fake.base_url, "-s", "beam"])
    assert result.exit_code == 2
    assert "unknown strategy 'beam'" in result.stderr


def test_importing_ponder_does_not_load_the_web_stack() -> None:
    code = ("import sys, ponder, ponder.cli; "
            "print(sorted({'starlette', 'uvicorn'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
