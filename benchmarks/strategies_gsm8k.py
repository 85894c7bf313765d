"""Strategies on GSM8K (or MATH-500) with the embedded model: accuracy with its 95% interval,
tokens and calls per problem, wall time.

    .venv/bin/python benchmarks/strategies_gsm8k.py [--limit 20] [--strategies single,ice]
        [--seed 0] [--max-tokens 400] [--concurrency 8] [--data ../shared/data/math500_public.jsonl]

No strategy sees the gold answer: problems are solved without their `answer` field and with
no verifier, so every winner is chosen by the strategy alone (votes, self-feedback, consensus,
value ratings). Gold is used only afterwards, to score the final answer by numeric value.
One `LocalBackend` serves every run; strategies run one after another, problems within a
strategy concurrently, and the requests in flight never exceed the server's parallel slots.
GSM8K answers are compared as numbers; any other data set's with ponder's `math` verifier.
Writes `benchmarks/results/strategies_<data>.{md,json}` after every strategy, so a stopped
run keeps what it finished (`--append` adds runs to an existing report).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ponder
from ponder import LocalBackend, Problem, Result
from ponder.backends.local import MODEL_FILE
from ponder.bench.run import wilson
from ponder.core.answers import canonical_answer, canonical_number, extract_answer
from ponder.core.types import Candidate, Completion, Message

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "gsm8k_test_public.jsonl"
RESULTS = Path(__file__).resolve().parent / "results"

# Label → (strategy, params). Sampling strategies use temperature 0.7, `single` is greedy.
RUNS: dict[str, tuple[str, dict[str, Any]]] = {
    "single": ("single", {"temperature": 0.0}),
    "single_few_shot": ("single", {"temperature": 0.0, "few_shot": True}),
    "best_of_n": ("best_of_n", {"n": 5, "temperature": 0.7}),
    "best_of_n_adaptive": ("best_of_n", {"n": 5, "temperature": 0.7, "adaptive": True,
                                         "min_samples": 3, "batch_size": 1, "agreement": 0.7}),
    # Stops on 2 agreeing samples of 3: cheaper, and a lead two more samples could overturn.
    "best_of_n_adaptive_0.6": ("best_of_n", {"n": 5, "temperature": 0.7, "adaptive": True,
                                             "min_samples": 3, "batch_size": 1,
                                             "agreement": 0.6}),
    "self_refine": ("self_refine", {"max_iters": 2, "temperature": 0.0}),
    "ice": ("ice", {"agents": 3, "max_rounds": 2, "temperature": 0.7}),
    "tree_search": ("tree_search", {"beam_width": 2, "branching": 2, "max_depth": 4,
                                    "temperature": 0.7}),
    # Few-shot was program's default when these labels' results were recorded.
    "program": ("program", {"temperature": 0.0, "few_shot": True}),
    "program_zero_shot": ("program", {"temperature": 0.0, "few_shot": False}),
    "program_n5": ("program", {"n": 5, "temperature": 0.7, "few_shot": True}),
    # Fixed before the held-out run (problems 100-199): zero-shot program led on 0-99, and a
    # vote over sampled programs is PAL's self-consistency; 5 samples stay under 8x single.
    "program_zero_shot_n5": ("program", {"n": 5, "temperature": 0.7, "few_shot": False}),
    "program_n5_adaptive": ("program", {"n": 5, "temperature": 0.7, "adaptive": True,
                                        "min_samples": 3, "batch_size": 1, "agreement": 0.7,
                                        "few_shot": True}),
    "best_of_n_confidence": ("best_of_n", {"n": 5, "temperature": 0.7,
                                           "selector": "confidence", "keep": 0.6}),
}
DEFAULT = ["single", "best_of_n", "best_of_n_adaptive", "self_refine", "ice", "tree_search"]
STEP_TOKENS = 160  # tree_search's max_tokens is per step, not per solution


class SlotLimiter:
    """Wraps a backend so that at most `slots` samples are being generated at once.

    The embedded server queues requests beyond its parallel slots, and a queued request's
    wait counts against its HTTP timeout; waiting here instead keeps every request short.
    """

    def __init__(self, backend: LocalBackend, slots: int) -> None:
        self.backend = backend
        self.name = backend.name
        self.free = slots
        self.slots = slots
        self._changed = asyncio.Condition()

    async def generate(self, messages: Sequence[Message], *, n: int = 1, max_tokens: int,
                       temperature: float = 0.0, stop: Sequence[str] | None = None,
                       seed: int | None = None) -> list[Completion]:
        units = min(n, self.slots)
        async with self._changed:
            await self._changed.wait_for(lambda: self.free >= units)
            self.free -= units
        try:
            return await self.backend.generate(messages, n=n, max_tokens=max_tokens,
                                               temperature=temperature, stop=stop, seed=seed)
        finally:
            async with self._changed:
                self.free += units
                self._changed.notify_all()

    def prompt_copies(self, n: int) -> int:
        return self.backend.prompt_copies(n)

    async def count_prompt_tokens(self, messages: Sequence[Message]) -> int | None:
        return await self.backend.count_prompt_tokens(messages)

    async def aclose(self) -> None:
        return None


def load(path: Path, limit: int, offset: int = 0) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return rows[offset:offset + limit]


async def is_correct(answer: str | None, gold: str, *, numeric: bool) -> bool:
    if answer is None or not answer.strip():
        return False
    if numeric:
        return canonical_answer(answer) == canonical_number(gold)
    # A Candidate, not text: the answer is already extracted, and extracting again would read
    # `5\pi` as its last number, 5.
    verdict = await ponder.averify({"problem": "?", "answer": gold},
                                   Candidate(text=answer, answer=answer), "math")
    return verdict.passed


async def rescore(args: argparse.Namespace) -> dict[str, Any]:
    """Score the runs already in `--out` again with this file's scorer: no model calls."""
    report: dict[str, Any] = json.loads(args.out.with_suffix(".json").read_text())
    numeric = args.data.name.startswith("gsm8k")
    for run in report["runs"]:
        for p in run["per_problem"]:
            p["correct"] = await is_correct(p["answer"], p["gold"], numeric=numeric)
            if "vote_correct" in p:
                p["vote_correct"] = await is_correct(p["vote_answer"], p["gold"],
                                                     numeric=numeric)
        run["correct"] = sum(p["correct"] for p in run["per_problem"])
        run["accuracy"] = run["correct"] / run["problems"]
        run["ci_low"], run["ci_high"] = wilson(run["correct"], run["problems"])
        if run.get("vote_correct") is not None:
            run["vote_correct"] = sum(p.get("vote_correct", False) for p in run["per_problem"])
    report["command"] += "; then python benchmarks/strategies_gsm8k.py " + " ".join(args.argv)
    save(args, report)
    return report


