"""Write a quiz for the fake server's quiz mode: GSM8K problems of mixed, known difficulty.

Each item is a GSM8K test problem with its gold answer and a chance `p_correct` that one reply
is right, by the problem's index in the file: positions 0, 3, 6 of every ten are easy (0.9),
1, 4, 7, 9 medium (0.5) and 2, 5, 8 hard (0.1), so the mix is 30% / 40% / 30% and any
ten consecutive problems hold it exactly. The file is also a ponder problem file (`id`,
`problem`, `answer`; `p_correct` and `difficulty` go into metadata), so one file drives both
sides:

    .venv/bin/python benchmarks/make_quiz.py            # writes benchmarks/data/quiz_mixed.jsonl
    .venv/bin/python -m ponder.testing.fake_server --port 0 --quiz benchmarks/data/quiz_mixed.jsonl
    .venv/bin/ponder solve benchmarks/data/quiz_mixed.jsonl --base-url URL -s best_of_n -p n=5

`--source`, `--offset`, `--limit` and `-o` pick other problems or another file.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GSM8K = REPO.parent / "shared" / "data" / "gsm8k_test_public.jsonl"
OUT = REPO / "benchmarks" / "data" / "quiz_mixed.jsonl"
# p_correct by difficulty, and the difficulty of each position in a block of ten.
LEVELS = {"easy": 0.9, "medium": 0.5, "hard": 0.1}
PATTERN = ("easy", "medium", "hard", "easy", "medium", "hard", "easy", "medium", "hard",
           "medium")


def quiz_rows(source: Path, offset: int, limit: int) -> list[dict[str, object]]:
    rows = [json.loads(line) for line in source.read_text(encoding="utf-8").splitlines()
            if line.strip()]
    chosen = rows[offset : offset + limit]
    if len(chosen) < limit:
        raise SystemExit(f"{source} has {len(rows)} rows; {offset} + {limit} asked for")
    out: list[dict[str, object]] = []
    for index, row in enumerate(chosen):
        level = PATTERN[index % len(PATTERN)]
        out.append({"id": row["id"], "problem": row["problem"], "answer": str(row["answer"]),
                    "p_correct": LEVELS[level], "difficulty": level})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=GSM8K, help="GSM8K-style JSONL")
    parser.add_argument("--offset", type=int, default=0, help="rows of the source to skip")
    parser.add_argument("--limit", type=int, default=100, help="problems in the quiz")
    parser.add_argument("-o", "--output", type=Path, default=OUT)
    args = parser.parse_args()
    rows = quiz_rows(args.source, args.offset, args.limit)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    print(f"wrote {len(rows)} items to {args.output}")


if __name__ == "__main__":
    main()
