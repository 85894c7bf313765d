"""`NotingBackend`: a backend as one caller sees it, remembering the failures its calls met.
A run turns a failed call into a result's `error` text; a caller that must act on the failure
itself (an HTTP status to answer with, a run to stop) reads it here instead."""

from __future__ import annotations

from collections.abc import Sequence

from ponder.backends.base import Backend
from ponder.core.errors import BackendError
from ponder.core.types import Completion, Message


class NotingBackend(Backend):
    """Every call goes to `inner`; each `BackendError` a call raises is kept in `failures`,
    then raised on. It starts and closes nothing: `inner` is its maker's."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.name = inner.name
        self.failures: list[BackendError] = []

    async def generate(self, messages: Sequence[Message], *, n: int = 1, max_tokens: int,
                       temperature: float = 0.0, stop: Sequence[str] | None = None,
                       seed: int | None = None) -> list[Completion]:
        try:
            return await self.inner.generate(messages, n=n, max_tokens=max_tokens,
                                             temperature=temperature, stop=stop, seed=seed)
        except BackendError as exc:
            self.failures.append(exc)
            raise

    def prompt_copies(self, n: int) -> int:
        return self.inner.prompt_copies(n)

    async def count_prompt_tokens(self, messages: Sequence[Message]) -> int | None:
        return await self.inner.count_prompt_tokens(messages)

    @property
    def label(self) -> str:
        return self.inner.label
