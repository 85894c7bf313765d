"""Every backend call and verification, recorded as a `TraceEvent`."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO

from ponder.types import TraceEvent

TraceSink = Callable[[TraceEvent], None]


class Trace:
    """The events of one problem, in order; each is also passed to `sink` as it happens."""

    def __init__(self, problem_id: str, sink: TraceSink | None = None) -> None:
        self.problem_id = problem_id
        self.events: list[TraceEvent] = []
        self._sink = sink

    def add(self, event: TraceEvent) -> TraceEvent:
        event.problem_id = self.problem_id
        self.events.append(event)
        if self._sink is not None:
            self._sink(event)
        return event


class JsonlTraceWriter:
    """A sink that appends each event as one JSON line, flushed at once.

    >>> with JsonlTraceWriter("trace.jsonl") as sink:  # doctest: +SKIP
    ...     ponder.solve("2+2?", trace=sink)
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._file: IO[str] | None = None

    def __call__(self, event: TraceEvent) -> None:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("a", encoding="utf-8")
        self._file.write(event.model_dump_json() + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> JsonlTraceWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_trace_jsonl(events: Iterable[TraceEvent], path: str | Path) -> None:
    with JsonlTraceWriter(path) as sink:
        for event in events:
            sink(event)


def read_trace_jsonl(path: str | Path) -> list[TraceEvent]:
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [TraceEvent.model_validate_json(line) for line in lines if line.strip()]
