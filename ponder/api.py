"""`ponder.solve` and friends: shells over a `Session`, as `httpx.get` is over a `Client`.

The async ones make a session for the call and close what it made. The sync ones run on the
process's event loop (`ponder.portal`); with no backend given they share one default session
per embedded model, so the model loads once per process, not once per call.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

from ponder.backends.base import Backend
from ponder.core.types import Candidate, Result, Verdict
from ponder.portal import SyncPortal, default_portal
from ponder.session import (
    BackendLike,
    ProblemLike,
    Session,
    verify_without_model,
)
from ponder.verifiers.registry import VerifierLike

PathLike = str | os.PathLike[str]


async def asolve(problem: ProblemLike, *, backend: BackendLike = None,
                 model_path: PathLike | None = None, local_model: str | None = None,
                 **kwargs: Any) -> Result:
    """Solve one problem: `Session.asolve`'s arguments (`strategy`, `effort`, `verifier`,
    `budget`, `seed`, `trace`, and the strategy's params) on a session of `backend`.

    >>> result = await ponder.asolve("What is 17 * 23?", strategy="best_of_n", n=5)
    >>> result.answer, result.usage.total_tokens
    """
    session = _session(backend, model_path, local_model)
    try:  # not `async with`: the arguments are checked before the backend starts
        return await session.asolve(problem, **kwargs)
    finally:
        await session.aclose()


async def asolve_many(problems: Iterable[ProblemLike], *, backend: BackendLike = None,
                      model_path: PathLike | None = None, local_model: str | None = None,
                      **kwargs: Any) -> list[Result]:
    """Solve many problems: `Session.asolve_many`'s arguments (`concurrency`, `budget` for
    each problem, `total_budget` for the whole run, …) on a session of `backend`.

    >>> rows = await ponder.asolve_many(problems, strategy="auto", backend=url,
    ...                                 total_budget=ponder.Budget(tokens=100_000))
    >>> sum(r.usage.total_tokens for r in rows) <= 100_000
    True
    """
    session = _session(backend, model_path, local_model)
    try:
        return await session.asolve_many(problems, **kwargs)
    finally:
        await session.aclose()


async def averify(problem: ProblemLike, candidate: str | Candidate,
                  verifier: VerifierLike | None = None, *, backend: BackendLike = None,
                  **kwargs: Any) -> Verdict:
    """Judge `candidate` (a reply's text, or a Candidate) on `problem` with `verifier`: a
    name, spec, Verifier or function; by default the one the problem's fields call for. A
    `backend` is only needed by verifiers that call a model (`llm_judge`), bounded by
    `budget=`.
    """
    if backend is None:
        return await verify_without_model(problem, candidate, verifier)
    session = Session(backend)
    try:
        return await session.averify(problem, candidate, verifier, **kwargs)
    finally:
        await session.aclose()


def solve(problem: ProblemLike, **kwargs: Any) -> Result:
    """`asolve` for plain scripts (not inside a running event loop).

    >>> ponder.solve("Tom has 3 apples and buys 5 more. How many apples does Tom have now?").answer
    '8'
    """
    return DefaultSessions(default_portal()).solve(problem, **kwargs)


def solve_many(problems: Iterable[ProblemLike], **kwargs: Any) -> list[Result]:
    """`asolve_many` for plain scripts (not inside a running event loop).

    >>> rows = ponder.solve_many(["What is 2 + 3?", "What is 4 * 4?"], strategy="auto",
    ...                          total_budget=ponder.Budget(tokens=6000))
    """
    return DefaultSessions(default_portal()).solve_many(problems, **kwargs)


def verify(problem: ProblemLike, candidate: str | Candidate, verifier: VerifierLike | None = None,
           **kwargs: Any) -> Verdict:
    """`averify` for plain scripts (not inside a running event loop).

    >>> ponder.verify("What is 6 * 7?", "6 * 7 = 42", verifier=lambda p, c: c.answer == "42")
    Verdict(passed=True, score=1.0, ...)
    """
    return DefaultSessions(default_portal()).verify(problem, candidate, verifier, **kwargs)


class DefaultSessions:
    """The sync shells on `portal`: a call with no backend runs on the portal's default
    session for its embedded model (made by `make_backend` on first use, closed with the
    portal); any other runs on a session of its own."""

    def __init__(self, portal: SyncPortal,
                 make_backend: Callable[..., Backend] | None = None) -> None:
        self.portal = portal
        self.make_backend = make_backend

    def solve(self, problem: ProblemLike, **kwargs: Any) -> Result:
        async def call() -> Result:
            if kwargs.get("backend") is not None:
                return await asolve(problem, **kwargs)
            return await (await self._default_for(kwargs)).asolve(problem, **kwargs)

        return self.portal.run(call, name="solve")

    def solve_many(self, problems: Iterable[ProblemLike], **kwargs: Any) -> list[Result]:
        async def call() -> list[Result]:
            if kwargs.get("backend") is not None:
                return await asolve_many(problems, **kwargs)
            return await (await self._default_for(kwargs)).asolve_many(problems, **kwargs)

        return self.portal.run(call, name="solve_many")

    def verify(self, problem: ProblemLike, candidate: str | Candidate,
               verifier: VerifierLike | None = None, **kwargs: Any) -> Verdict:
        return self.portal.run(lambda: averify(problem, candidate, verifier, **kwargs),
                               name="verify")

    async def _default_for(self, kwargs: dict[str, Any]) -> Session:
        """The portal's default session for the embedded model a call's `kwargs` name,
        taking those options out of them."""
        kwargs.pop("backend", None)
        model_path = kwargs.pop("model_path", None)
        key = _default_key(model_path, kwargs.pop("local_model", None))
        return await self.portal.shared(key, lambda: self._default(model_path, key[1] or None))

    def _default(self, model_path: PathLike | None, local_model: str | None) -> Session:
        if self.make_backend is None:
            return Session(None, model_path=model_path, local_model=local_model,
                           portal=self.portal)
        options = {} if local_model is None else {"local_model": local_model}
        return Session(self.make_backend(model_path, **options), portal=self.portal,
                       close_backend=True)


def _session(backend: BackendLike, model_path: PathLike | None,
             local_model: str | None) -> Session:
    """A session for one call, with the call's run settings left to the call itself."""
    return Session(backend, model_path=model_path, local_model=local_model)


def _default_key(model_path: PathLike | None, local_model: str | None) -> tuple[str, str]:
    """One default session per embedded model, whichever of its names the call used."""
    if local_model is not None:
        from ponder.backends.local import DEFAULT_MODEL, embedded_model

        local_model = embedded_model(local_model).name
        local_model = None if local_model == DEFAULT_MODEL else local_model
    return ("" if model_path is None else str(model_path), local_model or "")
