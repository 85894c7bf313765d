"""The bench loop: solve every run (`ponder.bench.run.solve_run`; none with `cached`), score
it by gold and write the curve after each, so that a bench stopped at any point leaves the
curve of the runs so far. One `Session` per embedded model the runs name (`backend_for`), its
model loaded once for all of that model's runs. Whoever follows the bench (the CLI's progress
bars) hears of it through a `Watcher`; nothing here draws.

>>> bench = await run_bench(problems, runs, Path("bench"), BackendSpec.of(None),
...                         title="gsm8k: 300 problems", budget=Budget(tokens=4000))
>>> [(p.label, p.accuracy, p.mean_tokens) for p in bench.points]
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from ponder.backends.local import LocalBackend
from ponder.backends.spec import BackendSpec
from ponder.bench.curve import write_all
from ponder.bench.run import (
    CurvePoint,
    Scorer,
    adopt_cached_runs,
    cached_rows,
    run_wall,
    score_run,
    solve_run,
)
from ponder.bench.spec import Run
from ponder.core.budget import Budget
from ponder.core.types import Problem, Result
from ponder.prompts import PromptLibrary
from ponder.session import DEFAULT_CONCURRENCY, Session


class Watcher(Protocol):
    """Whoever follows a bench. `run_began` and `run_ended` bracket each run, solved or read
    from the cache (`run_ended` also when it raised); `rows_found` says, before a run is
    solved, which rows it has already (`previous`) and how many problems it has still to
    solve; `on_result` hears each row solved."""

    def run_began(self, number: int, run: Run) -> None:
        """`run` is the `number`th (from 1) of the bench's runs."""

    def rows_found(self, run: Run, previous: list[Result], todo: int) -> None: ...

    def on_result(self, row: Result) -> None: ...

    def run_ended(self, run: Run) -> None: ...


class Unwatched:
    """A `Watcher` that hears and does nothing."""

    def run_began(self, number: int, run: Run) -> None:
        pass

    def rows_found(self, run: Run, previous: list[Result], todo: int) -> None:
        pass

    def on_result(self, row: Result) -> None:
        pass

    def run_ended(self, run: Run) -> None:
        pass


@dataclass(frozen=True)
class Bench:
    """What a bench came to: its curve's points, the warnings writing the curve gave (no
    plot without matplotlib), how many rows scored carry an error (each counted wrong), and
    whether `stop` ended it before every run was solved."""

    points: list[CurvePoint]
    warnings: list[str]
    failed_rows: int
    stopped: bool


def backend_for(backend: BackendSpec, run: Run) -> BackendSpec:
    """The backend `run` is solved on: the bench's, on the embedded model the run names."""
    return replace(backend, local_model=run.local_model or backend.local_model)


async def run_bench(problems: Sequence[Problem], runs: Sequence[Run], out_dir: Path,
                    backend: BackendSpec, *, title: str, command: str = "",
                    x_axis: str = "tokens", by: str | None = None,
                    groups: Mapping[str, str] | None = None,
                    paired_with: Sequence[str] = (),
                    model_params: float | None = None, budget: Budget | None = None,
                    prompts: PromptLibrary | None = None, seed: int | None = 0,
                    concurrency: int = DEFAULT_CONCURRENCY,
                    samples_in_flight: int | None = None, cached: bool = False,
                    stop: asyncio.Event | None = None,
                    watcher: Watcher | None = None) -> Bench:
    """Solve (unless `cached`) and score every run of `runs` on `problems` (each with gold:
    `check_gold`), caching its rows under `out_dir/runs/` and writing the curve files to
    `out_dir` after each (`ponder.bench.curve.write_all`: `title`, `command` (how the rows were
    made, for a reader), the plot's `x_axis`, the breakdown `by` a field whose value for each
    problem id `groups` holds, the paired tables against each label of `paired_with` beside
    the first point's). `model_params` is the server model's parameter count (the
    embedded models' are known), for the compute axis.

    `concurrency` problems go at once; with `samples_in_flight` (the embedded model's slots),
    a run drawing n samples a call takes that many over n problems at once (two at least).
    Once `stop` is set no problem is started and no further run solved: the runs after are
    scored on their cached rows. A run whose backend refuses every call raises
    `BackendRefused` (`ponder.runs.refusals`), the curve of the runs before it written."""
    watcher = watcher or Unwatched()
    adopt_cached_runs(runs, out_dir)
    scorer = Scorer(problems)
    sessions: dict[str | None, Session] = {}
    points: list[CurvePoint] = []
    warnings: list[str] = []
    failed = 0
    try:
        for number, run in enumerate(runs, start=1):
            if run.local_model not in sessions:
                sessions[run.local_model] = Session(backend_for(backend, run), budget=budget,
                                                    prompts=prompts, seed=seed)
            session = sessions[run.local_model]
            watcher.run_began(number, run)
            try:
                rows = cached_rows(run, problems, out_dir) if cached else await solve_run(
                    run, problems, out_dir, session=session,
                    concurrency=_in_flight(run, concurrency, samples_in_flight),
                    on_start=watcher.rows_found, on_result=watcher.on_result, stop=stop)
            finally:
                watcher.run_ended(run)
            if not rows:  # stopped before this run began: it has no point yet
                continue
            failed += sum(row.error is not None for row in rows)
            points.extend(await score_run(
                run, rows, scorer, wall_s=run_wall(out_dir, run),
                # The model a curve's line ran on: --model, else the embedded model's name or
                # the GGUF's file name; a server's address (its port changes run to run) only
                # when nothing else says.
                model=backend.model or session.backend.label,
                model_params=_parameters(session, model_params)))
            # After every run, so that a bench stopped later still leaves the curve so far.
            warnings = write_all(points, out_dir, title=title, command=command, x=x_axis,
                                 by=by, groups=groups, paired_with=paired_with)
    finally:
        for session in sessions.values():
            await session.aclose()
    return Bench(points, warnings, failed, stopped=stop is not None and stop.is_set())


def _in_flight(run: Run, concurrency: int, samples_in_flight: int | None) -> int:
    """Problems at once for `run`. The embedded model serves `samples_in_flight` samples at
    once: with n samples a call, fewer problems go at once, so that a problem's wall time is
    mostly its own; two at least, so that one problem's slowest samples do not leave the other
    slots idle (the queue is ponder's, not the server's)."""
    if samples_in_flight is None:
        return concurrency
    return max(min(2, samples_in_flight), samples_in_flight // int(run.params.get("n", 1)))


def _parameters(session: Session, given: float | None) -> float | None:
    """The model's parameter count: the embedded model's own, else what the caller gave."""
    backend = session.backend
    embedded = backend.embedded if isinstance(backend, LocalBackend) else None
    return embedded.params if embedded is not None else given
