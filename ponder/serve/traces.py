"""The traces `GET /v1/traces/{id}` serves: the last requests' results with their every trace
event, kept in memory within a count and a byte budget."""

from __future__ import annotations

import json
import logging
from collections import OrderedDict

from ponder.core.errors import ConfigError
from ponder.core.types import Result
from ponder.serve.openai_wire import DEFAULT_MAX_TRACE_BYTES

log = logging.getLogger(__name__)

DEFAULT_MAX_TRACES = 1000
# The reply's header naming its trace; the trace id is also the problem's id, so that every
# trace event carries it.
TRACE_HEADER = "x-ponder-trace-id"


class TraceStore:
    """Recent requests' traces by trace id, each kept as the JSON `GET /v1/traces/{id}` sends
    (so what is counted is what is held): at most `capacity` of them and `max_bytes` in all.
    The oldest read or written goes first; a trace over `max_bytes` on its own is not kept."""

    def __init__(self, capacity: int, max_bytes: int = DEFAULT_MAX_TRACE_BYTES) -> None:
        if capacity < 1:
            raise ConfigError(f"max_traces must be at least 1, got {capacity}")
        if max_bytes < 1:
            raise ConfigError(f"max_trace_bytes must be at least 1, got {max_bytes}")
        self.capacity = capacity
        self.max_bytes = max_bytes
        self.bytes = 0
        self._items: OrderedDict[str, bytes] = OrderedDict()

    def add(self, trace_id: str, model: str, result: Result) -> bool:
        """Keep `result`'s trace, making room; False when it alone is over `max_bytes`."""
        body = trace_json(trace_id, model, result)
        self._drop(trace_id)
        if len(body) > self.max_bytes:
            log.warning("trace %s not kept: %s bytes of JSON, over the %s the server keeps",
                        trace_id, f"{len(body):,}", f"{self.max_bytes:,}")
            return False
        self._items[trace_id] = body
        self.bytes += len(body)
        while len(self._items) > self.capacity or self.bytes > self.max_bytes:
            self._drop(next(iter(self._items)))
        return True

    def get(self, trace_id: str) -> bytes | None:
        """The trace's JSON body, or None when it is not (or no longer) kept."""
        body = self._items.get(trace_id)
        if body is not None:
            self._items.move_to_end(trace_id)
        return body

    def _drop(self, trace_id: str) -> None:
        body = self._items.pop(trace_id, None)
        if body is not None:
            self.bytes -= len(body)

    def __len__(self) -> int:
        return len(self._items)


def trace_json(trace_id: str, model: str, result: Result) -> bytes:
    """`GET /v1/traces/{id}`'s body: the result and its every trace event."""
    return json.dumps({
        "id": trace_id, "object": "ponder.trace", "model": model,
        **result.model_dump(mode="json", exclude={"id", "trace", "problem_hash"}),
        "events": [event.model_dump(mode="json") for event in result.trace],
    }).encode()
