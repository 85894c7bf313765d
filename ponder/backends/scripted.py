"""A deterministic backend for tests and documentation: replies come from a script."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

from ponder.backends.base import CURRENT_CALL, Backend
from ponder.core.tokens import prompt_upper_bound
from ponder.core.types import Completion, Confidence, Message, Usage

Reply = str | Callable[[Sequence[Message]], str]
Script = str | Sequence[str] | Callable[[Sequence[Message]], str]
# What a scripted reply's confidence is: one summary for all, or a function of the reply text.
ScriptedConfidence = Confidence | Callable[[str], Confidence | None]


class ScriptedBackend(Backend):
    """Replies in order from `replies` (strings, or functions of the messages), cycling at the end.

    Usage is counted one token per whitespace-separated word, and the prompt is charged at
    the same upper bound the budget uses, so tests can reason about budgets exactly. Replies
    longer than `max_tokens` words are cut and finish with `length`, like a real server.

    `requests` records each call: its messages, `n`, `max_tokens`, `temperature`, `stop`, and
    the `template` and `step` it was made for (None outside a `Context`). `in_flight` and
    `peak_in_flight` count concurrent calls; with `latency_s > 0` calls overlap as a server's
    would. `confidence` (a `Confidence`, or a function of the reply text) stands in for the
    summary a server's log-probs would give; without it replies carry none, like a server
    that returns no log-probs.

    >>> backend = ScriptedBackend(["Final answer: 8"])
    >>> backend = ScriptedBackend(by_step(generate="Final answer: 9", feedback="NO ISSUES"))
    """

    name = "scripted"

    def __init__(
        self,
        replies: Iterable[Reply] | Reply = "Final answer: 42",
        *,
        native_n: bool = True,
        max_n: int | None = None,
        latency_s: float = 0.0,
        confidence: ScriptedConfidence | None = None,
    ) -> None:
        items = [replies] if isinstance(replies, str) or callable(replies) else list(replies)
        if not items:
            raise ValueError("ScriptedBackend needs at least one reply")
        self._replies = itertools.cycle(items)
        self.native_n = native_n
        self.max_n = max_n
        self.latency_s = latency_s
        self.confidence = confidence
        self.requests: list[dict[str, object]] = []
        self.in_flight = 0
        self.peak_in_flight = 0

    def requests_for(self, key: str) -> list[dict[str, object]]:
        """The recorded requests a `by_step` script under `key` would answer: a template's role
        ("feedback"), a full template name ("self_refine/feedback") or a step name."""
        return [r for r in self.requests
                if key in _script_keys(r["template"], r["step"])]  # type: ignore[arg-type]

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
        label = CURRENT_CALL.get()
        self.requests.append(
            {"messages": list(messages), "n": n, "max_tokens": max_tokens,
             "temperature": temperature, "stop": list(stop or []),
             "template": label.template if label else None, "step": label.step if label else None}
        )
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            if self.latency_s:
                await asyncio.sleep(self.latency_s)
            return self._complete(messages, n=n, max_tokens=max_tokens, stop=stop)
        finally:
            self.in_flight -= 1

    def _complete(self, messages: Sequence[Message], *, n: int, max_tokens: int,
                  stop: Sequence[str] | None) -> list[Completion]:
        count = n if self.native_n else 1
        if self.max_n is not None:
            count = min(count, self.max_n)
        prompt = prompt_upper_bound(messages)
        out = []
        for i in range(count):
            reply = next(self._replies)
            text = reply(messages) if callable(reply) else reply
            text, finish = apply_stop(text, stop)
            words = text.split()
            if len(words) > max_tokens:
                text, finish = " ".join(words[:max_tokens]), "length"
            usage = Usage(prompt_tokens=prompt if i == 0 else 0,
                          completion_tokens=min(len(words), max_tokens))
            out.append(Completion(text=text, finish_reason=finish, usage=usage,
                                  confidence=self._confidence(text)))
        return out

    def _confidence(self, text: str) -> Confidence | None:
        if self.confidence is None or isinstance(self.confidence, Confidence):
            return self.confidence
        return self.confidence(text)

    def prompt_copies(self, n: int) -> int:
        return 1

    async def count_prompt_tokens(self, messages: Sequence[Message]) -> int | None:
        return prompt_upper_bound(messages)

    async def aclose(self) -> None:
        return None


def by_step(scripts: Mapping[str, Script] | None = None, /,
            **by_role: Script) -> Callable[[Sequence[Message]], str]:
    """A `ScriptedBackend` reply that answers each call with the script for what it is for, so a
    test can say "the feedback says X, the rewrite says Y" whatever order concurrent calls
    arrive in.

    A call is matched by its full template name, then its step, then its template's role (the
    part after the "/"): `generate`, `answer`, `feedback`, `refine`, `judge`, `step`, `value`,
    `revise`... Names with a "/" or a space go in the mapping. A script is a string, a list
    (replied in order, then repeated) or a function of the messages. A call no script matches
    fails the test.

    >>> backend = ScriptedBackend(by_step(
    ...     {"self_refine/generate": "3 * 5 = 15. Final answer: 15"},
    ...     feedback="Tom buys more, so add.", refine=["Final answer: 8", "Final answer: 9"]))
    """
    table = {**(scripts or {}), **by_role}
    cycles: dict[str, Iterator[str]] = {}

    def reply(messages: Sequence[Message]) -> str:
        label = CURRENT_CALL.get()
        if label is None:
            raise AssertionError("by_step replies only to calls made through a Context")
        keys = _script_keys(label.template, label.step)
        key = next((k for k in keys if k in table), None)
        if key is None:
            role = keys[-1] if keys else None
            raise AssertionError(f"the test scripted no reply for role {role!r} "
                                 f"(template {label.template!r}, step {label.step!r})")
        script = table[key]
        if isinstance(script, str):
            return script
        if callable(script):
            return script(messages)
        return next(cycles.setdefault(key, itertools.cycle(script)))

    return reply


def _script_keys(template: str | None, step: str | None) -> tuple[str, ...]:
    """The names a call answers to, most specific first; the last is its role."""
    role = template.rpartition("/")[2] if template else step
    return tuple(dict.fromkeys(k for k in (template, step, role) if k))


def apply_stop(text: str, stop: Sequence[str] | None) -> tuple[str, str]:
    """Cut `text` before the first stop string it contains, as OpenAI-compatible servers do."""
    cut = min((text.find(s) for s in stop or () if s and s in text), default=-1)
    return (text[:cut], "stop") if cut >= 0 else (text, "stop")
