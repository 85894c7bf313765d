"""Every example in examples/ runs: the problem files through `ponder solve`, the scripts as
scripts (against the fake server, or the embedded model where marked slow)."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ponder.cli import app
from ponder.runs.problem_files import load_problems
from ponder.runs.results_reader import read_results
from ponder.testing import FakeOpenAIServer
from ponder.verifiers import VerifierChoice
from tests.conftest import REPO

EXAMPLES = REPO / "examples"
MATH = EXAMPLES / "math_problems.jsonl"
CODING = EXAMPLES / "coding_problems.jsonl"


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as fake:
        yield fake


def run_script(name: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(EXAMPLES / name), *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **({"OPENAI_BASE_URL": args[0]} if args else {})})


def test_the_math_example_has_gold_answers_and_the_math_verifier() -> None:
    choice = VerifierChoice()
    problems = load_problems(MATH, choice)
    assert len(problems) == 3
    assert all(p.answer for p in problems)
    assert {getattr(choice.for_problem(p), "name", None) for p in problems} == {"math"}


def test_the_coding_examples_reference_solutions_pass_their_own_tests() -> None:
    problems = load_problems(CODING)
    assert len(problems) == 2
    for problem in problems:
        assert problem.test is not None and problem.entry_point is not None
        namespace: dict[str, object] = {}
        exec(problem.problem + problem.metadata["canonical_solution"] + problem.test, namespace)
        namespace["check"](namespace[problem.entry_point])  # type: ignore[operator]


@pytest.mark.parametrize("example,verifier", [(MATH, "math"), (CODING, "unit_tests")])
def test_each_problem_file_runs_through_ponder_solve(server: FakeOpenAIServer, tmp_path: Path,
                                                     example: Path, verifier: str) -> None:
    out = tmp_path / "run.jsonl"
    result = CliRunner().invoke(app, ["solve", str(example), "--base-url", server.base_url,
                                      "-o", str(out), "--json"])
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    rows = read_results(out)
    assert summary["done"] == len(rows) == len(load_problems(example))
    assert summary["judged"] == len(rows)  # the verifier came from the gold fields
    assert all(r.error is None and r.verdict is not None for r in rows)


def test_the_agent_pipeline_runs_against_a_server(server: FakeOpenAIServer) -> None:
    done = run_script("agent_pipeline.py", server.base_url)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line.split()[0] for line in lines[:4]] == ["bus", "tickets", "lunch", "total"]
    assert lines[-1].startswith("pipeline used")
    assert server.requests >= 6  # three parts × best_of_n, then draft, feedback (and refine)


def test_the_agent_pipeline_says_how_to_call_it_without_a_url() -> None:
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_BASE_URL"}
    done = subprocess.run([sys.executable, str(EXAMPLES / "agent_pipeline.py")], cwd=REPO,
                          capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode != 0 and "usage" in done.stderr


def test_the_custom_strategy_example_retries_until_verified() -> None:
    done = run_script("custom_strategy.py")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("answer=8 stop=verified tries=2 ")


def test_the_custom_verifier_example_judges_and_explains() -> None:
    done = run_script("custom_verifier.py")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "passed=True" in lines[0]
    assert "passed=False That leaves remainder 4 by 7." in lines[1]
    assert "passed=False `many` is no number." in lines[2]
    assert lines[-1] == "solve: answer=28 passed=True"


def test_the_custom_backend_example_runs_every_strategy_on_a_function() -> None:
    done = run_script("custom_backend.py")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("solve: answer=391 tokens=")
    assert lines[1] == "solve_many: ['5', '32'] votes: [{'5': 3.0}, {'32': 3.0}]"


@pytest.mark.parametrize(("name", "definition"), [("custom_strategy.py", "retry"),
                                                  ("custom_verifier.py", "MultipleOf"),
                                                  ("custom_backend.py", "Calculator")])
def test_a_custom_strategy_verifier_or_backend_fits_in_15_lines(name: str,
                                                                definition: str) -> None:
    """What STYLE.md promises a user: their own strategy, verifier or backend in under 15
    lines (its config class included, blank lines not counted)."""
    source = (EXAMPLES / name).read_text(encoding="utf-8")
    tree = ast.parse(source)
    lines = source.splitlines()
    counted = 0
    for node in tree.body:
        if isinstance(node, ast.ClassDef | ast.AsyncFunctionDef | ast.FunctionDef) and (
                node.name == definition or node.name.endswith("Config")):
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            assert node.end_lineno is not None
            counted += sum(1 for line in lines[first - 1:node.end_lineno] if line.strip())
    assert 0 < counted <= 15, counted


@pytest.mark.slow
def test_the_math_example_solves_with_the_embedded_model(tmp_path: Path) -> None:
    """A fresh clone's first command: the embedded model, the summary, a row per problem.
    What the model answers is its business; what the framework records is checked."""
    out = tmp_path / "run.jsonl"
    done = subprocess.run(
        [sys.executable, "-m", "ponder", "solve", str(MATH), "-p", "max_tokens=256",
         "-o", str(out)], cwd=REPO, capture_output=True, text=True, timeout=900,
        env={**os.environ, "COLUMNS": "200"})
    assert done.returncode == 0, done.stderr
    assert "ponder summary" in done.stdout
    assert "3 / 3" in done.stdout and "judged" in done.stdout
    rows = read_results(out)
    assert sorted(r.id for r in rows) == ["apples", "pencils", "train"]
    for row in rows:
        assert row.error is None
        assert row.verdict is not None  # the math verifier judged it, right or wrong
        assert row.usage.calls >= 1 and 0 < row.usage.completion_tokens <= 256
        assert row.params["max_tokens"] == 256
    assert (tmp_path / "run.trace.jsonl").is_file()
