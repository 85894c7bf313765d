"""A custom backend in 8 lines: a "model" that is a plain Python function.

    .venv/bin/python examples/custom_backend.py

Subclass `ponder.Backend` and write `generate`; starting, closing, `async with`, prompt-token
counting and how often a call for n samples charges the prompt have defaults. Here the
"model" works out "A op B" from the question, so every strategy, budget and trace of ponder
runs on it with no server and no weights.
"""

import operator
import re

import ponder
from ponder import Completion, Usage

OPERATORS = {"+": operator.add, "-": operator.sub, "*": operator.mul}


class Calculator(ponder.Backend):
    name = "calculator"

    async def generate(self, messages, *, n=1, max_tokens, temperature=0.0, stop=None, seed=None):
        question = messages[-1].content
        found = re.search(r"(\d+)\s*([-+*])\s*(\d+)", question)
        value = OPERATORS[found[2]](int(found[1]), int(found[3])) if found else "unsure"
        usage = Usage(prompt_tokens=len(question) // 4 + 1, completion_tokens=5)
        return [Completion(text=f"Final answer: {value}", usage=usage) for _ in range(n)]


def main() -> None:
    result = ponder.solve("What is 17 * 23?", backend=Calculator())
    print(f"solve: answer={result.answer} tokens={result.usage.total_tokens}")

    # A session keeps the backend, strategy and budget for many calls.
    with ponder.Session(Calculator(), strategy="best_of_n", params={"n": 3}) as session:
        rows = session.solve_many(["What is 2 + 3?", "What is 40 - 8?"])
    print("solve_many:", [row.answer for row in rows],
          "votes:", [row.info["votes"] for row in rows])


if __name__ == "__main__":
    main()
