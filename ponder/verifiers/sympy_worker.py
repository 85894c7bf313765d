"""Sympy checks in worker processes that a wall-clock limit can kill.

Sympy can hang on a hostile or unlucky answer (`9^{9^{9^{9}}}` never finishes), and a thread
cannot be stopped, nor `signal.alarm` used outside the main thread. So equivalence checks run
in long-lived worker processes, reused across checks, and a check that outlives its limit
gets its worker SIGKILLed; the next check starts a fresh one.

This file is also the worker's program. It is run by path with `python -P`, so its top level
imports the standard library only (importing `ponder` would cost a second per start) and
`ponder/verifiers/math.py` can never shadow the standard `math` module.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import json
import logging
import os
import queue
import re
import select
import signal
import subprocess
import sys
import threading
import time
from typing import Any

STARTUP_TIMEOUT_S = 120.0  # importing sympy and math-verify on a loaded 2-core machine
_MAX_REPLY = 1 << 20


class WorkerTimeout(Exception):
    """A check ran past its wall-clock limit; its worker was killed."""


class WorkerError(Exception):
    """A worker died or could not start."""


class _Worker:
    """One worker process, spoken to in JSON lines over its stdin and stdout."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-P", os.path.abspath(__file__)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            # Its own session: a Ctrl-C meant for the user's script must not kill it mid-check.
            start_new_session=True,
        )
        self._buffer = b""
        hello = self._read(STARTUP_TIMEOUT_S)
        if hello.get("ready") is not True:
            self.kill()
            raise WorkerError(f"the sympy worker did not start: {hello.get('error')}")

    def request(self, message: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(message).encode() + b"\n")
            self.proc.stdin.flush()
        except OSError as exc:
            self.kill()
            raise WorkerError(f"the sympy worker died ({exc})") from None
        return self._read(timeout_s)

    def _read(self, timeout_s: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout_s
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                self.kill()
                raise WorkerTimeout(f"no reply within {timeout_s:g}s")
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(fd, 65536)
            if not chunk or len(self._buffer) > _MAX_REPLY:
                code = self.kill()
                raise WorkerError(f"the sympy worker exited (code {code})")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        reply: dict[str, Any] = json.loads(line)
        return reply

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> int | None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        code = self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        return code


class SympyWorkerPool:
    """A few worker processes shared by every math check in this process.

    >>> pool = SympyWorkerPool(size=1)
    >>> pool.call({"op": "equal", "gold": "\\\\frac12", "answer": "0.5"}, timeout_s=5)["equal"]
    True
    """

    def __init__(self, size: int = 1) -> None:
        if size < 1:
            raise ValueError(f"pool size must be at least 1, got {size}")
        self.size = size
        # A slot holds a live worker, or None until one is (re)started on first use.
        self._idle: queue.SimpleQueue[_Worker | None] = queue.SimpleQueue()
        for _ in range(size):
            self._idle.put(None)
        self._all: set[_Worker] = set()
        self._lock = threading.Lock()
        self.kills = 0

    def call(self, message: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        """Send one request and wait for its reply; the clock starts once a worker is ready.
        Raises `WorkerTimeout` (the worker is killed) or `WorkerError`."""
        worker = self._idle.get()
        try:
            if worker is None or not worker.alive:
                worker = self._start()
            return worker.request(message, timeout_s)
        except WorkerTimeout:
            self.kills += 1
            raise
        finally:
            self._idle.put(worker if worker is not None and worker.alive else None)

    async def acall(self, message: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        return await asyncio.to_thread(self.call, message, timeout_s)

    def _start(self) -> _Worker:
        worker = _Worker()
        with self._lock:
            self._all = {w for w in self._all if w.alive} | {worker}
        return worker

    def close(self) -> None:
        """Kill every worker. The pool starts new ones if it is used again."""
        with self._lock:
            workers, self._all = self._all, set()
        for worker in workers:
            worker.kill()


@functools.cache
def shared_pool() -> SympyWorkerPool:
    """The process-wide pool: workers cost a second to start, so every math verifier shares
    them (a machine resource like a thread pool, not configuration)."""
    pool = SympyWorkerPool(size=max(1, min(2, os.cpu_count() or 1)))
    atexit.register(pool.close)
    return pool


# --- the worker's side --------------------------------------------------------------------


# A number math-verify's expression reader takes whole and LaTeX would not: thousands grouped
# by commas or spaces (`1 000`), or a decimal comma (`2,74`, `0,111`); in `\\boxed{}` the
# comma makes a set.
_SEPARATED_NUMBER = r"-?(?:[1-9]\d{0,2}(?:[ ,]\d{3})+(?:\.\d+)?|\d+,\d+)"
_LATEX_MARKS = ("$", "\\(", "\\[", "\\boxed", "\\fbox")


def _equal(gold: str, answer: str, text: str | None = None) -> dict[str, Any]:
    """math-verify's comparison: exact, numeric, symbolic, sets/tuples/intervals, equations.

    `text`, when given, is a reply in LaTeX: math-verify extracts the answer from it, as
    lighteval and open-r1 do, and `answer` (ponder's extraction) is used only if it finds none.
    """
    from math_verify import (  # type: ignore[import-untyped]
        ExprExtractionConfig,
        LatexExtractionConfig,
        parse,
        verify,
    )

    config = [LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()]

    def read(source: str) -> list[Any]:
        # Timeouts off: math-verify's own use signal.alarm; our parent's kill is the limit.
        return list(parse(source, config, parsing_timeout=None))  # type: ignore[arg-type]

    def read_answer(bare: str) -> list[Any]:
        """A bare answer (no `$`): LaTeX needs it boxed to read it at all."""
        bare = bare.strip()
        if not bare:
            return []
        if re.fullmatch(_SEPARATED_NUMBER, bare):
            return read(bare)
        return read(f"\\boxed{{{bare}}}")

    parsed_gold = (read(gold) if any(mark in gold for mark in _LATEX_MARKS) else []) \
        or read_answer(gold)
    parsed_answer = (read(text) if text else []) or read_answer(answer)
    equal = bool(parsed_gold and parsed_answer
                 and verify(parsed_gold, parsed_answer, timeout_seconds=None))
    extracted = parsed_answer[-1] if parsed_answer and isinstance(parsed_answer[-1], str) else ""
    return {"equal": equal, "gold_parsed": bool(parsed_gold),
            "answer_parsed": bool(parsed_answer), "extracted": extracted[:1000]}


def _exit_with_parent() -> None:
    parent = os.getppid()
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


def serve() -> None:
    """Answer JSON-line requests on stdin until it closes (or the parent dies)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Keep the protocol on a private copy of stdout: a stray print must not corrupt it.
    channel = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    logging.basicConfig(level=logging.ERROR)
    threading.Thread(target=_exit_with_parent, daemon=True).start()
    try:
        import math_verify  # type: ignore[import-untyped]  # noqa: F401  # pay it before ready
    except ImportError as exc:
        channel.write(json.dumps({"ready": False, "error": f"{exc}; pip install math-verify"})
                      + "\n")
        return
    channel.write(json.dumps({"ready": True}) + "\n")
    for line in sys.stdin:
        request = json.loads(line)
        try:
            if request.get("op") == "equal":
                text = request.get("text")
                reply = _equal(str(request["gold"]), str(request["answer"]),
                               None if text is None else str(text))
            else:
                reply = {"error": f"unknown op {request.get('op')!r}"}
        except Exception as exc:  # a parse bug in sympy must not end the worker
            # Only the type: str() of an exception holding a huge expression can hang too.
            reply = {"equal": False, "error": type(exc).__name__}
        channel.write(json.dumps(reply) + "\n")


if __name__ == "__main__":
    serve()
