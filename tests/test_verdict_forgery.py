"""Whole replies that forged HumanEval verdicts through `ponder.asolve`: a 3-line reply
scored 20/20 when the harness ran in the candidate's own process, and a reply that shadows
the builtins the tests call solved public problems with a function that returns nothing.
Each trick alone, in every mode, is in tests/hostile_corpus.py; docs/trust.md has the threat
model."""

from __future__ import annotations

import asyncio

import ponder
from ponder.core.types import Problem
from tests.conftest import load_jsonl
from tests.hostile_corpus import FORGED


async def test_a_three_line_forging_reply_solves_no_humaneval_problem() -> None:
    reply = ("```python\nimport os\n"
             f"[os.write(fd, {FORGED!r}.encode()) for fd in range(3, 64)]\n"
             "os._exit(0)\n```")
    rows = load_jsonl("humaneval_public.jsonl")[:20]
    results = await asyncio.gather(*(
        ponder.asolve(Problem(id=r["task_id"], problem=r["prompt"], test=r["test"],
                              entry_point=r["entry_point"]),
                      backend=ponder.ScriptedBackend(reply))
        for r in rows))
    assert [r.id for r in results if r.correct] == []


async def test_shadowing_the_builtins_the_tests_call_solves_no_humaneval_problem() -> None:
    """`abs`, `set`, `sorted`, `len`, `all` and `isinstance` of the candidate's own once were
    the ones HumanEval's `check` called: two public problems fell to a None."""
    shadows = "".join(f"def {name}(*args, **kwargs):\n    return {value}\n" for name, value in (
        ("abs", 0), ("set", 1), ("sorted", 1), ("len", 1), ("all", True), ("isinstance", True),
        ("round", 1), ("sum", 1), ("max", 1), ("min", 1), ("list", 1), ("tuple", 1)))
    rows = load_jsonl("humaneval_public.jsonl")
    results = await asyncio.gather(*(
        ponder.asolve(Problem(id=r["task_id"], problem=r["prompt"], test=r["test"],
                              entry_point=r["entry_point"]),
                      backend=ponder.ScriptedBackend(
                          f"```python\n{shadows}def {r['entry_point']}(*args):\n"
                          "    return None\n```"))
        for r in rows))
    assert [r.id for r in results if r.correct] == []


async def test_redefining_the_prompts_helpers_solves_no_humaneval_problem() -> None:
    """HumanEval/32's check calls the prompt's `poly`, /50's its `encode_shift`: a candidate
    that redefined them once passed with a wrong answer. The tests now take them from the
    prompt."""
    replies = {
        "HumanEval/32": "def poly(xs, x):\n    return 0\n\ndef find_zero(xs):\n    return 0.0\n",
        "HumanEval/50": "def encode_shift(s):\n    return s\n\ndef decode_shift(s):\n"
                        "    return s\n",
    }
    rows = {r["task_id"]: r for r in load_jsonl("humaneval_public.jsonl")}
    results = await asyncio.gather(*(
        ponder.asolve(Problem(id=task, problem=rows[task]["prompt"], test=rows[task]["test"],
                              entry_point=rows[task]["entry_point"]),
                      backend=ponder.ScriptedBackend(f"```python\n{reply}```"))
        for task, reply in replies.items()))
    assert [r.id for r in results if r.correct] == []
    assert all(r.verdict is not None and r.verdict.score < 1 for r in results)
