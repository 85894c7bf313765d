"""A run that the server refuses for good stops early. When a model name is wrong (404) or a
key is not taken (401, 403), every problem fails the same way and no retry can help: writing
one identical error row per problem only takes longer to say so. The first problems to start
(`FIRST_FEW`, or all of a smaller run) are watched; once all of them failed with the same
refusal and no problem of the run has succeeded, a run starts no more problems, lets those in
flight finish (as a first Ctrl-C does: their rows stay), and raises `BackendRefused`, which
carries every row finished. Watching the first to start, not the first to finish, matters: a
refusal comes back faster than an answer, so a pool where one server refuses and another
answers would otherwise look refused. Problems never started have no row, so a resumed run
picks them up; `retry_errors` solves the refused ones again.

`RefusalWatch` is the rule; `solve_many.solve_each` applies it to a run on this event loop.
"""

from __future__ import annotations

import asyncio

from ponder.backends.base import Backend
from ponder.backends.noting import NotingBackend
from ponder.core.errors import BackendError, PonderError
from ponder.core.redact import redact_secrets
from ponder.core.types import Result

# Statuses that say the request can never succeed as sent, on this server or a retry: no such
# model (or route), no valid key, no permission. A 400 is left out: it may be one problem's
# (a prompt over the context), not the run's.
REFUSALS = frozenset({401, 403, 404})
FIRST_FEW = 3  # problems that must all fail alike before a run stops


class BackendRefused(PonderError):
    """A run stopped early: its first problems all failed with the same refusal (`status`,
    `refusal`: the server's message, credentials masked); `failed` is how many. `results`
    holds every row the run finished (their files have them too)."""

    def __init__(self, status: int, refusal: str, failed: int) -> None:
        self.status, self.refusal, self.failed = status, refusal, failed
        self.results: list[Result] = []
        problems = "problem" if failed == 1 else f"{failed} problems"
        super().__init__(f"the backend refuses every call: {refusal} (the first {problems} "
                         "failed alike, so no more were started)")


class RefusalWatch:
    """The rule for one run of `problems` problems. The first problems to start are solved
    through `notes(backend)`; every finished one is passed to `finished`; `refused` is set
    once the run must stop."""

    def __init__(self, problems: int) -> None:
        self.needed = min(FIRST_FEW, problems)
        self.watched = 0  # of the first `needed` problems, how many have started
        self.alike: list[BackendError] = []
        self.decided = self.needed == 0
        self.refused: BackendRefused | None = None
        self._decision = asyncio.Event()

    async def after_failure(self) -> None:
        """Where a worker whose problem just failed waits before starting another, while the
        rule is undecided and its first problems have all started: so that a refusing
        backend costs at most one row per worker, not a row per problem started while the
        slowest of the first few was still on its way."""
        if not self.decided and self.watched >= self.needed:
            await self._decision.wait()

    def _decide(self) -> None:
        self.decided = True
        self._decision.set()

    def notes(self, backend: Backend) -> NotingBackend | None:
        """What the next problem calls instead of `backend`; None once the first few have
        started (the rest of the run pays nothing for the rule)."""
        if self.decided or self.watched >= self.needed:
            return None
        self.watched += 1
        return NotingBackend(backend)

    def finished(self, result: Result, notes: NotingBackend | None) -> None:
        if self.decided:
            return
        if result.error is None:  # one problem answered: the backend is not refusing all
            self._decide()
            return
        if notes is None:
            return
        refusals = [f for f in notes.failures if f.status in REFUSALS]
        refusal = refusals[-1] if refusals else None
        if refusal is None or (self.alike and _same(refusal) != _same(self.alike[0])):
            self._decide()  # a problem went otherwise: the backend is not refusing all
            return
        self.alike.append(refusal)
        if len(self.alike) == self.needed:
            self._decide()
            assert refusal.status is not None  # one of REFUSALS
            self.refused = BackendRefused(refusal.status, redact_secrets(str(refusal)),
                                          len(self.alike))


def _same(refusal: BackendError) -> tuple[int | None, str]:
    return refusal.status, str(refusal)