async def run_strategy(label: str, rows: list[dict[str, Any]], backend: SlotLimiter, *,
                       seed: int, max_tokens: int, concurrency: int,
                       numeric: bool) -> dict[str, Any]:
    strategy, params = RUNS[label]
    params = {**params, "max_tokens": STEP_TOKENS if strategy == "tree_search" else max_tokens}
    gate = asyncio.Semaphore(concurrency)

    async def one(row: dict[str, Any]) -> Result:
        # No `answer` on the problem, so no verifier is chosen and nothing can see the gold.
        problem = Problem(id=row["id"], problem=row["problem"])
        async with gate:
            return await ponder.asolve(problem, strategy=strategy, backend=backend,
                                       verifier=None, seed=seed, **params)

    began = time.perf_counter()
    results = await asyncio.gather(*(one(row) for row in rows))
    wall = time.perf_counter() - began
    scores = [await is_correct(res.answer, row["answer"], numeric=numeric)
              for row, res in zip(rows, results, strict=True)]
    per_problem = [
        {"id": row["id"], "gold": row["answer"], "answer": res.answer,
         "correct": correct, "tokens": res.usage.total_tokens,
         "completion_tokens": res.usage.completion_tokens, "calls": res.usage.calls,
         "stop_reason": res.stop_reason, "error": res.error,
         "samples": res.info.get("samples"), "elapsed_s": round(res.elapsed_s, 1),
         "votes": res.info.get("votes"), "vote_answer": res.info.get("vote_answer"),
         "sampled": sampled(res)}
        for row, res, correct in zip(rows, results, scores, strict=True)
    ]
    for p, row in zip(per_problem, rows, strict=True):
        if p["vote_answer"] is not None or p["votes"] is not None:
            p["vote_correct"] = await is_correct(p["vote_answer"], row["answer"], numeric=numeric)
    correct = sum(p["correct"] for p in per_problem)
    low, high = wilson(correct, len(per_problem))
    return {
        "label": label, "strategy": strategy, "params": params,
        "accuracy": correct / len(per_problem), "ci_low": low, "ci_high": high,
        "correct": correct,
        "problems": len(per_problem),
        "mean_tokens": statistics.mean(p["tokens"] for p in per_problem),
        "mean_completion_tokens": statistics.mean(p["completion_tokens"] for p in per_problem),
        "mean_calls": statistics.mean(p["calls"] for p in per_problem),
        "wall_s": round(wall, 1),
        "stop_reasons": dict(Counter(p["stop_reason"] for p in per_problem)),
        "errors": sum(p["error"] is not None for p in per_problem),
        # A selector other than the plain vote (confidence, judge) also reports what the plain
        # vote over the very same samples answered: the two rows differ only in the choosing.
        "vote_correct": (sum(p.get("vote_correct", False) for p in per_problem)
                         if params.get("selector") in ("confidence", "judge") else None),
        "per_problem": per_problem,
    }


