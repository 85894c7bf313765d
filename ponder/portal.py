"""An event loop of its own for plain (sync) calls: `ponder.solve`, `Session.solve` and the rest.

Every sync call runs on one event loop that lives in a thread of its own for the life of the
process (a "portal"). Why not `asyncio.run` per call: a backend's HTTP client binds to the loop
it first ran on, so a fresh loop per call broke the second `solve` with a shared backend, and
the embedded model had to start again every time. As httpx's sync client owns its transport,
the portal owns its loop, and what the sync calls share (the default sessions, each with its
embedded model) lives on it: made on first use, closed when the process exits. Calls from
several threads at once share the loop and run concurrently on it.
"""

from __future__ import annotations

import asyncio
import atexit
import threading
from collections.abc import Awaitable, Callable, Coroutine, Hashable
from concurrent.futures import Future
from typing import Any, Protocol, TypeVar

from ponder.core.errors import ConfigError

T = TypeVar("T")
CLOSE_TIMEOUT_S = 30.0


class Closable(Protocol):
    def aclose(self) -> Awaitable[None]: ...


C = TypeVar("C", bound=Closable)


class SyncPortal:
    """An event loop in a daemon thread, the sync calls that run on it, and the objects those
    calls share (`shared`), closed with the portal."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._shared: dict[Hashable, Closable] = {}
        self._shared_lock: asyncio.Lock | None = None

    def run(self, make: Callable[[], Coroutine[Any, Any, T]], *, name: str = "solve",
            owner: str = "ponder") -> T:
        """Run the coroutine `make()` returns on the portal's loop and wait for its result.
        Refused inside a running event loop, whose thread it would block; the refusal names
        the call (`owner.name`) and its async twin (`owner.aname`)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise ConfigError(f"{owner}.{name}() was called inside a running event loop; "
                              f"use `await {owner}.a{name}(...)` there")
        future: Future[T] = asyncio.run_coroutine_threadsafe(make(), self._started_loop())
        try:
            return future.result()
        except BaseException:
            future.cancel()  # Ctrl-C in the caller stops the work on the loop too
            raise

    async def shared(self, key: Hashable, make: Callable[[], C]) -> C:
        """The object kept under `key`, made by `make()` on first use; closed (`aclose`) with
        the portal. Runs on the portal's loop."""
        if self._shared_lock is None:
            self._shared_lock = asyncio.Lock()
        async with self._shared_lock:
            if key not in self._shared:
                self._shared[key] = make()
            found = self._shared[key]
        return found  # type: ignore[return-value]  # `make` for a key is always the same

    def close(self) -> None:
        """Close the shared objects and stop the loop; the next call starts them again."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        shared, self._shared, self._shared_lock = list(self._shared.values()), {}, None

        async def close_all() -> None:
            await asyncio.gather(*(item.aclose() for item in shared), return_exceptions=True)

        try:
            asyncio.run_coroutine_threadsafe(close_all(), loop).result(CLOSE_TIMEOUT_S)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(CLOSE_TIMEOUT_S)
            loop.close()

    def _started_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="ponder-sync",
                                          daemon=True)
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop


_portal: SyncPortal | None = None
_portal_lock = threading.Lock()


def default_portal() -> SyncPortal:
    """The process's portal, made on first use and closed at exit. The one piece of process
    state in ponder besides the registries: a default model that starts once per process is
    the point of it."""
    global _portal
    with _portal_lock:
        if _portal is None:
            _portal = SyncPortal()
            atexit.register(_portal.close)
        return _portal
