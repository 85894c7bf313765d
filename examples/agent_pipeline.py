"""An agent pipeline on ponder's Python API: plan → solve the parts at once → combine.

A planning step splits a task into sub-questions, each is solved concurrently with
self-consistency voting (`best_of_n`), and a last step combines their answers with
`self_refine`. Every step gets its own token budget, and all of them share one
OpenAI-compatible server (vLLM, llama.cpp's server, OpenAI, ...).

    python examples/agent_pipeline.py http://127.0.0.1:8000/v1
    OPENAI_BASE_URL=http://127.0.0.1:8000/v1 python examples/agent_pipeline.py
"""

from __future__ import annotations

import asyncio
import os
import sys

import ponder
from ponder import Budget, OpenAIBackend, Result

# Sub-questions a planner produced for "What does the school trip cost in all?" (a real
# pipeline might ask the model for them; fixed here so the example reads in one screen).
PARTS = {
    "bus": "A bus costs 45 dollars per hour and the trip takes 6 hours. What does the bus cost?",
    "tickets": "A museum ticket costs 7 dollars and 28 students go. What do the tickets cost?",
    "lunch": "Lunch costs 5 dollars per student for 28 students. What does lunch cost?",
}


async def solve_part(backend: OpenAIBackend, name: str, question: str) -> tuple[str, Result]:
    result = await ponder.asolve(question, strategy="best_of_n", n=3, max_tokens=256,
                                 backend=backend, budget=Budget(tokens=3000, seconds=120))
    return name, result


async def main(base_url: str) -> None:
    async with OpenAIBackend(base_url=base_url) as backend:
        parts = dict(await asyncio.gather(
            *(solve_part(backend, name, question) for name, question in PARTS.items())))
        for name, result in parts.items():
            print(f"{name:8} {result.answer!s:>8}  ({result.usage.total_tokens} tokens, "
                  f"{result.stop_reason})")
        costs = ", ".join(f"{name} costs {r.answer} dollars" for name, r in parts.items())
        total = await ponder.asolve(
            f"A school trip has these costs: {costs}. What does the trip cost in all?",
            strategy="self_refine", max_iters=1, max_tokens=256, backend=backend,
            budget=Budget(tokens=4000, seconds=120))
    spent = sum((r.usage for r in (*parts.values(), total)), ponder.Usage())
    print(f"total    {total.answer!s:>8}  ({total.usage.total_tokens} tokens)")
    print(f"pipeline used {spent.total_tokens} tokens in {spent.calls} calls")


if __name__ == "__main__":
    url = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("OPENAI_BASE_URL")
    if not url:
        sys.exit("usage: agent_pipeline.py BASE_URL  (or set OPENAI_BASE_URL)")
    asyncio.run(main(url))
