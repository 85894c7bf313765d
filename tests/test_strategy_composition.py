"""A strategy runs another through its context (`ctx.run`): found by name or given as a spec,
on the same budget, seeds and trace, each event it makes marked as its own; `auto` is built
so, and a user's strategy can be, in the 15 lines docs/strategies.md shows."""

from __future__ import annotations

import ast
import asyncio
import re
from typing import Any

import pytest
from pydantic import Field

import ponder
from ponder import Budget, BudgetExhausted, ConfigError, Problem, ScriptedBackend
from ponder.core.types import Outcome, SamplingInfo
from ponder.strategies import REGISTRY
from ponder.strategies.context import Context
from ponder.strategies.program import ProgramConfig
from ponder.strategies.single import SingleConfig
from ponder.strategies.spec import StrategyConfig, StrategySpec
from ponder.testing import by_step, make_context
from tests.conftest import REPO

NO_GOLD = Problem(id="mul", problem="What is 17 * 23?")


def code(body: str) -> str:
    return f"Here is the program:\n```python\n{body}\n```"


def spec(name: str, fn: Any) -> StrategySpec[StrategyConfig]:
    return StrategySpec(name=name, run=fn, config=StrategyConfig)


def marked(ctx: Context) -> list[tuple[str, str, str | None]]:
    return [(e.kind, e.step, e.data.get("sub_strategy")) for e in ctx.trace.events]


async def test_a_strategy_found_by_name_runs_on_the_same_budget_and_trace() -> None:
    ctx = make_context(backend=ScriptedBackend("Final answer: 5"), budget=Budget(calls=3))
    outcome = await ctx.run("single", {"max_tokens": 64})
    assert outcome.candidate is not None and outcome.candidate.answer == "5"
    assert outcome.reason == "done" and ctx.seen == [outcome.candidate]
    assert ctx.meter.used.calls == 1  # the part's call is the whole's
    assert marked(ctx) == [("note", "sub_strategy/start", "single"),
                           ("generate", "single/answer", "single"),
                           ("note", "sub_strategy/outcome", "single")]
    start, _, end = ctx.trace.events
    assert start.data["params"] == {"max_tokens": 64, "temperature": 0.0, "few_shot": False}
    assert (end.data["reason"], end.data["answer"]) == ("done", "5")
    ctx.note("after")  # outside the part: no mark
    assert "sub_strategy" not in ctx.trace.events[-1].data


async def test_params_are_checked_as_ponder_solve_checks_them() -> None:
    ctx = make_context()
    with pytest.raises(ConfigError, match=r"strategy 'single'.*no_such"):
        await ctx.run("single", {"no_such": 1})
    with pytest.raises(ConfigError, match="unknown strategy 'nonesuch'"):
        await ctx.run("nonesuch")
    with pytest.raises(ConfigError, match="takes a SingleConfig, not a ProgramConfig"):
        await ctx.run("single", ProgramConfig())
    assert ctx.trace.events == []  # refused before anything ran


async def test_a_config_object_and_a_spec_of_ones_own_are_run_as_given() -> None:
    async def shout(ctx: Context, cfg: StrategyConfig) -> str:
        [reply] = await ctx.generate("single/answer", max_tokens=cfg.max_tokens)
        return reply.text.upper()

    ctx = make_context(backend=ScriptedBackend("final answer: five"))
    outcome = await ctx.run(spec("shout", shout), StrategyConfig(max_tokens=32))
    # A bare reply becomes an Outcome as the runner makes one: its candidate named for it.
    assert outcome.candidate is not None and outcome.candidate.answer == "FIVE"
    assert (outcome.candidate.source, outcome.reason) == ("shout", "done")
    outcome = await ctx.run("single", SingleConfig(max_tokens=16))
    assert outcome.candidate is not None


async def test_nested_parts_are_marked_with_their_path_and_run_side_by_side_apart() -> None:
    async def both(ctx: Context, cfg: StrategyConfig) -> Outcome:
        _, second = await asyncio.gather(ctx.run("single"), ctx.run(spec("inner", inner)))
        return second

    async def inner(ctx: Context, cfg: StrategyConfig) -> Outcome:
        ctx.note("inner decided")
        return await ctx.run("single")

    ctx = make_context(backend=ScriptedBackend("Final answer: 5"))
    await ctx.run(spec("both", both))
    steps = {(step, mark) for _, step, mark in marked(ctx)}
    assert ("single/answer", "both/single") in steps
    assert ("inner decided", "both/inner") in steps
    assert ("single/answer", "both/inner/single") in steps
    assert ctx.meter.used.calls == 2


