"""`math`: is a reply's final answer mathematically equal to the gold answer?

Base: math-verify (Hugging Face), which drives latex2sympy2_extended. It is the grader that
open-r1 and lighteval use on MATH, so its LaTeX parsing (`\\text{}`, units, `\\dfrac`,
percentages, degrees, matrices, `x \\in [a, b]`) and its ladder of comparisons (string,
numeric with rounding, `simplify(a - b) == 0`, sets, tuples, intervals, equations against
values) are tested on exactly these answers; latex2sympy2_extended alone would leave that
ladder to write again.

The checks run cheapest first:

1. exact: equal after `normalize` (in-process);
2. numeric: both plain numbers or fractions, equal exactly, or to 6 decimal places when one
   is a rounded decimal (in-process, so GSM8K's numbers never pay for a process hop);
3. symbolic and structural: math-verify in a worker process that is killed at `timeout_s`
   (see `sympy_worker`), since sympy can hang.
"""

from __future__ import annotations

import logging
import re
import time
from decimal import Decimal
from fractions import Fraction

from ponder.answers import extract_answer, last_boxed
from ponder.errors import ConfigError, PonderError
from ponder.types import Candidate, Problem, Verdict
from ponder.verifiers.base import Verifier
from ponder.verifiers.sympy_worker import SympyWorkerPool, WorkerError, WorkerTimeout, shared_pool

log = logging.getLogger(__name__)

_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)"
_DELIMITERS = (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"))
_SIZING = re.compile(r"\\(?:left|right|bigg|Bigg|big|Big)(?![a-zA-Z])")
_SPACING = re.compile(r"\\(?:[,;:! ]|qquad|quad|displaystyle)")
_DEGREES = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|°|\\degree")
_TEXT = re.compile(r"\\(?:text|textbf|textit|textrm|mathrm|mathbf|mbox)\s*\{([^{}]*)\}")
_UNIT_TEXT = re.compile(
    rf"^({_NUMBER}(?:/\d+)?)\s*\\(?:text|mbox|mathrm)\s*\{{[^{{}}]*\}}(?:\^\{{?\d\}}?)?$"
)
# "18 dollars", "12 square units"; math words such as "3 pi" are not units.
_UNIT_WORDS = re.compile(
    rf"^({_NUMBER})\s+(?!(?:pi|sqrt|ln|log|exp|sin|cos|tan|sec|csc|cot)\b)[a-zA-Z]{{2,}}\.?"
    r"(?:\s+[a-zA-Z]+\.?)*$"
)
_THOUSANDS = re.compile(r"^[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")
_CHOICE = re.compile(r"^\(([A-Za-z])\)$")
_ASSIGNMENT = re.compile(r"^[a-zA-Z](?:_\{?\w+\}?)?=(?!=)(.+)$")
_LATEX_FRACTION = re.compile(r"^([-+]?)\\frac(\{[^{}]*\}|\d)(\{[^{}]*\}|\d)$")
_PLACES = 6  # decimal places a rounded decimal must agree to, as math-verify's float_rounding


def normalize(answer: str) -> str:
    """The answer with presentation removed: math delimiters, `\\left`/`\\right`, spacing,
    `\\dfrac`, degrees, `%`, `$`, units, `\\text{}`, thousands separators and whitespace.

    >>> normalize("\\\\$1,\\\\!000.50")
    '1000.50'
    """
    s = answer.strip().replace("−", "-")
    s = _strip_delimiters(s)
    s = _SIZING.sub("", s)
    s = _SPACING.sub(" ", s)
    s = re.sub(r"\\[dt]frac", r"\\frac", s)
    s = _DEGREES.sub("", s)
    s = s.replace("\\%", "").replace("%", "").replace("\\$", "").replace("$", "")
    s = s.replace("{,}", ",").strip()
    s = re.sub(r"\.$", "", s).strip()
    for unit in (_UNIT_TEXT, _UNIT_WORDS):
        match = unit.match(s)
        if match:
            s = match.group(1)
    while (unwrapped := _TEXT.sub(r"\1", s)) != s:
        s = unwrapped
    s = re.sub(r"\s+", "", s)
    if _THOUSANDS.match(s):
        s = s.replace(",", "")
    choice = _CHOICE.match(s)
    return choice.group(1) if choice else s


def _strip_delimiters(s: str) -> str:
    changed = True
    while changed:
        changed = False
        for left, right in _DELIMITERS:
            if s.startswith(left) and s.endswith(right) and len(s) > len(left) + len(right):
                s, changed = s[len(left) : -len(right)].strip(), True
    return s


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


class MathVerifier(Verifier):
    """Checks `candidate.answer` against `problem.answer` for mathematical equality.

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
        return extract_answer(text)

    def canonical(self, answer: str) -> str | None:
        return canonical_math(answer)

    async def verify(self, problem: Problem, candidate: Candidate) -> Verdict:
        if problem.answer is None or not problem.answer.strip():
            raise ConfigError(f"the math verifier needs a gold answer; problem {problem.id!r} "
                              "has none")
        gold = last_boxed(problem.answer) or problem.answer
        answer = candidate.answer.strip()
        if not answer or "\\boxed" in answer or "####" in answer:
            answer = self.extract(candidate.answer or candidate.text).strip()
        if not answer:
            return Verdict(passed=False, score=0.0, details={"method": "none"},
                           feedback="No final answer found. End with the final answer in "
                                    "\\boxed{}.")
        started = time.monotonic()
        decided = quick_compare(gold, answer)
        parsed = True
        if decided is not None:
            equal, method = decided
        else:
            try:
                reply = await self.pool.acall({"op": "equal", "gold": gold, "answer": answer},
                                              self.timeout_s)
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
            if not reply.get("gold_parsed", True):
                log.warning("math verifier: gold answer %r of problem %s did not parse",
                            gold, problem.id)
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
