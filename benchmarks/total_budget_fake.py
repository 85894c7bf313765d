"""One total token budget spread in two passes (`ponder.runs.allocation`) against an equal split of
the same tokens, on the fake server in quiz mode: `benchmarks/data/quiz_mixed.jsonl`, 100 GSM8K
problems whose chance of a right reply is known (30 easy at p=0.9, 40 medium at 0.5, 30 hard
at 0.1; wrong replies drawn from a few distractors, so they often agree).

    python benchmarks/total_budget_fake.py

For each total T (as tokens per problem, T/N) and each seed it runs `auto` (no verifier: the
vote decides) with

- `equal`: `--budget-tokens T/N` for every problem, no total (what a user without a total
  budget would do);
- `two-pass`: `total_budget=T` with first_share 0.5 (a cheap first pass, as first proposed);
- `two-pass-restart`: the same without reusing the first pass's replies (`reuse=False`: the
  second pass starts over), an ablation;
- `two-pass-tuned`: `total_budget=T` with the first-pass share that did best on tuning seeds
  that are never scored (`--tune-seeds`; one share for every T). It came out 1.0, which is
  now `ponder.runs.allocation`'s default.

Strategies never see gold: the problems go without their answers and with no verifier; each
row is scored against gold after the run. Accuracy is pooled over the scored seeds with its
95% Wilson interval; "vs equal" is the paired per-seed difference. A fresh fake server per
run and seed, so every arm of a seed draws from the same reply stream.

Writes benchmarks/results/total_budget_fake.md and .json (the .json also caches each run: run
the command again to resume, or delete it to start over).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from ponder.backends.spec import make_backend
from ponder.bench.run import wilson
from ponder.core.answers import canonical_answer
from ponder.core.budget import Budget
from ponder.core.types import Problem, Result
from ponder.runs.allocation import solve_within
from ponder.runs.solve_many import Solver, run_all
from ponder.strategies import REGISTRY
from ponder.testing import FakeOpenAIServer, QuizItem

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "benchmarks" / "data" / "quiz_mixed.jsonl"
OUT = ROOT / "benchmarks" / "results" / "total_budget_fake"
# Quiz replies are 40-120 words and an answer line; 160 leaves room, and keeps each call's
# reservation (its upper bound) near what it costs. The same for every arm.
PARAMS: dict[str, Any] = {"max_tokens": 160}
STRATEGY = "auto"
SHARES = (0.3, 0.5, 0.7, 1.0)


def load(path: Path) -> tuple[list[QuizItem], list[Problem], dict[str, dict[str, Any]]]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    items = [QuizItem.model_validate(row) for row in rows]
    problems = [Problem(id=row["id"], problem=row["problem"]) for row in rows]  # no gold
    gold = {row["id"]: row for row in rows}
    return items, problems, gold


def right(row: Result, gold: dict[str, Any]) -> bool:
    return row.answer is not None and canonical_answer(row.answer) == \
        canonical_answer(str(gold["answer"]))


async def one_run(items: list[QuizItem], problems: list[Problem], gold: dict[str, Any], *,
                  seed: int, per_problem: int, arm: str, share: float | None,
                  concurrency: int) -> dict[str, Any]:
    spec = REGISTRY.get(STRATEGY)
    config = spec.make_config(PARAMS)
    total = per_problem * len(problems)
    started = time.monotonic()
    with FakeOpenAIServer(quiz=items, seed=seed) as server:
        backend, _ = make_backend(server.base_url, max_retries=0)
        try:
            if arm == "equal":
                solver = Solver(spec, config, backend, budget=Budget(tokens=per_problem),
                                seed=seed)
                done = {r.id: r for r in await run_all(problems, solver,
                                                       concurrency=concurrency)}
                rows = [done[p.id] for p in problems]
            else:
                solver = Solver(spec, config, backend, seed=seed)
                rows = await solve_within(problems, solver, total_tokens=total,
                                          concurrency=concurrency, first_share=share or 0.5,
                                          reuse=arm != "two-pass-restart")
        finally:
            await backend.aclose()
    by_level: dict[str, list[int]] = {}
    for row in rows:
        level = gold[row.id].get("difficulty", "all")
        by_level.setdefault(level, [0, 0])
        by_level[level][0] += right(row, gold[row.id])
        by_level[level][1] += 1
    spent = [r.usage.total_tokens for r in rows]
    return {"seed": seed, "per_problem": per_problem, "total": total, "arm": arm,
            "share": share, "correct": sum(right(r, gold[r.id]) for r in rows),
            "problems": len(rows), "tokens": sum(spent), "min": min(spent),
            "median": statistics.median(spent), "max": max(spent),
            "extra": sum(r.info.get("passes") == 2 for r in rows),
            "errors": sum(r.error is not None for r in rows),
            "by_level": by_level, "wall_s": round(time.monotonic() - started, 1)}


def key(run: dict[str, Any]) -> str:
    return f"{run['arm']}|{run['share']}|{run['per_problem']}|{run['seed']}"


def pooled(runs: list[dict[str, Any]]) -> dict[str, Any]:
    correct = sum(r["correct"] for r in runs)
    total = sum(r["problems"] for r in runs)
    low, high = wilson(correct, total)
    return {"correct": correct, "n": total, "acc": correct / total, "low": low, "high": high,
            "tokens": statistics.mean(r["tokens"] for r in runs),
            "extra": statistics.mean(r["extra"] for r in runs),
            "median": statistics.mean(r["median"] for r in runs),
            "max": statistics.mean(r["max"] for r in runs)}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--per-problem", type=int, nargs="+", default=[400, 700, 1000],
                        help="totals, as tokens per problem (T/N)")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(10)),
                        help="the scored seeds")
    parser.add_argument("--tune-seeds", type=int, nargs="+", default=[100, 101, 102],
                        help="seeds that choose the first-pass share; never scored")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, default=OUT, help="writes OUT.md and OUT.json")
    args = parser.parse_args(argv)
    items, problems, gold = load(args.data)
    cache_path = args.out.with_suffix(".json")
    cached = {key(r): r for r in json.loads(cache_path.read_text()).get("runs", [])} \
        if cache_path.is_file() else {}
    runs: dict[str, dict[str, Any]] = {}

    def get(seed: int, per_problem: int, arm: str, share: float | None) -> dict[str, Any]:
        wanted = {"arm": arm, "share": share, "per_problem": per_problem, "seed": seed}
        if key(wanted) not in cached:
            cached[key(wanted)] = asyncio.run(one_run(
                items, problems, gold, seed=seed, per_problem=per_problem, arm=arm,
                share=share, concurrency=args.concurrency))
            run = cached[key(wanted)]
            print(f"{arm:17} share={share} T/N={per_problem} seed={seed}: "
                  f"{run['correct']}/{run['problems']}, {run['tokens']:,} tokens, "
                  f"{run['extra']} extra ({run['wall_s']}s)", file=sys.stderr)
            save()
        runs[key(wanted)] = cached[key(wanted)]
        return cached[key(wanted)]

    def save() -> None:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        cache_path.write_text(json.dumps({"runs": list(cached.values())}, indent=1))

    chosen: dict[int, float] = {}
    tuning: dict[int, dict[float, float]] = {}
    for per_problem in args.per_problem:
        tuning[per_problem] = {}
        for share in SHARES:
            tuned = [get(s, per_problem, "two-pass", share) for s in args.tune_seeds]
            tuning[per_problem][share] = sum(r["correct"] for r in tuned) / \
                sum(r["problems"] for r in tuned)
    # One share for every total (a user cannot tune it per total without a benchmark of
    # their own): the best mean over the totals; ties to the default, then to the larger
    # share (the closer to an equal split).
    overall = {share: statistics.mean(tuning[t][share] for t in args.per_problem)
               for share in SHARES}
    best = max(overall.values())
    share_all = 0.5 if overall[0.5] == best else \
        max(s for s, acc in overall.items() if acc == best)
    chosen = dict.fromkeys(args.per_problem, share_all)
    arms = [("equal", None), ("two-pass", 0.5), ("two-pass-restart", 0.5)]
    table: list[dict[str, Any]] = []
    for per_problem in args.per_problem:
        scored = {**{arm: [get(s, per_problem, arm, share) for s in args.seeds]
                     for arm, share in arms},
                  "two-pass-tuned": [get(s, per_problem, "two-pass", chosen[per_problem])
                                     for s in args.seeds]}
        equal = {r["seed"]: r["correct"] for r in scored["equal"]}
        for arm, arm_runs in scored.items():
            diffs = [r["correct"] - equal[r["seed"]] for r in arm_runs]
            share = chosen[per_problem] if arm == "two-pass-tuned" else \
                dict(arms).get(arm)
            table.append({"per_problem": per_problem, "total": per_problem * len(problems),
                          "arm": arm, "share": share, **pooled(arm_runs),
                          "diff": statistics.mean(diffs), "wins": sum(d > 0 for d in diffs),
                          "losses": sum(d < 0 for d in diffs),
                          "by_level": {level: [sum(r["by_level"][level][0] for r in arm_runs),
                                               sum(r["by_level"][level][1] for r in arm_runs)]
                                       for level in arm_runs[0]["by_level"]}})
    command = "python benchmarks/total_budget_fake.py " + " ".join(argv)
    result = {"command": command.strip(), "strategy": STRATEGY, "params": PARAMS,
              "seeds": args.seeds, "tune_seeds": args.tune_seeds, "tuning": tuning,
              "chosen_share": chosen, "table": table, "runs": list(runs.values())}
    cache_path.write_text(json.dumps(result, indent=1))
    args.out.with_suffix(".md").write_text(markdown(result))
    print(f"wrote {args.out.with_suffix('.md')} and .json", file=sys.stderr)
    return 0


def markdown(result: dict[str, Any]) -> str:
    lines = [f"`{result['command']}`", "",
             "# A total token budget in two passes vs an equal split (fake server, quiz)", "",
             f"`{result['strategy']}` {json.dumps(result['params'])}, no verifier (gold scores "
             f"after the run). Scored seeds {result['seeds']}, 100 problems each; the "
             f"first-pass share of `two-pass-tuned` was chosen on seeds "
             f"{result['tune_seeds']}, never scored. Accuracy pooled over the scored seeds "
             f"with its 95% Wilson interval; tokens, median / max per problem and extra are "
             f"means per run; vs equal is the mean paired difference in problems solved per "
             f"seed, with seeds won / lost.", "",
             "| T/N | total T | arm | share | accuracy | 95% CI | tokens spent | median / max "
             "per problem | got extra | vs equal (wins/losses) | easy / medium / hard |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in result["table"]:
        levels = " / ".join(f"{c}/{n}" for c, n in (row["by_level"].get(level, [0, 0])
                                                    for level in ("easy", "medium", "hard")))
        lines.append(
            f"| {row['per_problem']} | {row['total']:,} | {row['arm']} | "
            f"{'–' if row['share'] is None else row['share']} | {row['acc']:.1%} | "
            f"{row['low']:.1%}–{row['high']:.1%} | {row['tokens']:,.0f} "
            f"({row['tokens'] / row['total']:.0%}) | {row['median']:,.0f} / {row['max']:,.0f} "
            f"| {row['extra']:.1f} | {row['diff']:+.1f} ({row['wins']}/{row['losses']}) | "
            f"{levels} |")
    chosen = next(iter(result["chosen_share"].values()))
    lines += ["", f"First-pass share tuning: accuracy of `two-pass` on the tuning seeds "
                  f"{result['tune_seeds']}; one share for every total, the best mean "
                  f"({chosen}), is `two-pass-tuned` above.", "",
              "| T/N | " + " | ".join(str(s) for s in SHARES) + " |",
              "|---|" + "---|" * len(SHARES)]
    for per_problem, accs in result["tuning"].items():
        lines.append(f"| {per_problem} | " + " | ".join(f"{accs[s]:.1%}" for s in SHARES)
                     + " |")
    means = [statistics.mean(accs[s] for accs in result["tuning"].values()) for s in SHARES]
    lines.append("| mean | " + " | ".join(f"{m:.1%}" for m in means) + " |")
    lines += ["", "## Reading", ""]
    for row in result["table"]:
        if row["arm"] != "equal":
            lines.append(f"- T/N {row['per_problem']}, {row['arm']} (share {row['share']}): "
                         f"{row['diff']:+.1f} problems a seed against the equal split, better "
                         f"on {row['wins']} seeds and worse on {row['losses']}.")
    lines += ["", READING]
    return "\n".join(lines) + "\n"


# What the figures of the committed run say; rewrite it with them when the run changes.
READING = """\
The two-pass total beats the equal split where the equal split leaves tokens unspent and the
first pass is not cut below one step of the strategy: with the tuned share (1.0: an equal
split first, then what it leaves to the unsettled problems) it wins on 9 of 10 seeds at 700
and 1000 tokens a problem (+3.9 and +2.2 problems of 100 on average, medium problems gaining
most), and ties at 400, where the equal split already spends 83% of T and little is left to
move. The pooled 95% intervals overlap: the gain is consistent rather than large.

