"""What a run over many problems came to: solved, accuracy (pass@k where gold chose among
candidates, with the vote's accuracy beside it), tokens, calls, time, failures, early stops."""

from __future__ import annotations

import statistics
import time
from collections import Counter
from collections.abc import Iterable

from pydantic import BaseModel, Field

from ponder.core.types import Result, SamplingInfo, Selection, Usage
from ponder.runs.budget_split import BudgetSplit, describe_split


class Summary(BaseModel):
    """A run's totals. Counts cover every row of the results file (resumed ones included);
    `wall_s` and `tokens_per_s` cover this session only."""

    problems: int = Field(description="problems in the problem file")
    done: int = Field(description="problems with a result row")
    remaining: int = Field(description="problems without one (an interrupted run)")
    resumed: int = Field(default=0, description="rows already there when this session began")
    judged: int = Field(description="results a verifier judged (a gold answer or tests)")
    solved: int = Field(description="results a verifier passed")
    accuracy: float | None = Field(description="solved / judged; None when nothing was judged")
    errors: int = Field(description="results whose problem failed (the run went on)")
    failures: dict[str, int] = Field(default_factory=dict, description="errors by kind")
    gold_selected: int = Field(
        default=0, description="results where gold (the answer or tests) chose among several "
                               "candidates: for them `solved` is pass@k, not accuracy")
    solved_without_gold: int | None = Field(
        default=None, description="solved as the strategy's own vote would have it: results "
                                  "gold selected count their vote's verdict; None when gold "
                                  "selected none")
    accuracy_without_gold: float | None = Field(
        default=None, description="solved_without_gold / judged: the honest figure")
    budget_exhausted: int = 0
    stop_reasons: dict[str, int] = Field(default_factory=dict)
    stopped_early: int = Field(default=0, description="results that stopped before the "
                                                      "strategy's maximum (see stopped_early)")
    escalated: int = Field(default=0, description="results `auto` escalated past tier 0")
    samples: int = Field(default=0, description="samples drawn (info.samples), all results")
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cached_prompt_tokens: int = Field(
        default=0, description="prompt tokens the server said it served from its prefix "
                               "cache (counted in prompt_tokens, and charged there as any)")
    cached_share: float | None = Field(
        default=None, description="cached_prompt_tokens / prompt_tokens; None without prompt "
                                  "tokens")
    mean_tokens: float = Field(description="total tokens per done problem")
    tokens_min: int = Field(default=0, description="the fewest tokens a done problem spent")
    tokens_median: float = Field(default=0.0, description="the median tokens per done problem")
    tokens_max: int = Field(default=0, description="the most tokens a done problem spent")
    total_budget: int | None = Field(default=None,
                                     description="the run's total token budget, if it had one")
    got_extra: int = Field(default=0, description="problems a total budget's later passes "
                                                  "solved again (info.passes >= 2)")
    budget_split: BudgetSplit | None = Field(
        default=None, description="how a total budget was split over its passes")
    calls: int = 0
    usage_estimated: bool = Field(default=False, description="some usage was estimated")
    unsandboxed: int = Field(default=0, description="results whose verdict ran model-written "
                                                    "code with no sandbox (opted out by name)")
    sandbox: str = Field(default="isolated", description="how this session ran model-written "
                                                         "code: isolated, or none (opted out)")
    wall_s: float = 0.0
    tokens_per_s: float = 0.0
    interrupted: bool = False


# Stop reasons that end a strategy's run at its maximum, or cut it short; any other is early.
RAN_ITS_COURSE = frozenset({"done", "budget", "error", "max_iters", "max_rounds", "max_depth"})


def gold_selected(row: Result) -> bool:
    """Whether gold chose `row`'s answer among several candidates (pass@k)."""
    selection = Selection.of(row)
    return selection is not None and selection.by_gold


def solved_without_gold(row: Result) -> bool:
    """Whether `row` is right as its strategy's own vote would have it."""
    selection = Selection.of(row)
    if selection is not None and selection.by_gold:
        return bool(selection.vote_correct)
    return bool(row.correct)


def stopped_early(row: Result) -> bool:
    """Whether `row`'s strategy stopped before its maximum: a stop reason such as consensus,
    majority, verified, scattered or no_improvement, except where nothing was left (`single`,
    or as many samples drawn as `n` asks)."""
    if row.stop_reason in RAN_ITS_COURSE or row.strategy == "single":
        return False
    sampled, n = SamplingInfo.of(row), row.params.get("n")
    return not (sampled is not None and isinstance(n, int) and sampled.samples >= n)


def escalated(row: Result) -> bool:
    """Whether `auto` escalated past its cheap tier on `row`."""
    tier = row.info.get("tier")
    return bool(row.info.get("escalations")) or (isinstance(tier, int) and tier > 0)


def unsandboxed(row: Result) -> bool:
    """Whether `row`'s verdict ran code with the sandbox opted out of (`Isolation.none()`)."""
    isolation = row.verdict.details.get("isolation") if row.verdict is not None else None
    return isinstance(isolation, dict) and str(isolation.get("sandbox", "")).startswith("none")


def _samples(row: Result) -> int:
    sampled = SamplingInfo.of(row)
    return 0 if sampled is None else sampled.samples


