"""Helpers for testing code built on ponder: a fake OpenAI-compatible server with faults."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ponder.testing.fake_server import FakeOpenAIServer


def __getattr__(name: str) -> Any:
    # Lazy, so `python -m ponder.testing.fake_server` does not find its module half-imported.
    if name == "FakeOpenAIServer":
        from ponder.testing.fake_server import FakeOpenAIServer

        return FakeOpenAIServer
    raise AttributeError(f"module 'ponder.testing' has no attribute {name!r}")


__all__ = ["FakeOpenAIServer"]
