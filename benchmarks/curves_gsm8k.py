"""Work-precision curves with the embedded model on the first 100 public GSM8K problems: every
strategy, the effort tiers, `auto`, and the 1.5B model's greedy and 4-sample points on the same
plot (tokens, or `--x compute` for FLOPs).

    python benchmarks/curves_gsm8k.py                      # resumes whatever is cached
    python benchmarks/curves_gsm8k.py --only-cheap         # the runs under ~1k tokens a problem
    python benchmarks/curves_gsm8k.py --held-out           # problems 100-199: the claims checked
    python benchmarks/curves_gsm8k.py --math500            # 50 MATH-500 problems
    python benchmarks/curves_gsm8k.py --cached             # redraw from the cached rows only

It runs `ponder bench` into benchmarks/results/curve_gsm8k/, where each run is cached row by row
as it finishes: on 2 cores the whole list takes many hours (best_of_n's pool of 16 alone is
about 1,600 samples), so it is built up over sessions, each run of this script carrying on
where the last stopped. The 1.5B runs need `pip install "ponder[local-1-5b]"`.

`--held-out` scores the next 100 problems (100-199) with the points whose lead on the first 100
might be luck: `single`, `auto` and the zero-shot program (into
benchmarks/results/curve_gsm8k_heldout/). No exemplar comes from them and `auto`'s defaults were
not chosen on them; they did see `program`'s choice of zero-shot (strategies_gsm8k_heldout.md).
`--math500` runs the cheap points and the vote up to 8 samples on the first 50 public MATH-500
problems, scored by the `math` verifier (into benchmarks/results/curve_math500/).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
# Cheapest first, so that a session's time buys the most points.
CHEAP = [
    "single",
    "effort=low",
    "program",
    "effort=medium",
    "program few_shot=true label=program_few_shot",
    "auto",
    "effort=high",
    "single local_model=1.5b label=single_1.5b",
    # Issue 8's question: do worked examples (written for ponder, GSM8K train style) help?
    "single few_shot=true label=single_few_shot",
]
HELD_OUT = ["single", "auto", "program"]
HELD_OUT_FROM = 100
MATH500 = ["single", "program", "auto", "best_of_n n=1,2,4,8 temperature=0.7"]
COSTLY = [
    # The pool of 16 first: it alone gives best_of_n's five points and the confidence selector's.
    "best_of_n n=1,2,4,8,16 temperature=0.7",
    "best_of_n n=4,8,16 temperature=0.7 selector=confidence keep=0.5 "
    "label=best_of_n_confidence",
    "self_refine",
    "best_of_n n=4 temperature=0.7 local_model=1.5b label=best_of_n_1.5b",
    "program n=5 temperature=0.7 few_shot=false label=program_n5",
    "best_of_n n=1,2,4 temperature=0.7 few_shot=true label=best_of_n_few_shot",
    "ice",
    "tree_search",
    "tree_search algorithm=mcts label=mcts",
]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--data", type=Path)
    parser.add_argument("--limit", type=int)
    parser.add_argument("--out", type=Path)
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--only-cheap", action="store_true")
    which.add_argument("--held-out", action="store_true")
    which.add_argument("--math500", action="store_true")
    parser.add_argument("--x", default="tokens", choices=["tokens", "compute"])
    parser.add_argument("--cached", action="store_true", help="solve nothing; redraw")
    args = parser.parse_args(argv)
    if args.math500:
        name, data, limit, runs = "MATH-500", SHARED / "math500_public.jsonl", 50, MATH500
        folder = "curve_math500"
    else:
        name, data, limit = "GSM8K", SHARED / "gsm8k_test_public.jsonl", 100
        folder = "curve_gsm8k_heldout" if args.held_out else "curve_gsm8k"
        runs = HELD_OUT if args.held_out else CHEAP if args.only_cheap else CHEAP + COSTLY
    data = args.data or data
    limit = limit if args.limit is None else args.limit
    # The held-out problems start after the 100 the claims were made on, whatever --limit.
    offset = HELD_OUT_FROM if args.held_out else 0
    out = args.out or ROOT / "benchmarks/results" / folder
    span = (f"public problems {offset}-{offset + limit - 1}" if offset
            else f"first {limit} public problems")
    command = [sys.executable, "-m", "ponder", "bench", str(data), "--offset", str(offset),
               "--limit", str(limit), "-o", str(out), "--x", args.x, "--title",
               f"{name}, {span}, embedded model"]
    for spec in runs:
        command += ["--run", spec]
    if args.cached:
        command.append("--cached")
    return subprocess.call(command)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
