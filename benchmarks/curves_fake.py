"""Work-precision curves against the fake server in quiz mode: a "model" whose chance of a
right answer is known for each problem (`benchmarks/data/quiz_mixed.jsonl`: 100 GSM8K problems,
30 easy at p=0.9, 40 medium at 0.5, 30 hard at 0.1; wrong answers drawn from a few
distractors, so errors agree with each other as a real model's do). Without a model's noise
the curve shows how each strategy spends: where voting pays (medium problems), where it
cannot (hard ones, where a distractor outvotes the right answer), and whether `auto` stops
early on easy problems.

    python benchmarks/curves_fake.py --seed 0 --out benchmarks/results/curve_fake

It runs `ponder bench` itself, against a fake server it starts on 127.0.0.1, and writes the
bench's curve.csv / curve.md / curve.png, the breakdown by difficulty (curve_by.csv and a
section of curve.md: what each strategy spends on easy, medium and hard problems, and what it
wins there) and cached runs to --out.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from ponder.testing import FakeOpenAIServer, QuizItem

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "benchmarks" / "data" / "quiz_mixed.jsonl"
RUNS = [
    "single",
    "best_of_n n=1,2,4,8,16 temperature=0.7",
    "best_of_n n=4,8,16 temperature=0.7 selector=confidence keep=0.5 label=best_of_n_confidence",
    "best_of_n n=16 temperature=0.7 adaptive=true min_samples=3 batch_size=1 "
    "label=best_of_n_adaptive",
    "self_refine",
    "program few_shot=false",
    "auto",
    "auto max_samples=16 label=auto_16",
    # Tuned on seed 0 among five variants (batch_size, scatter_after, agreement, program);
    # score it on another seed. On the fake the program is no better than prose, unlike the
    # embedded coder model, so this says nothing of auto's defaults there.
    "auto program=false batch_size=2 agreement=0.6 label=auto_cheap",
    "effort=low",
    "effort=medium",
    "effort=high",
]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seed", type=int, default=0, help="the fake server's seed")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/curve_fake")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args(argv)
    items = QuizItem.load_jsonl(args.data)
    # Right replies are a little surer token by token (quiz_confidence), so the confidence
    # selector has a signal to find, as DeepConf reports real models have.
    with FakeOpenAIServer(quiz=items, seed=args.seed, quiz_confidence=0.2,
                          model="fake-quiz") as server:
        command = [sys.executable, "-m", "ponder", "bench", str(args.data), "-o", str(args.out),
                   "--base-url", server.base_url, "--model", "fake-quiz",
                   "--concurrency", str(args.concurrency), "--by", "difficulty",
                   "--title", f"fake server, quiz_mixed (100 problems), seed {args.seed}"]
        for spec in RUNS:
            command += ["--run", spec]
        return subprocess.call(command)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