Why not more: (1) the equal split's unspent tokens are mostly reservation slack (a call
reserves its prompt plus n × max_tokens; when the next tier's bound no longer fits, `auto`
stops with tokens left), so the leftover comes to about 500 tokens for each unsettled
problem, one more tier; (2) `info["agreement"]` cannot tell medium problems from hard ones on
this quiz, whose wrong replies agree with each other (a hard problem's distractor holds as
large a share as a medium problem's right answer), so a third of the second pass goes to hard
problems, which gain nothing from more samples (24 vs 29 of 300 right at 700, 14 vs 16 at
1000); (3) with share 0.5 the first cap (200, 350, 500 tokens) is at or below what `auto`'s
tier 0 reserves (two concurrent calls, each its prompt + max_tokens), so at 400 and 700
nearly every first pass stops after one greedy answer, every problem looks as promising as
the next (agreement 1.0 of one vote), and the second pass is an equal split again; at 1000,
where tier 0 mostly fits, half of T goes to the third of problems whose cheap answers
disagreed, medium and hard alike, and it loses to the equal split on 7 of 10 seeds. At 300
tokens a problem (not in the table; seed 0) share 0.5 fell to 12% against 50%: a first cap
below one call's reply leaves only cut-off replies. Reusing the first pass's replies matters:
starting the second pass over (`two-pass-restart`) does worse at every total.
"""


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
