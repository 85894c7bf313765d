"""What share of a problem's wall time its candidates' runs took, from a bench's rows.

    .venv/bin/python benchmarks/probe_share.py benchmarks/results/curve_humaneval/runs/*.jsonl

Coding strategies record `probe_s` (`best_of_n` in `info["behaviour"]`, `auto` and
`self_refine` in `info`): the wall time during which at least one candidate program was
running on the problem's inputs in the sandbox, runs at once counted once. This prints, per
file, that time against each row's `elapsed_s` (the problem's whole wall time on the
embedded model, queueing for the model included): the median, p90 and largest share over the
rows that ran any candidate. The issue's bound is 10%.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any


def probe_seconds(info: dict[str, Any]) -> float | None:
    behaviour = info.get("behaviour")
    if isinstance(behaviour, dict) and "probe_s" in behaviour:
        return float(behaviour["probe_s"])
    return float(info["probe_s"]) if "probe_s" in info else None


def main(paths: list[str]) -> None:
    for path in paths:
        shares = []
        for line in Path(path).read_text().splitlines():
            row = json.loads(line)
            seconds = probe_seconds(row.get("info") or {})
            if seconds and row.get("elapsed_s"):
                shares.append(seconds / row["elapsed_s"])
        if not shares:
            print(f"{path}: no row records probe_s")
            continue
        shares.sort()
        p90 = shares[min(len(shares) - 1, int(0.9 * len(shares)))]
        print(f"{path}: {len(shares)} rows ran candidates; share of wall time: median "
              f"{statistics.median(shares):.1%}, p90 {p90:.1%}, max {shares[-1]:.1%}")


if __name__ == "__main__":
    main(sys.argv[1:])
