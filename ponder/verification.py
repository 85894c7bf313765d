"""`ponder.verify` and `ponder.averify`: judge one answer without running a strategy.

>>> ponder.verify({"problem": "1/2 as a decimal?", "answer": "0.5"}, "So it is \\\\boxed{1/2}.")
Verdict(passed=True, score=1.0, ...)
"""

from __future__ import annotations

import asyncio
from typing import Any

from ponder.api import BackendLike, ProblemLike, VerifierLike, as_problem, default_verifier
from ponder.budget import Budget
from ponder.context import Context
from ponder.errors import ConfigError
from ponder.prompts import PromptLibrary
from ponder.tracing import Trace
from ponder.types import Candidate, Problem, Verdict
from ponder.verifiers import get_verifier
from ponder.verifiers.base import Verifier, extract_with, run_verifier


async def averify(
    problem: ProblemLike,
    candidate: str | Candidate,
    verifier: VerifierLike = None,
    *,
    backend: BackendLike = None,
    budget: Budget | None = None,
) -> Verdict:
    """Judge `candidate` (a reply's text, or a Candidate) on `problem` (a Problem, dict or
    problem text) with `verifier`: a name, spec, Verifier or function; by default the one the
    problem's fields call for (`math` for an answer, `unit_tests` for tests).

    A `backend` (object, or base URL) is only needed by verifiers that call a model, such as
    `llm_judge`; their calls are then bounded by `budget`.
    """
    prob = as_problem(problem)
    judge = _resolve(verifier, prob)
    cand = candidate if isinstance(candidate, Candidate) else Candidate(
        text=candidate, answer=extract_with(judge, candidate))
    if backend is None:
        return await run_verifier(judge, prob, cand)
    from ponder.api import resolve_backend

    client, owned = resolve_backend(backend)
    try:
        ctx = Context(prob, backend=client, meter=(budget or Budget()).start(),
                      trace=Trace(prob.id), prompts=PromptLibrary(), verifier=judge)
        return await run_verifier(judge, prob, cand, ctx)
    finally:
        if owned:
            await client.aclose()


def verify(
    problem: ProblemLike,
    candidate: str | Candidate,
    verifier: VerifierLike = None,
    **kwargs: Any,
) -> Verdict:
    """`averify` for plain scripts (not for use inside a running event loop).

    >>> ponder.verify("What is 6 * 7?", "6 * 7 = 42", verifier=lambda p, c: c.answer == "42")
    Verdict(passed=True, score=1.0, ...)
    """
    return asyncio.run(averify(problem, candidate, verifier, **kwargs))


def _resolve(verifier: VerifierLike, problem: Problem) -> Verifier:
    spec = verifier if verifier is not None else default_verifier(problem)
    if spec is None:
        raise ConfigError(f"no verifier for problem {problem.id!r}: it has no answer or tests; "
                          "pass verifier= (a name such as 'math', a spec or a function)")
    return get_verifier(spec)
