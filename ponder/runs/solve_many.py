"""Runs a strategy over many problems with bounded concurrency, writing each result as it
finishes, and resumes a run that stopped (however it stopped) without losing or repeating rows.

>>> solver = Solver(spec, config, backend=backend, budget=Budget(tokens=2000), prompts=prompts)
>>> with RunLock("results.jsonl"):  # one writer at a time, from before the file is read
...     plan = resume_plan(problems, "results.jsonl")
...     with ResultsWriter("results.jsonl") as out:
...         await run_all(plan.todo, solver, concurrency=16, writer=out)
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

from ponder.backends.base import Backend
from ponder.core.budget import Budget, RunMeter
from ponder.core.calibration import PromptCalibration
from ponder.core.errors import OutputError, PonderError
from ponder.core.redact import redact_secrets
from ponder.core.replay import Replay
from ponder.core.tracing import START_STEP, JsonlTraceWriter, TraceSink
from ponder.core.types import Problem, Result, TraceEvent
from ponder.prompts import PromptLibrary
from ponder.runs.refusals import BackendRefused, RefusalWatch
from ponder.runs.results import ResultsWriter, problem_hash, rewrite_results
from ponder.runs.results_reader import read_results
from ponder.runs.solve_one import run_problem
from ponder.runs.torn_tail import ROW_START, TRACE_ROW_START, check_torn_tail, drop_torn_tail
from ponder.strategies.base import StrategyConfig, StrategySpec
from ponder.strategies.wiring import Wiring
from ponder.verifiers import Verifier

log = logging.getLogger(__name__)

# A producer solves problems somewhere and passes each result to the sink it is given the
# moment it is ready; `record_rows` is the sink's side.
RowSink = Callable[[Result], None]
Producer = Callable[[RowSink], Awaitable[None]]


def _no_verifier(problem: Problem) -> Verifier | None:
    return None


@dataclass(frozen=True)
class Solver:
    """How every problem of a run is solved: one strategy and config, one shared backend, the
    verifier each problem calls for, a per-problem budget, and the run's total (`run_meter`,
    which every problem's calls spend as well; see `ponder.runs.allocation`). `replay_for` gives a
    problem the replies an earlier run of it paid for, which its calls take before the
    backend's (`ponder.core.replay`; a total budget's second pass). `calibration`, the prompt
    bounds every problem's calls learn and share (`ponder.core.calibration`), is the run's
    own unless its maker shares one (a `Session`'s)."""

    spec: StrategySpec[Any]
    config: StrategyConfig
    backend: Backend
    budget: Budget = field(default_factory=Budget)
    prompts: PromptLibrary = field(default_factory=PromptLibrary)
    verifier_for: Callable[[Problem], Verifier | None] = _no_verifier
    seed: int | None = None
    trace_sink: TraceSink | None = None
    run_meter: RunMeter | None = None
    replay_for: Callable[[Problem], Replay | None] | None = None
    calibration: PromptCalibration = field(default_factory=PromptCalibration)

    async def solve(self, problem: Problem) -> Result:
        """A result for `problem`, never an exception: a failure is the result's `error`.
        Errors are stored with credentials masked (an exception may quote a URL's password).
        The one exception is a trace file that could not be written (`OutputError`), which
        stops the run: the strategy may have taken it for a failure of its own, and a row
        whose trace is missing would be kept as if whole."""
        sink = None if self.trace_sink is None else _redacting(self.trace_sink)
        if sink is not None:
            sink(TraceEvent(kind="note", step=START_STEP, problem_id=problem.id,
                            data={"strategy": self.spec.name,
                                  "params": self.config.model_dump()}))
        started = time.monotonic()
        try:
            result = await run_problem(problem, self.spec, self.config, Wiring(
                self.backend, self.budget, self.prompts, self.verifier_for(problem), self.seed,
                sink, self.run_meter,
                None if self.replay_for is None else self.replay_for(problem),
                self.calibration))
        except Exception as exc:  # a user's strategy or verifier may fail in any way
            log.debug("problem %s failed", problem.id, exc_info=True)
            result = Result(id=problem.id, answer=None, elapsed_s=time.monotonic() - started,
                            strategy=self.spec.name, params=self.config.model_dump(),
                            stop_reason="error", error=f"{type(exc).__name__}: {exc}")
        if isinstance(self.trace_sink, JsonlTraceWriter):
            self.trace_sink.check()
        error = None if result.error is None else redact_secrets(result.error)
        return result.model_copy(update={"error": error, "problem_hash": problem_hash(problem)})


def _redacting(sink: TraceSink) -> TraceSink:
    def write(event: TraceEvent) -> None:
        if event.error is not None:
            event.error = redact_secrets(event.error)
        sink(event)
    return write


async def run_all(
    problems: Sequence[Problem],
    solver: Solver,
    *,
    concurrency: int,
    writer: ResultsWriter | None = None,
    on_result: Callable[[Result], None] | None = None,
    stop: asyncio.Event | None = None,
    refusals: bool = True,
) -> list[Result]:
    """Solve `problems`, at most `concurrency` at a time; each result is written (and passed to
    `on_result`) the moment it is ready. Results come back in the order they finished, every
    row on disk (fsync'd) by then. Once `stop` is set no problem is started, and those in
    flight finish (`ponder.runs.interrupt`: the first Ctrl-C of a CLI run sets it). A run
    whose first problems all failed with one refusal of the backend (a wrong model name, a
    key not taken) stops the same way, then raises `BackendRefused`
    (`ponder.runs.refusals`), its rows written.

    A row is in the file before `on_result` hears of it, so a killed run keeps it; it is on
    disk within about 50 ms (`ResultsWriter`'s group commit), so a crash of the machine keeps
    it too. Cancelling the run (Ctrl-C) keeps every row already written; rows are whole or
    absent.
    """
    return await record_rows(
        lambda emit: solve_each(problems, solver, concurrency=concurrency, emit=emit,
                                stop=stop, refusals=refusals),
        writer=writer, on_result=on_result)


async def solve_each(problems: Sequence[Problem], solver: Solver, *, concurrency: int,
                     emit: RowSink, stop: asyncio.Event | None = None,
                     refusals: bool = True) -> None:
    """The producer of a run on this event loop: solve `problems`, at most `concurrency` at a
    time, and pass each result to `emit` the moment it is ready; none is started once `stop`
    is set. Nor once the first problems to finish all failed with one refusal of the backend
    (`ponder.runs.refusals`): then `BackendRefused` is raised when those in flight have
    finished, their rows emitted. (`ray.run.solve_on_ray` is the producer of a run on Ray
    workers.)"""
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    pending = iter(problems)
    watch = RefusalWatch(len(problems) if refusals else 0)

    async def worker() -> None:
        # Workers pull from one shared iterator: safe, since `next` never awaits.
        while (stop is None or not stop.is_set()) and watch.refused is None:
            problem = next(pending, None)
            if problem is None:
                return
            notes = watch.notes(solver.backend)
            result = await (solver if notes is None
                            else replace(solver, backend=notes)).solve(problem)
            emit(result)
            watch.finished(result, notes)
            if result.error is not None:
                await watch.after_failure()

    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(min(concurrency, len(problems))):
                group.create_task(worker())
    except ExceptionGroup as failed:
        # A file that cannot be written (a full disk) ends the run as one error, not a group.
        for exc in failed.exceptions:
            if isinstance(exc, OutputError):
                raise exc from None
        raise
    if watch.refused is not None:
        raise watch.refused


async def record_rows(produce: Producer, *, writer: ResultsWriter | None = None,
                      on_result: Callable[[Result], None] | None = None) -> list[Result]:
    """The consumer every run shares, whoever solves: `produce(emit)` runs, and each row it
    emits is appended to `writer`, then passed to `on_result`. Returns the rows in the order
    they came, every one on disk (fsync'd) by then. One writer and one resume path for a run
    on this event loop (`solve_each`) and for one on Ray workers (`ray.run.solve_on_ray`).
    """
    finished: list[Result] = []

    def record(result: Result) -> None:
        if writer is not None:
            # No wait for the fsync here: the writer's group commit makes it, and a worker
            # that waited would leave the server idle for it, problem after problem.
            writer.append(result)
        finished.append(result)
        if on_result is not None:
            on_result(result)

    try:
        await produce(record)
    except BackendRefused as refused:
        if writer is not None:
            await writer.sync()
        refused.results = finished  # the caller keeps what finished, answers included
        raise
    if writer is not None:
        await writer.sync()
    return finished


@contextmanager
def run_files(results: Path, trace: Path | None) -> Iterator[tuple[ResultsWriter,
                                                                  JsonlTraceWriter | None]]:
    """A run's results writer and trace sink, closed as the run ends. A run stopped by a file
    it could not write (`OutputError`: a full disk) before any of its rows reached the results
    file leaves behind no file it made: its trace's events would belong to no row, and a plain
    run again would refuse the trace as one holding a run. Files it did not make stay."""
    writer = ResultsWriter(results)
    sink = None if trace is None else JsonlTraceWriter(trace)
    failed = False
    try:
        yield writer, sink
    except OutputError:
        failed = True
        raise
    finally:
        try:
            writer.close()
        finally:
            if sink is not None:
                sink.close()
            if failed and writer.rows == 0:
                writer.discard_if_empty()
                if sink is not None:
                    sink.discard()


class ResumePlan(NamedTuple):
    """What a resumed run still has to do (`todo`), the rows it keeps (`previous`), and the ids
    whose problem changed since their row was written (`changed`, solved again)."""

    todo: list[Problem]
    previous: list[Result]
    changed: list[str]


def resume_plan(problems: Sequence[Problem], results_path: str | Path,
                trace_path: str | Path | None = None, *,
                retry_errors: bool = False) -> ResumePlan:
    """What a resumed run still has to do, and the rows it keeps. Hold the files' `RunLock`
    while calling it and while the run goes on.

    Both files are checked first, and left untouched (a `PonderError`) unless they are
    ponder's: every whole line of the results file a row, the trace beginning with an event,
    and a last line without its newline beginning as a row or event does. Then a torn last
    line (the process died mid-write) is cut from each, so the rows appended next start on a
    line of their own. Rows whose problem has changed since (its `problem_hash` differs) and,
    with `retry_errors`, rows whose problem failed are taken out of the file (atomically) to be
    solved again.
    """
    results_path = Path(results_path)
    rows = read_results(results_path) if results_path.is_file() else []
    check_torn_tail(results_path, ROW_START)
    files = [(results_path, ROW_START)]
    if trace_path is not None:
        _check_trace(Path(trace_path))
        files.append((Path(trace_path), TRACE_ROW_START))
    for path, row_start in files:
        if dropped := drop_torn_tail(path, row_start):
            log.info("%s: dropped a torn last line (%d bytes)", path, dropped)
    current = {p.id: problem_hash(p) for p in problems}

    def stale(row: Result) -> bool:  # rows written before hashes were kept cannot tell
        return row.id in current and row.problem_hash not in (None, current[row.id])

    kept = [row for row in rows if not stale(row) and not (retry_errors and row.error)]
    if len(kept) < len(rows):
        rewrite_results(results_path, kept)
    previous = {row.id: row for row in kept if row.id in current}
    changed = sorted({row.id for row in rows if stale(row)} - previous.keys())
    todo = [p for p in problems if p.id not in previous]
    return ResumePlan(todo, list(previous.values()), changed)


def _check_trace(path: Path) -> None:
    """Refuse a trace file that is not one: a resumed run would append to it."""
    if not path.is_file():
        return
    with path.open("rb") as file:
        head = file.read(len(TRACE_ROW_START))
    if head and not (head.startswith(TRACE_ROW_START) or TRACE_ROW_START.startswith(head)):
        raise PonderError(f"{path}: not a trace file ponder wrote (it does not begin with a "
                          "trace event); it was left untouched")
    check_torn_tail(path, TRACE_ROW_START)
