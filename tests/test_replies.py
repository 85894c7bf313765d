"""Reading a stop marker, a judge's choice and a rating out of free text, leniently about form
and without guessing when the reply does not say."""

from __future__ import annotations

import time

import pytest

from ponder.core.replies import has_marker, parse_choice, parse_rating


@pytest.mark.parametrize(("text", "expected"), [
    ("NO ISSUES", True),
    ("**No issues.**", True),
    ("The solution is right. There are no issues", True),
    ("There are issues: step 2 is wrong.", False),
    ("No obvious issues? Issues remain.", False),  # the marker's words, in order, together
])
def test_stop_marker(text: str, expected: bool):
    assert has_marker(text, "NO ISSUES") is expected


@pytest.mark.parametrize(("text", "expected"), [
    ("Best: 2", 1),
    ("**Best candidate: 3**", 2),
    ("2", 1),
    ("Candidate 1 is wrong. Candidate 2 is correct.", 1),
    ("Candidate 1 adds wrongly. Best: 3", 2),
    ("The best is candidate #1.", 0),
    ("Best: 9", None),  # out of range
    ("Candidate 2's answer is 3, which seems right.", None),  # an answer is not a choice
    ("They all look fine.", None),
])
def test_judge_choice(text: str, expected: int | None):
    assert parse_choice(text, 3) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("7", 0.7),
    ("Score: 7/10", 0.7),
    ("Step 3 looks right. **Score: 8**", 0.8),  # the labelled number, not the step number
    ("Rating: 9 out of 10", 0.9),
    ("3/5", 0.6),
    ("12", None),
    ("no idea", None),
])
def test_rating(text: str, expected: float | None):
    assert parse_rating(text) == (None if expected is None else pytest.approx(expected))


# Each pattern once let neighbouring quantifiers share a run (`\s*(?:…|\s)*`, `\w*` before
# `is`, a number that could start at every digit of a run), so a judge's reply of this shape
# took seconds to minutes: "best" and 20,000 spaces took over 30 s in parse_choice.
PATHOLOGICAL_REPLIES = {
    "choice word then spaces": "best" + " " * 20_000 + "x",
    "choice word then is-is-is": "best" + "is" * 10_000 + "x",
    "candidate number then spaces": "candidate 1" + " " * 20_000 + "x",
    "candidate then digits": "candidate " + "1" * 20_000 + " x",
    "score then spaces": "score" + " " * 20_000 + "x",
    "score then is-is-is": "score" + "is" * 10_000 + "x",
    "score then digits": "score " + "1" * 20_000 + " / x",
    "a run of digits": "1" * 20_000 + " x",
    "verdict then spaces": "verdict" + " " * 60_000 + "x",
}


@pytest.mark.parametrize("text", PATHOLOGICAL_REPLIES.values(), ids=PATHOLOGICAL_REPLIES.keys())
def test_reading_a_pathological_reply_is_linear(text: str):
    started = time.monotonic()
    parse_choice(text, 3)
    parse_rating(text)
    has_marker(text, "NO ISSUES")
    assert time.monotonic() - started < 1.0  # milliseconds now; seconds to minutes before
