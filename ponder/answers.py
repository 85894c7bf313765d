"""Pulling a final answer out of a model's reply, and putting answers in a comparable form.

Shared by the context (every candidate gets an `answer`), voting, and the math verifier.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

# "Final answer: 8", "The final answer is $8$.", "The answer is 8", "**Answer:** 8". A bare
# "answer" needs its colon, or "Let me answer this: first…" would count.
_FINAL = re.compile(
    r"(?:final\s+answer(?:\s+is)?|the\s+answer\s+is|\banswer\s*\**\s*[:：])\s*(.+)",
    re.IGNORECASE,
)
_HASHES = re.compile(r"####\s*(.+)")
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")
_CODE_BLOCK = re.compile(r"```(?:python|py|python3)?[^\n]*\n(.*?)```", re.DOTALL)
_BOX_COMMANDS = ("\\boxed", "\\fbox")


def last_boxed(text: str) -> str | None:
    """The content of the last `\\boxed{...}` (or `\\fbox{...}`), nested braces included;
    `\\boxed 5` (no braces) gives `5`. None when there is no complete box."""
    start = max(text.rfind(command) for command in _BOX_COMMANDS)
    if start < 0:
        return None
    i = start + len("\\boxed" if text.startswith("\\boxed", start) else "\\fbox")
    while i < len(text) and text[i] == " ":
        i += 1
    if i >= len(text):
        return None
    if text[i] != "{":
        token = re.match(r"[^\s$]+", text[i:])
        return token.group(0).rstrip(".") if token else None
    depth = 0
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1 : j].strip()
    return None


def extract_answer(text: str) -> str:
    """The final answer in a reply: `\\boxed{}`, `####`, `Final answer:`, else the last number.

    >>> extract_answer("3 + 5 = 8.\\nFinal answer: 8")
    '8'
    """
    boxed = last_boxed(text)
    if boxed is not None:
        return boxed
    for pattern in (_HASHES, _FINAL):
        matches = pattern.findall(text)
        if matches:
            answer = _strip_markup(matches[-1])
            if answer:
                return answer
    numbers = _NUMBER.findall(text)
    if numbers:
        return numbers[-1].replace(",", "")
    return text.strip()


def extract_code(text: str) -> str:
    """The code in a reply: the longest fenced block, else the reply itself."""
    blocks = _CODE_BLOCK.findall(text)
    if blocks:
        return str(max(blocks, key=len)).strip("\n")
    return text.strip("\n")


def _strip_markup(answer: str) -> str:
    """Drop what surrounds an answer on its line: bold, `$`/`\\(`, code ticks, a final period."""
    answer = answer.strip().lstrip("*:： ").rstrip()
    answer = re.sub(r"[.。]+$", "", answer).strip()
    changed = True
    while changed:
        changed = False
        for left, right in (("**", "**"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"), ("`", "`")):
            if (answer.startswith(left) and answer.endswith(right)
                    and len(answer) > len(left) + len(right)):
                answer = answer[len(left) : -len(right)].strip()
                changed = True
        if answer.endswith("**") and "**" not in answer[:-2]:
            answer, changed = answer[:-2].rstrip(), True
    return re.sub(r"[.。]+$", "", answer).strip()


# A number between an optional currency sign and words that read as units ("18 dollars",
# "\\$2.50", "3 eggs per day"); an expression such as "2 + 3" does not match.
_NUMBER_WITH_UNITS = re.compile(r"^\\?\$?\s*([-+]?[\d,]*\.?\d+)\s*(?:[A-Za-z%][A-Za-z%\s./-]*)?$")


def canonical_number(answer: str) -> str | None:
    """A plain number's canonical string (`1,000.50` → `1000.5`), or None if it is not one.

    Exact (decimal, not float), so large integers keep every digit.
    """
    cleaned = answer.strip().replace(",", "").replace("$", "").rstrip("%").strip()
    if len(cleaned) > 200 or not re.fullmatch(r"[-+]?(?:\d+\.?\d*|\.\d+)", cleaned):
        return None
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        return None
    if value == value.to_integral_value():
        return str(int(value))
    return format(value.normalize(), "f")


def canonical_answer(answer: str) -> str | None:
    """A voting key for answers when no verifier offers one: numbers by value (with a currency
    sign or trailing units dropped, so `$18`, `18.00` and `18 dollars` vote together), else the
    text without spaces or case. None for an empty answer (it gets no vote)."""
    number = canonical_number(answer)
    if number is not None:
        return number
    with_units = _NUMBER_WITH_UNITS.match(answer.strip())
    if with_units:
        number = canonical_number(with_units.group(1))
        if number is not None:
            return number
    key = re.sub(r"\s+", "", answer).lower()
    return key or None