def _beyond(usage: Usage, before: Usage) -> Usage:
    """What `usage` holds beyond `before` (never below zero)."""
    return Usage(prompt_tokens=max(0, usage.prompt_tokens - before.prompt_tokens),
                 completion_tokens=max(0, usage.completion_tokens - before.completion_tokens),
                 calls=max(0, usage.calls - before.calls), estimated=usage.estimated,
                 cached_prompt_tokens=max(0, usage.cached_prompt_tokens
                                          - before.cached_prompt_tokens))


def failure_kind(error: str) -> str:
    """`BackendError: … answered 429: …` → `BackendError`: the exception name leads the text."""
    kind, sep, _ = error.partition(":")
    return kind.strip() if sep and kind.strip().isidentifier() else "error"


class RunTally:
    """Counts results as they come in; the progress bar reads it, `summary()` closes it.

    >>> tally = RunTally(problems=300)
    >>> tally.add(result)
    >>> tally.summary().accuracy
    """

    def __init__(self, problems: int, previous: Iterable[Result] = (), *,
                 total_budget: int | None = None, sandbox: str = "isolated") -> None:
        self.problems = problems
        self.total_budget = total_budget
        self.sandbox = sandbox
        self.started = time.monotonic()
        self.solving_since = self.started  # tokens/s counts from here (after a model loads)
        self._rows: dict[str, Result] = {}
        # Kept as rows come, so a progress bar over a long run costs O(1) per row.
        self.judged = 0
        self.solved = 0
        self.gold_selected = 0  # rows gold chose among candidates: the progress bar's pass@k
        for row in previous:
            self._count(row)
        self.resumed = len(self._rows)
        self.session_usage = Usage()

    def add(self, result: Result) -> None:
        """Count `result`; a row that supersedes its id's earlier one (a total budget's second
        pass, whose usage includes the first's) adds only what it spent beyond that."""
        replaced = self._rows.get(result.id)
        self._count(result)
        self.session_usage = self.session_usage + (
            result.usage if replaced is None else _beyond(result.usage, replaced.usage))

    def _count(self, row: Result) -> None:
        replaced = self._rows.get(row.id)
        if replaced is not None:
            self.judged -= replaced.correct is not None
            self.solved -= bool(replaced.correct)
            self.gold_selected -= gold_selected(replaced)
        self._rows[row.id] = row
        self.judged += row.correct is not None
        self.solved += bool(row.correct)
        self.gold_selected += gold_selected(row)

    @property
    def done(self) -> int:
        return len(self._rows)

    @property
    def accuracy(self) -> float | None:
        judged = self.judged
        return self.solved / judged if judged else None

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.started

    @property
    def tokens_per_s(self) -> float:
        elapsed = time.monotonic() - self.solving_since
        return self.session_usage.total_tokens / elapsed if elapsed > 0 else 0.0

    def summary(self, *, interrupted: bool = False) -> Summary:
        rows = list(self._rows.values())
        usage = sum((r.usage for r in rows), Usage())
        spent = [r.usage.total_tokens for r in rows]
        errors = [r.error for r in rows if r.error]
        done = len(rows)
        judged = [r for r in rows if r.correct is not None]
        honest = sum(solved_without_gold(r) for r in judged) if self.gold_selected else None
        return Summary(
            problems=self.problems,
            done=done,
            remaining=max(0, self.problems - done),
            resumed=self.resumed,
            judged=self.judged,
            solved=self.solved,
            accuracy=self.accuracy,
            errors=len(errors),
            failures=dict(Counter(failure_kind(e) for e in errors).most_common()),
            gold_selected=self.gold_selected,
            solved_without_gold=honest,
            accuracy_without_gold=None if honest is None or not judged else honest / len(judged),
            budget_exhausted=sum(1 for r in rows if r.budget_exhausted),
            stop_reasons=dict(Counter(r.stop_reason for r in rows).most_common()),
            stopped_early=sum(stopped_early(r) for r in rows),
            escalated=sum(escalated(r) for r in rows),
            samples=sum(_samples(r) for r in rows),
            unsandboxed=sum(unsandboxed(r) for r in rows),
            sandbox=self.sandbox,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            total_tokens=usage.total_tokens,
            cached_prompt_tokens=usage.cached_prompt_tokens,
            cached_share=usage.cached_prompt_tokens / usage.prompt_tokens
            if usage.prompt_tokens > 0 else None,
            mean_tokens=usage.total_tokens / done if done else 0.0,
            tokens_min=min(spent, default=0),
            tokens_median=statistics.median(spent) if spent else 0.0,
            tokens_max=max(spent, default=0),
            total_budget=self.total_budget,
            got_extra=sum(1 for r in rows if _passes(r) >= 2),
            budget_split=None if self.total_budget is None
            else describe_split(rows, self.total_budget),
            calls=usage.calls,
            usage_estimated=usage.estimated,
            wall_s=self.elapsed_s,
            tokens_per_s=self.tokens_per_s,
            interrupted=interrupted,
        )


def _passes(row: Result) -> int:
    count = row.info.get("passes")
    return count if isinstance(count, int) and not isinstance(count, bool) else 1
