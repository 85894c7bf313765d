"""A total budget that plans before it spends (`ponder.runs.run_plan`), swept over T, on the
fake server in quiz mode with no `/tokenize` (as OpenAI's API has none): the 300 public GSM8K
problems, each with a known chance of a right reply (`benchmarks/make_quiz.py`'s mix: 30%
easy at 0.9, 40% medium at 0.5, 30% hard at 0.1).

    python benchmarks/total_budget_sweep.py

First `best_of_n n=3` with no budget, for its spend S and accuracy; then `auto` under a total
T for each multiple of S: accuracy (95% Wilson interval), tokens spent against T, calls, and
problems that got no call, with how the plan split T. No verifier: rows are scored against
gold after the run. Writes benchmarks/results/total_budget_sweep.md and the raw rows to
total_budget_sweep.ndjson (one row a line, with its run's arm and T; not .jsonl, which the
results tests read as result rows).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from make_quiz import GSM8K, quiz_rows

from ponder.backends.openai import OpenAIBackend
from ponder.bench.run import wilson
from ponder.core.answers import canonical_answer
from ponder.core.types import Message, Problem, Result
from ponder.runs.allocation import FIRST_SHARE, solve_within
from ponder.runs.budget_split import describe_split, split_line
from ponder.runs.solve_many import Solver, run_all
from ponder.strategies import REGISTRY
from ponder.testing import FakeOpenAIServer, QuizItem

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "total_budget_sweep"
PARAMS: dict[str, Any] = {"max_tokens": 160}  # as total_budget_fake.py: quiz replies fit
MULTIPLES = (0.25, 0.5, 0.9, 1.0, 2.0)


class NoTokenizer(OpenAIBackend):
    """An OpenAI-compatible server as a client sees one without `/tokenize`."""

    async def count_prompt_tokens(self, messages: Sequence[Message]) -> int | None:
        return None


def right(row: Result, gold: dict[str, Any]) -> bool:
    return row.answer is not None and canonical_answer(row.answer) == \
        canonical_answer(str(gold["answer"]))


async def one_run(rows: list[dict[str, Any]], *, strategy: str, params: dict[str, Any],
                  total: int | None, seed: int, concurrency: int,
                  first_share: float = FIRST_SHARE) -> list[Result]:
    items = [QuizItem.model_validate(r) for r in rows]
    problems = [Problem(id=r["id"], problem=r["problem"]) for r in rows]  # no gold
    spec = REGISTRY.get(strategy)
    with FakeOpenAIServer(quiz=items, seed=seed) as server:
        backend = NoTokenizer(base_url=server.base_url, model=server.model, max_retries=0)
        try:
            solver = Solver(spec, spec.make_config(params), backend, seed=seed)
            if total is None:
                done = {r.id: r for r in await run_all(problems, solver,
                                                       concurrency=concurrency)}
                return [done[p.id] for p in problems]
            return await solve_within(problems, solver, total_tokens=total,
                                      concurrency=concurrency, first_share=first_share)
        finally:
            await backend.aclose()


def scored(arm: str, total: int | None, results: list[Result], gold: dict[str, Any],
           wall_s: float) -> dict[str, Any]:
    correct = sum(right(r, gold[r.id]) for r in results)
    low, high = wilson(correct, len(results))
    spent = sum(r.usage.total_tokens for r in results)
    split = None if total is None else describe_split(results, total)
    return {"arm": arm, "total": total, "correct": correct, "n": len(results),
            "acc": correct / len(results), "low": low, "high": high, "tokens": spent,
            "calls": sum(r.usage.calls for r in results),
            "no_call": sum(r.usage.calls == 0 for r in results),
            "stop_reasons": _count(r.stop_reason for r in results),
            "split": None if split is None else split.model_dump(),
            "split_line": None if split is None else split_line(split),
            "wall_s": round(wall_s, 1)}


def _which(args: argparse.Namespace, table: list[dict[str, Any]]) -> str:
    if args.problems is None:
        return f"the first {args.limit}"
    return f"problems {args.problems} (of the first {args.limit}; {table[0]['n']} problems)"


def _count(values: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for value in values:
        out[value] = out.get(value, 0) + 1
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--limit", type=int, default=300, help="problems of the public file")
    parser.add_argument("--problems", metavar="START:END", default=None,
                        help="only these problems of the --limit (difficulty as in the full "
                             "file): e.g. 0:150 to tune, 150:300 held out")
    parser.add_argument("--multiples", default=",".join(map(str, MULTIPLES)),
                        help="the multiples of S to run auto at, comma-separated")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-total", action="store_true",
                        help="also run auto with no total: what it spends and reaches alone")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    rows = quiz_rows(GSM8K, 0, args.limit)
    if args.problems is not None:
        start, _, end = args.problems.partition(":")
        rows = rows[int(start or 0):int(end) if end else None]
    multiples = [float(m) for m in args.multiples.split(",") if m.strip()]
    gold: dict[str, Any] = {str(r["id"]): r for r in rows}
    table: list[dict[str, Any]] = []
    raw: list[str] = []

    def go(arm: str, strategy: str, params: dict[str, Any], total: int | None) -> None:
        started = time.monotonic()
        results = asyncio.run(one_run(rows, strategy=strategy, params=params, total=total,
                                      seed=args.seed, concurrency=args.concurrency))
        entry = scored(arm, total, results, gold, time.monotonic() - started)
        table.append(entry)
        raw.extend(json.dumps({"arm": arm, "total": total, "right": right(r, gold[r.id]),
                               **r.model_dump(mode="json", exclude={"trace", "text"})})
                   for r in results)
        print(f"{arm}: {entry['correct']}/{entry['n']}, {entry['tokens']:,} tokens, "
              f"{entry['calls']} calls, {entry['no_call']} no call "
              f"({entry['wall_s']}s)", file=sys.stderr)

    go("best_of_n n=3", "best_of_n", {**PARAMS, "n": 3}, None)
    base = table[0]["tokens"]
    for multiple in multiples:
        go(f"auto T={multiple}S", "auto", PARAMS, int(multiple * base))
    if args.no_total:
        go("auto, no total", "auto", PARAMS, None)
    command = ("python benchmarks/total_budget_sweep.py " + " ".join(argv)).strip()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".ndjson").write_text("\n".join(raw) + "\n")
    args.out.with_suffix(".md").write_text(markdown(command, args, table))
    print(f"wrote {args.out.with_suffix('.md')} and .ndjson", file=sys.stderr)
    return 0


def markdown(command: str, args: argparse.Namespace, table: list[dict[str, Any]]) -> str:
    lines = [f"`{command}`", "",
             "# `auto` under a total budget T, swept against best_of_n n=3's spend S", "",
             f"Fake server in quiz mode, no `/tokenize` (the client is never given a "
             f"tokenizer), {_which(args, table)} public GSM8K problems with "
             f"make_quiz.py's difficulty mix (easy 0.9 / medium 0.5 / hard 0.1), seed "
             f"{args.seed}, concurrency {args.concurrency}, {json.dumps(PARAMS)}; no verifier, "
             "scored against gold after the run. Raw rows (traces and reply texts left out): "
             f"{args.out.with_suffix('.ndjson').name}.", "",
             "| run | T | accuracy | 95% CI | tokens spent | of T | calls | no call | "
             "stop reasons |", "|---|---|---|---|---|---|---|---|---|"]
    for row in table:
        total = "–" if row["total"] is None else f"{row['total']:,}"
        share = "–" if row["total"] is None else f"{row['tokens'] / row['total']:.0%}"
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(row["stop_reasons"].items()))
        lines.append(f"| {row['arm']} | {total} | {row['correct']}/{row['n']} "
                     f"({row['acc']:.1%}) | {row['low']:.1%}–{row['high']:.1%} | "
                     f"{row['tokens']:,} | {share} | {row['calls']:,} | {row['no_call']} | "
                     f"{reasons} |")
    lines += ["", "How each T was split (the summary's `budget split` line):", ""]
    lines += [f"- {row['arm']}: {row['split_line']}" for row in table if row["split_line"]]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
