"""`math`: is a reply's final answer mathematically equal to the gold answer?

Base: math-verify (Hugging Face), which drives latex2sympy2_extended. It is the grader that
open-r1 and lighteval use on MATH, so its LaTeX parsing (`\\text{}`, units, `\\dfrac`,
percentages, degrees, matrices, `x \\in [a, b]`) and its ladder of comparisons (string,
numeric with rounding, `simplify(a - b) == 0`, sets, tuples, intervals, equations against
values) are tested on exactly these answers; latex2sympy2_extended alone would leave that
ladder to write again.

Which answer is judged: on a reply written in LaTeX (a backslash command or `$…$`), the one
math-verify's own LaTeX and expression extraction finds in it, as lighteval and open-r1 grade;
ponder's `extract_answer` alone would lose `$x \\geq 5$`, `$k = \\frac13$` or a set spread over
several boxes. Elsewhere ponder's rules (`####`, "Final answer:", the last number), which
math-verify does not know. `tests/test_math_conformance.py` holds the pair to math-verify's
published test cases.

The checks run cheapest first:

1. exact: equal after `normalize` (in-process);
2. numeric: both plain numbers or fractions, equal exactly, or to 6 decimal places when one
   is a rounded decimal (in-process, so GSM8K's numbers never pay for a process hop);
3. symbolic and structural: math-verify, extraction from the reply included, in a worker
   process that is killed at `timeout_s` (see `sympy_worker`), since sympy can hang.

Steps 1 and 2 decide only where their reading of the reply is math-verify's too: a reply
with no LaTeX, an answer given on its own, or one whose only box holds the answer.
"""

from __future__ import annotations

import logging
import re
import time
from decimal import Decimal
from fractions import Fraction

from ponder.core.answers import count_boxes, extract_answer, last_boxed, reply_tail, strip_tags
from ponder.core.errors import ConfigError, PonderError
from ponder.core.types import Candidate, Problem, Verdict
from ponder.verifiers.base import Verifier
from ponder.verifiers.sympy_worker import SympyWorkerPool, WorkerError, WorkerTimeout, shared_pool

log = logging.getLogger(__name__)

