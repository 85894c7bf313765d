"""How much of a total budget the first pass should get (`first_share`), swept over seeds on
the fake quiz with no `/tokenize`, for `auto` under T = a multiple of S (S: 331 tokens a
problem, `best_of_n n=3`'s one request):

    python benchmarks/first_share_sweep.py --problems 0:150 --multiples 2,1 --shares 1,0.7
    python benchmarks/first_share_sweep.py --problems 150:300 --multiples 2 --shares 1,0.7

Each line: the correct count per seed and the mean. Writes
benchmarks/results/first_share_sweep.md (appending one section per command, so the tuning
and the held-out halves sit together) and the per-seed counts as .ndjson.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
from pathlib import Path
from typing import Any

from make_quiz import GSM8K, quiz_rows
from total_budget_sweep import PARAMS, one_run, right

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "first_share_sweep"
S = 331  # best_of_n n=3's spend a problem on this quiz (total_budget_seeds.md)


async def correct(rows: list[dict[str, Any]], *, seed: int, total: int, share: float) -> int:
    done = await one_run(rows, strategy="auto", params=PARAMS, total=total, seed=seed,
                         concurrency=16, first_share=share)
    gold = {str(r["id"]): r for r in rows}
    return sum(right(r, gold[r.id]) for r in done)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--problems", default="0:150", metavar="START:END")
    parser.add_argument("--multiples", default="2,1")
    parser.add_argument("--shares", default="1,0.7")
    parser.add_argument("--seeds", type=int, default=6)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    start, _, end = args.problems.partition(":")
    rows = quiz_rows(GSM8K, 0, 300)[int(start):int(end)]
    lines = [f"## `python benchmarks/first_share_sweep.py {' '.join(argv)}`", "",
             f"Problems {args.problems}, `auto`, {json.dumps(PARAMS)}, concurrency 16, seeds "
             f"0-{args.seeds - 1}; correct of {len(rows)}.", "",
             "| T | first_share | " + " | ".join(f"seed {s}" for s in range(args.seeds))
             + " | mean |", "|---|---|" + "---|" * (args.seeds + 1)]
    raw = []
    for multiple in (float(m) for m in args.multiples.split(",")):
        for share in (float(x) for x in args.shares.split(",")):
            counts = [asyncio.run(correct(rows, seed=seed, total=int(multiple * S * len(rows)),
                                          share=share)) for seed in range(args.seeds)]
            raw.append({"problems": args.problems, "multiple": multiple, "share": share,
                        "correct": counts})
            lines.append(f"| {multiple}S | {share} | " + " | ".join(map(str, counts))
                         + f" | {statistics.fmean(counts):.1f} |")
            print(lines[-1], file=sys.stderr, flush=True)
    text = "\n".join(lines) + "\n"
    md = args.out.with_suffix(".md")
    before = md.read_text() if md.exists() else \
        "# `first_share` under a total budget, fake quiz, no `/tokenize`\n\n"
    md.write_text(before + text + "\n")
    with args.out.with_suffix(".ndjson").open("a") as file:
        file.writelines(json.dumps(row) + "\n" for row in raw)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
