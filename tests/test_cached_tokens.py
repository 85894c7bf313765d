"""Prompt tokens a server served from its prefix cache: read from each server's reply shape
over real HTTP on 127.0.0.1, dropped when they cannot be right, summed over a run, and shown in
the summary, `ponder show` and the curve's CSV, while the budget still charges them in full."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import BaseModel
from rich.console import Console
from typer.testing import CliRunner

import ponder
from ponder.backends.openai import OpenAIBackend
from ponder.bench.curve import write_csv
from ponder.bench.run import CurvePoint
from ponder.cli import app
from ponder.cli.render import summary_table
from ponder.core.budget import Budget
from ponder.core.types import Message, Result, TraceEvent, Usage
from ponder.runs.results_reader import read_results
from ponder.runs.summary import RunTally
from ponder.testing import FakeOpenAIServer
from ponder.testing.tokens import PrefixCache, count_prompt_tokens, prompt_tokens
from tests.conftest import json_server

MESSAGES = [Message(role="system", content="Answer briefly."),
            Message(role="user", content="Tom has 3 apples and buys 5 more. How many now?")]
PROMPT = 40  # what the hand-written servers below say the prompt cost
runner = CliRunner()


def reply(usage: dict[str, Any] | None, n: int = 1, **extra: Any) -> dict[str, Any]:
    """A chat completion of `n` choices with this `usage`, and any top-level `extra`."""
    choices = [{"index": i, "message": {"role": "assistant", "content": f"Final answer: {i}"},
                "finish_reason": "stop"} for i in range(n)]
    body: dict[str, Any] = {"id": "chatcmpl-1", "object": "chat.completion", "created": 0,
                            "model": "m", "choices": choices, **extra}
    if usage is not None:
        body["usage"] = usage
    return body


def usage(completion: int = 6, **extra: Any) -> dict[str, Any]:
    return {"prompt_tokens": PROMPT, "completion_tokens": completion,
            "total_tokens": PROMPT + completion, **extra}


async def generate(body: dict[str, Any], n: int = 1) -> tuple[list[Usage], int]:
    """The completions' usage when a server answers every chat request with `body`, and how
    many requests it got (a reply thought malformed would be asked again)."""
    requests: list[int] = []

    def answer(handler: BaseHTTPRequestHandler) -> tuple[int, Any]:
        requests.append(1)
        return 200, body

    with json_server(answer) as address:
        async with OpenAIBackend(f"http://{address}/v1", model="m", native_n=True,
                                 max_retries=1, backoff_initial=0.0) as backend:
            completions = await backend.generate(MESSAGES, n=n, max_tokens=32, temperature=0.7)
    return [c.usage for c in completions], len(requests)


# -- each server's shape ----------------------------------------------------------------------

OPENAI = reply(usage(prompt_tokens_details={"cached_tokens": 32, "audio_tokens": 0},
                     completion_tokens_details={"reasoning_tokens": 0}))
# vLLM with --enable-prompt-tokens-details (and prefix caching) sends OpenAI's field; without
# the flag, `null` in its place.
VLLM = reply(usage(prompt_tokens_details={"cached_tokens": 16}))
VLLM_WITHOUT_DETAILS = reply(usage(prompt_tokens_details=None))
# llama.cpp's server since late 2025: `timings.cache_n` beside `prompt_n` (the tokens it
# computed); since early 2026 OpenAI's field as well.
TIMINGS = {"cache_n": 36, "prompt_n": 4, "prompt_ms": 3.1, "predicted_n": 6,
           "predicted_ms": 40.2}
LLAMA_CPP_TIMINGS = reply(usage(), timings=TIMINGS)
LLAMA_CPP_BOTH = reply(usage(prompt_tokens_details={"cached_tokens": 36}), timings=TIMINGS)


@pytest.mark.parametrize(("body", "cached"), [
    (OPENAI, 32), (VLLM, 16), (VLLM_WITHOUT_DETAILS, 0), (LLAMA_CPP_TIMINGS, 36),
    (LLAMA_CPP_BOTH, 36), (reply(usage()), 0),
], ids=["openai", "vllm", "vllm-no-details", "llama.cpp-timings", "llama.cpp-both", "none"])
async def test_each_servers_shape_is_read(body: dict[str, Any], cached: int) -> None:
    [got], requests = await generate(body)
    assert got.cached_prompt_tokens == cached
    assert (got.prompt_tokens, got.completion_tokens) == (PROMPT, 6)  # charged in full
    assert requests == 1


async def test_the_cached_tokens_go_with_the_prompt_on_the_first_completion() -> None:
    body = reply(usage(completion=18, prompt_tokens_details={"cached_tokens": 24}), n=3)
    usages, _ = await generate(body, n=3)
    assert [u.prompt_tokens for u in usages] == [PROMPT, 0, 0]
    assert [u.cached_prompt_tokens for u in usages] == [24, 0, 0]
    assert sum(usages, Usage()).cached_prompt_tokens == 24


@pytest.mark.parametrize("bad", ["12", True, -1, 1.5, None, [3], {"n": 3}, PROMPT + 1])
async def test_a_cached_count_that_cannot_be_right_is_dropped_not_retried(bad: Any) -> None:
    for body in (reply(usage(prompt_tokens_details={"cached_tokens": bad})),
                 reply(usage(), timings={"cache_n": bad, "prompt_n": 4})):
        [got], requests = await generate(body)
        assert got.cached_prompt_tokens == 0 and got.prompt_tokens == PROMPT
        assert requests == 1  # the reply was good: no retry for a bad report


@pytest.mark.parametrize("extra", [
    {"usage": usage(prompt_tokens_details="cached")},
    {"usage": usage(prompt_tokens_details=[32])},
    {"usage": usage(), "timings": [36]},
    {"usage": usage(), "timings": "fast"},
    # llama.cpp's `tokens_cached` counts the slot's whole cache (generated tokens too), so it
    # is no count of this prompt's cached tokens.
    {"usage": usage(), "tokens_cached": 30},
])
async def test_a_malformed_section_costs_only_the_cached_count(extra: dict[str, Any]) -> None:
    body = reply(None)
    body.update(extra)
    [got], requests = await generate(body)
    assert (got.cached_prompt_tokens, got.prompt_tokens, requests) == (0, PROMPT, 1)


async def test_without_a_prompt_count_the_cached_one_is_held_to_the_bound() -> None:
    # No prompt_tokens: the prompt is charged its upper bound; a cached count within it is
    # kept, one beyond it dropped.
    [within], _ = await generate(reply({"completion_tokens": 6,
                                        "prompt_tokens_details": {"cached_tokens": 8}}))
    [beyond], _ = await generate(reply({"completion_tokens": 6,
                                        "prompt_tokens_details": {"cached_tokens": 10**6}}))
    assert within.estimated and within.cached_prompt_tokens == 8
    assert beyond.estimated and beyond.cached_prompt_tokens == 0


# -- the fake server's simulated cache ----------------------------------------------------------


def test_the_prefix_cache_reuses_the_longest_prefix_seen_but_not_the_last_token() -> None:
    cache = PrefixCache()
    assert cache.serve(["a", "b", "c"]) == 0
    assert cache.serve(["a", "b", "d"]) == 2
    assert cache.serve(["a", "b", "c"]) == 2  # the whole prompt again: its last is computed
    assert cache.serve(["x", "b", "c"]) == 0
    system = [m.model_dump() for m in MESSAGES[:1]]
    first = prompt_tokens([*system, {"role": "user", "content": "one two"}])
    again = prompt_tokens([*system, {"role": "user", "content": "three"}])
    assert len(first) == count_prompt_tokens([*system, {"role": "user", "content": "one two"}])
    assert PrefixCache().serve(first) == 0
    cache.serve(first)
    # The system message's tokens and the user message's opening markers: as many as the
    # system message alone with its generation prompt of three markers.
    assert cache.serve(again) == len(prompt_tokens(system))


@pytest.fixture(params=["openai", "llama.cpp"])
def cached_server(request: pytest.FixtureRequest) -> Iterator[FakeOpenAIServer]:
    shape: Literal["openai", "llama.cpp"] = request.param
    with FakeOpenAIServer(prefix_cache=shape) as fake:
        yield fake


def test_a_run_sums_what_its_calls_were_served_from_the_cache(
        cached_server: FakeOpenAIServer) -> None:
    # self_refine sends the problem again with each step: the cache serves it again.
    result = ponder.solve("Tom has 3 apples and buys 5 more. How many now?",
                          strategy="self_refine", backend=cached_server.base_url,
                          budget=Budget(tokens=4000), max_iters=2)
    calls = [e for e in result.trace if e.kind == "generate"]
    assert len(calls) >= 2
    cached = [e.usage.cached_prompt_tokens for e in calls]
    assert cached[0] == 0 and all(c > 0 for c in cached[1:])
    assert all(e.usage.cached_prompt_tokens < e.usage.prompt_tokens for e in calls)
    served = cached_server.usage_served
    assert result.usage.cached_prompt_tokens == sum(cached) == served["cached_prompt_tokens"]
    # Charged in full: the budget saw every prompt token the server counted.
    assert result.usage.prompt_tokens == served["prompt_tokens"]
    assert result.usage.total_tokens <= 4000


def test_the_cache_changes_no_charge_and_is_off_by_default() -> None:
    def run(server: FakeOpenAIServer) -> Result:
        with server:
            return ponder.solve("What is 4 + 9?", strategy="self_refine",
                                backend=server.base_url, max_iters=2)

    plain = run(FakeOpenAIServer())
    cached = run(FakeOpenAIServer(prefix_cache="openai"))
    assert plain.usage.cached_prompt_tokens == 0 and cached.usage.cached_prompt_tokens > 0
    assert plain.usage.total_tokens == cached.usage.total_tokens
    assert plain.usage.calls == cached.usage.calls
    with pytest.raises(ValueError, match="prefix_cache"):
        FakeOpenAIServer(prefix_cache="redis")  # type: ignore[arg-type]


# -- the summary, `ponder show`, `ponder solve`, the CSV --------------------------------------


def row(problem_id: str, prompt: int, cached: int) -> Result:
    return Result(id=problem_id, answer="1", usage=Usage(prompt_tokens=prompt,
                                                         completion_tokens=10, calls=2,
                                                         cached_prompt_tokens=cached))


def rendered(table: Any) -> str:
    console = Console(width=200, record=True)
    console.print(table)
    return console.export_text()


def test_the_summary_counts_cached_tokens_and_their_share() -> None:
    tally = RunTally(3)
    for r in (row("a", 100, 60), row("b", 100, 0), row("c", 200, 40)):
        tally.add(r)
    summary = tally.summary()
    assert summary.cached_prompt_tokens == 100 and summary.prompt_tokens == 400
    assert summary.cached_share == pytest.approx(0.25)
    assert summary.total_tokens == 430  # cached tokens are charged like any
    assert "cached prompt" in rendered(summary_table(summary))
    assert "100 of 400 prompt tokens (25%)" in rendered(summary_table(summary))
    # A second pass's row supersedes the first: its session usage adds only the difference.
    tally.add(row("a", 150, 90))
    assert tally.session_usage.cached_prompt_tokens == 130
    assert tally.summary().cached_prompt_tokens == 130

    none = RunTally(1)
    none.add(row("a", 100, 0))
    assert none.summary().cached_share == 0.0
    assert "cached prompt" not in rendered(summary_table(none.summary()))
    assert RunTally(0).summary().cached_share is None


def test_usage_adds_cached_tokens_and_holds_them_within_the_prompt() -> None:
    total = Usage(prompt_tokens=50, cached_prompt_tokens=20) + Usage(prompt_tokens=30,
                                                                      cached_prompt_tokens=30)
    assert total.cached_prompt_tokens == 50
    assert Usage(prompt_tokens=10, cached_prompt_tokens=99).cached_prompt_tokens == 10
    assert Usage(prompt_tokens=10, cached_prompt_tokens=-5).cached_prompt_tokens == 0


def test_results_rows_read_both_ways(tmp_path: Path) -> None:
    # A row written before the field existed loads with 0 ...
    old = json.loads(Result(id="p", answer="4", usage=Usage(prompt_tokens=12,
                                                            completion_tokens=3, calls=1))
                     .model_dump_json())
    del old["usage"]["cached_prompt_tokens"]
    path = tmp_path / "old.jsonl"
    path.write_text(json.dumps(old) + "\n")
    [loaded] = read_results(path)
    assert loaded.usage.cached_prompt_tokens == 0 and loaded.usage.total_tokens == 15
    # ... and a new row, under its documented key, reads in a Usage that predates it.
    written = json.loads(row("q", 100, 40).model_dump_json())
    assert written["usage"]["cached_prompt_tokens"] == 40

    class OldUsage(BaseModel):
        prompt_tokens: int = 0
        completion_tokens: int = 0
        calls: int = 0
        estimated: bool = False

    assert OldUsage.model_validate(written["usage"]).prompt_tokens == 100


def test_solve_and_show_print_the_cached_tokens(tmp_path: Path) -> None:
    problems = tmp_path / "p.jsonl"
    problems.write_text("".join(json.dumps({"id": f"s{i}", "problem": f"What is {i} + 2?",
                                            "answer": str(i + 2)}) + "\n" for i in range(3)))
    out = tmp_path / "r.jsonl"
    with FakeOpenAIServer(prefix_cache="openai") as server:
        done = runner.invoke(app, ["solve", str(problems), "--base-url", server.base_url,
                                   "-s", "self_refine", "-p", "max_iters=1", "-o", str(out),
                                   "--concurrency", "1"])
        served = server.usage_served["cached_prompt_tokens"]
    assert done.exit_code == 0, done.output
    assert served > 0 and "cached prompt" in done.stdout and f"{served:,} of" in done.stdout
    rows = read_results(out)
    assert sum(r.usage.cached_prompt_tokens for r in rows) == served

    shown = runner.invoke(app, ["show", str(out), "--id", "s1"], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    cached = next(r for r in rows if r.id == "s1").usage.cached_prompt_tokens
    assert f"{cached:,} prompt cached" in shown.stdout  # the result's usage
    events = [TraceEvent.model_validate_json(line) for line in
              (tmp_path / "r.trace.jsonl").read_text().splitlines()]
    hits = [e.usage.cached_prompt_tokens for e in events
            if e.problem_id == "s1" and e.kind == "generate" and e.usage.cached_prompt_tokens]
    assert hits and all(f"{c} prompt cached" in shown.stdout for c in hits)  # the timeline
    listing = runner.invoke(app, ["show", str(out)])
    assert f"{served:,} of" in listing.stdout  # the summary below the rows


def test_the_curve_csv_has_a_cached_column(tmp_path: Path) -> None:
    point = CurvePoint(label="self_refine", strategy="self_refine", params="", model="m",
                       selection="no gold", accuracy=0.5, ci_low=0.1, ci_high=0.9, correct=1,
                       problems=2, mean_tokens=120.0, mean_calls=2.0, wall_s=1.0,
                       subsampled=False, pool_n=None, errors=0, run="r",
                       mean_cached_prompt_tokens=33.333)
    write_csv([point], tmp_path / "curve.csv")
    with (tmp_path / "curve.csv").open() as file:
        [written] = list(csv.DictReader(file))
    assert written["mean_cached_prompt_tokens"] == "33.3"


def test_bench_writes_the_cached_column(tmp_path: Path) -> None:
    problems = tmp_path / "quiz.jsonl"
    quiz = [{"id": f"q{i}", "problem": f"Quiz problem number {i}: what is {i} * 7?",
             "answer": str(i * 7), "p_correct": 0.7} for i in range(1, 4)]
    problems.write_text("".join(json.dumps(q) + "\n" for q in quiz))
    with FakeOpenAIServer(quiz=quiz, prefix_cache="llama.cpp") as server:
        done = runner.invoke(app, ["bench", str(problems), "-o", str(tmp_path / "b"),
                                   "--base-url", server.base_url, "--quiet",
                                   "--concurrency", "1", "--run", "self_refine max_iters=1"])
        served = server.usage_served
    assert done.exit_code == 0, done.output
    with (tmp_path / "b" / "curve.csv").open() as file:
        [written] = list(csv.DictReader(file))
    assert served["cached_prompt_tokens"] > 0
    assert float(written["mean_cached_prompt_tokens"]) == pytest.approx(
        served["cached_prompt_tokens"] / len(quiz), abs=0.05)
