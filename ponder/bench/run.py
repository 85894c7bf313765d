"""`ponder bench`: where on the accuracy-for-tokens curve each strategy sits.

Each `Run` (see `ponder.bench.spec`) is solved through a `Session`, as `ponder solve` solves,
into a results file of its own under `DIR/runs/`, so a stopped bench resumes as
`ponder solve --resume --retry-errors` does. Gold never reaches a strategy unless the SPEC says
`verifier=gold`; after the runs, gold scores each point's answers, and a pooled point's
answers are chosen again from its run's recorded samples (`ponder.strategies.sample_pool`)
without a call.

`ponder.bench.loop.run_bench` solves and scores every run and writes the curve:

>>> points = [p for spec in specs for p in parse_spec(spec)]
>>> bench = await run_bench(problems, plan_runs(points), Path("bench"),
...                         BackendSpec.of("http://gpu1:8000/v1"), title="gsm8k")
>>> bench.points[0].accuracy

A row that failed is solved again the next time its run is (a cached error is no
measurement: a wrong model name would otherwise stay in the curve as wrong answers).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from ponder.bench.spec import CHOICE_KEYS, GOLD, GOLD_SELECTION, Choice, Point, Run
from ponder.code.behaviour import choose as choose_by_behaviour
from ponder.core.errors import ConfigError
from ponder.core.types import Candidate, Problem, Result, SamplingInfo
from ponder.runs.results import ResultsWriter
from ponder.runs.results_reader import read_results
from ponder.runs.run_lock import RunLock
from ponder.runs.solve_many import resume_plan
from ponder.session import Session
from ponder.strategies import REGISTRY
from ponder.strategies.sample_pool import PlainCanonical, pool_samples
from ponder.strategies.sampling import confidence_vote
from ponder.strategies.voting import tally
from ponder.verifiers import VerifierChoice
from ponder.verifiers.base import judge
from ponder.verifiers.registry import get_verifier, spec_for


@dataclass(frozen=True)
class CurvePoint:
    """One row of `curve.csv`."""

    label: str
    strategy: str
    params: str
    model: str
    selection: str
    accuracy: float
    ci_low: float
    ci_high: float
    correct: int
    problems: int
    mean_tokens: float
    mean_calls: float
    wall_s: float | None
    subsampled: bool
    pool_n: int | None
    errors: int
    run: str
    model_params: float | None = None  # the model's parameter count, where known
    # Prompt tokens per problem the server said its prefix cache served: part of mean_tokens,
    # charged as any. A subsampled point's are its whole run's, as its mean_calls are.
    mean_cached_prompt_tokens: float = 0.0
    # Per problem: (id, correct, tokens), for breakdowns by a problem field; not a CSV column.
    outcomes: tuple[tuple[str, bool, int], ...] = field(default=(), repr=False, compare=False)

    @property
    def gold_chose(self) -> bool:
        """Gold picked the answer among candidates: the accuracy column is pass@k."""
        return self.selection == GOLD_SELECTION

    @property
    def mean_flops(self) -> float | None:
        """Compute per problem, FLOP-matched across models: 2 × parameters × tokens (the
        forward pass's cost per token, Kaplan et al. 2020; Snell et al. 2024 compare so)."""
        return None if self.model_params is None else 2 * self.model_params * self.mean_tokens

    @staticmethod
    def columns() -> list[str]:
        """curve.csv's columns: every field but the per-problem outcomes, and the FLOPs."""
        return [f.name for f in fields(CurvePoint) if f.name != "outcomes"] + ["mean_flops"]

    def row(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.columns()}


def wilson(correct: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson score interval of a proportion: honest at 0/n and n/n, unlike the
    normal approximation."""
    if total == 0:
        return 0.0, 1.0
    p = correct / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return max(0.0, centre - half), min(1.0, centre + half)


def check_gold(problems: Sequence[Problem], source: str) -> None:
    """Every problem must carry gold (an `answer`, or tests) to be scored."""
    for i, problem in enumerate(problems, start=1):
        if spec_for(problem) is None:
            raise ConfigError(f"{source}: problem {problem.id!r} (row {i}) has no gold: a bench "
                              "needs an `answer` or tests on every problem")


def without_gold(problem: Problem) -> Problem:
    """What a strategy that may not see gold is given: the problem, minus what scores it. A
    coding problem stays one (`is_code`): where only its private tests said so, it keeps an
    empty `tests_public`, which marks it without adding a test."""
    public = problem.tests_public
    if public is None and problem.is_code:
        public = []
    return problem.model_copy(update={"answer": None, "test": None, "tests": None,
                                      "verifier": None, "tests_public": public})


class Scorer:
    """Gold's verdict on an answer, each (problem, answer) judged once."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = {p.id: p for p in problems}
        self.choice = VerifierChoice()
        self._seen: dict[tuple[str, str], bool] = {}

    async def correct(self, problem_id: str, answer: str | None, text: str | None = None) -> bool:
        """`text`, where given, is the reply `answer` was read from, and is read again here as
        the gold verifier reads a reply in a run (a row keeps the answer that the rules of
        its day read, without the verifier's own reading, and a stale one judged alone can
        pass by accident: an exponent once read as the answer, equal to gold). Without it
        (what a program printed, a pool's re-chosen answer) the answer is judged as given,
        as the run's own verifier judged a printed answer."""
        key = (problem_id, (answer or "") if text is None else text)
        if key not in self._seen:
            problem = self.problems[problem_id]
            verifier = self.choice.for_problem(problem)
            if verifier is None:
                raise ConfigError(f"problem {problem_id!r} has no gold to score it by")
            if text is not None:
                answer = verifier.extract(text)
            if not answer or not answer.strip():
                self._seen[key] = False
            else:
                verdict = await judge(verifier, problem, Candidate(
                    text=text or answer, answer=answer, answer_given=text is None))
                self._seen[key] = verdict.passed
        return self._seen[key]


def rechoose(row: Result, choice: Choice, *, code: bool = False) -> tuple[str | None, int]:
    """The answer and total tokens `row`'s run would have had with `choice`: its first
    `choice.n` recorded samples, chosen as `best_of_n` chooses. The tokens are the row's own
    beyond its samples (nothing, for `best_of_n`) plus what those samples cost.

    On a coding problem (`code`) the vote groups programs by syntax, and the behaviour rule
    (`behaviour`, or `auto` where the pool recorded behaviours) ranks the first n samples'
    clusters as `best_of_n` does. `best_of_n` runs its samples on a coding problem whatever
    its selector, so the calls that wrote the model's tests count for every point with
    n > 1, and for none with n = 1 (one sample: nothing to choose, and nothing is run)."""
    sampled = SamplingInfo.of(row)
    records = sampled.pool if sampled is not None else []
    if not records:
        return row.answer, row.usage.total_tokens
    checked = row.info.get("behaviour")
    checks_tokens = int(checked.get("tokens", 0)) if isinstance(checked, dict) else 0
    by_behaviour = choice.selector in ("behaviour", "auto") and any(
        r.behaviour is not None for r in records)
    overhead = row.usage.total_tokens - sum(r.tokens for r in records) - checks_tokens
    drawn = records[:choice.n]
    if len(drawn) > 1:
        overhead += checks_tokens
    tokens = overhead + sum(r.tokens for r in drawn)
    samples = pool_samples(drawn)
    canon = PlainCanonical(code=code)
    # The same rule as best_of_n's: the vote (else the first sample), then, by confidence, the
    # weighted vote of the surest samples where it names a winner; by behaviour, the first of
    # the best cluster.
    winner = tally(canon, samples).winner or samples[0]
    if choice.selector == "confidence":
        weighed = confidence_vote(canon, samples, keep=choice.keep, metric=choice.metric)
        winner = weighed.votes.winner or winner
    if by_behaviour and (picked := choose_by_behaviour([r.behaviour for r in drawn])) \
            is not None:
        winner = samples[picked]
    return winner.answer, tokens


# The run, its rows already there, and how many problems it has still to solve.
RunStarted = Callable[[Run, list[Result], int], None]


async def solve_run(run: Run, problems: Sequence[Problem], out_dir: Path, *, session: Session,
                    concurrency: int, on_start: RunStarted | None = None,
                    on_result: Callable[[Result], None] | None = None,
                    stop: asyncio.Event | None = None) -> list[Result]:
    """Solve `run` with `session` (its backend, budget, prompts and seed) on every problem
    still without a row in its results file, or whose row failed (none is started once `stop`
    is set); its rows, in problem order. The wall time each session spent is added up in the
    run's `.json`."""
    spec = REGISTRY.get(run.strategy)
    config = spec.make_config(run.params)
    path = out_dir / "runs" / f"{run.key}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    meta_path = path.with_suffix(".json")
    gold = run.verifier == GOLD
    shown = list(problems) if gold else [without_gold(p) for p in problems]
    chooser = VerifierChoice() if gold else VerifierChoice(
        None if run.verifier is None else get_verifier(run.verifier))
    with RunLock(path):
        # Read under the lock: another bench may have just added its session's seconds.
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {"wall_s": 0.0}
        meta.update({"strategy": run.strategy, "params": run.params, "verifier": run.verifier,
                     "local_model": run.local_model,
                     "points": [p.describe() for p in run.points]})
        plan = resume_plan(shown, path, retry_errors=True)
        if on_start is not None:
            on_start(run, plan.previous, len(plan.todo))
        if plan.todo:
            solver = session.solver(spec, config, verifiers=chooser)
            if run.verifier is None:  # the strategy runs blind: nothing judges its answers
                solver = replace(solver, verifier_for=_none)
            before, began = float(meta["wall_s"]), time.monotonic()

            def save_wall(row: Result | None = None) -> None:
                # After every row, not only at the end: a bench killed by a signal runs no
                # `finally`, and its session's seconds would be lost from the figure.
                meta["wall_s"] = round(before + time.monotonic() - began, 1)
                _write_meta(meta_path, meta)
                if row is not None and on_result is not None:
                    on_result(row)

            try:
                with ResultsWriter(path) as writer:
                    await session.run(plan.todo, solver, concurrency=concurrency,
                                      writer=writer, on_result=save_wall, stop=stop)
            except BaseException:
                with contextlib.suppress(OSError):  # never hide why the run stopped
                    save_wall()
                raise
            save_wall()
        elif not meta_path.is_file():
            _write_meta(meta_path, meta)
    return cached_rows(run, problems, out_dir)


def cached_rows(run: Run, problems: Sequence[Problem], out_dir: Path) -> list[Result]:
    """`run`'s rows in its results file, in problem order, read and nothing else: no lock (a
    bench may be writing them), nothing repaired or rewritten."""
    path = out_dir / "runs" / f"{run.key}.jsonl"
    by_id = {row.id: row for row in read_results(path)} if path.is_file() else {}
    return [by_id[p.id] for p in problems if p.id in by_id]


def _write_meta(path: Path, meta: dict[str, Any]) -> None:
    """Atomically: a kill mid-write leaves the last whole file, never half of one."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(meta, indent=2) + "\n")
    os.replace(tmp, path)


def _none(problem: Problem) -> None:
    return None


async def score_run(run: Run, rows: Sequence[Result], scorer: Scorer, *, wall_s: float | None,
                    model: str, model_params: float | None = None) -> list[CurvePoint]:
    """The curve points `run`'s rows give: one per point, and beside a point where gold chose
    among candidates, the same rows' answer without gold (the vote they recorded)."""
    out = []
    votes = [SamplingInfo.of(row) for row in rows]
    cached = statistics.fmean(r.usage.cached_prompt_tokens for r in rows) if rows else 0.0
    for point in run.points:
        answers: list[tuple[str, str | None, str | None, int, int, bool]] = []
        for row in rows:
            if point.choice is not None:
                answer, tokens = rechoose(row, point.choice,
                                          code=scorer.problems[row.id].is_code)
                text = None
            else:
                answer, tokens = row.answer, row.usage.total_tokens
                text = None if row.answer_given else row.text
            answers.append((row.id, answer, text, tokens, row.usage.calls, row.error is not None))
        subsampled = point.choice is not None and run.pool_n is not None \
            and point.choice.n < run.pool_n
        out.append(await _point(point, point.selection, answers, scorer, run,
                                wall_s=None if subsampled else wall_s, subsampled=subsampled,
                                model=model, model_params=model_params, cached=cached))
        if point.verifier == GOLD and any(vote is not None for vote in votes):
            honest = [(row.id, None if vote is None else vote.vote_answer, None,
                       row.usage.total_tokens, row.usage.calls, row.error is not None)
                      for row, vote in zip(rows, votes, strict=True)]
            out.append(await _point(point, "no gold (the same run's vote)", honest, scorer,
                                    run, wall_s=wall_s, subsampled=False, model=model,
                                    model_params=model_params, cached=cached))
    return out


async def _point(point: Point, selection: str,
                 answers: Sequence[tuple[str, str | None, str | None, int, int, bool]],
                 scorer: Scorer, run: Run, *, wall_s: float | None, subsampled: bool,
                 model: str, model_params: float | None, cached: float) -> CurvePoint:
    outcomes = tuple([(problem_id, await scorer.correct(problem_id, answer, text), tokens)
                      for problem_id, answer, text, tokens, _, _ in answers])
    correct = sum(ok for _, ok, _ in outcomes)
    total = len(answers)
    low, high = wilson(correct, total)
    return CurvePoint(
        label=point.label, strategy=point.strategy, params=point.describe(), model=model,
        selection=selection, accuracy=correct / total if total else 0.0, ci_low=low,
        ci_high=high, correct=correct, problems=total,
        mean_tokens=statistics.fmean(a[3] for a in answers) if answers else 0.0,
        mean_calls=statistics.fmean(a[4] for a in answers) if answers else 0.0,
        wall_s=wall_s, subsampled=subsampled, pool_n=run.pool_n,
        errors=sum(a[5] for a in answers), run=run.key, model_params=model_params,
        mean_cached_prompt_tokens=cached, outcomes=outcomes)


def adopt_cached_runs(runs: Sequence[Run], out_dir: Path) -> None:
    """Point each run at the run already cached under `out_dir` that answers it, so that no
    cached sample is drawn again:
    - a run cached before one of its strategy's parameters existed: its parameters, with the
      new ones at their defaults, are this run's (a parameter is added with the default that
      keeps the old behaviour; a changed default is written in the cached parameters, so it
      never matches);
    - for a pooled run, a pool of the same parameters holding at least its `n` samples (the
      smallest such), so that a later bench asking for fewer samples, or another selector,
      makes no new call."""
    from ponder.strategies import REGISTRY

    cached = []
    for meta_path in sorted((out_dir / "runs").glob("*.json")):
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(meta, dict) and isinstance(meta.get("params"), dict):
            cached.append(meta)
    for run in runs:
        if (out_dir / "runs" / f"{run.key}.jsonl").is_file() and not run.pooled:
            continue
        spec = REGISTRY.get(run.strategy)
        matches: list[tuple[int, dict[str, Any]]] = []
        for meta in cached:
            if (meta.get("strategy"), meta.get("verifier"), meta.get("local_model")) != (
                    run.strategy, run.verifier, run.local_model):
                continue
            try:
                now = spec.make_config(meta["params"]).model_dump()
            except ConfigError:
                continue  # made with a parameter since removed: not this run
            if run.pooled:
                # Only a pool drew its samples with their confidence; a judge run did not.
                wanted, have = int(run.params["n"]), int(meta["params"].get("n", 0))
                if (meta["params"].get("selector") == "confidence" and have >= wanted
                        and _drawing(now) == _drawing(run.params)):
                    matches.append((have, meta["params"]))
            elif now == run.params:
                matches.append((0, meta["params"]))
        if matches:
            run.params = dict(min(matches, key=lambda m: m[0])[1])


def _drawing(params: dict[str, Any]) -> dict[str, Any]:
    """The parameters that decide a pool's samples: not those that only choose among them."""
    return {k: v for k, v in params.items() if k not in CHOICE_KEYS}


def run_wall(out_dir: Path, run: Run) -> float | None:
    meta = out_dir / "runs" / f"{run.key}.json"
    if not meta.is_file():
        return None
    return float(json.loads(meta.read_text()).get("wall_s", 0.0)) or None
