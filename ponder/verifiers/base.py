"""The `Verifier` protocol, and wrapping a plain function into one."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ponder.answers import canonical_answer, extract_answer
from ponder.errors import ConfigError
from ponder.types import Candidate, Problem, Verdict

if TYPE_CHECKING:
    from ponder.context import Context


@runtime_checkable
class Verifier(Protocol):
    """Judges a candidate. `verify` may also accept `ctx=` (keyword) to spend the problem's
    budget on model calls, as the LLM judge does.

    Optional methods a verifier may add, which strategies use when present:
    `extract(text) -> str` (the answer in a reply) and `canonical(answer) -> str | None`
    (a form in which equal answers compare equal, for voting and consensus).
    """

    name: str

    async def verify(self, problem: Problem, candidate: Candidate) -> Verdict: ...


VerdictLike = Verdict | bool | float
VerifierFn = Callable[[Problem, Candidate], VerdictLike | Awaitable[VerdictLike]]


def to_verdict(value: Any, *, source: str = "verifier") -> Verdict:
    """Turn what a user's function returned (Verdict, bool or float score) into a Verdict."""
    if isinstance(value, Verdict):
        return value
    if isinstance(value, bool):
        return Verdict.from_bool(value, "" if value else f"{source} rejected this answer")
    if isinstance(value, int | float):
        score = float(value)
        if not 0.0 <= score <= 1.0:
            raise ConfigError(f"{source} returned score {score}; scores must lie in [0, 1]")
        return Verdict(passed=score >= 1.0, score=score)
    raise ConfigError(
        f"{source} returned {type(value).__name__}; return a Verdict, a bool or a float in [0, 1]"
    )


class FunctionVerifier:
    """A verifier made from any callable `(problem, candidate) -> Verdict | bool | float`.

    >>> is_even = FunctionVerifier(lambda p, c: int(c.answer) % 2 == 0, name="even")
    """

    def __init__(self, fn: Callable[..., Any], *, name: str | None = None,
                 threshold: float = 1.0) -> None:
        self.fn = fn
        self.name: str = name or str(getattr(fn, "__name__", "custom"))
        self.threshold = threshold

    async def verify(self, problem: Problem, candidate: Candidate) -> Verdict:
        value = self.fn(problem, candidate)
        if inspect.isawaitable(value):
            value = await value
        verdict = to_verdict(value, source=f"verifier {self.name!r}")
        if not isinstance(value, Verdict | bool):
            verdict = verdict.model_copy(update={"passed": verdict.score >= self.threshold})
        return verdict

    def __repr__(self) -> str:
        return f"FunctionVerifier({self.name!r})"


def as_verifier(obj: Any, *, name: str | None = None) -> Verifier:
    """Accept a Verifier as is; wrap a callable; refuse anything else with a clear error."""
    if isinstance(obj, Verifier):
        return obj
    if callable(obj):
        return FunctionVerifier(obj, name=name)
    raise ConfigError(
        f"{obj!r} is not a verifier: give an object with async verify(), or a function"
    )


async def run_verifier(verifier: Verifier, problem: Problem, candidate: Candidate,
                       ctx: Context | None = None) -> Verdict:
    """Call `verifier.verify`, passing `ctx` to verifiers that take it."""
    if ctx is not None and _takes_ctx(verifier):
        verdict = await verifier.verify(problem, candidate, ctx=ctx)  # type: ignore[call-arg]
    else:
        verdict = await verifier.verify(problem, candidate)
    return to_verdict(verdict, source=f"verifier {getattr(verifier, 'name', verifier)!r}")


def _takes_ctx(verifier: Verifier) -> bool:
    try:
        return "ctx" in inspect.signature(verifier.verify).parameters
    except (TypeError, ValueError):
        return False


def extract_with(verifier: Verifier | None, text: str) -> str:
    extract = getattr(verifier, "extract", None)
    return extract(text) if callable(extract) else extract_answer(text)


def canonical_with(verifier: Verifier | None, answer: str) -> str | None:
    canonical = getattr(verifier, "canonical", None)
    return canonical(answer) if callable(canonical) else canonical_answer(answer)
