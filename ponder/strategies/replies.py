"""Reading the structured bits a template asks for (a stop marker, a choice, a rating) out of a
model's free-text reply. Small models wrap them in markup and prose, so each reader is lenient
about form and returns None rather than guessing when the reply does not say."""

from __future__ import annotations

import re

_WORDS = re.compile(r"[^a-z0-9]+")
_CHOICE = re.compile(
    r"(?:best|choice|pick|select|winner)\w*\s*(?:candidate|solution|is|:|=|\*|#|\s)*(\d+)"
    r"|(?:candidate|solution)\s*#?(\d+)\s*(?:\*\*)?\s*is\s+(?:the\s+)?(?:best|correct)",
    re.IGNORECASE,
)
_LONE_NUMBER = re.compile(r"^\W*(\d+)\W*$")
_NUMBER = r"(-?\d+(?:\.\d+)?)\s*(?:/\s*(\d+))?"
_LABELLED = re.compile(
    r"(?:score|rating|rate|value)\w*\s*(?:is|of|:|=|\*|\s)*" + _NUMBER, re.IGNORECASE
)
_RATING = re.compile(_NUMBER)


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


def parse_rating(text: str, *, high: float = 10.0) -> float | None:
    """A rating in 0..`high`, scaled to [0, 1]: the last one labelled "Score:"/"Rating:", else
    the first number ("7", "**Score: 7/10**", "8.5"). A fraction like "3/5" is read as such.
    None when the reply holds no usable rating."""
    labelled = _LABELLED.findall(text)
    for value, denominator in reversed(labelled) if labelled else _RATING.findall(text):
        number = float(value)
        scale = float(denominator) if denominator else high
        if scale > 0 and 0.0 <= number <= scale:
            return number / scale
    return None
