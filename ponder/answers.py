"""Pulling a final answer out of a model's reply, and putting answers in a comparable form.

Shared by the context (every candidate gets an `answer`), voting, and the math verifier.
"""

from __future__ import annotations

import re

_FINAL = re.compile(r"(?:final answer|the answer is|answer)\s*[:：]?\s*(.+)", re.IGNORECASE)
_HASHES = re.compile(r"####\s*(.+)")
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")
_CODE_BLOCK = re.compile(r"```(?:python|py)?[^\n]*\n(.*?)```", re.DOTALL)


def last_boxed(text: str) -> str | None:
    """The content of the last `\\boxed{...}` (or `\\fbox{...}`), nested braces included."""
    start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if start < 0:
        return None
    i = text.find("{", start)
    if i < 0:
        return None
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
    """The final answer in a reply: `\\boxed{}`, `Final answer:`, `####`, else the last number."""
    boxed = last_boxed(text)
    if boxed is not None:
        return boxed
    for pattern in (_HASHES, _FINAL):
        matches = pattern.findall(text)
        if matches:
            answer = matches[-1].strip().rstrip(".").strip()
            if answer:
                return _strip_markup(answer)
    numbers = _NUMBER.findall(text)
    if numbers:
        return numbers[-1].replace(",", "")
    return text.strip()


def extract_code(text: str) -> str:
    """The code in a reply: the longest fenced block, else the reply itself."""
    blocks = _CODE_BLOCK.findall(text)
    if blocks:
        return max(blocks, key=len).strip("\n")
    return text.strip("\n")


def _strip_markup(answer: str) -> str:
    answer = answer.strip()
    for wrapper in ("**", "$", "`"):
        if answer.startswith(wrapper) and answer.endswith(wrapper) and len(answer) > 2 * len(wrapper):
            answer = answer[len(wrapper) : -len(wrapper)].strip()
    return answer


def canonical_number(answer: str) -> str | None:
    """A plain number's canonical string (`1,000.50` → `1000.5`), or None if it is not one."""
    cleaned = answer.strip().replace(",", "").replace("$", "").rstrip("%").strip()
    try:
        value = float(cleaned)
    except ValueError:
        return None
    return str(int(value)) if value == int(value) else repr(value)


def canonical_answer(answer: str) -> str | None:
    """A voting key for answers when no verifier offers one: numbers by value, else the text
    without spaces or case. None for an empty answer (it gets no vote)."""
    number = canonical_number(answer)
    if number is not None:
        return number
    key = re.sub(r"\s+", "", answer).lower()
    return key or None
