"""A deterministic backend for tests and documentation: replies come from a script."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Iterable, Sequence

from ponder.tokens import prompt_upper_bound
from ponder.types import Completion, Message, Usage

Reply = str | Callable[[Sequence[Message]], str]


class ScriptedBackend:
    """Replies in order from `replies` (strings, or functions of the messages), cycling at the end.

    Usage is counted one token per whitespace-separated word, and the prompt is charged at
    the same upper bound the budget uses, so tests can reason about budgets exactly. Replies
    longer than `max_tokens` words are cut and finish with `length`, like a real server.

    >>> backend = ScriptedBackend(["Final answer: 8"])
    """

    name = "scripted"

    def __init__(
        self,
        replies: Iterable[Reply] | Reply = "Final answer: 42",
        *,
        native_n: bool = True,
        max_n: int | None = None,
        latency_s: float = 0.0,
    ) -> None:
        items = [replies] if isinstance(replies, str) or callable(replies) else list(replies)
        if not items:
            raise ValueError("ScriptedBackend needs at least one reply")
        self._replies = itertools.cycle(items)
        self.native_n = native_n
        self.max_n = max_n
        self.latency_s = latency_s
        self.requests: list[dict[str, object]] = []

    async def generate(
        self,
        messages: Sequence[Message],
        *,
        n: int = 1,
        max_tokens: int,
        temperature: float = 0.0,
        stop: Sequence[str] | None = None,
        seed: int | None = None,
    ) -> list[Completion]:
        self.requests.append(
            {"messages": list(messages), "n": n, "max_tokens": max_tokens,
             "temperature": temperature, "stop": list(stop or [])}
        )
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        count = n if self.native_n else 1
        if self.max_n is not None:
            count = min(count, self.max_n)
        prompt = prompt_upper_bound(messages)
        out = []
        for i in range(count):
            reply = next(self._replies)
            text = reply(messages) if callable(reply) else reply
            text, finish = _apply_stop(text, stop)
            words = text.split()
            if len(words) > max_tokens:
                text, finish = " ".join(words[:max_tokens]), "length"
            usage = Usage(prompt_tokens=prompt if i == 0 else 0,
                          completion_tokens=min(len(words), max_tokens))
            out.append(Completion(text=text, finish_reason=finish, usage=usage))
        return out

    def prompt_copies(self, n: int) -> int:
        return 1

    async def count_prompt_tokens(self, messages: Sequence[Message]) -> int | None:
        return prompt_upper_bound(messages)

    async def aclose(self) -> None:
        return None


def _apply_stop(text: str, stop: Sequence[str] | None) -> tuple[str, str]:
    cut = min((text.find(s) for s in stop or () if s and s in text), default=-1)
    return (text[:cut], "stop") if cut >= 0 else (text, "stop")
