"""How a total budget was split over its passes, read back from its rows: the first pass's
plan (`ponder.runs.run_plan`) is in each row's `info[PLAN_KEY]`, later passes in
`info["passes"]` and `info["first_pass"]` (`ponder.runs.allocation`). Kept apart from the
planning, so that a summary needs no strategy registry."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, Field

from ponder.core.types import Result

PLAN_KEY = "run_plan"  # a row's `info` key holding what its first pass ran


class BudgetSplit(BaseModel):
    """How a total budget was split (`Summary.budget_split`)."""

    total: int
    first_pass: dict[str, int] = Field(description="what the first pass ran: problems each")
    first_cap: int = Field(description="each problem's cap in the first pass")
    probe: int = Field(default=0, description="problems solved alone first, to price a call")
    no_call_planned: int = Field(default=0, description="problems the plan could afford no "
                                                        "call in the first pass")
    no_call: int = Field(default=0, description="problems that got no call in any pass")
    first_pass_tokens: int = 0
    later_tokens: int = Field(default=0, description="what the passes after the first spent")
    later_problems: int = Field(default=0, description="problems a later pass solved again")
    passes: int = Field(default=1, description="passes in all")


def describe_split(rows: Sequence[Result], total: int) -> BudgetSplit | None:
    """How a total budget was split, from its rows; None when the rows carry no plan (a run
    without a total, or rows written before plans)."""
    plans = [p for r in rows if isinstance(p := r.info.get(PLAN_KEY), dict)]
    if not plans:
        return None
    ran: dict[str, int] = {}
    for plan in plans:
        if not plan.get("probe") and not plan.get("no_call"):
            ran[str(plan.get("label"))] = ran.get(str(plan.get("label")), 0) + 1
    caps = [p["cap"] for p in plans if not p.get("probe") and isinstance(p.get("cap"), int)]
    first = 0
    for row in rows:
        before = row.info.get("first_pass")
        first += before["tokens"] if isinstance(before, dict) and \
            isinstance(before.get("tokens"), int) else row.usage.total_tokens
    counts = [n for r in rows if isinstance(n := r.info.get("passes"), int)]
    return BudgetSplit(
        total=total, first_pass=ran, first_cap=max(caps, default=0),
        probe=sum(bool(p.get("probe")) for p in plans),
        no_call_planned=sum(bool(p.get("no_call")) for p in plans),
        no_call=sum(1 for r in rows if r.usage.calls == 0),
        first_pass_tokens=first, later_tokens=sum(r.usage.total_tokens for r in rows) - first,
        later_problems=sum(1 for n in counts if n >= 2), passes=max(counts, default=1))


def split_line(split: BudgetSplit) -> str:
    """`ponder solve`'s line for how T was split."""
    ran = ", ".join(f"{label} for {n}" for label, n in split.first_pass.items()) or "nothing"
    probe = f" (after {split.probe} probe)" if split.probe else ""
    skipped = f"; {split.no_call_planned} could not be afforded a call" \
        if split.no_call_planned else ""
    return (f"first pass{probe}: {ran}, at up to {split.first_cap:,} tokens each, "
            f"{split.first_pass_tokens:,} spent{skipped}; later passes ({split.passes - 1}): "
            f"{split.later_problems} problems, {split.later_tokens:,} tokens; "
            f"{split.no_call} got no call")
