"""What crosses to a Ray worker and what it does with it: a `SolveJob` holds specs (base
URLs, strategy, verifier names), never a live client, since a client's connections and event
loop belong to one process; a `SolverWorker` makes the run's `Session` and `Solver` from it in
the worker's process."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from ponder.backends.spec import BackendSpec
from ponder.core.budget import Budget
from ponder.core.types import Problem, Result, TraceEvent
from ponder.runs.solve_many import Solver, run_all
from ponder.session import Session
from ponder.strategies.base import StrategyConfig, StrategySpec

if TYPE_CHECKING:
    from ponder.verifiers.registry import VerifierLike


@dataclass(frozen=True)
class SolveJob:
    """What every worker needs to solve as the run would, sent once to each as it starts.
    `verifier` overrides each problem's own, as a `Session`'s does; a `file.py:func` one and
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


class SolverWorker:
    """One worker's half of a run: the job's session (its backend started once) and solver,
    on the worker's event loop. A Ray actor in `solve_on_ray`, where Ray runs its methods on
    the actor's loop, as many at once as the driver sends."""

    def __init__(self, job: SolveJob) -> None:
        self.job = job
        self._made: tuple[Session, Solver] | None = None

    async def _ready(self) -> tuple[Session, Solver]:
        # Made on first use, not in the constructor: a backend that cannot be made or started
        # fails the call (the driver reports it) rather than the actor (which Ray restarts).
        if self._made is None:
            job = self.job
            session = Session(job.backend, verifier=job.verifier, budget=job.budget,
                              templates_dir=job.templates_dir, seed=job.seed)
            self._made = session, session.solver(job.spec, job.config)
        session, solver = self._made
        await session.start()  # once (the embedded model loads), however many problems wait
        return session, solver

    async def solve(self, problem: Problem) -> tuple[Result, list[TraceEvent]]:
        """`problem`'s result and, when the job asks for them, its trace events (the events a
        local run's trace sink would have had, credentials masked)."""
        _, solver = await self._ready()
        if not self.job.trace:
            return await solver.solve(problem), []
        events: list[TraceEvent] = []
        result = await replace(solver, trace_sink=events.append).solve(problem)
        return result, events

    async def solve_all(self, problems: Sequence[Problem], concurrency: int) -> list[Result]:
        """Every result of `problems`, `concurrency` at a time: the local runner, here. A
        batch of Ray Data comes back whole, so a refusing backend is each row's error here
        rather than a stopped run (`ponder.runs.refusals`)."""
        _, solver = await self._ready()
        return await run_all(problems, solver, concurrency=concurrency, refusals=False)

    async def close(self) -> None:
        if self._made is not None:
            await self._made[0].aclose()