def sampled(res: Result) -> list[dict[str, Any]]:
    """Every completion the run drew, with its extracted answer and confidence, for analyses
    that re-select among the same samples (vote@k, other confidence rules) without new calls."""
    out: list[dict[str, Any]] = []
    for event in res.trace:
        if event.kind == "execute":  # a program's run: what it printed is its answer
            lines = str(event.data.get("output", "")).strip().splitlines()
            out.append({"step": "execute", "answer": lines[-1] if lines else None,
                        "error": event.error})
        if event.kind != "generate":
            continue
        for comp in event.completions:
            conf = comp.confidence
            out.append({"step": event.step, "answer": extract_answer(comp.text),
                        "tokens": comp.usage.completion_tokens,
                        "mean": None if conf is None else round(conf.mean, 4),
                        "lowest_group": None if conf is None else round(conf.lowest_group, 4)})
    return out


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# Strategies on {report['data']} ({report['problems']} problems, embedded model)",
        "",
        f"Command: `{report['command']}`  ",
        f"Model: {report['model']}; seed {report['seed']}; max_tokens {report['max_tokens']} "
        f"(tree_search: {STEP_TOKENS} per step); {report['cores']} CPU cores.  ",
        "Winners are chosen without the gold answer (no verifier); gold only scores the result.  ",
        "Wall time depends on what else ran on the shared cores; compare tokens, not seconds.",
        "",
        "| strategy | params | accuracy (95% CI) | mean tokens / problem | mean completion "
        "tokens | mean calls | wall time (s) | stop reasons |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for run in report["runs"]:
        shown = {k: v for k, v in run["params"].items() if k != "max_tokens"}
        params = ", ".join(f"{k}={v}" for k, v in shown.items())
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(run["stop_reasons"].items()))
        lines.append(
            f"| {run['label']} | {params} | {run['correct']}/{run['problems']} "
            f"({run['accuracy']:.0%}, {run.get('ci_low', 0):.0%}–{run.get('ci_high', 1):.0%}) "
            f"| {run['mean_tokens']:.0f} | "
            f"{run['mean_completion_tokens']:.0f} | {run['mean_calls']:.1f} | {run['wall_s']:.0f} "
            f"| {reasons} |")
        if run.get("vote_correct") is not None:
            n = run["problems"]
            low, high = wilson(run["vote_correct"], n)
            lines.append(
                f"| {run['label']}, plain vote | same samples as the row above | "
                f"{run['vote_correct']}/{n} ({run['vote_correct'] / n:.0%}, {low:.0%}–{high:.0%}) "
                f"| same | same | same | same | |")
    return "\n".join(lines) + "\n"


