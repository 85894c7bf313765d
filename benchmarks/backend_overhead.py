"""Per-call overhead of the OpenAI backend, and of ponder's path on top of it.

The fake server runs in its own process on core 1 with no latency, the client on core 0, so
what is measured is the client: the openai SDK, retries bookkeeping, usage parsing, and for
`ctx.generate` also template rendering, the budget's reserve/charge and the trace.

    .venv/bin/python benchmarks/backend_overhead.py --calls 2000 --concurrency 16
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

import ponder
from ponder.backends.openai import OpenAIBackend
from ponder.core.budget import Budget
from ponder.core.types import Message
from ponder.testing import make_context

MESSAGES = [Message(role="system", content="Answer briefly."),
            Message(role="user", content="Tom has 3 apples and buys 5 more. How many now?")]
QUESTION = MESSAGES[-1].content


def start_server(core: int | None) -> tuple[subprocess.Popen[str], str]:
    def pin() -> None:
        if core is not None:
            os.sched_setaffinity(0, {core})

    proc = subprocess.Popen([sys.executable, "-m", "ponder.testing.fake_server", "--port", "0",
                             "--exit-with-parent"],
                            stdout=subprocess.PIPE, text=True, preexec_fn=pin)
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


async def rate(call: Callable[[], Awaitable[object]], calls: int, concurrency: int) -> float:
    """Calls per second for `calls` calls, `concurrency` in flight at a time."""
    gate = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with gate:
            await call()

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(calls)))
    return calls / (time.perf_counter() - started)


async def measure(base_url: str, calls: int, concurrency: int, repeats: int) -> None:
    async with OpenAIBackend(base_url, model="fake-model") as backend:
        ctx = make_context(QUESTION, backend=backend, budget=Budget(tokens=10**12))
        paths: dict[str, Callable[[], Awaitable[object]]] = {
            "raw backend.generate": lambda: backend.generate(MESSAGES, max_tokens=64),
            "ctx.generate (budget + trace)": lambda: ctx.generate("single/answer",
                                                                  max_tokens=64),
            "ponder.asolve (single)": lambda: ponder.asolve(QUESTION, backend=backend,
                                                            max_tokens=64),
        }
        for call in paths.values():  # warm the connection pool and imports
            await rate(call, 50, concurrency)
        runs: dict[tuple[str, int], list[float]] = {}
        # Round robin, so that load from elsewhere on the machine falls on every path alike;
        # the best run is the one least disturbed by it.
        for _ in range(repeats):
            for name, call in paths.items():
                for conc in (1, concurrency):
                    runs.setdefault((name, conc), []).append(await rate(call, calls, conc))
        print(f"{'path':32} {'concurrency':>11} {'best calls/s':>12} {'us/call':>8} "
              f"{'median calls/s':>14}")
        for (name, conc), rates in runs.items():
            best = max(rates)
            print(f"{name:32} {conc:>11} {best:>12.0f} {1e6 / best:>8.0f} "
                  f"{statistics.median(rates):>14.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000, help="calls per measurement")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5, help="runs of each measurement")
    args = parser.parse_args()
    cores = sorted(os.sched_getaffinity(0))
    client_core, server_core = (cores[0], cores[1]) if len(cores) > 1 else (cores[0], None)
    proc, base_url = start_server(server_core)
    try:
        os.sched_setaffinity(0, {client_core})
        print(f"client on core {client_core}, server ({base_url}) on core {server_core}; "
              f"{args.calls} calls per run, {args.repeats} runs each")
        asyncio.run(measure(base_url, args.calls, args.concurrency, args.repeats))
    finally:
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    main()
