"""Runs a strategy over many problems with bounded concurrency, writing each result as it
finishes, and resumes a run that stopped (however it stopped) without losing or repeating rows.

>>> solver = Solver(spec, config, backend=backend, budget=Budget(tokens=2000), prompts=prompts)
>>> todo, previous = resume_plan(problems, "results.jsonl")
>>> with ResultsWriter("results.jsonl") as out:
...     await run_all(todo, solver, concurrency=16, writer=out)
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ponder.backends.base import Backend
from ponder.budget import Budget
from ponder.prompts import PromptLibrary
from ponder.results import ResultsWriter, drop_torn_tail, read_results, rewrite_results
from ponder.runner import run_problem
from ponder.strategies.base import StrategyConfig, StrategySpec
from ponder.tracing import START_STEP, TraceSink
from ponder.types import Problem, Result, TraceEvent
from ponder.verifiers import Verifier

log = logging.getLogger(__name__)


def _no_verifier(problem: Problem) -> Verifier | None:
    return None


@dataclass(frozen=True)
class Solver:
    """How every problem of a run is solved: one strategy and config, one shared backend, the
    verifier each problem calls for, and a per-problem budget."""

    spec: StrategySpec[Any]
    config: StrategyConfig
    backend: Backend
    budget: Budget = field(default_factory=Budget)
    prompts: PromptLibrary = field(default_factory=PromptLibrary)
    verifier_for: Callable[[Problem], Verifier | None] = _no_verifier
    seed: int | None = None
    trace_sink: TraceSink | None = None

    async def solve(self, problem: Problem) -> Result:
        """A result for `problem`, never an exception: a failure is the result's `error`."""
        if self.trace_sink is not None:
            self.trace_sink(TraceEvent(kind="note", step=START_STEP, problem_id=problem.id,
                                       data={"strategy": self.spec.name,
                                             "params": self.config.model_dump()}))
        started = time.monotonic()
        try:
            return await run_problem(
                problem, self.spec, self.config, backend=self.backend,
                verifier=self.verifier_for(problem), budget=self.budget, prompts=self.prompts,
                seed=self.seed, trace_sink=self.trace_sink,
            )
        except Exception as exc:  # a user's strategy or verifier may fail in any way
            log.debug("problem %s failed", problem.id, exc_info=True)
            return Result(id=problem.id, answer=None, elapsed_s=time.monotonic() - started,
                          strategy=self.spec.name, params=self.config.model_dump(),
                          stop_reason="error", error=f"{type(exc).__name__}: {exc}")


async def run_all(
    problems: Sequence[Problem],
    solver: Solver,
    *,
    concurrency: int,
    writer: ResultsWriter | None = None,
    on_result: Callable[[Result], None] | None = None,
) -> list[Result]:
    """Solve `problems`, at most `concurrency` at a time; each result is written (and passed to
    `on_result`) the moment it is ready. Results come back in the order they finished.

    Cancelling the run (Ctrl-C) keeps every row already written; rows are whole or absent.
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    pending = iter(problems)
    finished: list[Result] = []

    async def worker() -> None:
        # Workers pull from one shared iterator: safe, since `next` never awaits.
        for problem in pending:
            result = await solver.solve(problem)
            if writer is not None:
                writer.append(result)
            finished.append(result)
            if on_result is not None:
                on_result(result)
            if writer is not None:
                await writer.sync()

    async with asyncio.TaskGroup() as group:
        for _ in range(min(concurrency, len(problems))):
            group.create_task(worker())
    return finished


def resume_plan(problems: Sequence[Problem], results_path: str | Path,
                trace_path: str | Path | None = None, *,
                retry_errors: bool = False) -> tuple[list[Problem], list[Result]]:
    """What a resumed run still has to do, and the rows it keeps.

    A torn last line (the process died mid-write) is cut from the results file and the trace
    file first, so the rows appended next start on a line of their own. With `retry_errors`,
    rows whose problem failed are taken out of the file (atomically) to be solved again.
    """
    for path in (results_path, trace_path):
        if path is not None and (dropped := drop_torn_tail(path)):
            log.info("%s: dropped a torn last line (%d bytes)", path, dropped)
    wanted = {p.id for p in problems}
    previous: dict[str, Result] = {}
    if Path(results_path).is_file():
        rows = read_results(results_path)
        if retry_errors and any(row.error for row in rows):
            rows = [row for row in rows if not row.error]
            rewrite_results(results_path, rows)
        previous = {row.id: row for row in rows if row.id in wanted}
    todo = [p for p in problems if p.id not in previous]
    return todo, list(previous.values())
