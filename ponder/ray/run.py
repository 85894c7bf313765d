"""Runs ponder beyond one machine, on a Ray cluster: problems go to Ray workers, each of which
runs the run's `Solver` on its own event loop, and the results come back to the driver.

Two ways in. `solve_on_ray` is a producer for the orchestrator (`record_rows`): the driver
writes the one results file, so `--resume`, the summary and the progress bar are the local
run's. `solve_dataset` maps a Ray Dataset of problems to a Ray Dataset of results (Ray Data
streams and stores them; no results file). Both send each worker a `SolveJob`, which holds
specs (base URLs, strategy, verifier names), never a live client: a client's connections and
event loop belong to one process.

Ray is imported only inside these functions: `import ponder` and every command without
`--ray` run without it installed (`pip install 'ponder[ray]'`).

>>> with cluster("local"):
...     asyncio.run(record_rows(lambda emit: solve_on_ray(problems, job, workers=2,
...                                                     concurrency=32, emit=emit)))
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ponder.backends.base import Backend
from ponder.backends.spec import BackendSpec
from ponder.core.budget import Budget
from ponder.core.errors import ConfigError, MissingDependency, PonderError, ProblemFileError
from ponder.core.redact import redact_secrets
from ponder.core.tracing import TraceSink
from ponder.core.types import Problem, Result, TraceEvent
from ponder.prompts import PromptLibrary
from ponder.runs.problem_rows import MAX_FIELD_BYTES, problem_from_row
from ponder.runs.results import problem_hash, result_line
from ponder.runs.solve_many import RowSink, Solver, run_all
from ponder.strategies import REGISTRY as STRATEGIES
from ponder.strategies.base import StrategyConfig, StrategySpec
from ponder.verifiers import VerifierChoice

if TYPE_CHECKING:
    import pyarrow
    import ray.data

    from ponder.verifiers.registry import VerifierLike

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'ponder[ray]'"
# A worker that dies (out of memory, a crash in native code) is started again this many times,
# and the problems it held are sent to it again, before the run gives up on it.
MAX_RESTARTS = 2
WATCHDOG_EXIT_S = 5.0  # how long a driver waits for its watchdog at a clean exit
# Ray Data hands a worker this many problems per batch, per problem it keeps in flight: a
# batch ends with its slowest problem, so several rounds of the slots keep them busy between.
BATCHES_PER_SLOT = 4


def import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise MissingDependency(f"running on Ray needs the 'ray' extra; run: {INSTALL_HINT}") \
            from exc
    return ray


# -- what crosses to the workers --------------------------------------------------------------


@dataclass(frozen=True)
class SolveJob:
    """What every worker needs to make the run's `Solver`, sent once to each as it starts.
    `verifier` overrides each problem's own, as in `Solver`; a `file.py:func` one and
    `templates_dir` are read on the workers, so they must be there (the same path on every
    machine; a local cluster shares this one's). `trace` sends each problem's trace events
    back with its result."""

    spec: StrategySpec[Any]
    config: StrategyConfig
    backend: BackendSpec = field(default_factory=BackendSpec)
    verifier: VerifierLike | None = None
    budget: Budget = field(default_factory=Budget)
    templates_dir: str | None = None
    seed: int | None = None
    trace: bool = False

    def solver(self, backend: Backend) -> Solver:
        return Solver(self.spec, self.config, backend, budget=self.budget,
                      prompts=PromptLibrary(self.templates_dir),
                      verifier_for=VerifierChoice(self.verifier).for_problem, seed=self.seed)


class SolverWorker:
    """One worker's half of a run: the run's `Solver`, made from the job on first use (its
    backend started once), on the worker's event loop. A Ray actor in `solve_on_ray`, where
    Ray runs its methods on the actor's loop, as many at once as the driver sends."""

    def __init__(self, job: SolveJob) -> None:
        self.job = job
        self._solver: Solver | None = None
        self._making: asyncio.Lock | None = None

    async def solver(self) -> Solver:
        if self._making is None:
            self._making = asyncio.Lock()
        async with self._making:  # one backend per worker, however many problems wait for it
            if self._solver is None:
                backend = self.job.backend.build()
                await backend.start()  # the embedded model: loaded once, before any problem
                self._solver = self.job.solver(backend)
        return self._solver

    async def solve(self, problem: Problem) -> tuple[Result, list[TraceEvent]]:
        """`problem`'s result and, when the job asks for them, its trace events (the events a
        local run's trace sink would have had, credentials masked)."""
        solver = await self.solver()
        if not self.job.trace:
            return await solver.solve(problem), []
        events: list[TraceEvent] = []
        result = await replace(solver, trace_sink=events.append).solve(problem)
        return result, events

    async def solve_all(self, problems: Sequence[Problem], concurrency: int) -> list[Result]:
        """Every result of `problems`, `concurrency` at a time: the local runner, here."""
        return await run_all(problems, await self.solver(), concurrency=concurrency)

    async def close(self) -> None:
        if self._solver is not None:
            await self._solver.backend.aclose()


# -- the cluster ------------------------------------------------------------------------------


@contextlib.contextmanager
def cluster(address: str = "local", *, num_cpus: int | None = None,
            **init_options: Any) -> Iterator[None]:
    """Connected to Ray for the block. "local" starts a cluster on this machine (`num_cpus`,
    default all) that ends with the block, or with this process however it ends: Ray ends its
    own servers with the process, and a watchdog (`ponder.ray.watchdog`) the helpers that
    outlive a killed one. "auto" joins the cluster `ray start` made here, and any other
    address is Ray's (`ray://host:10001`, `host:6379`); leaving disconnects, and the workers
    this process started there end with it. When Ray is already initialised in this process,
    that connection is used and left as it is.

    >>> with cluster("local", num_cpus=2):
    ...     rows = solve_dataset(ray.data.from_items(problems), backend=url).take_all()
    """
    ray = import_ray()
    if ray.is_initialized():
        yield
        return
    options = {"logging_level": logging.WARNING, **init_options}
    watchdog = None
    try:
        if address == "local":
            # A cluster started for one run reports nothing to Ray's usage-stats server
            # unless the user's environment asks for it.
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
            watchdog = _start_watchdog()
            _init(ray, address, num_cpus=num_cpus, include_dashboard=False, **options)
            _ask_scan(watchdog)
        else:
            if num_cpus is not None:
                raise ConfigError("num_cpus is for a local cluster; a cluster joined has "
                                  "the CPUs it was started with")
            _init(ray, address, **options)
        yield
    finally:
        if ray.is_initialized():
            ray.shutdown()
        if watchdog is not None:
            _stop_watchdog(watchdog)


def _init(ray: Any, address: str, **options: Any) -> None:
    try:
        ray.init(address=address, **options)
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
        raise PonderError(f"Ray at {redact_secrets(address)!r}: {exc}") from None


def _start_watchdog() -> subprocess.Popen[bytes]:
    # Its own session: a Ctrl-C to the terminal or a kill of this process's group must not
    # take it down with the driver it is there to clean up after.
    return subprocess.Popen([sys.executable, "-m", "ponder.ray.watchdog", str(os.getpid())],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            start_new_session=True)


def _ask_scan(watchdog: subprocess.Popen[bytes]) -> None:
    """Have the watchdog note Ray's processes now, not half a second on. A watchdog gone is
    a safety net gone, not a reason to stop the run."""
    assert watchdog.stdin is not None
    try:
        watchdog.stdin.write(b"scan\n")
        watchdog.stdin.flush()
    except OSError:
        log.warning("the Ray watchdog (pid %d) has exited; if this process is killed, Ray's "
                    "helper processes may outlive it by a minute", watchdog.pid)


def _stop_watchdog(watchdog: subprocess.Popen[bytes]) -> None:
    """Close its pipe (it stops what Ray left running) and wait for it to finish."""
    assert watchdog.stdin is not None
    with contextlib.suppress(OSError):
        watchdog.stdin.close()
    try:
        watchdog.wait(WATCHDOG_EXIT_S)
    except subprocess.TimeoutExpired:
        log.warning("the Ray watchdog (pid %d) is still stopping Ray's processes",
                    watchdog.pid)


def cluster_cpus() -> int:
    """The CPUs of the connected cluster (at least 1): one worker each by default."""
    return max(1, int(import_ray().cluster_resources().get("CPU", 1)))


# -- a run with one results file: the driver writes ------------------------------------------


async def solve_on_ray(problems: Sequence[Problem], job: SolveJob, *, workers: int,
                       concurrency: int, emit: RowSink,
                       trace_sink: TraceSink | None = None) -> None:
    """The producer of a run on Ray (see `orchestrator.record_rows`): `workers` actors (one
    CPU each) with `concurrency` problems in flight over all of them. Each problem goes to a
    worker as one of its slots frees up, so a slow problem holds up no other; each result is
    passed to `emit` the moment it is back, after its trace events went to `trace_sink`.

    A worker that dies is started again (`MAX_RESTARTS`) and given its problems again; past
    that, or when a worker cannot make its backend, the run ends with a `PonderError` (the
    rows written so far stay, and `--resume` carries on).
    """
    ray = import_ray()
    if concurrency < 1 or workers < 1:
        raise ValueError(f"workers and concurrency must be at least 1, got {workers} and "
                         f"{concurrency}")
    workers = min(workers, concurrency, len(problems))
    if workers == 0:
        return
    slots = [concurrency // workers + (i < concurrency % workers) for i in range(workers)]
    actor = ray.remote(SolverWorker).options(
        num_cpus=1, max_concurrency=max(slots) + 1, max_restarts=MAX_RESTARTS,
        max_task_retries=MAX_RESTARTS)
    handles = [actor.remote(job) for _ in range(workers)]
    pending = iter(problems)

    async def slot(handle: Any) -> None:
        # Slots pull from one shared iterator, as `solve_each`'s workers do.
        for problem in pending:
            try:
                result, events = await handle.solve.remote(problem)
            except ray.exceptions.RayError as exc:
                raise _worker_failure(ray, exc) from None
            if trace_sink is not None:
                for event in events:
                    trace_sink(event)
            emit(result)

    try:
        try:
            async with asyncio.TaskGroup() as group:
                for handle, count in zip(handles, slots, strict=True):
                    for _ in range(count):
                        group.create_task(slot(handle))
        except ExceptionGroup as failed:
            first = failed.exceptions[0]
            if isinstance(first, PonderError):
                raise first from None
            raise
        # Let each worker close its backend (an embedded model frees its memory) first.
        await asyncio.gather(*(handle.close.remote() for handle in handles),
                             return_exceptions=True)
    finally:
        for handle in handles:
            ray.kill(handle)


def _worker_failure(ray: Any, exc: BaseException) -> PonderError:
    if isinstance(exc, ray.exceptions.RayTaskError):
        # The worker raised, which `Solver.solve` never does for a problem: it could not
        # make or start its backend.
        cause = exc.cause
        return PonderError(f"a Ray worker could not start: {type(cause).__name__}: "
                           f"{redact_secrets(str(cause))}")
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return PonderError(f"a Ray worker died ({type(exc).__name__}: {redact_secrets(first)}); "
                       "the rows written so far are kept, and --resume carries on")


# -- a Ray Dataset in, a Ray Dataset out -----------------------------------------------------

# The columns of `solve_dataset`'s rows; `result` is the row a results file would hold (JSON,
# trace left out): `Result.model_validate_json(row["result"])` gives the whole `Result`.
RESULT_COLUMNS = ("id", "answer", "correct", "stop_reason", "error", "total_tokens", "calls",
                  "elapsed_s", "result")


def results_table(results: Sequence[Result]) -> pyarrow.Table:
    """`results` as an Arrow table of `RESULT_COLUMNS`, with one schema whatever they hold
    (Ray Data joins the blocks of a Dataset, and a column that is all nulls in one block
    would otherwise clash with another)."""
    import pyarrow as pa

    schema = pa.schema([("id", pa.string()), ("answer", pa.string()), ("correct", pa.bool_()),
                        ("stop_reason", pa.string()), ("error", pa.string()),
                        ("total_tokens", pa.int64()), ("calls", pa.int64()),
                        ("elapsed_s", pa.float64()), ("result", pa.string())])
    rows = [{"id": r.id, "answer": r.answer, "correct": r.correct, "stop_reason": r.stop_reason,
             "error": r.error, "total_tokens": r.usage.total_tokens, "calls": r.usage.calls,
             "elapsed_s": r.elapsed_s, "result": result_line(r).rstrip("\n")}
            for r in results]
    return pa.Table.from_pylist(rows, schema=schema)


class BatchSolver:
    """Ray Data's worker for `solve_dataset`: each batch of problem rows solved by the local
    runner, `concurrency` at a time, on an event loop the worker keeps for its life (the
    backend's connections live on it)."""

    def __init__(self, job: SolveJob, concurrency: int, allow_code_verifiers: bool,
                 max_field_bytes: int) -> None:
        from ponder.portal import SyncPortal

        self.worker = SolverWorker(job)
        self.concurrency = concurrency
        self.allow_code_verifiers = allow_code_verifiers
        self.max_field_bytes = max_field_bytes
        self.portal = SyncPortal()

    def __call__(self, batch: pyarrow.Table) -> pyarrow.Table:
        problems: list[Problem] = []
        refused: list[Result] = []
        for row in batch.to_pylist():
            try:
                problems.append(self.problem(row))
            except ProblemFileError as exc:  # a bad row is a failed result; the rest go on
                refused.append(Result(id=str(row.get("id") or "row"), answer=None,
                                      stop_reason="error",
                                      error=f"ProblemFileError: {'; '.join(exc.errors)}"))
        solved = self.portal.run(lambda: self.worker.solve_all(problems, self.concurrency))
        return results_table([*solved, *refused])

    def problem(self, row: dict[str, Any]) -> Problem:
        """A row as a problem, as a problem file's row would be; one without an id is named
        by its content (`row-<hash>`), the same in every run."""
        given = {key: value for key, value in row.items() if value is not None}
        problem = problem_from_row(given, "", where=f"row {given.get('id', '')}".rstrip(),
                                   allow_code_verifiers=self.allow_code_verifiers,
                                   max_field_bytes=self.max_field_bytes)
        if not problem.id:
            problem = problem.model_copy(update={"id": f"row-{problem_hash(problem)[:12]}"})
        return problem


def solve_dataset(
    dataset: ray.data.Dataset,
    *,
    strategy: str = "single",
    backend: BackendSpec | str | Sequence[str] | None = None,
    model: str | None = None,
    verifier: VerifierLike | None = None,
    budget: Budget | None = None,
    templates_dir: str | Path | None = None,
    seed: int | None = None,
    concurrency: int = 16,
    workers: int | None = None,
    batch_size: int | None = None,
    allow_code_verifiers: bool = False,
    max_field_bytes: int = MAX_FIELD_BYTES,
    **params: Any,
) -> ray.data.Dataset:
    """A Ray Dataset of results, one row per problem row of `dataset` (lazy, as Ray Data is:
    nothing runs until it is read). Each row of `dataset` is a problem as in a problem file
    (`problem` or `prompt`, `id`, `answer`, `test` + `entry_point`, `tests`, ...), under the
    same rules: no code verifier unless `allow_code_verifiers`; a row that breaks them gives
    an error row. Rows come back in no set order, with the columns `RESULT_COLUMNS`; `result`
    holds the whole row as a results file would.

    `backend` is a base URL, a list of them, a `BackendSpec`, or None for an embedded model in
    each worker (memory times `workers`). Up to `workers` Ray Data actors (default: one per
    CPU of the cluster), each with `concurrency` problems in flight on its own event loop.

    >>> ds = ray.data.read_json("problems.jsonl")
    >>> out = solve_dataset(ds, backend="http://gpu1:8000/v1", strategy="best_of_n", n=5)
    >>> out.write_json("results/")    # or: for row in out.iter_rows(): ...
    """
    ray = import_ray()
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    spec = STRATEGIES.get(strategy)
    config = spec.make_config(params)  # a bad parameter is refused here, not in every worker
    VerifierChoice(verifier)  # and a verifier that does not load
    backend_spec = BackendSpec.of(backend, model=model)
    backend_spec.check()
    job = SolveJob(spec, config, backend_spec, verifier=verifier, budget=budget or Budget(),
                   templates_dir=None if templates_dir is None else str(Path(templates_dir)
                                                                         .resolve()),
                   seed=seed)
    pool = ray.data.ActorPoolStrategy(size=workers) if workers is not None else \
        ray.data.ActorPoolStrategy(min_size=1, max_size=cluster_cpus())
    return dataset.map_batches(
        BatchSolver, batch_size=batch_size or BATCHES_PER_SLOT * concurrency,
        batch_format="pyarrow", compute=pool, num_cpus=1,
        fn_constructor_kwargs={"job": job, "concurrency": concurrency,
                               "allow_code_verifiers": allow_code_verifiers,
                               "max_field_bytes": max_field_bytes})
