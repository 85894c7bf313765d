"""`ponder serve`: the real app under uvicorn on 127.0.0.1, the fake OpenAI-compatible server
upstream, called with the `openai` client and with raw HTTP."""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx2
import openai
import pytest
import uvicorn
from starlette.applications import Starlette
from typer.testing import CliRunner

from ponder.backends.openai import OpenAIBackend
from ponder.budget import Budget
from ponder.cli import app as cli
from ponder.errors import ConfigError
from ponder.serve import TRACE_HEADER, TraceStore, create_app
from ponder.testing import FakeOpenAIServer
from ponder.types import Result

MODEL = "fake-model"


@contextmanager
def serving(app: Starlette) -> Iterator[str]:
    """`app` under uvicorn in a thread of its own (its own event loop), on a free port; yields
    the base URL and stops the server (running the app's shutdown) on the way out."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
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


# -- the command ---------------------------------------------------------------------------------


def test_serve_help_lists_its_options() -> None:
    result = CliRunner().invoke(cli, ["serve", "--help"])
    assert result.exit_code == 0
    for option in ("--base-url", "--strategy", "--param", "--budget-tokens", "--budget-calls",
                   "--budget-seconds", "--api-key", "--host", "--port"):
        assert option in result.stdout


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
