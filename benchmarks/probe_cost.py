"""What `ponder.code.probe.run_calls` costs: 16 candidates of a problem, ~12 calls each.

    .venv/bin/python benchmarks/probe_cost.py [--problems 20] [--candidates 16] [--calls 12]
                                              [--write]

For each of the first HumanEval problems (those with calls to read, below) it runs the
canonical solution (prompt + canonical_solution) as every one of the candidates, all of a
problem's candidates at once through the shared sandbox (which lets as many run as the
machine has cores), and prints the seconds per problem (median, p90) and per candidate. For
scale, one `unit_tests` verdict of the same solution is timed too. `--write` saves the
figures to benchmarks/results/probe_cost.json.

The calls are the `candidate(...)` calls of each problem's private `check`: a cost
measurement needs realistic inputs, and reading them from the gold tests is fine here because
nothing is being solved. A solver must never do this; its inputs come from the prompt and
the model. Most checks hold fewer than 12 calls that stand alone; the rest are made up by
repeating them, each repeat told apart by a comment (`f(1)  # 2`) so that `run_calls` runs
it again rather than reusing the first's result. A problem with no such call (HumanEval/32
draws its inputs at random in a loop) is skipped for the next.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import builtins
import datetime
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from ponder.code.probe import ProbeRun, run_calls
from ponder.core.types import Candidate, Problem
from ponder.sandbox import shared_sandbox
from ponder.verifiers.unit_tests import UnitTestVerifier

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "humaneval_public.jsonl"
RESULT = Path(__file__).resolve().parent / "results" / "probe_cost.json"


def calls_of(test: str, entry_point: str, limit: int) -> list[str]:
    """The distinct `candidate(...)` calls of the asserts in `test` that stand alone (no name
    but the candidate's and builtins), as calls of `entry_point`."""
    found: list[str] = []
    for node in ast.walk(ast.parse(test)):
        if not isinstance(node, ast.Assert):
            continue
        call = next((n for n in ast.walk(node.test) if isinstance(n, ast.Call)
                     and isinstance(n.func, ast.Name) and n.func.id == "candidate"), None)
        if call is None:
            continue
        names = {n.id for n in ast.walk(call) if isinstance(n, ast.Name)} - {"candidate"}
        if any(not hasattr(builtins, name) for name in names):
            continue  # a loop's variable, or a helper of check's
        call.func = ast.Name(entry_point, ast.Load())
        text = ast.unparse(call)
        if text not in found:
            found.append(text)
        if len(found) == limit:
            break
    distinct = list(found)
    while distinct and len(found) < limit:
        found.append(f"{distinct[len(found) % len(distinct)]}  # {len(found)}")
    return found


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def measure(rows: list[dict[str, Any]], candidates: int, limit: int) -> dict[str, Any]:
    sandbox = shared_sandbox()
    isolation = await sandbox.isolation()  # probe outside the timing
    verifier = UnitTestVerifier(sandbox=sandbox)
    per_problem: list[dict[str, Any]] = []
    for row in rows:
        problem = Problem(id=row["task_id"], problem=row["prompt"], test=row["test"],
                          entry_point=row["entry_point"])
        code = row["prompt"] + row["canonical_solution"]
        calls = calls_of(row["test"], row["entry_point"], limit)
        started = time.perf_counter()
        runs: list[ProbeRun] = await asyncio.gather(*(
            run_calls(problem, code, calls, sandbox=sandbox) for _ in range(candidates)))
        wall = time.perf_counter() - started
        started = time.perf_counter()
        verdict = await verifier.verify(problem, Candidate(text=code, answer=code))
        verify_s = time.perf_counter() - started
        failed = sum(1 for run in runs for r in run.results if not r.ok)
        per_problem.append({
            "task_id": row["task_id"], "calls": len(calls), "wall_s": round(wall, 3),
            "per_candidate_wall_s": round(wall / candidates, 3),
            "run_s_median": round(statistics.median(run.seconds for run in runs), 3),
            "failed_calls": failed, "unit_tests_verify_s": round(verify_s, 3),
            "unit_tests_passed": verdict.passed})
        print(f"{row['task_id']:>14}: {len(calls):2d} calls, {wall:6.2f} s for {candidates} "
              f"candidates ({wall / candidates:.3f} s each; one sandbox run "
              f"{per_problem[-1]['run_s_median']:.3f} s), {failed} calls failed; "
              f"unit_tests verdict {verify_s:.3f} s", flush=True)
    walls = [p["wall_s"] for p in per_problem]
    each = [p["per_candidate_wall_s"] for p in per_problem]
    runs_s = [p["run_s_median"] for p in per_problem]
    return {
        "isolation": isolation.describe(),
        "problems": len(rows), "candidates_per_problem": candidates,
        "calls_per_candidate_median": statistics.median(p["calls"] for p in per_problem),
        "failed_calls": sum(p["failed_calls"] for p in per_problem),
        "per_problem_s": {"median": round(statistics.median(walls), 3),
                          "p90": round(quantile(walls, 0.9), 3),
                          "max": round(max(walls), 3)},
        "per_candidate_s": {"median": round(statistics.median(each), 3),
                            "p90": round(quantile(each, 0.9), 3)},
        "sandbox_run_s": {"median": round(statistics.median(runs_s), 3),
                          "p90": round(quantile(runs_s, 0.9), 3)},
        "unit_tests_verify_s_median": round(
            statistics.median(p["unit_tests_verify_s"] for p in per_problem), 3),
        "rows": per_problem,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--problems", type=int, default=20)
    parser.add_argument("--candidates", type=int, default=16)
    parser.add_argument("--calls", type=int, default=12)
    parser.add_argument("--write", action="store_true", help=f"save to {RESULT}")
    args = parser.parse_args()
    every = [json.loads(line) for line in args.data.read_text().splitlines() if line.strip()]
    usable = [row for row in every if calls_of(row["test"], row["entry_point"], 1)]
    rows = usable[:args.problems]
    skipped = [row["task_id"] for row in every[:every.index(rows[-1]) + 1] if row not in rows]
    load = os.getloadavg()[0]
    print(f"{len(rows)} HumanEval problems, {args.candidates} candidates each, up to "
          f"{args.calls} calls; {os.cpu_count()} cores, load average {load:.1f}")
    figures = asyncio.run(measure(rows, args.candidates, args.calls))
    print(f"per problem ({args.candidates} candidates): median {figures['per_problem_s']['median']}"
          f" s, p90 {figures['per_problem_s']['p90']} s; per candidate: median "
          f"{figures['per_candidate_s']['median']} s, p90 {figures['per_candidate_s']['p90']} s; "
          f"one sandbox run median {figures['sandbox_run_s']['median']} s; a unit_tests "
          f"verdict median {figures['unit_tests_verify_s_median']} s; "
          f"{figures['failed_calls']} calls failed")
    if args.write:
        record = {
            "command": " ".join([".venv/bin/python", *sys.argv]),
            "date": datetime.date.today().isoformat(),
            "machine": f"{os.cpu_count()} cores, {platform.machine()}, Python "
                       f"{platform.python_version()}",
            "load_average_1m_before": round(load, 2),
            "load_average_1m_after": round(os.getloadavg()[0], 2),
            "note": "calls read from the private tests' asserts (a cost measurement only), "
                    "repeated with a comment to make up the count",
            "skipped": skipped,
            **figures,
        }
        RESULT.parent.mkdir(parents=True, exist_ok=True)
        RESULT.write_text(json.dumps(record, indent=2) + "\n")
        print(f"wrote {RESULT}")


if __name__ == "__main__":
    main()
