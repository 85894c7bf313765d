"""Plain (sync) calls into ponder's async API: `ponder.solve`, `ponder.solve_many` and
`ponder.verify`.

Every sync call runs on one event loop that lives in a thread of its own for the life of the
process (a "portal"). Why not `asyncio.run` per call: a backend's HTTP client binds to the loop
it first ran on, so a fresh loop per call broke the second `solve` with a shared backend, and
the embedded model had to start again every time. As httpx's sync client owns its transport,
the portal owns its loop, and the default embedded model lives on it: started on first use,
stopped when the process exits. Calls from several threads at once share the loop and run
concurrently on it.

>>> portal = SyncPortal()
>>> portal.solve("What is 2 + 3?").answer      # the embedded model starts here, once
>>> portal.solve("What is 4 + 4?").answer      # and is reused
>>> portal.close()
"""

from __future__ import annotations

import asyncio
import atexit
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

from ponder.backends.base import Backend
from ponder.core.errors import ConfigError
from ponder.core.types import Candidate, Result, Verdict

T = TypeVar("T")
BackendFactory = Callable[..., Backend]
CLOSE_TIMEOUT_S = 30.0


def _embedded(model_path: Any = None, local_model: str | None = None) -> Backend:
    from ponder.backends.local import LocalBackend

    return LocalBackend(model_path=model_path, model=local_model)


class SyncPortal:
    """An event loop in a daemon thread, the sync calls that run on it, and the default
    backends (one per `model_path` and `local_model`) that those calls share. `make_default`
    builds a default backend from `model_path` (and `local_model=`, passed only when given);
    tests pass their own."""

    def __init__(self, make_default: BackendFactory = _embedded) -> None:
        self._make_default = make_default
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._defaults: dict[tuple[str, str], Backend] = {}
        self._defaults_lock: asyncio.Lock | None = None

    # -- the public sync API ----------------------------------------------------------------

    def solve(self, problem: Any, **kwargs: Any) -> Result:
        from ponder.api import asolve

        async def call() -> Result:
            if kwargs.get("backend") is None:
                kwargs["backend"] = await self.default_backend(
                    kwargs.pop("model_path", None), kwargs.pop("local_model", None))
            return await asolve(problem, **kwargs)

        return self.run(call, name="solve")

    def solve_many(self, problems: Any, **kwargs: Any) -> list[Result]:
        from ponder.api import asolve_many

        async def call() -> list[Result]:
            if kwargs.get("backend") is None:
                kwargs["backend"] = await self.default_backend(
                    kwargs.pop("model_path", None), kwargs.pop("local_model", None))
            return await asolve_many(problems, **kwargs)

        return self.run(call, name="solve_many")

    def verify(self, problem: Any, candidate: str | Candidate, verifier: Any = None,
               **kwargs: Any) -> Verdict:
        from ponder.verification import averify

        return self.run(lambda: averify(problem, candidate, verifier, **kwargs), name="verify")

    # -- the loop ---------------------------------------------------------------------------

    def run(self, make: Callable[[], Coroutine[Any, Any, T]], *, name: str = "this call") -> T:
        """Run the coroutine `make()` returns on the portal's loop and wait for its result.
        Refused inside a running event loop, whose thread it would block."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise ConfigError(f"ponder.{name}() was called inside a running event loop; "
                              f"use `await ponder.a{name}(...)` there")
        future: Future[T] = asyncio.run_coroutine_threadsafe(make(), self._started_loop())
        try:
            return future.result()
        except BaseException:
            future.cancel()  # Ctrl-C in the caller stops the work on the loop too
            raise

    async def default_backend(self, model_path: Any = None,
                              local_model: str | None = None) -> Backend:
        """The shared default backend for `model_path` and `local_model` (both None: the
        default embedded model), made on first use. Runs on the portal's loop."""
        if self._defaults_lock is None:
            self._defaults_lock = asyncio.Lock()
        if local_model is not None:
            from ponder.backends.local import DEFAULT_MODEL, embedded_model

            # One backend per model, whichever of its names the call used.
            local_model = embedded_model(local_model).name
            local_model = None if local_model == DEFAULT_MODEL else local_model
        key = ("" if model_path is None else str(model_path), local_model or "")
        async with self._defaults_lock:
            if key not in self._defaults:
                self._defaults[key] = (self._make_default(model_path) if local_model is None
                                       else self._make_default(model_path,
                                                               local_model=local_model))
            return self._defaults[key]

    def close(self) -> None:
        """Close the default backends and stop the loop; the next call starts them again."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        defaults, self._defaults, self._defaults_lock = list(self._defaults.values()), {}, None

        async def close_all() -> None:
            await asyncio.gather(*(b.aclose() for b in defaults), return_exceptions=True)

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
