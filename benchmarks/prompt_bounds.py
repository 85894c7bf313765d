"""How close the prompt bound a call reserves comes to the prompt tokens the server then reports
(`ponder.core.calibration`), over the calls of a small GSM8K run.

    python benchmarks/prompt_bounds.py                       # fake servers only
    python benchmarks/prompt_bounds.py --local 20            # and the embedded model

Servers:

- `fake, no /tokenize`: the fake OpenAI server, its tokenizer hidden from the client (as
  OpenAI's API has none), so bounds come from the calibration;
- `fake, /tokenize`: the same server with its vLLM-shaped `/tokenize`;
- `embedded (llama.cpp)`: `LocalBackend`, the embedded Qwen2.5-Coder-0.5B on llama.cpp's
  server (`/apply-template` + `/tokenize`); slow on a small CPU, so fewer problems and short
  replies.

Each run solves the first problems of `../shared/data/gsm8k_test_public.jsonl` (no answers given)
under a per-problem token budget, so the tokenizer is asked (`Context._prompt_bound`). For each
generate event of the trace: the bound reserved per prompt copy (the trace's `prompt_bound`,
else the byte bound) over the prompt tokens one copy was reported to cost. The first 5 calls of
a run are reported apart: they pay the byte bound while nothing is calibrated.

Writes benchmarks/results/prompt_bounds.md and prompt_bounds.ndjson (JSON lines, one row per
call; not `.jsonl`, which under results/ holds result rows, and tests read them all as such).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ponder
from ponder.backends.base import Backend
from ponder.backends.openai import OpenAIBackend
from ponder.core.budget import Budget
from ponder.core.tokens import prompt_upper_bound
from ponder.core.types import Message, Problem, TraceEvent
from ponder.testing import FakeOpenAIServer

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "gsm8k_test_public.jsonl"
OUT = ROOT / "benchmarks" / "results" / "prompt_bounds"
FIRST = 5
REPLY = ("Let us work it out step by step. First we add the two numbers, then we take away "
         "what was spent. Final answer: 42")


NOTES = """\
Ratio: the prompt bound the call reserved per prompt copy (the trace's `prompt_bound`, else the
byte bound: bytes + 8 a message + 64) over the prompt tokens one copy was reported to cost.
"first 5" are a run's first five calls, "rest" the others; the calibration is per (backend,
template, number of messages), so the last column leaves out each template's own first five,
which pay the byte bound (while nothing is calibrated, and with concurrency 4 the first few
are in flight together) or a margin still wide (1.5 after one reply, falling toward 1.05).
The fake server counts a token a word, so its tokens per byte vary with the text alone (16%
over these prompts on one template), which is what the margin must cover. "rejected" counts
calls whose reply broke the bound and were charged their reservation.
"""


class NoTokenizer(OpenAIBackend):
    """An OpenAI-compatible server as a client sees one without `/tokenize` (OpenAI's API)."""

    async def count_prompt_tokens(self, messages: Sequence[Message]) -> int | None:
        return None


def load(n: int) -> list[Problem]:
    with DATA.open() as file:
        rows = [json.loads(line) for _, line in zip(range(n), file, strict=False)]
    return [Problem(id=r["id"], problem=r["problem"]) for r in rows]


def rows_of(server: str, events: list[TraceEvent]) -> list[dict[str, Any]]:
    out = []
    for event in events:
        if event.kind != "generate" or event.usage is None or event.error:
            continue
        # One copy's count: the completion carrying a request's usage carries its prompt.
        reported = max((c.usage.prompt_tokens for c in event.completions), default=0)
        if reported <= 0:
            continue
        learned = event.data.get("prompt_bound")
        bound = learned["tokens"] if learned else prompt_upper_bound(event.messages)
        out.append({"server": server, "call": len(out) + 1, "problem": event.problem_id,
                    "template": event.template, "n": event.data.get("n"),
                    "bound": bound, "by": learned["by"] if learned else "bytes",
                    "bytes_bound": prompt_upper_bound(event.messages), "reported": reported,
                    "ratio": round(bound / reported, 4),
                    "rejected": event.data.get("usage_rejected")})
    return out


async def run(server: str, backend: Backend, problems: list[Problem], *, strategy: str,
              params: dict[str, Any], budget: int, concurrency: int) -> list[dict[str, Any]]:
    events: list[TraceEvent] = []
    async with ponder.Session(backend, close_backend=True) as session:
        started = time.monotonic()
        await session.asolve_many(problems, strategy=strategy, budget=Budget(tokens=budget),
                                  concurrency=concurrency, trace=events.append, **params)
        print(f"{server}: {len(problems)} problems in {time.monotonic() - started:.1f}s",
              file=sys.stderr)
    return rows_of(server, events)


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def table(rows: list[dict[str, Any]], setups: dict[str, str]) -> str:
    lines = ["| server | run | calls | bound by | first 5: median | first 5: p95 | rest: median "
             "| rest: p95 | rest: max | after each template's first 5: median / p95 / max "
             "| rejected |",
             "|---|---|---:|---|---:|---:|---:|---:|---:|---|---:|"]
    for server, setup in setups.items():
        mine = [r for r in rows if r["server"] == server]
        if not mine:
            continue
        first = [r["ratio"] for r in mine[:FIRST]]
        rest = [r["ratio"] for r in mine[FIRST:]] or [float("nan")]
        by = ", ".join(f"{k} {sum(r['by'] == k for r in mine)}"
                       for k in ("tokenizer", "calibration", "bytes")
                       if any(r["by"] == k for r in mine))
        # The calibration is per template: its own first calls pay the byte bound, or a
        # wide margin, whenever in the run they come.
        seen: Counter[str | None] = Counter()
        settled = []
        for r in mine:
            seen[r["template"]] += 1
            if seen[r["template"]] > FIRST:
                settled.append(r["ratio"])
        settled = settled or [float("nan")]
        lines.append(f"| {server} | {setup} | {len(mine)} | {by} | "
                     f"{statistics.median(first):.3f} | {quantile(first, 0.95):.3f} | "
                     f"{statistics.median(rest):.3f} | {quantile(rest, 0.95):.3f} | "
                     f"{max(rest):.3f} | {statistics.median(settled):.3f} / "
                     f"{quantile(settled, 0.95):.3f} / {max(settled):.3f} | "
                     f"{sum(bool(r['rejected']) for r in mine)} |")
    return "\n".join(lines)


async def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=50)
    parser.add_argument("--local", type=int, default=0,
                        help="problems for the embedded model (0: skip it)")
    parser.add_argument("--strategy", default="auto")
    args = parser.parse_args(argv)
    rows: list[dict[str, Any]] = []
    setups: dict[str, str] = {}
    fake_params = {"max_tokens": 128}
    for server, backend_class in (("fake, no /tokenize", NoTokenizer),
                                  ("fake, /tokenize", OpenAIBackend)):
        setups[server] = (f"`{args.strategy}`, {args.problems} problems, budget 3000, "
                          "concurrency 4, max_tokens 128")
        with FakeOpenAIServer(reply=lambda messages: REPLY) as fake:
            rows += await run(server, backend_class(fake.base_url, max_retries=0),
                              load(args.problems), strategy=args.strategy, params=fake_params,
                              budget=3000, concurrency=4)
    if args.local:
        from ponder.backends.local import LocalBackend

        server = "embedded (llama.cpp)"
        setups[server] = (f"`best_of_n` n=2, {args.local} problems, budget 1500, "
                          "concurrency 2, max_tokens 32")
        rows += await run(server, LocalBackend(parallel=2), load(args.local),
                          strategy="best_of_n", params={"n": 2, "max_tokens": 32},
                          budget=1500, concurrency=2)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.with_suffix(".ndjson").write_text("".join(json.dumps(r) + "\n" for r in rows))
    command = "python benchmarks/prompt_bounds.py" + "".join(
        f" {a}" for a in (argv if argv is not None else sys.argv[1:]))
    report = table(rows, setups)
    print(report)
    OUT.with_suffix(".md").write_text(
        "# Prompt bound reserved / prompt tokens reported, per call\n\n"
        f"    {command}\n\n{report}\n\n{NOTES}\n"
        "Raw rows (JSON lines, one per call, in trace order): `prompt_bounds.ndjson`.\n")


if __name__ == "__main__":
    asyncio.run(main())
