"""`BackendPool`: one backend over several endpoints that serve the same model.

Each call goes to the endpoint with the fewest calls in flight (ties in turn, so the choice is
deterministic). An endpoint whose call fails for the server's own reasons (unreachable, timed
out, a 5xx or 429 after the endpoint's own retries) is taken out for a back-off that doubles
with each failure in a row, up to a cap, and the call moves on to another endpoint; when every
endpoint is out, the call waits for the first to come back, up to the pool's `timeout`. An
endpoint back from its back-off takes one call at a time until one succeeds; then it is healthy
again. A failure that is the request's fault (a 400, say) would fail anywhere: it is raised at
once and says nothing about the endpoint.

Usage stays exact: a call's completions are the answering endpoint's, with the usage it
reported, and a failed attempt returns no completions, so it charges nothing.

>>> pool = BackendPool([OpenAIBackend("http://gpu1:8000/v1"), OpenAIBackend("http://gpu2:8000/v1")])
>>> result = await ponder.asolve("What is 17 * 23?", backend=pool)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from ponder.backends.base import Backend
from ponder.core.errors import BackendError, ConfigError
from ponder.core.types import Completion, Message, Usage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EndpointHealth:
    """One endpoint of a pool as it stands: `out_for_s` is how long it stays out (0: it takes
    calls), `failures` its failures in a row (0: healthy), `usage` what the calls it answered
    reported."""

    name: str
    in_flight: int
    failures: int
    out_for_s: float
    answered: int
    failed: int
    usage: Usage


@dataclass
class _Endpoint:
    backend: Backend
    in_flight: int = 0
    failures: int = 0
    out_until: float = 0.0  # time.monotonic() before which it takes no call
    # When the last failure in a row was counted. An attempt begun before it tells nothing new
    # about the endpoint: a server that dies with 16 calls in flight fails once, not 16 times
    # (which would send its back-off straight to the cap).
    failed_at: float = -math.inf
    answered: int = 0
    failed: int = 0
    usage: Usage = field(default_factory=Usage)

    def takes_calls(self, now: float) -> bool:
        # On probation (back, but not yet answering again): one call at a time finds out.
        return self.out_until <= now and (self.failures == 0 or self.in_flight == 0)


class BackendPool(Backend):
    """Several backends serving the same model, used as one (see the module's docstring).

    `backoff_initial` is how long (seconds) an endpoint stays out after a failure; each further
    failure in a row doubles it, up to `backoff_max`. `timeout` bounds how long one call may
    wait for an endpoint to come back: past it, the call tries only endpoints it has not tried
    yet, and then raises its last failure. Attempts under way are never cut short: the tokens a
    server spends on them are counted.

    The members' retries come first: an endpoint counts as failed once its own backend gives
    up. Members that name their model must name the same one.

    >>> pool = BackendPool([OpenAIBackend(url, model="qwen") for url in urls], backoff_max=60)
    """

    def __init__(
        self,
        backends: Sequence[Backend],
        *,
        backoff_initial: float = 1.0,
        backoff_max: float = 30.0,
        timeout: float = 120.0,
        name: str | None = None,
    ) -> None:
        members = list(backends)
        if not members:
            raise ConfigError("BackendPool needs at least one backend")
        for member in members:
            if not isinstance(member, Backend):
                raise ConfigError(f"BackendPool member {member!r} is not a Backend")
        if len({id(m) for m in members}) < len(members):
            raise ConfigError("BackendPool lists one backend object twice; give each endpoint "
                              "its own backend")
        named_models = ((getattr(m, "model", None), m.name) for m in members)
        models = {str(model): name for model, name in named_models if model}
        if len(models) > 1:
            named = ", ".join(f"{model!r} at {where}" for model, where in models.items())
            raise ConfigError(f"BackendPool members must serve the same model; they name {named}")
        if not 0 <= backoff_initial <= backoff_max or not math.isfinite(backoff_max) \
                or not 0 < timeout < math.inf:
            raise ConfigError(f"backoff_initial={backoff_initial}, backoff_max={backoff_max}, "
                              f"timeout={timeout}: need 0 <= backoff_initial <= backoff_max "
                              f"(finite) and a finite timeout > 0")
        self.backends = members
        self.name = name or f"pool({', '.join(m.name for m in members)})"
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.timeout = timeout
        self._endpoints = [_Endpoint(m) for m in members]
        self._turn = 0  # where the search for the least busy endpoint starts, for fair ties
        # Set (and replaced) whenever a call ends: calls waiting for an endpoint look again.
        self._changed = asyncio.Event()

    # -- Backend protocol ---------------------------------------------------------------------

    def prompt_copies(self, n: int) -> int:
        # The call may land on any member, and the budget reserves before it is placed.
        return max(m.prompt_copies(n) for m in self.backends)

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
        deadline = time.monotonic() + self.timeout
        tried: set[int] = set()
        wasted = 0  # round trips of the failed attempts, reported as retries
        last: BackendError | None = None
        while True:
            now = time.monotonic()
            index = self._pick(now, exclude=tried if now >= deadline else ())
            if index is None:
                if now >= deadline:
                    raise self._gave_up(last, wasted)
                await self._wait(now, deadline)
                continue
            endpoint = self._endpoints[index]
            tried.add(index)
            started = time.monotonic()
            endpoint.in_flight += 1
            try:
                completions = await endpoint.backend.generate(
                    messages, n=n, max_tokens=max_tokens, temperature=temperature, stop=stop,
                    seed=seed)
            except BackendError as exc:
                if not exc.server_fault:
                    raise
                self._failed(endpoint, started, exc)
                wasted += exc.retries + 1
                last = exc
                continue
            except OSError as exc:  # a member that is not ponder's may let these through
                last = BackendError(f"{endpoint.backend.name}: {type(exc).__name__}: {exc}")
                self._failed(endpoint, started, last)
                wasted += 1
                continue
            finally:
                endpoint.in_flight -= 1
                self._changed.set()
                self._changed = asyncio.Event()
            self._answered(endpoint, started, completions)
            if wasted:
                completions = [c.model_copy(update={"retries": c.retries + wasted})
                               for c in completions]
            return completions

    async def count_prompt_tokens(self, messages: Sequence[Message]) -> int | None:
        """The first endpoint taking calls counts (all serve one model, so one tokenizer)."""
        now = time.monotonic()
        endpoint = next((e for e in self._endpoints if e.takes_calls(now)), self._endpoints[0])
        try:
            return await endpoint.backend.count_prompt_tokens(messages)
        except BackendError:
            return None  # only a bound is lost: the budget falls back to its own

    async def aclose(self) -> None:
        outcomes = await asyncio.gather(*(m.aclose() for m in self.backends),
                                        return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    async def start(self) -> None:
        await asyncio.gather(*(m.start() for m in self.backends))

    # -- health ---------------------------------------------------------------------------------

    def health(self) -> list[EndpointHealth]:
        """Each endpoint's state now, in the order the backends were given."""
        now = time.monotonic()
        return [EndpointHealth(name=e.backend.name, in_flight=e.in_flight, failures=e.failures,
                               out_for_s=max(0.0, e.out_until - now), answered=e.answered,
                               failed=e.failed, usage=e.usage)
                for e in self._endpoints]

    def _pick(self, now: float, *, exclude: set[int] | tuple[()]) -> int | None:
        """The endpoint with the fewest calls in flight among those taking calls; ties go to
        the first at or after the turn, which then moves past it."""
        count = len(self._endpoints)
        order = [(self._turn + k) % count for k in range(count)]
        ready = [i for i in order if i not in exclude and self._endpoints[i].takes_calls(now)]
        if not ready:
            return None
        index = min(ready, key=lambda i: self._endpoints[i].in_flight)  # first of equals
        self._turn = (index + 1) % count
        return index

    async def _wait(self, now: float, deadline: float) -> None:
        """Until an endpoint's back-off ends, a call ends (freeing an endpoint on probation),
        or the deadline."""
        wake = min((e.out_until for e in self._endpoints if e.out_until > now), default=deadline)
        changed = self._changed
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changed.wait(), max(0.0, min(wake, deadline) - now))

    def _failed(self, endpoint: _Endpoint, started: float, exc: BackendError) -> None:
        endpoint.failed += 1
        if started < endpoint.failed_at:
            return  # under way when an earlier failure took the endpoint out: nothing new
        now = time.monotonic()
        endpoint.failures += 1
        endpoint.failed_at = now
        # The exponent is capped only so that the float cannot overflow.
        backoff = min(self.backoff_initial * 2.0 ** min(endpoint.failures - 1, 64),
                      self.backoff_max)
        endpoint.out_until = now + backoff
        log.warning("%s is out for %gs (failure %d in a row); its calls go to the other "
                    "endpoints: %s", endpoint.backend.name, round(backoff, 3), endpoint.failures,
                    exc)

    def _answered(self, endpoint: _Endpoint, started: float,
                  completions: Sequence[Completion]) -> None:
        endpoint.answered += 1
        endpoint.usage = endpoint.usage + sum((c.usage for c in completions), Usage(calls=1))
        if endpoint.failures and started >= endpoint.failed_at:
            log.warning("%s answers again after %d failure(s) in a row",
                        endpoint.backend.name, endpoint.failures)
            endpoint.failures = 0
            endpoint.out_until = 0.0

    def _gave_up(self, last: BackendError | None, wasted: int) -> BackendError:
        if last is None:
            return BackendError(f"no endpoint of {self.name} came back within {self.timeout}s",
                                retries=max(wasted - 1, 0))
        return BackendError(f"every endpoint of {self.name} failed or is out; the last "
                            f"failure: {last}", status=last.status, retries=max(wasted - 1, 0))
