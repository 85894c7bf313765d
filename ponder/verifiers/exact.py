"""`exact`, `regex` and `contains`: string checks against `problem.answer` or a value given
to the constructor.

Feedback never quotes a gold answer (it goes into refine prompts); a pattern given to the
constructor is a format the model is asked to follow, so `regex` quotes that one.

>>> verdict = await RegexVerifier(r"[A-D]").verify(problem, candidate)
"""

from __future__ import annotations

import re
from typing import Literal

from ponder.core.answers import canonical_number, extract_answer
from ponder.core.errors import ConfigError
from ponder.core.types import Candidate, Problem, Verdict
from ponder.verifiers.base import Verifier

Target = Literal["answer", "text"]


def normalize_text(text: str, *, case_sensitive: bool = False) -> str:
    """Whitespace collapsed, ends stripped, case folded unless `case_sensitive`; a plain
    number in its canonical form (`1,000.0` → `1000`)."""
    number = canonical_number(text)
    return number if number is not None else _fold(text, case_sensitive)


class _StringVerifier(Verifier):
    """What the three share: where the expected value comes from, and what is compared."""

    name = "string"

    def __init__(self, expected: str | None, *, target: Target, case_sensitive: bool) -> None:
        if target not in ("answer", "text"):
            raise ConfigError(f"{self.name}: target must be 'answer' or 'text', got {target!r}")
        self.expected = expected
        self.target = target
        self.case_sensitive = case_sensitive

    def extract(self, text: str) -> str:
        return extract_answer(text)

    def canonical(self, answer: str) -> str | None:
        return normalize_text(answer, case_sensitive=self.case_sensitive) or None

    def _reference(self, problem: Problem) -> str:
        reference = self.expected if self.expected is not None else problem.answer
        if reference is None:
            raise ConfigError(f"the {self.name} verifier needs problem.answer or a value given "
                              f"to it; problem {problem.id!r} has no answer")
        return reference

    def _subject(self, candidate: Candidate) -> str:
        return candidate.text if self.target == "text" else candidate.answer


class ExactVerifier(_StringVerifier):
    """The answer equals the expected string, up to whitespace, case and number format."""

    name = "exact"

    def __init__(self, expected: str | None = None, *, target: Target = "answer",
                 case_sensitive: bool = False) -> None:
        super().__init__(expected, target=target, case_sensitive=case_sensitive)

    async def verify(self, problem: Problem, candidate: Candidate) -> Verdict:
        reference = self._reference(problem)
        got = self._subject(candidate)
        ok = self.canonical(got) == self.canonical(reference)
        return Verdict.from_bool(ok, "The answer is correct." if ok else
                                 f"The answer `{_short(got)}` is not the expected answer.")


class RegexVerifier(_StringVerifier):
    """The answer matches a regular expression: the one given, else `problem.answer`.

    `fullmatch=True` (the default) anchors it to the whole answer; otherwise it may match
    anywhere. Case is ignored unless `case_sensitive`.
    """

    name = "regex"

    def __init__(self, pattern: str | None = None, *, target: Target = "answer",
                 fullmatch: bool = True, case_sensitive: bool = False) -> None:
        super().__init__(pattern, target=target, case_sensitive=case_sensitive)
        self.fullmatch = fullmatch
        if pattern is not None:
            self._compile(pattern)

    def _compile(self, pattern: str) -> re.Pattern[str]:
        try:
            return re.compile(pattern, 0 if self.case_sensitive else re.IGNORECASE)
        except re.error as exc:
            raise ConfigError(f"regex verifier: bad pattern {pattern!r}: {exc}") from None

    async def verify(self, problem: Problem, candidate: Candidate) -> Verdict:
        pattern = self._compile(self._reference(problem))
        got = self._subject(candidate).strip()
        match = pattern.fullmatch(got) if self.fullmatch else pattern.search(got)
        if match:
            return Verdict.from_bool(True, "The answer has the expected form.")
        shown = f" `{pattern.pattern}`" if self.expected is not None else ""
        return Verdict(passed=False, score=0.0,
                       feedback=f"The answer `{_short(got)}` does not match the required "
                                f"pattern{shown}.")


class ContainsVerifier(_StringVerifier):
    """The reply contains the expected string, ignoring case and runs of whitespace.

    It looks in the whole reply by default; `target="answer"` looks in the extracted answer.
    """

    name = "contains"

    def __init__(self, expected: str | None = None, *, target: Target = "text",
                 case_sensitive: bool = False) -> None:
        super().__init__(expected, target=target, case_sensitive=case_sensitive)

    async def verify(self, problem: Problem, candidate: Candidate) -> Verdict:
        needle = _fold(self._reference(problem), self.case_sensitive)
        ok = bool(needle) and needle in _fold(self._subject(candidate), self.case_sensitive)
        return Verdict.from_bool(ok, "The reply contains the expected answer." if ok else
                                 "The reply does not contain the expected answer.")


def _fold(text: str, case_sensitive: bool) -> str:
    collapsed = re.sub(r"\s+", " ", text).strip()
    return collapsed if case_sensitive else collapsed.casefold()


def _short(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
