"""A run that the server refuses for good stops early. When a model name is wrong (404) or a
key is not taken (401, 403), every problem fails the same way and no retry can help: writing
one identical error row per problem only takes longer to say so. Once the first problems to
finish (`FIRST_FEW`, or all of a smaller run) all failed with the same refusal and none
succeeded, a run starts no more problems, lets those in flight finish (as a first Ctrl-C
does: their rows stay), and raises `BackendRefused`. Problems never started have no row, so
a resumed run picks them up; `retry_errors` solves the refused ones again.

`RefusalWatch` is the rule; `solve_many.solve_each` applies it to every run on this event loop.
"""

from __future__ import annotations

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
    `refusal`: the server's message, credentials masked); `failed` is how many."""

    def __init__(self, status: int, refusal: str, failed: int) -> None:
        self.status, self.refusal, self.failed = status, refusal, failed
        problems = "problem" if failed == 1 else f"{failed} problems"
        super().__init__(f"the backend refuses every call: {refusal} (the first {problems} "
                         "failed alike, so no more were started)")


class RefusalWatch:
    """The rule for one run of `problems` problems. Each problem started while the rule is
    undecided is solved through `notes(backend)`, and every finished one is passed to
    `finished`; `refused` is set once the run must stop."""

    def __init__(self, problems: int) -> None:
        self.needed = min(FIRST_FEW, problems)
        self.alike: list[BackendError] = []
        self.decided = self.needed == 0
        self.refused: BackendRefused | None = None

    def notes(self, backend: Backend) -> NotingBackend | None:
        """What the next problem calls instead of `backend`; None once the rule is decided
        (the rest of the run pays nothing for it)."""
        return None if self.decided else NotingBackend(backend)

    def finished(self, result: Result, notes: NotingBackend | None) -> None:
        if self.decided or notes is None:
            return
        refusals = [f for f in notes.failures if f.status in REFUSALS]
        refusal = refusals[-1] if refusals and result.error is not None else None
        if refusal is None or (self.alike and _same(refusal) != _same(self.alike[0])):
            self.decided = True  # a problem went otherwise: the backend is not refusing all
            return
        self.alike.append(refusal)
        if len(self.alike) == self.needed:
            self.decided = True
            assert refusal.status is not None  # one of REFUSALS
            self.refused = BackendRefused(refusal.status, redact_secrets(str(refusal)),
                                          len(self.alike))


def _same(refusal: BackendError) -> tuple[int | None, str]:
    return refusal.status, str(refusal)
