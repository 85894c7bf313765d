"""Replies an earlier run of a problem already paid for, handed back when a later run asks the
same: how a total budget's second pass (`ponder.runs.allocation`) continues where the first one
stopped instead of paying again for what it already knows.

A strategy asks the same calls in the same order when it runs again (the same templates, the
same problem), so the second run's first calls are answered from the first run's trace, free
of charge, and only what goes beyond it reaches the backend. A sampled reply is as good a
sample the second time as the first; a greedy one would come out the same anyway.

>>> replay = Replay(first.trace)
>>> result = await run_problem(problem, spec, config, Wiring(backend, replay=replay))
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ponder.core.types import Completion, Message, TraceEvent

Key = tuple[tuple[tuple[str, str], ...], float, tuple[str, ...]]


def _key(messages: Sequence[Message], temperature: float,
         stop: Sequence[str] | None) -> Key:
    return (tuple((m.role, m.content) for m in messages), float(temperature),
            tuple(stop or ()))


class Replay:
    """The whole (not cut short) replies of earlier calls, by request: messages, temperature and
    stop sequences. `take` hands them out in the order they were made, each once."""

    def __init__(self, events: Iterable[TraceEvent] = ()) -> None:
        self._stock: dict[Key, list[tuple[Completion, int]]] = {}
        self.replayed = 0
        for event in events:
            if event.kind != "generate" or event.error is not None or not event.messages:
                continue
            temperature = event.data.get("temperature")
            made_with = event.data.get("max_tokens")
            if not isinstance(temperature, int | float) or not isinstance(made_with, int):
                continue
            # Stop sequences are not in the trace: a call with them is never matched.
            key = _key(event.messages, temperature, event.data.get("stop"))
            for completion in event.completions:
                if completion.finish_reason == "length" or completion.truncated:
                    continue  # cut short by its max_tokens: a later call may allow more
                self._stock.setdefault(key, []).append((completion, made_with))

    def __len__(self) -> int:
        return sum(len(stock) for stock in self._stock.values())

    def take(self, messages: Sequence[Message], *, n: int, max_tokens: int,
             temperature: float, stop: Sequence[str] | None = None,
             confidence: bool = False) -> list[Completion]:
        """Up to `n` earlier replies to this request, each one that fits in `max_tokens` (and
        has its confidence, when `confidence` asks for it); [] when none is left."""
        stock = self._stock.get(_key(messages, temperature, stop))
        out: list[Completion] = []
        while stock and len(out) < n:
            completion, made_with = stock.pop(0)
            fits = made_with <= max_tokens or completion.usage.completion_tokens <= max_tokens
            if fits and (completion.confidence is not None or not confidence):
                out.append(completion)
        self.replayed += len(out)
        return out
