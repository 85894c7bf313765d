"""Every backend call and verification, recorded as a `TraceEvent`; trace files written and
read back."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from pydantic import ValidationError

from ponder.core.appending import FileId, is_own_file, open_append, write_error, write_whole
from ponder.core.errors import OutputError, PonderError
from ponder.core.types import TraceEvent

TraceSink = Callable[[TraceEvent], None]

START_STEP = "problem/start"  # the trace note that opens each attempt at a problem


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
    """A sink that appends each event as one JSON line, written at once.

    An event that cannot be written (a full disk) is an `OutputError`, raised by that call and
    every later one (`check` raises it too): a trace with an event missing from its middle
    would tell another story than the run's. The file then ends with the last whole event.

    >>> with JsonlTraceWriter("trace.jsonl") as sink:  # doctest: +SKIP
    ...     ponder.solve("2+2?", trace=sink)
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._fd: int | None = None
        self._made: FileId | None = None  # the file it made, if it made one
        self.failure: OutputError | None = None

    def __call__(self, event: TraceEvent) -> None:
        self.check()
        data = (event.model_dump_json() + "\n").encode("utf-8")
        try:
            if self._fd is None:
                self._fd, self._made = open_append(self.path)
            write_whole(self._fd, data)
        except OSError as exc:
            self.failure = write_error(self.path, exc)
            raise self.failure from exc

    def check(self) -> None:
        """Raise the `OutputError` that stopped this trace, if one did."""
        if self.failure is not None:
            raise self.failure

    def discard(self) -> bool:
        """Remove the file, once closed, when this writer made it; a file it did not make
        stays. For a run that stopped before any of its rows was written, whose events then
        belong to no row."""
        if self._fd is not None or not is_own_file(self.path, self._made):
            return False
        self.path.unlink()
        return True

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> JsonlTraceWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_trace_jsonl(events: Iterable[TraceEvent], path: str | Path) -> None:
    with JsonlTraceWriter(path) as sink:
        for event in events:
            sink(event)


def read_trace_jsonl(path: str | Path, problem_id: str | None = None) -> list[TraceEvent]:
    """The events in a trace file, in the order written; only `problem_id`'s when it is given.
    A torn last line (a killed run's) is skipped; a bad line elsewhere is an error naming it."""
    path = Path(path)
    # A run's trace may be large: lines that cannot be this problem's are not parsed.
    needle = None if problem_id is None else f'"problem_id":{json.dumps(problem_id)}'
    events: list[TraceEvent] = []
    with path.open(encoding="utf-8") as file:
        for number, line in enumerate(file, start=1):
            # A line without its newline is one the writer died in (see
            # ponder.runs.torn_tail.drop_torn_tail).
            if not line.endswith("\n") or not line.strip():
                continue
            if needle is not None and needle not in line.replace(" ", ""):
                continue
            try:
                event = TraceEvent.model_validate_json(line)
            except ValidationError as exc:
                raise PonderError(f"{path}:{number}: not a trace event: "
                                  f"{exc.errors()[0]['msg']}") from None
            if problem_id is None or event.problem_id == problem_id:
                events.append(event)
    return events


def last_attempt(events: Sequence[TraceEvent]) -> list[TraceEvent]:
    """The events since the last start of this problem: a resumed run may have begun it before
    being stopped, and only the attempt that wrote the result counts."""
    starts = [i for i, e in enumerate(events) if e.kind == "note" and e.step == START_STEP]
    return list(events[starts[-1]:] if starts else events)
