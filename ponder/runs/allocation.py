"""One token budget for a whole run, spread where it pays.

    ponder solve problems.jsonl -s auto --total-budget-tokens 200000
    rows = await ponder.asolve_many(problems, strategy="auto", total_budget=Budget(tokens=200_000))

The run's tokens are a `RunMeter` that every problem's `BudgetMeter` spends as well (its
parent): a call reserves its upper bound from both, so however many problems are in flight the
run never spends more than the total, counted as the backend reports usage. They are spread in
two passes:

1. A first pass over every problem, each capped at `first_share` of the total divided by
   the problems (and at the per-problem budget, when there is one). By default that is all
   of it (`first_share=1.0`), an equal split; a smaller share holds tokens back for the second
   pass. An adaptive strategy (`auto`, `best_of_n` with `adaptive=True`) stops early where
   its samples agree, so easy problems leave part of their cap unspent, and a call whose
   upper bound no longer fits leaves the rest of a cap unspent too: under the run's meter a
   call's samples share what is left no thinner than the run's replies to its template have
   needed (`BudgetMeter.reserve`), since a reply cut before its answer line spends tokens
   another problem could use on a vote for a stray number.
2. What is left goes to the problems the first pass left unsettled: not verified, and stopped
   by the budget (`stop_reason == "budget"`; `scattered`, `done`, `consensus` and the rest are
   settled, since more samples are unlikely to change them), the most to gain first: no
   answer yet, then the closest vote (the smallest lead of the top answer over the
   runner-up in `SamplingInfo.votes`, which every sampling strategy records; see
   `promise`), ties by id. Each is solved again with an equal share of what is left among
   those still waiting, worked out as it starts, so what one leaves unspent goes to those
   after it.
   A second pass continues where the first stopped: the first pass's replies answer its
   first calls, free (`ponder.core.replay`), and only what goes beyond them reaches the backend.
   A share too small to buy one more call (less than the first pass's costliest call; less
   than all the first pass spent, for a second pass that must start over because the first
   pass's trace is gone, as for rows read back by a resumed run) is not worth a pass: while
   what is left would give the next problem no more than that, the least promising problems
   still waiting drop out (they keep their first row), so that the tokens go to the most
   promising. The new row supersedes the first (ponder reads the last row of an id): its
   `usage` is both passes' together, `info["passes"]` is 2 and `info["first_pass"]` holds the
   first pass's answer, stop reason and tokens. Should the second pass fail or find no
   answer, the first's answer stands.

Once the total is spent, every problem not yet begun gets a row with no answer
(`stop_reason="budget"`, `budget_exhausted`) and no model call, so every problem has a row. A
resumed run counts what its results file spent already: the sum of each id's last row (rows a
resume takes out, those of problems edited since, leave the count with them; `ponder solve`
refuses `--retry-errors` with a total for that reason).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ponder.core.budget import Budget, RunMeter
from ponder.core.errors import ConfigError
from ponder.core.replay import Replay
from ponder.core.types import Problem, Result, SamplingInfo
from ponder.runs.results import ResultsWriter, problem_hash
from ponder.runs.run_plan import (
    PLAN_KEY,
    FirstPassPlan,
    Rung,
    below_strategy,
    cheap,
    plan_first_pass,
    prompt_bound,
    step_cost,
    unpriced,
)
from ponder.runs.solve_many import Solver, record_rows, solve_each

# Of the total, spread evenly over the first pass. 1.0 (an equal split first, then what it
# leaves to the unsettled) was the best of 0.3 / 0.5 / 0.7 / 1.0 on the fake quiz's tuning
# seeds, and beat an equal split on 9 of 10 scored seeds at 700 and 1000 tokens a problem
# (benchmarks/results/total_budget_fake.md); 0.5 lost to it at 1000, and a first cap below
# what one step of the strategy costs (tier 0 of `auto`) wastes the first pass.
FIRST_SHARE = 1.0
# Passes in all: later passes go on while problems remain unsettled, tokens are left and the
# last pass bought something; each continues where the one before stopped, so a few suffice.
MAX_PASSES = 5
# Problems solved first, one at a time, to price a call when the byte bound prices the
# strategy out: after two replies the calibration's margin is 1.28, after one 1.5.
PROBES = 2


def unsettled(row: Result) -> bool:
    """Whether more tokens might change `row`'s answer: the budget stopped it, or its first
    pass ran below the strategy for want of tokens (`ponder.runs.run_plan`); no verifier passed
    it, and it did not fail."""
    passed = row.verdict is not None and row.verdict.passed
    cut = row.stop_reason == "budget" or (below_strategy(row) and passes(row) < 2)
    return cut and not passed and row.error is None


def promise(row: Result) -> tuple[int, float, float, str]:
    """Sort key, most to gain from more samples first: a row with no answer (any call buys
    the most), then the closest vote (the smallest lead of the top answer over the runner-up,
    in votes; a row that did not vote has one answer, a lead of 1), then the fewest votes
    (fewer samples settle it), ties by id.

    Only a close vote can change its winner: on the fake quiz's exact model
    (`benchmarks/budget_bound.py`) three more samples add 0.11-0.13 to the chance of a right
    answer after a tie (1-1, 2-2, 3-3), 0.03-0.04 after a lead of one, and under 0.01 after
    a lead of two or more, however high or low the top answer's share."""
    if row.answer is None:
        return 0, 0.0, 0.0, row.id
    sampled = SamplingInfo.of(row)
    votes = sorted(sampled.votes.values(), reverse=True) if sampled is not None else []
    if not votes:
        return 1, 1.0, 1.0, row.id
    runner_up = votes[1] if len(votes) > 1 else 0.0
    return 1, votes[0] - runner_up, sum(votes), row.id


