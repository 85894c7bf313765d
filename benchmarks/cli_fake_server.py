"""`ponder solve` over a problem file against the fake server: wall time next to the ideal.

The ideal is what the server's latency alone would cost with perfect overlap:
calls × latency / concurrency. The gap is ponder's own overhead (process start, loading,
prompt rendering, verification, writing and fsyncing each row, the trace) plus the fake
server's and the HTTP client's (a thread per connection, on the same cores), which the
`backend_only` figure isolates: the same requests straight through `OpenAIBackend`.

    .venv/bin/python benchmarks/cli_fake_server.py [--latency 0.05] [--concurrency 32]
        [--problems ../shared/data/gsm8k_test_public.jsonl] [--repeat 3] [--no-trace]
        [--verifier NAME]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ponder.backends.openai import OpenAIBackend
from ponder.core.types import Message

REPO = Path(__file__).resolve().parents[1]
GSM8K = REPO.parent / "shared" / "data" / "gsm8k_test_public.jsonl"


def start_fake_server(latency: float) -> tuple[subprocess.Popen[str], str]:
    server = subprocess.Popen(
        [sys.executable, "-m", "ponder.testing.fake_server", "--port", "0",
         "--latency", str(latency)], stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None
    url = server.stdout.readline().strip()
    if not url.startswith("http"):
        server.kill()
        raise SystemExit(f"the fake server did not start (printed {url!r})")
    return server, url


def solve_once(url: str, problems: Path, concurrency: int, trace: bool,
               verifier: str | None) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "ponder", "solve", str(problems), "--base-url", url,
                   "--concurrency", str(concurrency), "-o", str(Path(tmp) / "run.jsonl"),
                   "--json"]
        if not trace:
            command.append("--no-trace")
        if verifier:
            command += ["--verifier", verifier]
        began = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
        wall = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(f"ponder solve failed ({done.returncode}):\n{done.stderr}")
    summary = json.loads(done.stdout)
    return {"process_wall_s": wall, "run_wall_s": summary["wall_s"], "calls": summary["calls"],
            "problems": summary["done"], "errors": summary["errors"]}


def backend_floor(url: str, problems: Path, concurrency: int) -> float:
    """The same requests straight through `OpenAIBackend` at the same concurrency: what the
    server and the HTTP client cost before ponder's per-problem work (no strategy, context,
    verifier, trace or result rows)."""
    texts = [json.loads(line)["problem"] for line in problems.read_text().splitlines()
             if line.strip()]

    async def run() -> float:
        gate = asyncio.Semaphore(concurrency)
        async with OpenAIBackend(url) as backend:
            async def one(text: str) -> None:
                async with gate:
                    await backend.generate([Message(role="user", content=text)], max_tokens=512)
            began = time.perf_counter()
            await asyncio.gather(*(one(text) for text in texts))
            return time.perf_counter() - began

    return asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per request")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--problems", type=Path, default=GSM8K)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-trace", action="store_true", help="run without the trace file")
    parser.add_argument("--verifier", help="default: chosen from each problem's fields")
    args = parser.parse_args()

    server, url = start_fake_server(args.latency)
    try:
        runs = [solve_once(url, args.problems, args.concurrency, not args.no_trace,
                           args.verifier) for _ in range(args.repeat)]
        floor = statistics.median(backend_floor(url, args.problems, args.concurrency)
                                  for _ in range(args.repeat))
    finally:
        server.terminate()
        server.wait(timeout=10)
    calls = runs[0]["calls"]
    ideal = calls * args.latency / args.concurrency
    run_wall = statistics.median(r["run_wall_s"] for r in runs)
    process_wall = statistics.median(r["process_wall_s"] for r in runs)
    report = {
        "problems": runs[0]["problems"], "calls": calls, "errors": runs[0]["errors"],
        "latency_s": args.latency, "concurrency": args.concurrency, "trace": not args.no_trace,
        "cores": os.cpu_count(), "load_avg": round(os.getloadavg()[0], 2),
        "ideal_s": round(ideal, 2),
        "backend_only_s_median": round(floor, 2),
        "run_wall_s_median": round(run_wall, 2),
        "process_wall_s_median": round(process_wall, 2),
        "run_over_ideal": round(run_wall / ideal, 2),
        "runs": [{k: round(v, 2) for k, v in r.items()} for r in runs],
    }
    print(json.dumps(report, indent=2))
    print(f"\n{report['problems']} problems, {calls} calls at {args.latency * 1000:.0f} ms, "
          f"concurrency {args.concurrency}: run {run_wall:.2f}s (process {process_wall:.2f}s) "
          f"vs ideal {ideal:.2f}s = {run_wall / ideal:.2f}× ideal; the same requests straight "
          f"through OpenAIBackend: {floor:.2f}s")


if __name__ == "__main__":
    main()
