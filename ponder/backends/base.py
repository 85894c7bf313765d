"""`Backend`, the base class of every model server, engine or script ponder calls."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Self

from ponder.core.types import Completion, Message, Usage


class Backend(ABC):
    """Generates completions for chat messages. Subclass it and write `generate`; the rest
    has defaults that are right for a simple backend:

    >>> class Echo(ponder.Backend):
    ...     name = "echo"
    ...     async def generate(self, messages, *, n=1, max_tokens, temperature=0.0,
    ...                        stop=None, seed=None):
    ...         text = messages[-1].content
    ...         return [Completion(text=text, usage=Usage(completion_tokens=len(text) // 4))
    ...                 for _ in range(n)]

    `generate` returns at most `n` completions; each carries its text, finish reason and usage,
    and the usages add up to what the call cost. A backend may return fewer than `n` (the caller
    decides whether to ask again) but never charges the prompt more than `prompt_copies(n)`
    times, which is what the budget reserves for.
    """

    name: str = "backend"

    @abstractmethod
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
        """How many times a call for `n` samples may charge the prompt. The default, `n`, is
        right for a backend that makes one request per sample; one that samples `n` from a
        single prompt returns 1."""
        return n

    async def count_prompt_tokens(self, messages: Sequence[Message]) -> int | None:
        """The exact prompt token count where the backend can tell, else None (the budget
        then reserves a safe upper bound)."""
        return None

    async def start(self) -> None:
        """Get ready before the first call (load a model, open a pool). A session calls it
        once, so that loading is not counted as the first problem's time; `generate` must
        still work without it."""
        return None

    async def aclose(self) -> None:
        """Release what the backend holds. Called once by whoever made the backend."""
        return None

    @property
    def label(self) -> str:
        """The model, as a benchmark's table names it."""
        return self.name

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        traceback: TracebackType | None) -> None:
        await self.aclose()


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
