"""Pulling a final answer out of a model's reply, and putting answers in a comparable form.

Shared by the context (every candidate gets an `answer`), voting, and the math verifier.

Everything here runs on the event loop, on text a model wrote, so it must cost time in
proportion to the text and no more: anchors are found with `str.rfind`/`str.find`, and the
few regular expressions have no nested or overlapping quantifiers that could backtrack.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import re
import textwrap
from decimal import Decimal, InvalidOperation

MAX_SCAN_CHARS = 16_384
"""Answer extraction reads only a reply's last 16 KB. A final answer comes at the end of a
reply, and the longest reply in math-verify's own test suite is 11 KB; the bound keeps the
cost of every check (and of what is sent on to sympy) fixed however long a reply runs."""

# "Final answer: 8", "The final answer is $8$.", "The answer is 8", "**Answer:** 8". A bare
# "answer" needs its colon, or "Let me answer this: first…" would count. Only the anchor is
# matched; what follows it is cut with str methods.
_FINAL = re.compile(
    r"final\s+answer(?:\s+is)?|the\s+answer\s+is|\banswer\s*(?:\*+\s*)?[:：]",
    re.IGNORECASE,
)
# A number that is not part of a word ("AZYUK2A" holds none) nor an exponent (the 2 of
# "10 m^2"): `1,234.5`, `1 000` (groups of three after a space, as math-verify reads them),
# `-.5`, or a simple fraction `2/3`.
_NUMBER = re.compile(
    r"(?<![A-Za-z_\d.,^])(?<!\^\{)(?<!\^-)(?<!\^\{-)(?<!\^\{ )-?"
    r"(?:[1-9]\d{0,2}(?: \d{3})+(?:\.\d+)?(?![\d,])|\d[\d,]*(?:\.\d+)?|\.\d+)"
    r"(?:/\d+)?"
)
# `0,111` is a decimal comma, not a thousand.
_THOUSANDS = re.compile(r"-?[1-9]\d{0,2}(?:,\d{3})+(?:\.\d+)?(?:/\d+)?")
# A LaTeX fraction of plain numbers, `\\frac{10}{9}` or `\\dfrac34`: its last number is only the
# denominator, so the last-number rule takes the whole fraction.
_LATEX_FRACTION = re.compile(
    r"-?\\[dt]?frac\s*(?:\{\s*-?\d+(?:\.\d+)?\s*\}|\d)\s*(?:\{\s*\d+(?:\.\d+)?\s*\}|\d)"
)
_BOX_COMMANDS = ("\\boxed", "\\fbox")
_TOKEN = re.compile(r"[^\s$]+")


def reply_tail(text: str) -> str:
    """The part of a reply that extraction reads: its last `MAX_SCAN_CHARS` characters."""
    return text[-MAX_SCAN_CHARS:] if len(text) > MAX_SCAN_CHARS else text


def last_boxed(text: str) -> str | None:
    """The content of the last `\\boxed{...}` (or `\\fbox{...}`), nested braces included;
    `\\boxed 5` (no braces) gives `5`. None when there is no complete box."""
    text = reply_tail(text)
    start = max(text.rfind(command) for command in _BOX_COMMANDS)
    if start < 0:
        return None
    i = start + len("\\boxed" if text.startswith("\\boxed", start) else "\\fbox")
    while i < len(text) and text[i] == " ":
        i += 1
    if i >= len(text):
        return None
    if text[i] != "{":
        token = _TOKEN.match(text, i)
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


def count_boxes(text: str) -> int:
    """How many `\\boxed`/`\\fbox` commands the scanned part of a reply holds."""
    text = reply_tail(text)
    return sum(text.count(command) for command in _BOX_COMMANDS)


def extract_answer(text: str, *, math_spans: bool = False) -> str:
    """The final answer in a reply: `\\boxed{}`, `####`, `Final answer:`, else the last number.

    With `math_spans` (for math answers), a last number that lies inside the reply's last
    `$…$`, `\\(…\\)` or `\\[…\\]` span stands for that whole span: "the area is
    $5\\pi$" answers `5\\pi`, not 5, which would pass against a gold answer of 5.

    >>> extract_answer("3 + 5 = 8.\\nFinal answer: 8")
    '8'
    """
    text = reply_tail(text)
    boxed = last_boxed(text)
    if boxed is not None:
        return boxed
    hashes = text.rfind("####")
    if hashes >= 0:
        answer = _strip_markup(_line_after(text, hashes + 4))
        if answer:
            return answer
    anchors = list(_FINAL.finditer(text))
    for anchor in reversed(anchors):
        line = _line_after(text, anchor.end())
        # "The final answer is 7.78. I hope it is correct." (the Minerva format): the answer
        # is the first sentence; a decimal point is never followed by a space.
        sentence_end = line.find(". ")
        answer = _strip_markup(line[:sentence_end] if sentence_end > 0 else line)
        if answer:
            return answer
    number = _last_number(text)
    if number is None:
        return text.strip()
    if math_spans and (span := _math_span_around_last_number(text)) is not None:
        return span
    return number


_MATH_SPAN = re.compile(r"\$\$(.+?)\$\$|\$([^$]+?)\$|\\\((.+?)\\\)|\\\[(.+?)\\\]", re.DOTALL)


# A word outside a LaTeX command ("and", "left", "cm"): prose, as in "$12 and $1", not math.
_PROSE_WORD = re.compile(r"(?<![\\a-zA-Z])[a-zA-Z]{2,}")


def _math_span_around_last_number(text: str) -> str | None:
    """The last math span, where the reply's last number lies inside it and it reads as math."""
    numbers = list(_NUMBER.finditer(text))
    spans = list(_MATH_SPAN.finditer(text))
    if not numbers or not spans:
        return None
    number, span = numbers[-1], spans[-1]
    if not span.start() < number.start() < span.end():
        return None
    inner = next(group for group in span.groups() if group is not None).strip().rstrip(".")
    if not inner or _PROSE_WORD.search(inner) or inner == number.group(0).strip():
        return None
    return inner.strip()