async def main(args: argparse.Namespace) -> dict[str, Any]:
    rows = load(args.data, args.limit, args.offset)
    labels = args.strategies.split(",") if args.strategies else DEFAULT
    unknown = [label for label in labels if label not in RUNS]
    if unknown:
        raise SystemExit(f"unknown strategies {unknown}; choose from {', '.join(RUNS)}")
    local = LocalBackend(parallel=args.slots)
    await local.start()
    backend = SlotLimiter(local, args.slots)
    report: dict[str, Any] = {
        "command": "python benchmarks/strategies_gsm8k.py " + " ".join(args.argv),
        "model": (local.model_path or Path(MODEL_FILE)).name, "data": args.data.name,
        "problems": len(rows), "seed": args.seed, "max_tokens": args.max_tokens,
        "cores": os.cpu_count(), "load_avg": os.getloadavg()[0], "runs": [],
    }
    earlier_path = args.out.with_suffix(".json")
    if args.append and earlier_path.is_file():  # keep the other strategies' runs
        earlier = json.loads(earlier_path.read_text())
        report["runs"] = [r for r in earlier["runs"] if r["label"] not in labels]
        report["command"] = f"{earlier['command']}; then {report['command']}"
    try:
        for label in labels:
            run = await run_strategy(label, rows, backend, seed=args.seed,
                                     max_tokens=args.max_tokens, concurrency=args.concurrency,
                                     numeric=args.data.name.startswith("gsm8k"))
            report["runs"].append(run)
            save(args, report)
            print(f"{label}: {run['correct']}/{run['problems']} correct, "
                  f"{run['mean_tokens']:.0f} tokens/problem, {run['wall_s']:.0f}s", flush=True)
    finally:
        await local.aclose()
    return report


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--limit", type=int, default=20, help="N problems")
    parser.add_argument("--offset", type=int, default=0,
                        help="skip the first K (held-out problems for a rule chosen on others)")
    parser.add_argument("--strategies", default="",
                        help=f"comma-separated, from {list(RUNS)} (default: {DEFAULT})")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-tokens", type=int, default=400,
                        help="completion tokens per call (GSM8K solutions need ~150-300)")
    parser.add_argument("--concurrency", type=int, default=8, help="problems in flight")
    parser.add_argument("--slots", type=int, default=8, help="the server's parallel slots")
    parser.add_argument("--data", type=Path, default=DATA, help="a JSONL of problems with gold")
    parser.add_argument("--out", type=Path, default=None,
                        help="default: benchmarks/results/strategies_<data>")
    parser.add_argument("--rescore", action="store_true",
                        help="score the runs already at --out again (no model calls)")
    parser.add_argument("--append", action="store_true",
                        help="add these runs to the report already at --out (same problems)")
    args = parser.parse_args(argv)
    args.argv = argv
    if args.out is None:
        name = args.data.stem.split("_")[0]
        args.out = RESULTS / f"strategies_{name}"
    return args


def save(args: argparse.Namespace, report: dict[str, Any]) -> None:
    """Write the report as it stands: after each strategy, so a stopped run keeps its work."""
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(report))


if __name__ == "__main__":
    import sys

    arguments = parse(sys.argv[1:])
    print(markdown(asyncio.run(rescore(arguments) if arguments.rescore else main(arguments))))