def passes(row: Result) -> int:
    """How many passes of a total budget solved `row`'s problem (1 for any other row)."""
    count = row.info.get("passes")
    return count if isinstance(count, int) and not isinstance(count, bool) else 1


def first_cap(total_tokens: int, problems: int, first_share: float,
              per_problem: int | None) -> int:
    """Each problem's tokens in the first pass: `first_share` of the total over the problems,
    never above the per-problem budget."""
    cap = max(1, int(first_share * total_tokens / max(1, problems)))
    return cap if per_problem is None else min(cap, per_problem)


async def solve_within(
    problems: Sequence[Problem],
    solver: Solver,
    *,
    total_tokens: int,
    concurrency: int,
    first_share: float = FIRST_SHARE,
    previous: Sequence[Result] = (),
    writer: ResultsWriter | None = None,
    on_result: Callable[[Result], None] | None = None,
    on_second_pass: Callable[[int], None] | None = None,
    reuse: bool = True,
    stop: asyncio.Event | None = None,
) -> list[Result]:
    """Solve `problems` within `total_tokens` for the whole run, in the two passes above, at
    most `concurrency` problems at a time; `solver.budget` is each problem's own limit (its
    tokens cap both passes together, its calls and seconds each pass). `previous` are the rows
    a resumed run keeps (the last of each id), whose usage counts against the total. Every row
    is appended to `writer` and passed to `on_result` as it comes, second-pass rows too;
    `on_second_pass` hears how many problems the second pass considers, before it starts.
    With `reuse` (the default) a second pass takes the first pass's replies before it asks the
    backend (`ponder.core.replay`), so it continues where the first stopped; without, it starts
    over. Once `stop` is set no problem is started (nor the second pass), and those in flight
    finish. Returns each problem's final row, in the order of `problems` (a problem never
    started has none).
    """
    if total_tokens < 1:
        raise ConfigError(f"the total budget must be at least 1 token, got {total_tokens}")
    if not 0.0 < first_share <= 1.0:
        raise ConfigError(f"first_share must lie in (0, 1], got {first_share}")
    ids = [p.id for p in problems]
    if len(set(ids)) < len(ids):
        twice = sorted({i for i in ids if ids.count(i) > 1})
        raise ConfigError(f"problem ids must be unique for a total budget (each problem's last "
                          f"row counts); repeated: {', '.join(twice[:5])}")
    state = _Allocation(total_tokens, [r for r in previous if r.id in set(ids)])
    later = _SecondPass(**_fields(solver, run_meter=state.run,
                                  replay_for=state.replay if reuse else None), state=state)

    async def produce(emit: Callable[[Result], None]) -> None:
        def keep(row: Result) -> None:
            if row is not state.latest.get(row.id):  # a later pass skipped returns the row
                state.record(row)
                emit(row)

        def stopped() -> bool:
            return stop is not None and stop.is_set()

        todo = [p for p in problems if p.id not in state.latest]
        plan = await _plan(todo, solver, state.run.remaining, first_share)
        if plan.probed and len(todo) > PROBES and not stopped():
            # The first problems one at a time, cheaply: their replies teach the prompt
            # calibration (its margin shrinks with each), and the rest are priced again.
            probe = _FirstPass(**_fields(solver, spec=plan.rung.spec, config=plan.rung.config,
                                         budget=_capped(solver, state.run.remaining),
                                         run_meter=state.run), plan=plan, probe=True)
            probed, todo = todo[:PROBES], todo[PROBES:]
            await solve_each(probed, probe, concurrency=1, emit=keep, stop=stop)
            plan = await _plan(todo, solver, state.run.remaining, first_share, probed=True)
        state.plan = plan
        first = _FirstPass(**_fields(solver, spec=plan.rung.spec, config=plan.rung.config,
                                     budget=_capped(solver, plan.cap), run_meter=state.run),
                           plan=plan, skip=frozenset(p.id for p in todo[plan.afforded:]))
        await solve_each(todo, first, concurrency=concurrency, emit=keep, stop=stop)
        # What the first pass left unspent goes first to the problems it could afford no call,
        # at the same tier and cap, in order, while a call is affordable.
        while not stopped():
            waiting = [p for p in todo if _no_call(state.latest[p.id])]
            afford = min(len(waiting), state.available() // plan.cap)
            if not afford:
                break
            await solve_each(waiting[:afford], dataclasses.replace(first, skip=frozenset()),
                             concurrency=concurrency, emit=keep, stop=stop)
        for _ in range(MAX_PASSES - 1):
            rows = state.latest
            again = sorted((p for p in problems if unsettled(rows[p.id])),
                           key=lambda p: promise(rows[p.id]))
            spent_before = state.recorded
            if stopped() or not again or state.available() < 1:
                return
            if on_second_pass is not None:
                on_second_pass(len(again))
            state.order = {p.id: i for i, p in enumerate(again)}
            state.cutoff = len(again)
            await solve_each(again, later, concurrency=concurrency, emit=keep, stop=stop)
            if state.recorded == spent_before:
                return  # nothing more could be bought

    await record_rows(produce, writer=writer, on_result=on_result)
    return [state.latest[p.id] for p in problems if p.id in state.latest]


async def _plan(todo: Sequence[Problem], solver: Solver, tokens: int, first_share: float, *,
                probed: bool = False) -> FirstPassPlan:
    """The first pass of `todo` within `tokens` (`ponder.runs.run_plan`). `probed` once the
    first problem taught the calibration; before, a plan whose own step does not fit at the
    byte bound asks for that probe instead (`FirstPassPlan.probed`)."""
    per_problem = solver.budget.tokens
    share = first_cap(tokens, len(todo), first_share, per_problem)
    if not todo:
        return unpriced(solver.spec, solver.config, share, 0)
    prompt = await prompt_bound(todo, solver.prompts, solver.calibration, solver.backend.label)
    plan = plan_first_pass(solver.spec, solver.config, tokens=int(first_share * tokens),
                           problems=len(todo), share=share, prompt=prompt,
                           copies=solver.backend.prompt_copies,
                           min_completion=solver.budget.min_completion_tokens,
                           per_problem=per_problem)
    if plan.rung.own or probed or len(todo) < 2:
        return dataclasses.replace(plan, probed=probed)
    # The byte bound priced the strategy out: probe with the cheapest call first.
    return dataclasses.replace(plan, rung=cheap(solver.config, solver.config.max_tokens),
                               probed=True)


def _no_call(row: Result) -> bool:
    """Whether the plan could afford `row`'s problem no call in the first pass."""
    plan = row.info.get(PLAN_KEY)
    return isinstance(plan, dict) and bool(plan.get("no_call"))


def _capped(solver: Solver, tokens: int) -> Budget:
    """`solver`'s budget with its tokens capped at `tokens` (its own cap, if lower)."""
    own = solver.budget.tokens
    return solver.budget.model_copy(update={"tokens": max(1, tokens if own is None
                                                          else min(own, tokens))})


def _fields(solver: Solver, **changes: Any) -> dict[str, Any]:
    """`solver`'s fields, some changed: to build a pass's solver from the caller's."""
    fields = {f.name: getattr(solver, f.name) for f in dataclasses.fields(Solver)}
    return {**fields, **changes}


class _Allocation:
    """A run's spending under a total: its meter, each problem's latest row, and the second
    pass's bookkeeping."""

    def __init__(self, total_tokens: int, previous: Sequence[Result]) -> None:
        self.total = total_tokens
        self.latest: dict[str, Result] = {r.id: r for r in previous}
        self.recorded = sum(r.usage.total_tokens for r in self.latest.values())
        self.run = RunMeter(total_tokens, spent=self.recorded)
        # The second pass: each problem's place, most promising first; the places from
        # `cutoff` on dropped out; the caps of second passes under way.
        self.order: dict[str, int] = {}
        self.cutoff = 0
        self.in_flight = 0
        self.plan: FirstPassPlan | None = None

    def record(self, row: Result) -> None:
        replaced = self.latest.get(row.id)
        self.recorded += row.usage.total_tokens - (0 if replaced is None
                                                   else replaced.usage.total_tokens)
        self.latest[row.id] = row

    def replay(self, problem: Problem) -> Replay:
        """The replies of `problem`'s first pass, from its row's trace (a row read back from a
        results file has none: its second pass starts over)."""
        return Replay(self.latest[problem.id].trace)

    @staticmethod
    def least_worth(first: Result, *, reuse: bool) -> int:
        """The share below which a second pass is not worth making: what the first pass spent
        when the second starts over; when it continues (`reuse`), the first pass's costliest
        call, as a guess at what the next one costs."""
        calls = [e.usage.total_tokens for e in first.trace if e.kind == "generate"]
        return max(calls, default=0) if reuse and calls else first.usage.total_tokens

    def available(self) -> int:
        """Tokens the second passes not yet begun may share: neither recorded nor promised to
        a second pass under way (nor spent by a call the rows do not show yet)."""
        return max(0, min(self.total - self.recorded - self.in_flight, self.run.remaining))


@dataclass(frozen=True)
class _FirstPass(Solver):
    """The first pass: what the plan chose, at its cap (`ponder.runs.run_plan`); a problem the
    plan could not afford a call (`skip`), or one begun once the run's total is spent, gets its
    budget row without a model call. Each row's `info[PLAN_KEY]` says what its pass ran."""

    plan: FirstPassPlan | None = None
    skip: frozenset[str] = frozenset()
    probe: bool = False

    async def solve(self, problem: Problem) -> Result:
        assert self.run_meter is not None and self.plan is not None
        note = self.plan.note(probe=self.probe)
        if problem.id in self.skip:
            row = spent_row(problem, self, self.run_meter.tokens)
            why = (f"the run's total budget of {self.run_meter.tokens} tokens could afford one "
                   f"call for {self.plan.afforded} of {self.plan.planned} problems in the first "
                   "pass; this one came after them")
            return row.model_copy(update={"info": {"budget_note": why,
                                                   PLAN_KEY: {**note, "no_call": True}}})
        if self.run_meter.remaining < self.budget.min_completion_tokens:
            row = spent_row(problem, self, self.run_meter.tokens)
        else:
            row = await super().solve(problem)
        return row.model_copy(update={"info": {**row.info, PLAN_KEY: note}})


@dataclass(frozen=True)
class _SecondPass(Solver):
    """The second pass: each problem solved again at an equal share of what is left among
    those still waiting, its row merged with the first's."""

    state: _Allocation | None = None

    async def solve(self, problem: Problem) -> Result:
        state = self.state
        assert state is not None
        first = state.latest[problem.id]
        spent = first.usage.total_tokens
        place = state.order[problem.id]  # every problem before it has begun
        floor = max(state.least_worth(first, reuse=self.replay_for is not None),
                    self.budget.min_completion_tokens)
        plan = state.plan
        if below_strategy(first) and plan is not None and plan.prompt is not None:
            # Its first pass ran below the strategy: the next step is the strategy's own,
            # whose first call of a template not yet calibrated pays more than any call so far.
            floor = max(floor, step_cost(Rung(self.spec, self.config, own=True), plan.prompt,
                                         self.backend.prompt_copies))
        # What is left, shared equally with those still waiting; the least promising drop out
        # while the share would be no more than this problem's floor.
        while state.cutoff - place > 1 and state.available() // (state.cutoff - place) <= floor:
            state.cutoff -= 1
        if place >= state.cutoff:
            return first  # dropped out: its first row stands
        share = state.available() // (state.cutoff - place)
        cap = share if self.budget.tokens is None else min(share, self.budget.tokens - spent)
        if cap <= floor:
            return first  # too little to be worth a second pass: its row stands
        state.in_flight += cap
        try:
            again = dataclasses.replace(self, budget=self.budget.model_copy(update={"tokens": cap}))
            second = await Solver.solve(again, problem)
        finally:
            state.in_flight -= cap
        return merged(first, second)


def merged(first: Result, second: Result) -> Result:
    """The row that supersedes `first` after a second pass: the second's answer with both
    passes' usage, or, when the second failed or found no answer where the first had one,
    the first's answer with both passes' usage."""
    usage = first.usage + second.usage
    elapsed = first.elapsed_s + second.elapsed_s
    # After a third pass the first pass is still the first: what later passes added is the
    # usage beyond its tokens.
    before = first.info.get("first_pass") or {"answer": first.answer,
                                               "stop_reason": first.stop_reason,
                                               "tokens": first.usage.total_tokens}
    if second.error is not None or (second.answer is None and first.answer is not None):
        after = {"answer": second.answer, "stop_reason": second.stop_reason,
                 "tokens": second.usage.total_tokens, "error": second.error}
        info = {**first.info, "passes": passes(first) + 1, "first_pass": before,
                "second_pass": after,
                "kept": "first pass (the second " +
                        ("failed)" if second.error is not None else "found no answer)")}
        return first.model_copy(update={"usage": usage, "elapsed_s": elapsed, "info": info})
    info = {**second.info, "passes": passes(first) + 1, "first_pass": before}
    if PLAN_KEY in first.info:
        info[PLAN_KEY] = first.info[PLAN_KEY]
    return second.model_copy(update={"usage": usage, "elapsed_s": elapsed, "info": info})


def spent_row(problem: Problem, solver: Solver, total_tokens: int) -> Result:
    """The row of a problem that the run's total left nothing for: no answer, no model call."""
    return Result(id=problem.id, answer=None, strategy=solver.spec.name,
                  params=solver.config.model_dump(), stop_reason="budget",
                  budget_exhausted=True, problem_hash=problem_hash(problem),
                  info={"budget_note": f"the run's total budget of {total_tokens} tokens was "
                                       "spent before this problem began"})
