"""`ponder.verify` and `ponder.averify`: judge one answer without running a strategy.

>>> ponder.verify({"problem": "1/2 as a decimal?", "answer": "0.5"}, "So it is \\\\boxed{1/2}.")
Verdict(passed=True, score=1.0, ...)
"""

from __future__ import annotations

from typing import Any

from ponder.api import BackendLike, ProblemLike, VerifierLike, as_problem, resolve_backend
from ponder.core.budget import Budget
from ponder.core.errors import ConfigError
from ponder.core.types import Candidate, Verdict
from ponder.strategies.context import Context
from ponder.verifiers import VerifierChoice
from ponder.verifiers.base import judge as judge_with


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
    judge = VerifierChoice(verifier).for_problem(prob)
    if judge is None:
        raise ConfigError(f"no verifier for problem {prob.id!r}: it has no answer or tests; "
                          "pass verifier= (a name such as 'math', a spec or a function)")
    cand = candidate if isinstance(candidate, Candidate) else Candidate(
        text=candidate, answer=judge.extract(candidate))
    if backend is None:  # no model: a verifier that needs one (llm_judge) says so
        return await judge_with(judge, prob, cand)
    client, owned = resolve_backend(backend)
    try:
        ctx = Context(prob, backend=client, budget=budget, verifier=judge)
        verdict = await ctx.verify(cand)
        assert verdict is not None  # the context has a verifier
        return verdict
    finally:
        if owned:
            await client.aclose()


def verify(
    problem: ProblemLike,
    candidate: str | Candidate,
    verifier: VerifierLike = None,
    **kwargs: Any,
) -> Verdict:
    """`averify` for plain scripts (not for use inside a running event loop); runs on the same
    process-wide loop as `ponder.solve`, so a backend passed in can be reused.

    >>> ponder.verify("What is 6 * 7?", "6 * 7 = 42", verifier=lambda p, c: c.answer == "42")
    Verdict(passed=True, score=1.0, ...)
    """
    from ponder.portal import default_portal

    return default_portal().verify(problem, candidate, verifier, **kwargs)
