"""How long the unit_tests verifier takes on HumanEval's 100 canonical solutions.

    .venv/bin/python benchmarks/verifiers_humaneval.py [--concurrency N ...] [--repeat R]

Runs every canonical solution through the sandbox serially (one at a time) and then with
each concurrency given (default: the number of cores), checks that all pass, and prints the
wall time, runs per second and the slowest problems. The isolation in use is printed too,
since it decides the cost of a run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from pathlib import Path

from ponder.core.types import Candidate, Problem, Verdict
from ponder.sandbox import Sandbox
from ponder.verifiers.unit_tests import UnitTestVerifier

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "humaneval_public.jsonl"


async def verify_all(rows: list[dict[str, str]], concurrency: int) -> tuple[float, list[Verdict]]:
    verifier = UnitTestVerifier(sandbox=Sandbox(max_concurrency=concurrency))
    await verifier.sandbox.isolation()  # probe outside the timing
    started = time.perf_counter()
    verdicts = await asyncio.gather(*(
        verifier.verify(
            Problem(id=row["task_id"], problem=row["prompt"], test=row["test"],
                    entry_point=row["entry_point"]),
            Candidate(text=row["canonical_solution"], answer=row["canonical_solution"]),
        )
        for row in rows
    ))
    return time.perf_counter() - started, list(verdicts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--concurrency", type=int, nargs="*", default=[os.cpu_count() or 1])
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    rows = [json.loads(line) for line in args.data.read_text().splitlines() if line.strip()]
    print(f"{len(rows)} HumanEval canonical solutions, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f}")
    for concurrency in [1, *args.concurrency]:
        walls = []
        for _ in range(args.repeat):
            wall, verdicts = asyncio.run(verify_all(rows, concurrency))
            walls.append(wall)
            failed = [r["task_id"] for r, v in zip(rows, verdicts, strict=True) if not v.passed]
            if failed:
                raise SystemExit(f"canonical solutions failed: {failed}")
        best = min(walls)
        per_run = sorted((v.details["seconds"], r["task_id"])
                         for r, v in zip(rows, verdicts, strict=True))
        label = "serial" if concurrency == 1 else f"concurrency {concurrency}"
        print(f"{label:>15}: {best:6.2f} s wall (best of {len(walls)}), "
              f"{len(rows) / best:5.1f} verdicts/s, per run median "
              f"{statistics.median(s for s, _ in per_run):.3f} s, slowest "
              f"{per_run[-1][1]} {per_run[-1][0]:.2f} s")
    print("isolation:", json.dumps(verdicts[0].details["isolation"]))


if __name__ == "__main__":
    main()
