"""Re-select among samples a benchmark already drew: vote@k curves and other choosing rules,
with no new model calls.

    .venv/bin/python benchmarks/reselect.py benchmarks/results/strategies_gsm8k.json \
        --label best_of_n_confidence [--max-k 5] [--out benchmarks/results/reselect_gsm8k.md]

`strategies_gsm8k.py` records every completion of a run (its extracted answer and confidence).
From those this script scores, on the same problems:
- the plain vote over k of the n samples, for k = 1..n, averaged over every k-subset (the way
  search-and-learn and its_hub draw their curves: one pool, many points);
- the confidence-weighted vote (DeepConf) for a few `keep` shares and both metrics;
- pass@k: some sample was right. Gold picks the winner there, so it is an upper bound on any
  selector, not an accuracy.

The 95% intervals are a percentile bootstrap over problems (2,000 resamples, fixed seed),
since a subset-averaged accuracy is not a plain proportion. Rules compared here were not
chosen on other data: treat differences between them as exploratory, not as results.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import random
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ponder.core.answers import canonical_answer, canonical_number

Sample = dict[str, Any]
Rule = Callable[[list[Sample]], str | None]


def key(answer: str | None) -> str | None:
    return canonical_answer(answer) if answer else None


def plain_vote(samples: Sequence[Sample]) -> str | None:
    """The most-voted answer key; ties go to the first seen, as ponder's `tally` does."""
    counts: dict[str, float] = {}
    for s in samples:
        if (k := key(s["answer"])) is not None:
            counts[k] = counts.get(k, 0.0) + 1.0
    return max(counts, key=lambda k: counts[k]) if counts else None


def confidence_vote(keep: float, metric: str) -> Rule:
    """DeepConf's offline rule as `ponder.strategies.sampling.confidence_vote` applies it:
    keep the most confident share, each vote weighing its (non-negative top-k) confidence."""
    def rule(samples: list[Sample]) -> str | None:
        if any(s.get(metric) is None for s in samples):
            return plain_vote(samples)
        order = sorted(range(len(samples)), key=lambda i: -samples[i][metric])
        count = max(1, math.ceil(keep * len(samples) - 1e-9))  # as ponder counts it
        kept = sorted(order[:count])
        counts: dict[str, float] = {}
        for i in kept:
            if (k := key(samples[i]["answer"])) is not None:
                counts[k] = counts.get(k, 0.0) + max(samples[i][metric], 0.0)
        return max(counts, key=lambda k: counts[k]) if counts else None
    return rule


def subset_accuracy(pool: list[Sample], gold: str, k: int, rule: Rule) -> float:
    """The share of k-subsets (in draw order) whose winner under `rule` is right."""
    # A pool smaller than k (samples the budget cut, programs that failed) votes whole.
    subsets = list(itertools.combinations(pool, min(k, len(pool)))) or [()]
    return sum(rule(list(s)) == gold for s in subsets) / len(subsets)


def bootstrap(values: list[float], *, resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    rng = random.Random(seed)
    n = len(values)
    means = sorted(sum(rng.choices(values, k=n)) / n for _ in range(resamples))
    return means[int(0.025 * resamples)], means[int(0.975 * resamples) - 1]


def pools(run: dict[str, Any]) -> list[tuple[list[Sample], str]]:
    """Each problem's samples and canonical gold. A `program` run's samples are what its
    programs printed (a failed run prints nothing usable and gets no vote)."""
    step = "execute" if run["strategy"] == "program" else "sample"
    out = []
    for p in run["per_problem"]:
        samples = [s for s in p.get("sampled") or []
                   if s.get("step") == step and not s.get("error")]
        if not p.get("sampled"):  # a report from before samples were recorded: its answer
            samples = [{"answer": p["answer"]}]
        gold = canonical_number(p["gold"]) or key(p["gold"]) or p["gold"]
        out.append((samples, gold))
    return out


def rows(run: dict[str, Any], max_k: int,
         mix: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    problems = pools(run)
    n = min(max_k, max(len(s) for s, _ in problems))
    tokens = [sum(s.get("tokens", 0) for s in pool) / max(len(pool), 1) for pool, _ in problems]
    per_sample = sum(tokens) / len(tokens)
    table: list[dict[str, Any]] = []

    def add(name: str, k: int, values: list[float], note: str = "") -> None:
        low, high = bootstrap(values)
        table.append({"rule": name, "k": k, "accuracy": sum(values) / len(values),
                      "ci_low": low, "ci_high": high,
                      "completion_tokens": per_sample * k, "note": note})

    for k in range(1, n + 1):
        add("plain vote", k, [subset_accuracy(pool[:n], gold, k, plain_vote)
                              for pool, gold in problems])
    for metric in ("lowest_group", "mean"):
        for keep in (1.0, 0.6, 0.4):
            rule = confidence_vote(keep, metric)
            add(f"confidence vote ({metric}, keep {keep})", n,
                [float(rule(pool[:n]) == gold) for pool, gold in problems])
    if mix is not None:
        other = pools(mix)
        # The other run's answers come first, so they win ties.
        add(f"plain vote over {mix['label']}'s answers and these samples", n,
            [float(plain_vote(extra + pool[:n]) == gold)
             for (pool, gold), (extra, _) in zip(problems, other, strict=True)],
            "exploratory")
    add("pass@k (gold picks: not an accuracy)", n,
        [float(any(key(s["answer"]) == gold for s in pool[:n])) for pool, gold in problems],
        "upper bound")
    return table


def markdown(source: str, label: str, table: list[dict[str, Any]], command: str) -> str:
    lines = [f"# Re-selecting among the samples of `{label}` ({source})", "",
             f"Command: `{command}`  ",
             "No new model calls: every row chooses among the same recorded samples. Rules other "
             "than the plain vote are exploratory (compared on the problems they score).", "",
             "| rule | samples k | accuracy (95% bootstrap CI) | completion tokens / problem |",
             "|---|---|---|---|"]
    for r in table:
        lines.append(f"| {r['rule']} | {r['k']} | {r['accuracy']:.1%} "
                     f"({r['ci_low']:.0%}–{r['ci_high']:.0%}) | {r['completion_tokens']:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("report", type=Path, help="a strategies_*.json report")
    parser.add_argument("--label", required=True, help="the run whose samples to re-select")
    parser.add_argument("--max-k", type=int, default=16)
    parser.add_argument("--mix", default=None,
                        help="another run on the same problems whose samples join one vote")
    parser.add_argument("--out", type=Path, default=None, help="also write the table here")
    args = parser.parse_args(argv)
    report = json.loads(args.report.read_text())
    runs = {r["label"]: r for r in report["runs"]}
    mix = runs[args.mix] if args.mix else None
    command = "python benchmarks/reselect.py " + " ".join(sys.argv[1:] if argv is None else argv)
    text = markdown(args.report.name, args.label, rows(runs[args.label], args.max_k, mix),
                    command)
    if args.out:
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