_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)"
_DELIMITERS = (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"))
_SIZING = re.compile(r"\\(?:left|right|bigg|Bigg|big|Big)(?![a-zA-Z])")
_SPACING = re.compile(r"\\(?:[,;:! ]|qquad|quad|displaystyle)")
_DEGREES = re.compile(r"\^\s*(?:\{\s*)?\\circ\s*\}?|°|\\degree")
_TEXT = re.compile(r"\\(?:text|textbf|textit|textrm|mathrm|mathbf|mbox)\s*\{([^{}]*)\}")
_UNIT_TEXT = re.compile(
    rf"^({_NUMBER}(?:/\d+)?)\s*\\(?:text|mbox|mathrm)\s*\{{[^{{}}]*\}}(?:\^\{{?\d\}}?)?$"
)
# "18 dollars", "12 square units"; math words such as "3 pi" are not units.
_UNIT_WORDS = re.compile(
    rf"^({_NUMBER})\s+(?!(?:pi|sqrt|ln|log|exp|sin|cos|tan|sec|csc|cot)\b)[a-zA-Z]{{2,}}\.?"
    r"(?:\s+[a-zA-Z]+\.?)*$"
)
# `0,111` is a decimal comma, and `32, 349` two numbers (as math-verify reads them).
_THOUSANDS = re.compile(r"^[-+]?[1-9]\d{0,2}(?:,\d{3})+(?:\.\d+)?$")
_SPACED_COMMA = re.compile(r",\s")
_CHOICE = re.compile(r"^\(([A-Za-z])\)$")
_ASSIGNMENT = re.compile(r"^[a-zA-Z](?:_\{?\w+\}?)?=(?!=)(.+)$")
_LATEX_FRACTION = re.compile(r"^([-+]?)\\frac(\{[^{}]*\}|\d)(\{[^{}]*\}|\d)$")
_PLACES = 6  # decimal places a rounded decimal must agree to, as math-verify's float_rounding
_TEXT_DEPTH = 4  # `\\text{}` nesting unwrapped; real answers nest one deep, hostile ones 10^5

MATH_VERIFY_WINDOW = 2_048
"""The most of a reply math-verify reads. Its extraction regexes are quadratic on some inputs
(16 KB of `\\[ ` takes 9 s), so it gets a window: the last 2 KB, or, when a box or "final
answer" (what it ranks first) sits further back, 2 KB from that line on."""
MAX_ANSWER_CHARS = 1_000  # longer is no final answer, and sympy must not be handed it
# How far before a box its line may start: the `$` that opens it, boxes joined by "and".
_LEAD = 512
_FINAL_ANSWER = re.compile(r"final\s+answer", re.IGNORECASE)


def normalize(answer: str) -> str:
    """The answer with presentation removed: math delimiters, `\\left`/`\\right`, spacing,
    `\\dfrac`, degrees, `%`, `$`, units, `\\text{}`, thousands separators and whitespace.

    >>> normalize("\\\\$1,\\\\!000.50")
    '1000.50'
    """
    s = strip_tags(answer).replace("−", "-")
    listed = _SPACED_COMMA.search(s) is not None
    s = _strip_delimiters(s)
    s = _SIZING.sub("", s)
    s = _SPACING.sub(" ", s)
    s = re.sub(r"\\[cdt]frac", r"\\frac", s)
    s = _DEGREES.sub("", s)
    s = s.replace("\\%", "").replace("%", "").replace("\\$", "").replace("$", "")
    s = s.replace("{,}", ",").strip()
    s = s.removesuffix(".").strip()
    for unit in (_UNIT_TEXT, _UNIT_WORDS):
        match = unit.match(s)
        if match:
            s = match.group(1)
    for _ in range(_TEXT_DEPTH):
        unwrapped = _TEXT.sub(r"\1", s)
        if unwrapped == s:
            break
        s = unwrapped
    s = "".join(s.split())
    if _THOUSANDS.match(s) and not listed:
        s = s.replace(",", "")
    choice = _CHOICE.match(s)
    return choice.group(1) if choice else s


def _strip_delimiters(s: str) -> str:
    """`$…$`, `\\(…\\)` and the like peeled off, on indices (one copy, however deep)."""
    lo, hi = 0, len(s)
    changed = True
    while changed:
        changed = False
        for left, right in _DELIMITERS:
            if hi - lo > len(left) + len(right) and s.startswith(left, lo) \
                    and s.endswith(right, lo, hi):
                lo, hi, changed = lo + len(left), hi - len(right), True
                while lo < hi and s[lo].isspace():
                    lo += 1
                while hi > lo and s[hi - 1].isspace():
                    hi -= 1
    return s[lo:hi]


def _value_of_assignment(normalized: str) -> str | None:
    """`x=2` → `2`; None when the answer is not a one-variable assignment."""
    match = _ASSIGNMENT.match(normalized)
    return match.group(1) if match else None


def number_value(normalized: str) -> Fraction | None:
    """The exact value of a plain number or fraction (`-3`, `0.25`, `3/4`, `\\frac{3}{4}`,
    `\\frac34`), or None for anything else (no sympy, so it cannot hang)."""
    if len(normalized) > 100:
        return None
    if re.fullmatch(_NUMBER, normalized):
        return Fraction(normalized)
    match = re.fullmatch(rf"({_NUMBER})/({_NUMBER})", normalized)
    if match:
        return _ratio(match.group(1), match.group(2))
    match = _LATEX_FRACTION.match(normalized)
    if match:
        top, bottom = (part.strip("{}") for part in match.group(2, 3))
        if re.fullmatch(_NUMBER, top) and re.fullmatch(_NUMBER, bottom):
            value = _ratio(top, bottom)
            return None if value is None else (-value if match.group(1) == "-" else value)
    return None


def _ratio(top: str, bottom: str) -> Fraction | None:
    denominator = Fraction(bottom)
    return None if denominator == 0 else Fraction(top) / denominator


def numbers_equal(a: Fraction, b: Fraction) -> bool:
    """Exactly equal, or (when either is not an integer) equal to 6 decimal places."""
    if a == b:
        return True
    if a.denominator == 1 and b.denominator == 1:
        return False
    return round(a, _PLACES) == round(b, _PLACES)


def quick_compare(gold: str, answer: str) -> tuple[bool, str] | None:
    """Decide in-process when that is safe: `(equal, method)`, or None when sympy must."""
    g, a = normalize(gold), normalize(answer)
    g_value, a_value = _value_of_assignment(g), _value_of_assignment(a)
    if g_value is not None and a_value is None:
        g = g_value
    elif a_value is not None and g_value is None:
        a = a_value
    if g == a:
        return True, "exact"
    g_number, a_number = number_value(g), number_value(a)
    if g_number is not None and a_number is not None:
        return numbers_equal(g_number, a_number), "numeric"
    return None


def canonical_math(answer: str) -> str | None:
    """A voting key under which equal answers group: `0.5`, `\\frac12` and `1/2` all give
    `0.5`; `x=2` gives `2`; other answers their normalised text. None for an empty answer."""
    s = normalize(answer)
    s = _value_of_assignment(s) or s
    if not s:
        return None
    value = number_value(s)
    if value is None:
        return s
    if value.denominator == 1:
        return str(value.numerator)
    rounded = round(value, _PLACES)
    if rounded.denominator == 1:
        return str(rounded.numerator)
    return format((Decimal(rounded.numerator) / Decimal(rounded.denominator)).normalize(), "f")


def reads_as_latex(text: str) -> bool:
    """Whether math-verify, not ponder's rules, should find the answer in this reply: it has a
    backslash command or a `$…$` pair, and no GSM8K `####` line (math-verify does not know
    that one, and `$18 and $20` would read as math)."""
    return ("\\" in text or text.count("$") >= 2) and "####" not in text


def answer_window(text: str) -> str:
    """The part of a reply (or gold) that math-verify reads; see `MATH_VERIFY_WINDOW`."""
    text = reply_tail(text)
    if len(text) <= MATH_VERIFY_WINDOW:
        return text
    anchor = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if anchor < 0:
        for match in _FINAL_ANSWER.finditer(text):
            anchor = match.start()
    if 0 <= anchor < len(text) - MATH_VERIFY_WINDOW:
        start = max(0, anchor - _LEAD)
        line = text.rfind("\n", start, anchor)
        start = line + 1 if line >= 0 else start
        return text[start : start + MATH_VERIFY_WINDOW]
    start = len(text) - MATH_VERIFY_WINDOW
    # Start on a line: inline `$…$` never spans one, so the window's `$` pairs stay pairs.
    line = text.find("\n", start, start + _LEAD)
    return text[line + 1 if line >= 0 else start :]


def _gold_answer(gold: str) -> str | None:
    """The gold as one answer string for the in-process checks; None when it is several
    boxes, which only math-verify reads right."""
    boxes = count_boxes(gold)
    if boxes == 0:
        return gold
    return last_boxed(gold) if boxes == 1 else None


class MathVerifier(Verifier):
    """Checks a reply's final answer against `problem.answer` for mathematical equality.

    The answer judged is `candidate.answer` when it was given on its own (always, where the
    strategy set it: `answer_given`, what a program printed); when it was
    extracted from `candidate.text` (as the context and `ponder.verify` do) and that text is
    LaTeX, math-verify extracts it again from the text, which it reads better.

    >>> verdict = await MathVerifier().verify(Problem(problem="1/2 = ?", answer="\\\\frac12"),
    ...                                       Candidate(text="… \\\\boxed{0.5}", answer="0.5"))
    >>> verdict.passed, verdict.details["method"]
    (True, 'numeric')
    """

    name = "math"

    def __init__(self, *, timeout_s: float = 5.0, pool: SympyWorkerPool | None = None) -> None:
        if timeout_s <= 0:
            raise ConfigError(f"math verifier timeout_s must be positive, got {timeout_s}")
        self.timeout_s = timeout_s
        self._pool = pool

    @property
    def pool(self) -> SympyWorkerPool:
        return self._pool or shared_pool()

    def extract(self, text: str) -> str:
        return extract_answer(text, math_spans=True)

    def canonical(self, answer: str) -> str | None:
        return canonical_math(answer)

    async def verify(self, problem: Problem, candidate: Candidate) -> Verdict:
        if problem.answer is None or not problem.answer.strip():
            raise ConfigError(f"the math verifier needs a gold answer; problem {problem.id!r} "
                              "has none")
        answer = candidate.answer.strip()
        if not answer or "\\boxed" in answer or "####" in answer:
            # A given answer (what a program printed) is all there is: the text may restate
            # the question, which equals gold on "simplify" problems.
            source = candidate.answer if answer or candidate.answer_given else candidate.text
            answer = self.extract(source).strip()
        elif candidate.answer_given:
            source = ""
        else:
            # Given on its own, the answer is the answer; the text is read only when the
            # answer is what ponder's rules take from it (linear, on at most 16 KB), and is
            # not the whole text: math-verify reads a bare `\\frac 59` as 59.
            text = candidate.text.strip()
            source = text if text != answer and answer == self.extract(text).strip() else ""
        source = reply_tail(source)
        latex = reads_as_latex(source)
        if not answer and not latex:
            return Verdict(passed=False, score=0.0, details={"method": "none"},
                           feedback="No final answer found. End with the final answer in "
                                    "\\boxed{}.")
        started = time.monotonic()
        gold_answer = _gold_answer(problem.answer)
        decided = None
        if gold_answer is not None and (not latex or count_boxes(source) == 1):
            decided = quick_compare(gold_answer, answer)
        parsed = True
        if decided is not None:
            equal, method = decided
        elif len(answer) > MAX_ANSWER_CHARS and not latex:
            equal, method, parsed = False, "unread", False
        else:
            # An answer that long is the whole reply (ponder's rules found none); sympy would
            # spend seconds on it, so only math-verify's reading of the window counts.
            request = {"op": "equal", "gold": answer_window(problem.answer),
                       "answer": answer if len(answer) <= MAX_ANSWER_CHARS else "",
                       "text": answer_window(source) if latex else None}
            try:
                reply = await self.pool.acall(request, self.timeout_s)
            except WorkerTimeout:
                return Verdict(
                    passed=False, score=0.0,
                    feedback=f"Your final answer `{_short(answer)}` could not be checked within "
                             f"{self.timeout_s:g}s. Give it in simplest form.",
                    details={"answer": answer, "method": "timeout",
                             "seconds": round(time.monotonic() - started, 3)},
                )
            except WorkerError as exc:
                raise PonderError(f"math verifier: {exc}") from exc
            equal, method = bool(reply.get("equal")), "symbolic"
            parsed = bool(reply.get("answer_parsed", True))
            if latex:  # say which answer math-verify read in the reply
                answer = str(reply.get("extracted") or answer)
            if not reply.get("gold_parsed", True):
                log.warning("math verifier: gold answer %r of problem %s did not parse",
                            _short(problem.answer), problem.id)
        details = {"answer": answer, "method": method,
                   "seconds": round(time.monotonic() - started, 4)}
        if equal:
            return Verdict(passed=True, score=1.0, feedback="The final answer is correct.",
                           details=details)
        if not parsed:
            feedback = (f"Your final answer `{_short(answer)}` could not be read as a "
                        "mathematical expression. Give only the answer, in \\boxed{}.")
        else:
            feedback = (f"Your final answer `{_short(answer)}` is incorrect. Recheck the "
                        "reasoning and the arithmetic.")
        return Verdict(passed=False, score=0.0, feedback=feedback, details=details)

    def __repr__(self) -> str:
        return f"MathVerifier(timeout_s={self.timeout_s:g})"


def _short(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
