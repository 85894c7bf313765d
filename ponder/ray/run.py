"""Runs ponder beyond one machine, on a Ray cluster: problems go to Ray workers, each of which
runs the run's `Solver` on its own event loop, and the results come back to the driver.

Two ways in. `solve_on_ray` (here) is a producer for `ponder.runs.solve_many.record_rows`: the
driver writes the one results file, so `--resume`, the summary and the progress bar are the
local run's. `solve_dataset` (`ponder.ray.dataset`) maps a Ray Dataset of problems to a Ray
Dataset of results (Ray Data streams and stores them; no results file). Both send each worker
a `SolveJob` (`ponder.ray.job`); `cluster` (`ponder.ray.cluster`) connects to Ray.

Ray is imported only inside these functions: `import ponder` and every command without
`--ray` run without it installed (`pip install 'ponder[ray]'`).

>>> with cluster("local"):
...     asyncio.run(record_rows(lambda emit: solve_on_ray(problems, job, workers=2,
...                                                     concurrency=32, emit=emit)))
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from ponder.backends.spec import BackendSpec
from ponder.core.errors import PonderError
from ponder.core.redact import redact_secrets
from ponder.core.tracing import TraceSink
from ponder.core.types import Problem
from ponder.ray.cluster import cluster, cluster_cpus, import_ray
from ponder.ray.job import SolveJob, SolverWorker
from ponder.runs.solve_many import RowSink

# `ponder solve --ray` imports these from here.
__all__ = ["BackendSpec", "SolveJob", "cluster", "cluster_cpus", "solve_on_ray"]

# A worker that dies (out of memory, a crash in native code) is started again this many times,
# and the problems it held are sent to it again, before the run gives up on it.
MAX_RESTARTS = 2


async def solve_on_ray(problems: Sequence[Problem], job: SolveJob, *, workers: int,
                       concurrency: int, emit: RowSink,
                       trace_sink: TraceSink | None = None) -> None:
    """The producer of a run on Ray (see `ponder.runs.solve_many.record_rows`): `workers` actors
    (one CPU each) with `concurrency` problems in flight over all of them. Each problem goes
    to a worker as one of its slots frees up, so a slow problem holds up no other; each result is
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
