"""Effort tiers: `effort="low" | "medium" | "high"` picks a strategy and its parameters, in the
API and on the command line; explicit parameters override the tier's, a second strategy is
refused, and the result says which effort it ran at."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import ponder
from ponder import Budget, ConfigError, ScriptedBackend
from ponder.cli import app
from ponder.runs.results_reader import read_results
from ponder.strategies.effort import EFFORTS, TIERS, strategy_for
from ponder.testing import FakeOpenAIServer, by_step


def test_each_effort_names_a_strategy_and_its_parameters() -> None:
    assert EFFORTS == ("low", "medium", "high")
    assert {e: TIERS[e].strategy for e in EFFORTS} == \
        {"low": "single", "medium": "program", "high": "auto"}
    low = strategy_for("low", None)
    assert low[0].name == "single" and low[1].temperature == 0.0
    spec, config = strategy_for("medium", None)
    assert spec.name == "program"
    assert config.few_shot is False and config.temperature == 0.0
    spec, config = strategy_for("high", None)
    assert spec.name == "auto" and config == spec.config()


def test_explicit_parameters_override_the_tiers() -> None:
    _, config = strategy_for("medium", None, {"n": 5, "temperature": 0.7})
    assert (config.n, config.temperature, config.few_shot) == (5, 0.7, False)
    with pytest.raises(ConfigError, match="no_such"):
        strategy_for("low", None, {"no_such": 1})


def test_an_effort_with_another_strategy_is_refused() -> None:
    with pytest.raises(ConfigError, match="choose one"):
        strategy_for("high", "best_of_n")
    # The default strategy cannot be told from one left unset; the tier's own agrees with it.
    assert strategy_for("high", "single")[0].name == "auto"
    assert strategy_for("medium", "program")[0].name == "program"
    with pytest.raises(ConfigError, match="choose low, medium or high"):
        strategy_for("maximum", None)
    assert strategy_for(None, "best_of_n", {"n": 3})[0].name == "best_of_n"


async def test_the_api_runs_the_tier_and_the_result_says_which_effort() -> None:
    backend = ScriptedBackend("17 * 23 = 391. Final answer: 391")
    result = await ponder.asolve("What is 17 * 23?", effort="low", backend=backend)
    assert (result.answer, result.strategy, result.info["effort"]) == ("391", "single", "low")
    assert result.params["temperature"] == 0.0
    [note] = [e for e in result.trace if e.kind == "note" and e.step == "effort"]
    assert note.data == {"effort": "low", "strategy": "single"}

    backend = ScriptedBackend(by_step(write="```python\nprint(17 * 23)\n```",
                                      answer="Final answer: 391"))
    result = await ponder.asolve("What is 17 * 23?", effort="high", backend=backend)
    assert (result.strategy, result.stop_reason) == ("auto", "consensus")
    assert result.info["effort"] == "high" and result.info["tier"] == 0

    with pytest.raises(ConfigError, match="choose one"):
        await ponder.asolve("What is 17 * 23?", effort="low", strategy="best_of_n",
                            backend=backend)


async def test_a_run_the_budget_cut_short_still_says_its_effort() -> None:
    result = await ponder.asolve("What is 17 * 23?", effort="low", budget=Budget(tokens=1),
                                 backend=ScriptedBackend("Final answer: 391"))
    assert result.answer is None and result.stop_reason == "budget"
    assert result.budget_exhausted and result.info["effort"] == "low"


def test_the_cli_takes_effort_and_refuses_it_with_another_strategy(tmp_path: Path) -> None:
    problems = tmp_path / "sums.jsonl"
    problems.write_text(json.dumps({"id": "s1", "problem": "What is 1 + 2?", "answer": "3"})
                        + "\n")
    runner = CliRunner()
    with FakeOpenAIServer() as server:
        out = tmp_path / "r.jsonl"
        done = runner.invoke(app, ["solve", str(problems), "--base-url", server.base_url,
                                   "--effort", "low", "-p", "max_tokens=33", "-o", str(out),
                                   "--quiet"])
        assert done.exit_code == 0, done.output
        [row] = read_results(out)
        assert (row.strategy, row.info["effort"], row.answer) == ("single", "low", "3")
        assert {(b["max_tokens"], b["temperature"]) for b in server.received} == {(33, 0.0)}
        asked = server.requests
        for extra, message in [(["--effort", "high", "-s", "best_of_n"], "choose one"),
                               (["--effort", "extreme"], "choose low, medium or high")]:
            refused = runner.invoke(app, ["solve", str(problems), "--base-url",
                                          server.base_url, "-o", str(tmp_path / "x.jsonl"),
                                          *extra])
            assert refused.exit_code == 2 and message in refused.stderr, refused.output
        assert server.requests == asked
