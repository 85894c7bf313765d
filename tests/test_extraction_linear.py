"""Replies cannot stall the event loop: extraction costs time in proportion to the text.

Before, the answer and code regexes backtracked quadratically: `verify` of a "Final answer:"
line of 50,000 dots took 36 s, all of it on the event loop. Each case here is a reply built
to make a backtracking pattern (or math-verify's own, in its worker) try every split.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator

import pytest

import ponder
from ponder.core.answers import MAX_SCAN_CHARS, canonical_answer, extract_answer, extract_code
from ponder.core.types import Candidate, Problem
from ponder.verifiers.exact import ExactVerifier, normalize_text
from ponder.verifiers.math import MathVerifier, answer_window, canonical_math, normalize
from ponder.verifiers.sympy_worker import SympyWorkerPool

BOUND_S = 1.0  # generous: each takes milliseconds now, and took seconds to minutes before
MB = 1 << 20

PATHOLOGICAL = {
    "final answer of dots": "Final answer: " + "." * 50_000 + "x",
    "1 MB of nested boxes": "\\boxed{" * (MB // 7),
    "100k open braces": "{" * 100_000,
    "100k digits": "1" * 100_000 + "x",
    "digits and commas": "1," * 50_000 + "x",
    "digits and spaces": "1 " * 50_000 + "x",
    "spaces after answer": "answer" + " " * 100_000 + "x",
    "hashes": "#" * 100_000 + "x",
    "backticks": "`" * 100_000,
    "fence without end": "```python\n" + "x = 1\n" * 20_000,
    "dollars": "Final answer: " + "$" * 100_000 + "x",
    "wrapped in dollars": "Final answer: " + "$" * 7_000 + "5" + "$" * 7_000,
    "number then words": "1" * 50_000 + " x" * 5_000 + "!",
    "degree sign spaces": "\\boxed{5^" + " " * 100_000 + "x}",
    "fractions without end": "\\frac{" + "1" * 50_000 + "\\frac{ " * 10_000,
    "nested text": "\\boxed{" + "\\text{" * 20_000 + "1" + "}" * 20_000 + "}",
    # math-verify's extraction regexes are quadratic on these; it gets a 2 KB window
    "display brackets": "\\[ " * 30_000,
    "inline parens": "\\( " * 30_000,
    "inline dollars": "$x$ and " * 12_500,
    "final answer far back": "The final answer is $1$. " + "\\[ " * 20_000,
    "open tags": "Final answer: " + "<a" * 50_000 + " " * 50_000 + "x",
    "tags without end": "Final answer: <" + "a" * 100_000 + " " * 100_000,
}


def timed(fn: Callable[[], object]) -> float:
    started = time.monotonic()
    fn()
    return time.monotonic() - started


@pytest.fixture(scope="module")
def verifier() -> Iterator[MathVerifier]:
    pool = SympyWorkerPool(size=1)
    pool.call({"op": "equal", "gold": "1", "answer": "1"}, timeout_s=120)  # start it
    yield MathVerifier(pool=pool)
    pool.close()


@pytest.mark.parametrize("reply", PATHOLOGICAL.values(), ids=PATHOLOGICAL.keys())
def test_extraction_and_voting_keys_are_linear(reply: str) -> None:
    answer = extract_answer(reply)
    checks: dict[str, Callable[[], object]] = {
        "extract_answer": lambda: extract_answer(reply),
        "extract_code": lambda: extract_code(reply),
        "canonical_answer": lambda: canonical_answer(reply),
        "canonical_math": lambda: canonical_math(answer),
        "normalize(reply)": lambda: normalize(reply),
        "normalize_text": lambda: normalize_text(reply),
        "answer_window": lambda: answer_window(reply),
    }
    slow = {name: round(seconds, 2) for name, check in checks.items()
            if (seconds := timed(check)) > BOUND_S}
    assert not slow


@pytest.mark.parametrize("reply", PATHOLOGICAL.values(), ids=PATHOLOGICAL.keys())
async def test_verifying_a_pathological_reply_is_fast(reply: str, verifier: MathVerifier) -> None:
    started = time.monotonic()
    candidate = Candidate(text=reply, answer=verifier.extract(reply))
    verdict = await verifier.verify(Problem(problem="?", answer="7"), candidate)
    assert time.monotonic() - started < BOUND_S
    assert not verdict.passed
    exact = await ExactVerifier().verify(Problem(problem="?", answer="7"), candidate)
    assert not exact.passed
    assert time.monotonic() - started < BOUND_S


async def test_a_ticker_keeps_ticking_while_replies_are_verified(verifier: MathVerifier) -> None:
    """The event loop stays free: heavy work is in the worker, extraction is cheap."""
    gaps: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        last = time.monotonic()
        while not stop.is_set():
            await asyncio.sleep(0.01)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    async def verify_all() -> None:
        for reply in PATHOLOGICAL.values():
            candidate = Candidate(text=reply, answer=verifier.extract(reply))
            await verifier.verify(Problem(problem="?", answer="7"), candidate)
        stop.set()

    await asyncio.gather(ticker(), verify_all())
    assert gaps and max(gaps) < 0.25, f"the loop stalled for {max(gaps):.2f}s"


def test_extraction_reads_the_end_of_a_long_reply() -> None:
    """The cap keeps the final answer: it is the reply's end that is scanned."""
    long_reply = "Let x = 3. " * (MAX_SCAN_CHARS // 5) + "So the total is \\boxed{42}."
    assert len(long_reply) > 2 * MAX_SCAN_CHARS
    assert extract_answer(long_reply) == "42"
    assert extract_answer("\\boxed{1} " + "x" * MAX_SCAN_CHARS + " Final answer: 9") == "9"


def test_extract_code_takes_the_longest_fenced_block() -> None:
    reply = "Try:\n```python\nx = 1\n```\nor better:\n```py\ndef f():\n    return 2\n```\nDone."
    assert extract_code(reply) == "def f():\n    return 2"
    assert extract_code("```\nprint(1)\n```") == "print(1)"
    assert extract_code("no fence here\n") == "no fence here"
    assert extract_code("```python\nunclosed = True\n") == "```python\nunclosed = True"


# max_tokens lets the whole 40 KB reply through the context's cap on completion length.
@pytest.mark.parametrize(("strategy", "params"), [("single", {"max_tokens": 12_000}),
                                                  ("best_of_n", {"n": 3, "max_tokens": 12_000})])
async def test_a_hostile_reply_cannot_outrun_the_time_budget(strategy: str,
                                                            params: dict[str, int]) -> None:
    """A 40 KB reply under a 3 s budget once ran 25.9 s (extraction on the event loop, where
    the budget's clock could not stop it) and reported `done`; 19 s here before the fix."""
    reply = "Final answer: " + "." * 40_000 + "x"
    started = time.monotonic()
    result = await ponder.asolve(Problem(problem="What is 2 + 2?", answer="4"),
                                 backend=ponder.ScriptedBackend(reply), strategy=strategy,
                                 budget=ponder.Budget(seconds=3), **params)
    assert time.monotonic() - started < BOUND_S
    assert result.verdict is not None and not result.verdict.passed