async def test_a_budget_the_part_exhausts_reaches_the_caller_as_a_calls_would() -> None:
    async def greedy(ctx: Context, cfg: StrategyConfig) -> Outcome:
        await ctx.generate("single/answer", max_tokens=cfg.max_tokens)
        await ctx.generate("single/answer", max_tokens=cfg.max_tokens)
        return ctx.finish(None)

    ctx = make_context(backend=ScriptedBackend("Final answer: 5"), budget=Budget(calls=1))
    with pytest.raises(BudgetExhausted):
        await ctx.run(spec("greedy", greedy))
    assert ctx.meter.used.calls == 1
    # A built-in that stops at the budget itself says so, and keeps what it drew.
    ctx = make_context(backend=ScriptedBackend(["Final answer: 5", "Final answer: 6"]),
                       budget=Budget(calls=1))
    outcome = await ctx.run("best_of_n", {"n": 4, "adaptive": True, "min_samples": 2})
    assert outcome.reason == "budget" and outcome.candidate is not None
    assert ctx.meter.used.calls == 1


async def test_autos_tier_0_runs_program_and_single_and_the_trace_says_which_is_which() -> None:
    backend = ScriptedBackend(by_step(write=code("print(17 * 23)"), answer="Final answer: 401",
                                      generate="Final answer: 391"))
    result = await ponder.asolve(NO_GOLD, strategy="auto", backend=backend)
    assert (result.answer, result.stop_reason) == ("391", "consensus")
    mark = {e.step: e.data.get("sub_strategy") for e in result.trace if e.kind != "note"}
    assert mark == {"write": "program", "run 0": "program", "single/answer": "single",
                    "tier 1": None}
    parts = [(e.data["sub_strategy"], e.data["params"]) for e in result.trace
             if e.step == "sub_strategy/start"]
    assert sorted(name for name, _ in parts) == ["program", "single"]
    program = dict(parts)["program"]
    assert (program["n"], program["temperature"], program["fallback"]) == (1, 0.0, False)


# -- the user's strategy docs/strategies.md shows ----------------------------------------------

DOC = (REPO / "docs" / "strategies.md").read_text(encoding="utf-8")
[EXAMPLE] = [block for block in re.findall(r"```python\n(.*?)```", DOC, re.S)
             if "ctx.run(" in block]


def test_the_documented_composed_strategy_fits_in_15_lines() -> None:
    """As tests/test_examples.py counts: its config class and function, blank lines not."""
    lines = EXAMPLE.splitlines()
    counted = 0
    for node in ast.parse(EXAMPLE).body:
        assert isinstance(node, ast.ClassDef | ast.AsyncFunctionDef)
        first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
        assert node.end_lineno is not None
        counted += sum(1 for line in lines[first - 1:node.end_lineno] if line.strip())
    assert 0 < counted <= 15, counted


@pytest.fixture
def documented(monkeypatch: pytest.MonkeyPatch) -> str:
    """The documented strategy, registered in a copy of the shared registry (undone after)."""
    monkeypatch.setattr(REGISTRY, "_specs", dict(REGISTRY._specs))
    namespace: dict[str, Any] = {"ponder": ponder, "Field": Field}
    exec(compile(EXAMPLE, "docs/strategies.md", "exec"), namespace)
    [name] = re.findall(r'register_strategy\("(\w+)"', EXAMPLE)
    return name


async def test_the_documented_strategy_answers_with_a_program_that_prints(
        documented: str) -> None:
    backend = ScriptedBackend(by_step(write=code("print(17 * 23)")))  # a vote would fail
    result = await ponder.asolve(NO_GOLD, strategy=documented, backend=backend)
    assert (result.answer, result.strategy, result.usage.calls) == ("391", documented, 1)
    assert result.info["runs"] == 1  # program's own info, as it reported it


async def test_the_documented_strategy_votes_where_the_program_printed_nothing(
        documented: str) -> None:
    backend = ScriptedBackend(by_step(write=code("x = 1"), repair=code("y = 2"),
                                      generate=["Final answer: 391", "Final answer: 391",
                                                "Final answer: 7"]))
    result = await ponder.asolve(NO_GOLD, strategy=documented, backend=backend, n=3,
                                 budget=Budget(tokens=5_000))
    assert result.answer == "391"
    sampled = SamplingInfo.of(result)
    assert sampled is not None and (sampled.samples, sampled.votes) == (3, {"391": 2, "7": 1})
    assert result.usage.calls == 3  # write, repair, one n=3 request: one budget for all
    marks = {e.data.get("sub_strategy") for e in result.trace}
    assert marks == {"program", "best_of_n"}
