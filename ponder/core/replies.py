"""Reading the structured bits a template asks for (a stop marker, a choice, a rating) out of a
model's free-text reply. Small models wrap them in markup and prose, so each reader is lenient
about form and returns None rather than guessing when the reply does not say."""

from __future__ import annotations

import re

# Linear by construction, since a judge's reply can be any length: no two neighbouring
# quantifiers can take the same characters (`\s*(?:…|\s)*` would try every split of a run of
# spaces), a word's tail is bounded (`\w{0,20}`, not `\w*` before `is`), and a number may
# not start inside another (`(?<![\d.])`), so a run of digits is read once, not once per digit.
_WORDS = re.compile(r"[^a-z0-9]+")
_CHOICE = re.compile(
    r"(?:best|choice|pick|select|winner)\w{0,20}(?:candidate|solution|is|[:=*#]|\s)*(\d+)"
    r"|(?:candidate|solution)\s*#?(\d+)\s*(?:\*\*\s*)?is\s+(?:the\s+)?(?:best|correct)",
    re.IGNORECASE,
)
_LONE_NUMBER = re.compile(r"^\W*(\d+)\W*$")
_NUM = r"(?<![\d.])(-?\d+(?:\.\d+)?)"
_OUT_OF = rf"\s*(?:/\s*{_NUM}|out\s+of\s+{_NUM})"
_LABELLED = re.compile(
    rf"(?:score|rating|rate|value|grade)\w{{0,20}}\"?(?:is|of|[:=*]|\s)*{_NUM}(?:{_OUT_OF})?",
    re.IGNORECASE,
)
_FRACTION = re.compile(rf"{_NUM}{_OUT_OF}", re.IGNORECASE)
_BARE = re.compile(_NUM)
_VERDICT_WORD = re.compile(r"(?:verdict|grade|judgement|judgment)\s*(?:\*+\s*)?:\s*(?:\*+\s*)?"
                           r"(pass|fail|correct|incorrect|yes|no)\b", re.IGNORECASE)


def _words(text: str) -> str:
    return f" {_WORDS.sub(' ', text.lower()).strip()} "


def has_marker(text: str, marker: str) -> bool:
    """Whether `text` contains `marker` as whole words, ignoring case, punctuation and markup
    (`**No issues.**` contains `NO ISSUES`)."""
    needle = _words(marker)
    return needle.strip() != "" and needle in _words(text)


def parse_choice(text: str, count: int) -> int | None:
    """The 0-based index of the candidate a judge picked, from "Best: 2", "**Best candidate: 2**"
    or a lone "2"; the last such mention wins. None when no number in 1..count is given."""
    matches = [int(a or b) for a, b in _CHOICE.findall(text)]
    lone = _LONE_NUMBER.match(text)
    if lone:
        matches.append(int(lone.group(1)))
    valid = [m for m in matches if 1 <= m <= count]
    return valid[-1] - 1 if valid else None


def parse_rating(text: str, *, scale: float = 10.0) -> float | None:
    """A grade on a 0..`scale` scale, as a number in [0, 1]; None when the reply gives none.

    In order: the last labelled one ("Score: 8", "**Rating:** 7/10", '"score": 0.9', "Score:
    85" read as a percentage), else the last fraction ("3 out of 4", "3/5"), else a verdict
    word ("Verdict: PASS" is 1), else the first bare number within the scale ("7"). A value
    below 1 with a decimal point is already a share; a fraction above 1 counts as 1.

    >>> parse_rating("Feedback: fine.\\nScore: 8"), parse_rating("I'd give it 3 out of 4.")
    (0.8, 0.75)
    """
    for value, *out_of in reversed(_LABELLED.findall(text)):
        score = _to_unit(value, out_of, scale, percent=True)
        if score is not None:
            return score
    for value, *out_of in reversed(_FRACTION.findall(text)):
        score = _to_unit(value, out_of, scale)
        if score is not None:
            return score
    words = _VERDICT_WORD.findall(text)
    if words:
        return 1.0 if words[-1].lower() in ("pass", "correct", "yes") else 0.0
    for value in _BARE.findall(text):
        score = _to_unit(value, [], scale)
        if score is not None:
            return score
    return None


def _to_unit(text: str, out_of: list[str], scale: float, *, percent: bool = False) -> float | None:
    value = float(text)
    denominator = next((float(d) for d in out_of if d), None)
    if value < 0:
        return None
    if denominator:
        return min(value / denominator, 1.0)
    if value < 1 and "." in text:  # "0.9": already a share, not 0.9 of 10
        return value
    if value <= scale:
        return value / scale
    if percent and value <= 100:  # a labelled percentage given without its sign
        return value / 100
    return None