def _line_after(text: str, start: int) -> str:
    """From `start`, past any whitespace (a line break included), to the end of that line."""
    while start < len(text) and text[start].isspace():
        start += 1
    end = text.find("\n", start)
    return text[start : end if end >= 0 else len(text)]


def _last_number(text: str) -> str | None:
    last = None
    for last in _NUMBER.finditer(text):  # noqa: B007  # only the last one is wanted
        pass
    fraction = None
    for fraction in _LATEX_FRACTION.finditer(text):  # noqa: B007
        pass
    if fraction is not None and (last is None or fraction.end() >= last.end()):
        return fraction.group(0)
    if last is None:
        return None
    number = last.group(0).rstrip(",").replace(" ", "")
    # Commas that group thousands go; any other comma (a decimal comma, "2,74") stays for the
    # verifier to read.
    return number.replace(",", "") if _THOUSANDS.fullmatch(number) else number


def extract_code(text: str) -> str:
    """The code in a reply: the longest fenced block, else the reply itself.

    A fence is three backticks; the rest of its line (`python`, `py`, …) is the info string.
    Not capped like answers, since code cut short would not run; the scan is a few `str.find`
    calls per fence, so its cost is the reply's length.
    """
    blocks: list[str] = []
    i = text.find("```")
    while i >= 0:
        newline = text.find("\n", i + 3)
        if newline < 0:
            break
        end = text.find("```", newline + 1)
        if end < 0:
            break
        blocks.append(text[newline + 1 : end])
        i = text.find("```", end + 3)
    if blocks:
        return max(blocks, key=len).strip("\n")
    return text.strip("\n")


