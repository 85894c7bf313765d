"""`ponder bench` scores a row by gold after the run: a prose row's reply is read again as the
gold verifier reads one in a run, so an answer that older rules read wrongly is neither a lucky
pass nor a lost one; a printed or re-chosen answer (no text) is judged as given."""

from __future__ import annotations

import pytest

from ponder.bench.run import Scorer
from ponder.core.types import Problem

TAN = Problem(id="tan", problem="sin A = 2 cos A. What is tan A?", answer="2")
EGGS = Problem(id="eggs", problem="How many eggs are left?", answer="18")


@pytest.mark.parametrize(("problem", "answer", "text", "right"), [
    # A reply cut off mid-derivation: the 2 of AB^2 was once read as its answer, equal to gold.
    (TAN, "2", "Since \\(AB^2 = \\cos^2 A\\), we get\n\\[ AB^2 + \\cos^2 A", False),
    # The prompts' placeholder copied around a right answer: once read as "<answer>18</answer>".
    (EGGS, "<answer>18</answer>", "So 18 are left.\nFinal answer: <answer>18</answer>", True),
    (EGGS, "", "16 - 3 - 4 = 9 eggs, at $2 each: Final answer: 18", True),
])
async def test_a_prose_rows_reply_is_read_again(problem: Problem, answer: str, text: str,
                                               right: bool) -> None:
    assert await Scorer([problem]).correct(problem.id, answer, text) is right


async def test_an_answer_without_a_reply_is_judged_as_given() -> None:
    scorer = Scorer([EGGS])
    assert await scorer.correct("eggs", "18") is True
    assert await scorer.correct("eggs", "<answer>18</answer>") is True
    assert await scorer.correct("eggs", "") is False
