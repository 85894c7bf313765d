"""The total-budget sweep over several seeds, beside the most any policy could reach.

One seed of `total_budget_sweep.py` moves by 3-9 problems from the next (which reply of the
seeded stream meets which problem), as much as the differences the sweep is read for. So:

    for s in 0 1 2 3 4; do
        python benchmarks/total_budget_sweep.py --seed $s --no-total --out /tmp/sweep/s$s
    done
    python benchmarks/total_budget_seeds.py /tmp/sweep/s*.ndjson

reads the sweeps' raw rows and writes benchmarks/results/total_budget_seeds.md (per arm: each
seed's correct count, the mean, tokens against T, problems with no call; and the best
expected accuracy any policy on vote agreement could reach at that T, from
`budget_bound.py`) and total_budget_seeds.ndjson (one row a problem, arm and seed: right,
tokens, calls, stop reason).

`--before OLD/s*.ndjson --before-label COMMIT` (the same seeds, swept by an earlier version
of ponder) adds each arm's change, paired by seed: the mean difference with a 95% t
interval, and the seeds it won, tied and lost; the earlier rows go into the .ndjson too,
marked `"version": "before"`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import budget_bound

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "total_budget_seeds"
BASELINE = "best_of_n n=3"
# Student's t, two-sided 95%, by degrees of freedom 1-20 (a few seeds; no scipy needed).
T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
        2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086)


def load(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("sweeps", nargs="+", type=Path, help="total_budget_sweep .ndjson files")
    parser.add_argument("--before", nargs="+", type=Path, default=[],
                        help="the same seeds' sweeps by an earlier version, to pair against")
    parser.add_argument("--before-label", default="an earlier version",
                        help="what swept --before (a commit)")
    parser.add_argument("--sweep-args", default="--seed S --no-total",
                        help="how the sweeps were run, for the table's header")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    compact: list[dict[str, Any]] = []
    # arm -> seed file -> (right, tokens, T, no call)
    table: dict[str, dict[str, tuple[int, int, int | None, int]]] = defaultdict(dict)
    problems = set()
    before_rows: list[dict[str, Any]] = []
    for path in args.before:
        before_rows += [{"version": "before", **brief(path, row)} for row in load(path)]
    for path in args.sweeps:
        by_arm: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in load(path):
            by_arm[row["arm"]].append(row)
            problems.add(row["id"])
            compact.append({"version": "now", **brief(path, row)} if args.before
                           else brief(path, row))
        for arm, rows in by_arm.items():
            table[arm][path.stem] = (sum(r["right"] for r in rows),
                                     sum(r["usage"]["total_tokens"] for r in rows),
                                     rows[0]["total"],
                                     sum(r["usage"]["calls"] == 0 for r in rows))
    if BASELINE not in table:
        parser.error(f"no {BASELINE!r} rows in the sweeps")
    seeds = sorted({seed for arms in table.values() for seed in arms})
    n = len(problems)
    spend = statistics.fmean(table[BASELINE][s][1] for s in seeds) / n
    # The bound's prices are what best_of_n n=3's one request a problem was charged.
    base_rows = [r for r in compact if r["arm"] == BASELINE]
    prompt = round(statistics.fmean(r["prompt"] for r in base_rows))
    completion = round(statistics.fmean(r["completion"] for r in base_rows) / 3)
    hull = budget_bound.frontier(prompt, completion)
    base_mean = statistics.fmean(table[BASELINE][s][0] for s in seeds)
    before = f" --before ... --before-label {args.before_label!r}" if args.before else ""
    lines = [f"`python benchmarks/total_budget_seeds.py {' '.join(p.name for p in args.sweeps)}"
             f"{before}` (the sweeps: `python benchmarks/total_budget_sweep.py "
             f"{args.sweep_args}`)", "",
             f"# `auto` under a total budget, {len(seeds)} seeds of the fake quiz", "",
             f"{n} problems; S is {BASELINE}'s spend ({spend:.0f} tokens a problem, mean over "
             f"seeds; a request charged {prompt} prompt tokens and {completion} a reply). "
             "\"bound\" is the best expected count any policy that sees only how its "
             "samples agree could reach at that T (`budget_bound.py`, exact), \"expected\" "
             f"for {BASELINE} the same calculation's value of that fixed policy.", "",
             "| run | " + " | ".join(seeds)
             + " | mean | tokens / T | no call (mean) | bound |",
             "|---|" + "---|" * len(seeds) + "---|---|---|---|"]
    for arm, by_seed in table.items():
        counts = [by_seed[s][0] for s in seeds if s in by_seed]
        totals = [by_seed[s][2] for s in seeds if s in by_seed]
        spent = [by_seed[s][1] for s in seeds if s in by_seed]
        ratio = "–" if None in totals else \
            f"{statistics.fmean(t / T for t, T in zip(spent, totals, strict=True) if T):.0%}"
        if arm == BASELINE:
            bound = f"expected {budget_bound.solve_fixed(3) * n:.1f}"
        else:  # at T, or (no total) at what the arm spent
            mean_spent = statistics.fmean(spent) / n
            at = float(arm.split("T=")[1].rstrip("S")) * spend if "T=" in arm else mean_spent
            bound = f"{budget_bound.best_at(hull, at) * n:.1f}" + \
                ("" if "T=" in arm else f" (at {mean_spent / spend:.2f}S)")
        lines.append(f"| {arm} | " + " | ".join(str(c) for c in counts)
                     + f" | {statistics.fmean(counts):.1f} | {ratio} | "
                     f"{statistics.fmean(by_seed[s][3] for s in seeds if s in by_seed):.0f} | "
                     f"{bound} |")
    lines += ["", f"{BASELINE} averaged {base_mean:.1f} over these seeds.", ""]
    if args.before:
        lines += paired(table, correct_by_arm(before_rows), args.before_label)
    args.out.with_suffix(".ndjson").write_text(
        "".join(json.dumps(row) + "\n" for row in compact + before_rows))
    args.out.with_suffix(".md").write_text("\n".join(lines))
    sys.stdout.write("\n".join(lines))
    return 0


def brief(path: Path, row: dict[str, Any]) -> dict[str, Any]:
    """One sweep row, as the .ndjson keeps it."""
    return {"sweep": path.stem, "arm": row["arm"], "total": row["total"], "id": row["id"],
            "right": row["right"], "tokens": row["usage"]["total_tokens"],
            "prompt": row["usage"]["prompt_tokens"],
            "completion": row["usage"]["completion_tokens"], "calls": row["usage"]["calls"],
            "stop": row["stop_reason"]}


def correct_by_arm(rows: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """arm -> seed file -> correct count, from `brief` rows."""
    out: dict[str, dict[str, int]] = defaultdict(dict)
    for row in rows:
        out[row["arm"]][row["sweep"]] = out[row["arm"]].get(row["sweep"], 0) + int(row["right"])
    return out


def paired(table: dict[str, dict[str, tuple[int, int, int | None, int]]],
           before: dict[str, dict[str, int]], label: str) -> list[str]:
    """Each arm's change against the earlier version's sweeps of the same seeds."""
    lines = [f"Against the same seeds swept by {label}: correct now minus correct then, "
             "paired by seed (95% t interval over the seeds).", "",
             "| run | before (mean) | now (mean) | change | 95% CI | seeds won / tied / lost |",
             "|---|---|---|---|---|---|"]
    for arm, by_seed in table.items():
        seeds = [s for s in by_seed if s in before.get(arm, {})]
        if arm == BASELINE or len(seeds) < 2:
            continue
        diffs = [by_seed[s][0] - before[arm][s] for s in seeds]
        mean = statistics.fmean(diffs)
        t = T975[min(len(diffs) - 1, len(T975)) - 1]
        half = t * statistics.stdev(diffs) / len(diffs) ** 0.5
        won, lost = sum(d > 0 for d in diffs), sum(d < 0 for d in diffs)
        lines.append(f"| {arm} | {statistics.fmean(before[arm][s] for s in seeds):.1f} | "
                     f"{statistics.fmean(by_seed[s][0] for s in seeds):.1f} | {mean:+.1f} | "
                     f"{mean - half:+.1f} to {mean + half:+.1f} | "
                     f"{won} / {len(diffs) - won - lost} / {lost} |")
    return [*lines, ""]


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