_WRAPPERS = (("**", "**"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"), ("`", "`"))
# `<answer>`, `</answer>`: the prompts' own placeholder ("Final answer: <answer>"), which a
# small model copies around its answer.
_TAG = re.compile(r"</?[A-Za-z][\w-]*\s*/?>")


def strip_tags(answer: str) -> str:
    """The answer without the markup a model copies from "Final answer: <answer>": XML-like
    tags, an angle bracket left unpaired at either end (`20>`), and a pair around a single
    value (`<18>`; `<1, 2>` may be a vector, and stays).

    >>> strip_tags("<answer>18.</answer>"), strip_tags("$560.00>"), strip_tags("x < 5")
    ('18.', '$560.00', 'x < 5')
    """
    s = _TAG.sub("", answer).strip() if "<" in answer else answer.strip()
    if s.endswith(">") and "<" not in s:
        s = s[:-1].rstrip()
    elif s.startswith("<") and ">" not in s:
        s = s[1:].lstrip()
    elif s.startswith("<") and s.endswith(">") and not any(c in s[1:-1] for c in "<>,"):
        s = s[1:-1].strip()
    return s


def _strip_markup(answer: str) -> str:
    """Drop what surrounds an answer on its line: bold, `$`/`\\(`, code ticks, a final period.

    Works on indices into the string, not on copies, so deep wrapping costs its length."""
    answer = strip_tags(answer.strip().lstrip("*:： ")).rstrip(".。").strip()
    lo, hi = 0, len(answer)
    changed = True
    while changed:
        changed = False
        for left, right in _WRAPPERS:
            if (hi - lo > len(left) + len(right) and answer.startswith(left, lo)
                    and answer.endswith(right, lo, hi)):
                lo, hi = lo + len(left), hi - len(right)
                while lo < hi and answer[lo].isspace():
                    lo += 1
                while hi > lo and answer[hi - 1].isspace():
                    hi -= 1
                changed = True
        if answer.endswith("**", lo, hi) and answer.find("**", lo, hi - 2) < 0:
            hi -= 2
            while hi > lo and answer[hi - 1].isspace():
                hi -= 1
            changed = True
    return answer[lo:hi].rstrip(".。").strip()


# A number between an optional currency sign and words that read as units ("18 dollars",
# "\\$2.50", "3 eggs per day"); an expression such as "2 + 3" does not match.
_NUMBER_WITH_UNITS = re.compile(
    r"\\?\$?\s*([-+]?(?:\d[\d,]*(?:\.\d+)?|\.\d+))\s*(?:[A-Za-z%][A-Za-z%\s./-]*)?"
)
_PLAIN_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)")


def canonical_number(answer: str) -> str | None:
    """A plain number's canonical string (`1,000.50` → `1000.5`), or None if it is not one.

    Exact (decimal, not float), so large integers keep every digit.
    """
    if len(answer) > 1000:
        return None
    cleaned = answer.strip().replace(",", "").replace("$", "").rstrip("%").strip()
    if len(cleaned) > 200 or not _PLAIN_NUMBER.fullmatch(cleaned):
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
    answer = strip_tags(answer)
    number = canonical_number(answer)
    if number is not None:
        return number
    with_units = _NUMBER_WITH_UNITS.fullmatch(answer.strip())
    if with_units:
        number = canonical_number(with_units.group(1))
        if number is not None:
            return number
    key = "".join(answer.split()).lower()
    return key or None


def canonical_code(answer: str) -> str | None:
    """A voting key for code: programs that differ only in layout and comments share it;
    None when it does not parse (it gets no vote)."""
    try:
        tree = ast.parse(textwrap.dedent(answer))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    return hashlib.sha1(ast.dump(tree).encode()).hexdigest()[:16]


def read_answer(text: str, *, code: bool) -> str:
    """A reply's answer when no verifier reads it: its code on a coding problem (whether or
    not gold is there to test it), else its final answer."""
    return extract_code(text) if code else extract_answer(text)


def answer_key(answer: str, *, code: bool) -> str | None:
    """The voting key `read_answer`'s answers group under when no verifier offers one."""
    return canonical_code(answer) if code else canonical_answer(answer)


@functools.lru_cache(maxsize=256)
def is_python(text: str) -> bool:
    """Whether a problem's text is itself Python (a signature and docstring to complete, as
    HumanEval's are) rather than prose: a prompt shows it as code."""
    try:
        compile(text, "<problem>", "exec", dont_inherit=True)
    except (SyntaxError, ValueError, MemoryError, RecursionError, OverflowError):
        return False
    return True

