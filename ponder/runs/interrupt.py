"""Ctrl-C in two steps, for runs whose problems take minutes each: the first starts no more
problems and lets those in flight finish (their tokens are spent, and their rows are worth
keeping); the second stops at once, as Ctrl-C always has. Either way every finished row is in
the results file, so the same command resumes the run."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def first_interrupt_drains(drain: asyncio.Event, notice: Callable[[], None]) -> Iterator[None]:
    """While inside, a first SIGINT sets `drain` (and calls `notice`) instead of raising; the
    handler that was there before (asyncio's, which cancels the run) takes the next one. Off
    the main thread, where no signal handler can be set, SIGINT is left as it was."""
    loop = asyncio.get_running_loop()
    before = signal.getsignal(signal.SIGINT)
    restore = before if before is not None else signal.default_int_handler

    def put_back() -> None:
        if loop.remove_signal_handler(signal.SIGINT):
            signal.signal(signal.SIGINT, restore)

    def first() -> None:
        put_back()
        drain.set()
        notice()

    try:
        loop.add_signal_handler(signal.SIGINT, first)
    except (ValueError, RuntimeError, NotImplementedError):
        yield
        return
    try:
        yield
    finally:
        put_back()  # unless a first Ctrl-C already did
