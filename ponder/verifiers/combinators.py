"""Verifiers made of verifiers: `all_of`, `any_of`, `weighted`.

Parts may be verifiers, names (`"math"`), specs or plain functions. Binding the combination
to a run binds every part (so an `llm_judge` part spends the problem's budget), and
`extract`/`canonical`/`score_partial` come from the first part that has its own.

>>> verifier = all_of(RegexVerifier(r"-?\\d+"), "math")   # cheap format check first
>>> verifier = weighted([("unit_tests", 0.8), ("llm_judge", 0.2)], threshold=0.8)
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ponder.core.errors import ConfigError
from ponder.core.types import Candidate, Problem, Verdict
from ponder.verifiers.base import ModelAccess, Verifier, judge

VerifierLike = Verifier | str | Callable[..., Any]


def _resolve(parts: Iterable[VerifierLike]) -> list[Verifier]:
    from ponder.verifiers.registry import get_verifier

    resolved = [get_verifier(part) for part in parts]
    if not resolved:
        raise ConfigError("a combined verifier needs at least one part")
    return resolved


class _Combined(Verifier):
    kind = "combined"

    def __init__(self, parts: Sequence[Verifier]) -> None:
        self.parts = list(parts)
        self.name = f"{self.kind}({', '.join(self._label(part) for part in self.parts)})"

    def _knower(self, method: str) -> Verifier | None:
        return next((part for part in self.parts if part.offers(method)), None)

    def extract(self, text: str) -> str:
        part = self._knower("extract")
        return part.extract(text) if part else super().extract(text)

    def canonical(self, answer: str) -> str | None:
        part = self._knower("canonical")
        return part.canonical(answer) if part else super().canonical(answer)

    async def score_partial(self, problem: Problem, text: str) -> float | None:
        part = self._knower("score_partial")
        return await part.score_partial(problem, text) if part else None

    def offers(self, method: str) -> bool:
        return self._knower(method) is not None

    def bind(self, model: ModelAccess) -> Verifier:
        bound = copy.copy(self)
        bound.parts = [part.bind(model) for part in self.parts]
        return bound

    def _label(self, part: Verifier) -> str:
        return part.name or type(part).__name__

    def _details(self, verdicts: Sequence[tuple[Verifier, Verdict]]) -> dict[str, Any]:
        return {"parts": [{"verifier": self._label(part), "passed": verdict.passed,
                           "score": verdict.score, "details": verdict.details}
                          for part, verdict in verdicts]}

    def _feedback(self, verdicts: Sequence[tuple[Verifier, Verdict]], *,
                  failed_only: bool = True) -> str:
        lines = [f"[{self._label(part)}] {verdict.feedback}" for part, verdict in verdicts
                 if verdict.feedback and (not failed_only or not verdict.passed)]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"{self.name}"

    async def _in_order(self, problem: Problem, candidate: Candidate, *,
                        until_passed: bool) -> list[tuple[Verifier, Verdict]]:
        """Run the parts in order, stopping at the first verdict whose `passed` equals
        `until_passed` (any_of stops at a pass, all_of at a failure)."""
        verdicts: list[tuple[Verifier, Verdict]] = []
        for part in self.parts:
            verdict = await judge(part, problem, candidate)
            verdicts.append((part, verdict))
            if verdict.passed == until_passed:
                break
        return verdicts


class AllOf(_Combined):
    """Passes when every part passes. Parts run in order and stop at the first failure, so
    put cheap checks first; the score is the lowest part's."""

    kind = "all_of"

    async def verify(self, problem: Problem, candidate: Candidate) -> Verdict:
        verdicts = await self._in_order(problem, candidate, until_passed=False)
        passed = all(v.passed for _, v in verdicts)
        return Verdict(passed=passed, score=min(v.score for _, v in verdicts),
                       feedback=self._feedback(verdicts, failed_only=not passed),
                       details=self._details(verdicts))


class AnyOf(_Combined):
    """Passes when some part passes. Parts run in order and stop at the first pass; the
    score is the highest part's."""

    kind = "any_of"

    async def verify(self, problem: Problem, candidate: Candidate) -> Verdict:
        verdicts = await self._in_order(problem, candidate, until_passed=True)
        last = verdicts[-1][1]
        if last.passed:
            return Verdict(passed=True, score=max(v.score for _, v in verdicts),
                           feedback=last.feedback, details=self._details(verdicts))
        return Verdict(passed=False, score=max(v.score for _, v in verdicts),
                       feedback=self._feedback(verdicts), details=self._details(verdicts))


class Weighted(_Combined):
    """The weighted mean of the parts' scores; passes when it reaches `threshold`. Parts run
    concurrently."""

    kind = "weighted"

    def __init__(self, parts: Sequence[Verifier], weights: Sequence[float],
                 threshold: float) -> None:
        super().__init__(parts)
        if len(weights) != len(parts) or any(w < 0 for w in weights) or sum(weights) <= 0:
            raise ConfigError(f"weighted: weights must be non-negative with a positive sum, "
                              f"one per part; got {list(weights)}")
        if not 0.0 <= threshold <= 1.0:
            raise ConfigError(f"weighted: threshold must lie in [0, 1], got {threshold}")
        self.weights = list(weights)
        self.threshold = threshold
        self.name = "weighted(" + ", ".join(
            f"{self._label(part)}={w:g}" for part, w in zip(parts, weights, strict=True)) + ")"

    async def verify(self, problem: Problem, candidate: Candidate) -> Verdict:
        results = await asyncio.gather(
            *(judge(part, problem, candidate) for part in self.parts)
        )
        verdicts = list(zip(self.parts, results, strict=True))
        score = sum(w * v.score for w, v in zip(self.weights, results, strict=True))
        score = min(1.0, score / sum(self.weights))
        passed = score >= self.threshold
        details = self._details(verdicts)
        details["weights"] = self.weights
        return Verdict(passed=passed, score=score,
                       feedback=self._feedback(verdicts, failed_only=True),
                       details=details)


def all_of(*parts: VerifierLike) -> AllOf:
    """A verifier that passes when all `parts` pass."""
    return AllOf(_resolve(parts))


def any_of(*parts: VerifierLike) -> AnyOf:
    """A verifier that passes when any of `parts` passes."""
    return AnyOf(_resolve(parts))


def weighted(parts: Sequence[tuple[VerifierLike, float]] | dict[str, float], *,
             threshold: float = 1.0) -> Weighted:
    """A verifier scoring the weighted mean of `parts` (pairs of verifier and weight, or a
    dict of names to weights); it passes at `threshold` (1.0: every part fully satisfied)."""
    pairs = list(parts.items()) if isinstance(parts, dict) else list(parts)
    return Weighted(_resolve(p for p, _ in pairs), [float(w) for _, w in pairs], threshold)
