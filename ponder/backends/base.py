"""The `Backend` protocol every model server, engine or script implements."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, replace
from typing import Protocol, runtime_checkable

from ponder.core.types import Completion, Message, Usage


@runtime_checkable
class Backend(Protocol):
    """Generates completions for chat messages.

    `generate` returns at most `n` completions; each carries its text, finish reason and usage,
    and the usages add up to what the call cost. A backend may return fewer than `n` (the caller
    decides whether to ask again) but never charges the prompt more than `prompt_copies(n)`
    times, which is what the budget reserves for.
    """

    name: str

    async def generate(
        self,
        messages: Sequence[Message],
        *,
        n: int = 1,
        max_tokens: int,
        temperature: float = 0.0,
        stop: Sequence[str] | None = None,
        seed: int | None = None,
    ) -> list[Completion]: ...

    def prompt_copies(self, n: int) -> int:
        """How many times a call for `n` samples may charge the prompt (1 when `n` is native)."""
        ...

    async def count_prompt_tokens(self, messages: Sequence[Message]) -> int | None:
        """The exact prompt token count where the backend can tell, else None."""
        ...

    async def aclose(self) -> None: ...


# Below this temperature sampling is greedy: every sample would be the same reply.
GREEDY_TEMPERATURE = 1e-5


def greedy_copies(completion: Completion, n: int) -> list[Completion]:
    """`n` greedy samples from the one reply a backend generated: the first carries its usage,
    the copies cost nothing. (vLLM refuses n > 1 at temperature 0; any server would only
    repeat itself.)"""
    free = Usage(estimated=completion.usage.estimated)
    return [completion, *(completion.model_copy(update={"usage": free}) for _ in range(n - 1))]


@dataclass(frozen=True)
class CallLabel:
    """What a model call is for: the template that rendered it and the strategy's step."""

    template: str | None
    step: str
    # The strategy will choose among these samples by their token log-probabilities. Only then
    # do backends ask the server for them: top-k log-probs slow llama.cpp's decoding (~15% at 4
    # streams) and multiply the reply's size, so a call that will not use them should not pay.
    confidence: bool = False


# Set by `Context` around each backend call. A context variable, not a `generate` argument, so
# that the Backend protocol (which users implement) stays free of ponder's bookkeeping; it is
# task-local, so concurrent calls each see their own. Scripted test backends read it to reply
# by step; real backends ignore it.
CURRENT_CALL: ContextVar[CallLabel | None] = ContextVar("ponder_current_call", default=None)


def confidence_asked() -> bool:
    """Whether the call being made wants its completions' `Confidence` (see `CallLabel`)."""
    label = CURRENT_CALL.get()
    return label is not None and label.confidence


@contextmanager
def asking_confidence() -> Iterator[None]:
    """Backend calls made in this block ask for token log-probabilities, as a strategy's
    `ctx.generate(..., confidence=True)` does: for code that calls a backend directly.

    >>> with asking_confidence():
    ...     [reply] = await backend.generate(messages, max_tokens=100)  # doctest: +SKIP
    """
    label = CURRENT_CALL.get() or CallLabel(template=None, step="generate")
    token = CURRENT_CALL.set(replace(label, confidence=True))
    try:
        yield
    finally:
        CURRENT_CALL.reset(token)
