"""`Session`: a backend, the prompts, the verifier choice, a default budget and the solver
settings, wired once. Every front door builds one (`ponder.solve`, `ponder solve`, `ponder
bench`, `ponder serve`, Ray workers) instead of wiring those parts itself, as `httpx.get` is a
shell over a `Client`.

>>> with ponder.Session("http://localhost:8000/v1", strategy="best_of_n",
...                     params={"n": 5}) as session:
...     session.solve("What is 17 * 23?").answer
...     session.solve_many(problems, total_budget=ponder.Budget(tokens=100_000))

>>> async with ponder.Session(effort="high") as session:     # the embedded model, loaded once
...     result = await session.asolve("What is 17 * 23?")
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from ponder.backends.base import Backend
from ponder.backends.spec import BackendSpec, make_backend
from ponder.core.budget import Budget
from ponder.core.calibration import PromptCalibration
from ponder.core.errors import ConfigError
from ponder.core.tracing import TraceSink
from ponder.core.types import Candidate, Problem, Result, Verdict
from ponder.portal import SyncPortal, default_portal
from ponder.prompts import PromptLibrary
from ponder.runs.allocation import FIRST_SHARE, solve_within
from ponder.runs.problem_rows import as_problem
from ponder.runs.results import ResultsWriter
from ponder.runs.solve_many import Solver, run_all
from ponder.runs.solve_one import run_problem
from ponder.strategies.base import StrategyConfig, StrategySpec
from ponder.strategies.context import Context
from ponder.strategies.effort import strategy_for
from ponder.strategies.wiring import Wiring
from ponder.verifiers import Verifier, VerifierChoice
from ponder.verifiers.base import judge as judge_with
from ponder.verifiers.registry import VerifierLike

ProblemLike = Problem | str | Mapping[str, Any]
BackendLike = Backend | BackendSpec | str | Sequence[str] | None
DEFAULT_CONCURRENCY = 8


class Session:
    """Solves problems with one backend, started once and closed with the session (when the
    session made it, or `close_backend=True`: a live `Backend` passed in is otherwise the
    caller's to close).

    `backend` is a `Backend`, a `BackendSpec`, a base URL, a list of base URLs (a pool), "local"
    or None (the embedded model), "vllm:<model>"; `backend_options` (`model`, `model_path`,
    `local_model`, `api_key`, `api_key_env`, `request_timeout`, `max_retries`, `backoff_max`,
    `parallel`) shape a backend the session makes. `strategy`/`effort` and `params` are the
    defaults each call may override; `verifier` judges every problem (default: the one each
    problem's fields call for); `budget` bounds each problem.

    Use a session either synchronously (`solve`, `solve_many`, `verify`, `with`) or from one
    event loop of yours (`asolve`, …, `async with`): a backend binds to the loop it first ran on.
    """

    def __init__(self, backend: BackendLike = None, *, strategy: str | None = None,
                 effort: str | None = None, params: Mapping[str, Any] | None = None,
                 verifier: VerifierLike | VerifierChoice | None = None,
                 budget: Budget | None = None, templates_dir: str | Path | None = None,
                 prompts: PromptLibrary | None = None, seed: int | None = None,
                 concurrency: int = DEFAULT_CONCURRENCY, portal: SyncPortal | None = None,
                 close_backend: bool | None = None, **backend_options: Any) -> None:
        # Everything that can be refused is, before a backend is made that would then leak.
        self.strategy, self.effort = strategy, effort
        self.params = dict(params or {})
        strategy_for(effort, strategy or _DEFAULT_STRATEGY, self.params)
        self.verifiers = (verifier if isinstance(verifier, VerifierChoice)
                          else VerifierChoice(verifier))
        self.budget = budget or Budget()
        self.prompts = prompts or PromptLibrary(templates_dir)
        self.seed = seed
        # The prompt bounds this session's calls learn, every run and problem sharing them.
        self.calibration = PromptCalibration()
        _check_concurrency(concurrency)
        self.concurrency = concurrency
        self.backend, made = make_backend(backend, **backend_options)
        self.owns_backend = made if close_backend is None else close_backend
        self._portal = portal
        self._started: asyncio.Task[None] | None = None

    # -- wiring, for the front doors ------------------------------------------------------------

    def plan(self, strategy: str | None = None, effort: str | None = None,
             params: Mapping[str, Any] | None = None,
             ) -> tuple[StrategySpec[Any], StrategyConfig]:
        """The strategy and checked config a call runs: the call's strategy or effort with its
        `params`, else the session's, with the call's `params` over the session's."""
        if strategy is None and effort is None:
            return strategy_for(self.effort, self.strategy or _DEFAULT_STRATEGY,
                                {**self.params, **(params or {})})
        return strategy_for(effort, strategy or _DEFAULT_STRATEGY, params)

    def solver(self, spec: StrategySpec[Any], config: StrategyConfig, *,
               verifiers: VerifierChoice | None = None, budget: Budget | None = None,
               seed: int | None = None, trace: TraceSink | None = None,
               backend: Backend | None = None, prompts: PromptLibrary | None = None) -> Solver:
        """How each problem of a run is solved: this session's parts, with what a call set."""
        choice = verifiers or self.verifiers
        return Solver(spec, config, backend or self.backend, budget=budget or self.budget,
                      prompts=prompts or self.prompts, verifier_for=choice.for_problem,
                      seed=self.seed if seed is None else seed, trace_sink=trace,
                      calibration=self.calibration)

    async def run(self, problems: Sequence[Problem], solver: Solver, *,
                  concurrency: int | None = None, total_tokens: int | None = None,
                  first_share: float | None = None, previous: Sequence[Result] = (),
                  writer: ResultsWriter | None = None,
                  on_result: Callable[[Result], None] | None = None,
                  on_second_pass: Callable[[int], None] | None = None,
                  stop: asyncio.Event | None = None) -> list[Result]:
        """Solve `problems` with `solver`, at most `concurrency` at a time. With
        `total_tokens`, the whole run's budget is spread where it pays
        (`ponder.runs.allocation`; `previous` rows of a resumed run count against it);
        without, each problem is solved once. Results come back as they finished."""
        await self.start()
        in_flight = concurrency or self.concurrency
        if total_tokens is None:
            return await run_all(problems, solver, concurrency=in_flight, writer=writer,
                                 on_result=on_result, stop=stop)
        return await solve_within(problems, solver, total_tokens=total_tokens,
                                  concurrency=in_flight,
                                  first_share=FIRST_SHARE if first_share is None
                                  else first_share,
                                  previous=previous, writer=writer, on_result=on_result,
                                  on_second_pass=on_second_pass, stop=stop)

    # -- async API ------------------------------------------------------------------------------

    async def asolve(self, problem: ProblemLike, *, strategy: str | None = None,
                     effort: str | None = None, verifier: VerifierLike | None = None,
                     budget: Budget | None = None, seed: int | None = None,
                     trace: TraceSink | None = None, templates_dir: str | Path | None = None,
                     **params: Any) -> Result:
        """Solve one problem; `params` go to the strategy's config, `templates_dir` overrides
        the session's prompts for this call. A strategy or verifier that fails raises, as the
        caller's own code would."""
        spec, config = self.plan(strategy, effort, params)
        prob = as_problem(problem, allow_code_verifiers=True)
        choice = self.verifiers if verifier is None else VerifierChoice(verifier)
        await self.start()
        return await run_problem(prob, spec, config, Wiring(
            self.backend, budget or self.budget, self._prompts(templates_dir),
            choice.for_problem(prob), self.seed if seed is None else seed, trace,
            calibration=self.calibration))

    async def asolve_many(self, problems: Iterable[ProblemLike], *,
                          strategy: str | None = None, effort: str | None = None,
                          verifier: VerifierLike | None = None, budget: Budget | None = None,
                          total_budget: Budget | None = None,
                          first_share: float | None = None, concurrency: int | None = None,
                          seed: int | None = None, trace: TraceSink | None = None,
                          templates_dir: str | Path | None = None,
                          **params: Any) -> list[Result]:
        """Solve many problems, at most `concurrency` at a time, the results in the order of
        `problems`. A problem without an id of its own is given its position ("0", "1", …);
        ids must be unique. `budget` bounds each problem; `total_budget` (tokens only) the
        whole run (`ponder.runs.allocation`): never exceeded, spread where it pays, and the
        problems it could not reach get a result with `stop_reason="budget"`."""
        spec, config = self.plan(strategy, effort, params)
        items = [_with_id(as_problem(p, allow_code_verifiers=True), index)
                 for index, p in enumerate(problems)]
        ids = [p.id for p in items]
        if len(set(ids)) < len(ids):
            twice = sorted({i for i in ids if ids.count(i) > 1})
            raise ConfigError(f"problem ids must be unique; repeated: {', '.join(twice[:5])}")
        if total_budget is not None and (total_budget.tokens is None or total_budget.calls
                                         is not None or total_budget.seconds is not None):
            raise ConfigError("total_budget takes tokens only: Budget(tokens=T); bound each "
                              "problem's calls and time with budget=")
        if total_budget is None and first_share is not None:
            raise ConfigError("first_share goes with total_budget")
        if concurrency is not None:
            _check_concurrency(concurrency)
        choice = None if verifier is None else VerifierChoice(verifier)
        solver = self.solver(spec, config, verifiers=choice, budget=budget, seed=seed,
                             trace=trace, prompts=self._prompts(templates_dir))
        rows = await self.run(items, solver, concurrency=concurrency, first_share=first_share,
                              total_tokens=None if total_budget is None
                              else total_budget.tokens)
        by_id = {r.id: r for r in rows}
        return [by_id[p.id] for p in items]

    async def averify(self, problem: ProblemLike, candidate: str | Candidate,
                      verifier: VerifierLike | None = None, *,
                      budget: Budget | None = None) -> Verdict:
        """Judge `candidate` (a reply's text, or a Candidate) on `problem` with `verifier`
        (default: the session's choice). A verifier that calls a model (`llm_judge`) calls the
        session's backend, bounded by `budget`."""
        prob = as_problem(problem, allow_code_verifiers=True)
        judge = self._judge(prob, verifier)
        cand = _candidate(candidate, judge)
        await self.start()
        ctx = Context.wired(prob, Wiring(self.backend, budget or self.budget, self.prompts,
                                         judge, self.seed, calibration=self.calibration))
        verdict = await ctx.verify(cand)
        assert verdict is not None  # the context has a verifier
        return verdict

    # -- sync API -------------------------------------------------------------------------------

    def solve(self, problem: ProblemLike, **kwargs: Any) -> Result:
        """`asolve` for plain scripts (not inside a running event loop)."""
        return self.portal.run(lambda: self.asolve(problem, **kwargs), name="solve",
                               owner="session")

    def solve_many(self, problems: Iterable[ProblemLike], **kwargs: Any) -> list[Result]:
        """`asolve_many` for plain scripts (not inside a running event loop)."""
        return self.portal.run(lambda: self.asolve_many(problems, **kwargs), name="solve_many",
                               owner="session")

    def verify(self, problem: ProblemLike, candidate: str | Candidate,
               verifier: VerifierLike | None = None, **kwargs: Any) -> Verdict:
        """`averify` for plain scripts (not inside a running event loop)."""
        return self.portal.run(lambda: self.averify(problem, candidate, verifier, **kwargs),
                               name="verify", owner="session")

    def close(self) -> None:
        """`aclose` for plain scripts (not inside a running event loop: there, `async with`)."""
        self.portal.run(self.aclose, name="close", owner="session")

    @property
    def portal(self) -> SyncPortal:
        return self._portal or default_portal()

    # -- life -----------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the backend (load the embedded model) once, however many calls ask at once."""
        if self._started is None:
            self._started = asyncio.ensure_future(self.backend.start())
        starting = self._started
        try:
            await asyncio.shield(starting)
        except Exception:
            # A failed start (a server not up yet) may be tried again, once: by whoever comes
            # next, not by every caller that waited on this one.
            if self._started is starting:
                self._started = None
            raise

    async def aclose(self) -> None:
        """Close the backend if the session made it; a session may start again after."""
        self._started = None
        if self.owns_backend:
            await self.backend.aclose()

    async def __aenter__(self) -> Self:
        try:
            await self.start()
        except BaseException:
            await self.aclose()  # what it made for nothing (a model that failed to load)
            raise
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        traceback: TracebackType | None) -> None:
        await self.aclose()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def _prompts(self, templates_dir: str | Path | None) -> PromptLibrary:
        return self.prompts if templates_dir is None else PromptLibrary(templates_dir)

    def _judge(self, problem: Problem, verifier: VerifierLike | None) -> Verifier:
        choice = self.verifiers if verifier is None else VerifierChoice(verifier)
        judge = choice.for_problem(problem)
        if judge is None:
            raise ConfigError(f"no verifier for problem {problem.id!r}: it has no answer or "
                              "tests; pass verifier= (a name such as 'math', a spec or a "
                              "function)")
        return judge


async def verify_without_model(problem: ProblemLike, candidate: str | Candidate,
                               verifier: VerifierLike | None = None) -> Verdict:
    """Judge `candidate` with a verifier that calls no model: no backend is made; one that
    needs a model (`llm_judge`) says so."""
    prob = as_problem(problem, allow_code_verifiers=True)
    judge = VerifierChoice(verifier).for_problem(prob)
    if judge is None:
        raise ConfigError(f"no verifier for problem {prob.id!r}: it has no answer or tests; "
                          "pass verifier= (a name such as 'math', a spec or a function)")
    return await judge_with(judge, prob, _candidate(candidate, judge))


_DEFAULT_STRATEGY = "single"
DEFAULT_ID = Problem.model_fields["id"].default


def _candidate(candidate: str | Candidate, judge: Verifier) -> Candidate:
    if isinstance(candidate, Candidate):
        return candidate
    return Candidate(text=candidate, answer=judge.extract(candidate))


def _with_id(problem: Problem, index: int) -> Problem:
    """`problem`, given its position as id when it has none of its own."""
    if problem.id != DEFAULT_ID:
        return problem
    return problem.model_copy(update={"id": str(index)})


def _check_concurrency(concurrency: int) -> None:
    if concurrency < 1:
        raise ConfigError(f"concurrency must be at least 1, got {concurrency}")
