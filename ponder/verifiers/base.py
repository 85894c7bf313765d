"""What a verifier is: one required method, `verify`, and defaults for everything else.

>>> class Even(ponder.Verifier):
...     async def verify(self, problem, candidate):
...         return int(candidate.answer) % 2 == 0

Any object with a `verify(problem, candidate)` method (async or not) and any function
`(problem, candidate) -> Verdict | bool | float` is accepted too: `as_verifier` fills in what
it lacks. Verifiers that need a model (the LLM judge) get one through `bind(model)`, where
`model` is the narrow `ModelAccess` below, so nothing here depends on `Context`.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from ponder.core.answers import canonical_answer, extract_answer
from ponder.core.errors import ConfigError
from ponder.core.types import Candidate, Completion, Problem, Verdict

VerdictLike = Verdict | bool | float
VerifierFn = Callable[[Problem, Candidate], VerdictLike | Awaitable[VerdictLike]]


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class ModelAccess(Protocol):
    """What a verifier may ask of the run it judges for: model calls, charged to the problem's
    budget and traced. `Context` is one."""

    async def generate(self, template: str, *, n: int = 1, max_tokens: int,
                       temperature: float = 0.0, stop: Sequence[str] | None = None,
                       step: str | None = None, backend: Any = None,
                       **variables: Any) -> list[Completion]: ...


class Verifier:
    """Judges a candidate. Subclass it and write `verify`; the rest has defaults.

    - `name`: how listings and traces call it (default: the class name in snake case);
    - `extract(text)`: the answer in a reply (default: boxed, "Final answer:", last number);
    - `canonical(answer)`: a key under which equal answers group for voting (default: a
      normalised number or text), None when the answer has no usable form;
    - `score_partial(problem, text)`: a score in [0, 1] for an unfinished solution, used by
      `tree_search`; None (the default) lets the strategy ask the model instead;
    - `bind(model)`: this verifier for one run, with `model` for verifiers that call one.

    `verify` may be async or plain, and may return a `Verdict`, a bool or a score in [0, 1].
    """

    name: str = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.__dict__.get("name"):
            cls.name = _snake(cls.__name__)

    async def verify(self, problem: Problem, candidate: Candidate) -> Verdict:
        raise NotImplementedError(f"{type(self).__name__} must define verify(problem, candidate)")

    def extract(self, text: str) -> str:
        return extract_answer(text)

    def canonical(self, answer: str) -> str | None:
        return canonical_answer(answer)

    async def score_partial(self, problem: Problem, text: str) -> float | None:
        return None

    def bind(self, model: ModelAccess) -> Verifier:
        return self

    def offers(self, method: str) -> bool:
        """Whether this verifier has its own `method` (say `canonical`) rather than the
        default, so that a combination of verifiers can take it from the part that knows."""
        return getattr(type(self), method, None) is not getattr(Verifier, method, None)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def to_verdict(value: Any, *, source: str = "verifier") -> Verdict:
    """Turn what a verifier returned (Verdict, bool or float score) into a Verdict."""
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


async def judge(verifier: Verifier, problem: Problem, candidate: Candidate) -> Verdict:
    """`verifier.verify`, awaited if it is async, its value made a Verdict: the one way ponder
    calls a verifier."""
    value: Any = verifier.verify(problem, candidate)
    if inspect.isawaitable(value):
        value = await value
    return to_verdict(value, source=f"verifier {verifier.name!r}")


class FunctionVerifier(Verifier):
    """A verifier made from a callable `(problem, candidate) -> Verdict | bool | float`; a float
    passes at `threshold`.

    >>> is_even = FunctionVerifier(lambda p, c: int(c.answer) % 2 == 0, name="even")
    """

    def __init__(self, fn: Callable[..., Any], *, name: str | None = None,
                 threshold: float = 1.0) -> None:
        self.fn = fn
        self.name = name or str(getattr(fn, "__name__", "custom"))
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


class _Adapted(Verifier):
    """An object that has `verify` but is no `Verifier`: its own methods where it has them,
    the defaults where it does not."""

    def __init__(self, obj: Any, name: str | None) -> None:
        self.obj = obj
        self.name = name or str(getattr(obj, "name", "") or _snake(type(obj).__name__))

    async def verify(self, problem: Problem, candidate: Candidate) -> Verdict:
        value = self.obj.verify(problem, candidate)
        if inspect.isawaitable(value):
            value = await value
        return to_verdict(value, source=f"verifier {self.name!r}")

    def extract(self, text: str) -> str:
        own = getattr(self.obj, "extract", None)
        return str(own(text)) if callable(own) else super().extract(text)

    def canonical(self, answer: str) -> str | None:
        own = getattr(self.obj, "canonical", None)
        return own(answer) if callable(own) else super().canonical(answer)  # type: ignore[no-any-return]

    async def score_partial(self, problem: Problem, text: str) -> float | None:
        own = getattr(self.obj, "score_partial", None)
        if not callable(own):
            return None
        value = own(problem, text)
        if inspect.isawaitable(value):
            value = await value
        return None if value is None else float(value)

    def offers(self, method: str) -> bool:
        return callable(getattr(self.obj, method, None))

    def bind(self, model: ModelAccess) -> Verifier:
        own = getattr(self.obj, "bind", None)
        return _Adapted(own(model), self.name) if callable(own) else self

    def __repr__(self) -> str:
        return repr(self.obj)


def as_verifier(obj: Any, *, name: str | None = None) -> Verifier:
    """A `Verifier` as is; an object with `verify` adapted; a function wrapped; anything else
    refused with what to write instead."""
    if isinstance(obj, Verifier):
        return obj
    if isinstance(obj, type):
        raise ConfigError(f"{obj.__name__} is a class; pass an instance, {obj.__name__}()")
    if callable(getattr(obj, "verify", None)):
        return _Adapted(obj, name)
    if callable(obj):
        return FunctionVerifier(obj, name=name)
    raise ConfigError(
        f"{obj!r} is not a verifier: subclass ponder.Verifier and write "
        "`async def verify(self, problem, candidate)`, or pass a function "
        "(problem, candidate) -> Verdict | bool | float"
    )
