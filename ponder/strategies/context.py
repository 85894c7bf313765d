"""The `Context` a strategy works through: prompts, model calls, verification, budget, trace.

A strategy never talks to a backend, a template file or the clock directly, so budgets,
traces and the `n` fallback hold for every strategy, built-in or a user's own. Nor does it run
another strategy directly: `Context.run` does, on the same budget and trace.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Mapping, Sequence
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, TypeVar

from ponder.backends.base import CURRENT_CALL, Backend, CallLabel
from ponder.core.answers import answer_key, is_python, read_answer
from ponder.core.budget import Budget, RunMeter
from ponder.core.calibration import PromptBound, PromptCalibration
from ponder.core.charging import capped, charged
from ponder.core.errors import BudgetExhausted, ConfigError
from ponder.core.tracing import Trace, TraceSink
from ponder.core.types import (
    STOP_REASONS,
    Candidate,
    Completion,
    Confidence,
    Execution,
    Message,
    Outcome,
    Problem,
    TraceEvent,
    Usage,
    Verdict,
)
from ponder.prompts import PromptLibrary
from ponder.strategies.registry import REGISTRY
from ponder.strategies.spec import Returned, StrategyConfig, StrategySpec
from ponder.strategies.wiring import Wiring
from ponder.verifiers.base import Verifier, judge

T = TypeVar("T")

if TYPE_CHECKING:  # the sandbox loads when a program first runs, not with every strategy
    from ponder.code.probe import ProbeRun
    from ponder.core.replay import Replay


# The strategies `Context.run` is inside, outermost first, as (context, name). Kept per task
# rather than on the context: a strategy may run two at once on one context (`auto` runs
# `program` and `single` side by side), and each event must name the one that made it.
_WITHIN: ContextVar[tuple[tuple[Context, str], ...]] = ContextVar("ponder_within", default=())


class Context:
    """Everything one problem's run may use. Strategies receive it; `ponder.solve` builds it.

    >>> completions = await ctx.generate("self_refine/generate", n=3, temperature=0.7)
    >>> best = max(ctx.candidates(completions), key=lambda c: c.score)
    >>> return ctx.finish(best, "verified" if best.score == 1 else "done", samples=3)
    """

    def __init__(
        self,
        problem: Problem,
        *,
        backend: Backend,
        budget: Budget | None = None,
        prompts: PromptLibrary | None = None,
        verifier: Verifier | None = None,
        seed: int | None = None,
        trace_sink: TraceSink | None = None,
        run_meter: RunMeter | None = None,
        replay: Replay | None = None,
        calibration: PromptCalibration | None = None,
    ) -> None:
        self.problem = problem
        self.backend = backend
        # `run_meter`: the whole run's token budget, which every call here spends as well.
        self.meter = (budget or Budget()).start(run_meter)
        # `replay`: replies an earlier run of this problem paid for, taken before the backend
        # is asked (a total budget's second pass; see `ponder.core.replay`).
        self.replay = replay
        # `calibration`: the run's prompt bounds, shared by its problems (`core.calibration`).
        self.calibration = calibration or PromptCalibration()
        self.trace = Trace(problem.id, trace_sink)
        self.prompts = prompts or PromptLibrary()
        # Bound to this run, so a verifier that calls a model (the LLM judge) spends this
        # problem's budget through `generate` below.
        self.verifier = None if verifier is None else verifier.bind(self)
        self.seed = seed
        self.seen: list[Candidate] = []
        self._seed_offset = 0
        # Wall time with at least one candidate program running on inputs (`probe`): runs at
        # once count once, so it is a share of the problem's time, as the issue measures it.
        self.probe_s = 0.0
        self._probing = 0
        self._probing_since = 0.0

    # -- model calls -------------------------------------------------------------------------

    @classmethod
    def wired(cls, problem: Problem, wiring: Wiring) -> Context:
        """The context for `problem` with the parts `wiring` carries."""
        return cls(problem, backend=wiring.backend, budget=wiring.budget,
                   prompts=wiring.prompts, verifier=wiring.verifier, seed=wiring.seed,
                   trace_sink=wiring.trace_sink, run_meter=wiring.run_meter,
                   replay=wiring.replay, calibration=wiring.calibration)

    def render(self, template: str, **variables: Any) -> list[Message]:
        """Render a template; `problem` is the problem text (gold fields never reach a prompt)."""
        variables.setdefault("problem", self.problem.problem)
        variables.setdefault("entry_point", self.problem.entry_point)
        # A coding problem is asked for code whether or not gold is there to test it.
        variables.setdefault("code", self.problem.is_code)
        variables.setdefault("starter", self.problem.is_code and is_python(self.problem.problem))
        return self.prompts.render(template, **variables)

    async def generate(
        self,
        template: str,
        *,
        n: int = 1,
        max_tokens: int,
        temperature: float = 0.0,
        stop: Sequence[str] | None = None,
        step: str | None = None,
        backend: Backend | None = None,
        min_n: int = 1,
        confidence: bool = False,
        **variables: Any,
    ) -> list[Completion]:
        """Render `template`, ask the backend for `n` samples, charge and trace the call.

        Fewer samples than `n` may come back when the budget only fits fewer (at least
        `min_n`); a backend that returns fewer than asked is asked again for the rest.
        Raises `BudgetExhausted` when not even `min_n` samples fit. `confidence` asks for
        token log-probabilities, so that each completion carries its `Confidence` where the
        backend can give one; without it backends skip them (they cost decode speed).
        """
        messages = self.render(template, **variables)
        return await self.generate_messages(
            messages, n=n, max_tokens=max_tokens, temperature=temperature, stop=stop,
            step=step or template, template=template, backend=backend, min_n=min_n,
            confidence=confidence,
        )

    async def generate_messages(
        self,
        messages: Sequence[Message],
        *,
        n: int = 1,
        max_tokens: int,
        temperature: float = 0.0,
        stop: Sequence[str] | None = None,
        step: str = "generate",
        template: str | None = None,
        backend: Backend | None = None,
        min_n: int = 1,
        confidence: bool = False,
    ) -> list[Completion]:
        backend = backend or self.backend
        out: list[Completion] = []
        while len(out) < n:
            try:
                got = await self._one_call(
                    backend, list(messages), n=n - len(out), max_tokens=max_tokens,
                    temperature=temperature, stop=stop, step=step, template=template,
                    min_n=max(1, min_n - len(out)), confidence=confidence,
                )
            except BudgetExhausted:
                if len(out) >= min_n and out:
                    break  # keep the samples this call already paid for
                raise
            if not got:
                break
            out.extend(got)
        return out

    async def _one_call(
        self, backend: Backend, messages: list[Message], *, n: int, max_tokens: int,
        temperature: float, stop: Sequence[str] | None, step: str, template: str | None,
        min_n: int, confidence: bool,
    ) -> list[Completion]:
        if self.replay is not None and (replayed := self.replay.take(
                messages, n=n, max_tokens=max_tokens, temperature=temperature, stop=stop,
                confidence=confidence)):
            # Paid for by the earlier run (its usage is on that run's row): no charge here.
            self._seed_offset += len(replayed)
            self._record(TraceEvent(
                kind="generate", step=step, template=template, messages=messages,
                completions=replayed, data={"n": len(replayed), "max_tokens": max_tokens,
                                            "temperature": temperature, "replayed": True}))
            return replayed
        prompt = await self._prompt_bound(backend, messages, template)
        replies = (backend.label, template or step)
        reservation = self.meter.reserve(
            prompt_tokens=prompt.tokens, prompt_copies=backend.prompt_copies(n), n=n,
            max_tokens=max_tokens, min_n=min_n,
            reply_tokens=self.calibration.replies.needed(replies),
        )
        seed = None if self.seed is None else self.seed + self._seed_offset
        self._seed_offset += reservation.n
        started = time.monotonic()
        event = TraceEvent(kind="generate", step=step, template=template, messages=messages,
                           data={"n": reservation.n, "max_tokens": reservation.max_tokens,
                                 "temperature": temperature,
                                 **({"stop": list(stop)} if stop else {}), **prompt.traced()})
        label = CURRENT_CALL.set(CallLabel(template=template, step=step, confidence=confidence))
        try:
            call = backend.generate(
                messages, n=reservation.n, max_tokens=reservation.max_tokens,
                temperature=temperature, stop=stop, seed=seed,
            )
            timeout = self.meter.remaining_seconds
            completions = await (call if math.isinf(timeout) else asyncio.wait_for(call, timeout))
        except TimeoutError:
            self.meter.release(reservation)
            event.error = f"time limit of {self.meter.budget.seconds}s reached mid-call"
            event.latency_s = time.monotonic() - started
            self._record(event)
            self.meter.exhausted_reason = event.error
            raise BudgetExhausted(event.error) from None
        except BaseException as exc:
            self.meter.release(reservation)
            event.error = f"{type(exc).__name__}: {exc}"
            event.retries = getattr(exc, "retries", 0)
            event.latency_s = time.monotonic() - started
            self._record(event)
            raise
        finally:
            CURRENT_CALL.reset(label)
        completions = [capped(c, reservation.max_tokens) for c in completions]
        self.calibration.replies.observe(replies, completions, max_tokens)
        usage, doubt = charged(messages, completions, reservation, prompt, self.calibration)
        if doubt is not None:
            event.data["usage_rejected"] = doubt
        usage = usage + Usage(calls=1)
        self.meter.charge(reservation, usage)
        event.completions = completions
        event.usage = usage
        event.retries = max((c.retries for c in completions), default=0)
        event.latency_s = time.monotonic() - started
        self._record(event)
        return completions

    async def _prompt_bound(self, backend: Backend, messages: list[Message],
                            template: str | None) -> PromptBound:
        """What the call reserves per prompt copy (`core.calibration`). The tokenizer is asked
        under a token limit: a round trip costs milliseconds, and each token reserved past the
        prompt's is one a concurrent call cannot have; with no limit, none is cut short."""
        count = (lambda: backend.count_prompt_tokens(messages)) \
            if math.isfinite(self.meter.remaining_tokens) else None
        return await self.calibration.bound((backend.label, template, len(messages)),
                                            messages, count=count)

    async def execute(self, code: str, *, timeout_s: float, step: str = "execute") -> Execution:
        """Run model-written Python in the sandbox `unit_tests` uses (no network, limits,
        nothing left behind). It costs no tokens, but its time (the wait for a sandbox slot
        included) counts against the budget's seconds, and a run still queued or running when
        they end is stopped (`BudgetExhausted`); the trace records the program, its output,
        its error and its run time."""
        from ponder.sandbox import Limits, program_error, shared_sandbox

        seconds = self.meter.seconds_for(timeout_s)
        limits = Limits(timeout_s=seconds, cpu_s=max(1, math.ceil(seconds)), memory_mb=512,
                        processes=8, output_bytes=8192)
        run = shared_sandbox().run({"main.py": code}, "main.py", limits=limits)
        result = await self._in_time(run, step, {"code": code}, "running a program")
        execution = Execution(code=code, output=result.output, exit_code=result.exit_code,
                              timed_out=result.timed_out, seconds=round(result.seconds, 3),
                              error=program_error(result, limits))
        self._record(TraceEvent(kind="execute", step=step, latency_s=execution.seconds,
                                error=execution.error,
                                data={"code": code, "output": execution.output[-2000:]}))
        return execution

    async def probe(self, code: str, calls: Sequence[str], *, per_call_s: float = 2.0,
                    step: str = "probe") -> ProbeRun:
        """Run a candidate program on `calls` (a coding problem's inputs) in one sandbox run,
        each call with `per_call_s` of its own (`ponder.code.probe`). Like `execute`, its time
        counts against the budget's seconds and a run the budget's end overtakes is stopped
        (`BudgetExhausted`); the trace records the code, the calls, and how it ended."""
        from ponder.code.probe import run_calls

        started = time.monotonic()
        run = run_calls(self.problem, code, calls, per_call_s=per_call_s)
        if self._probing == 0:
            self._probing_since = started
        self._probing += 1
        try:
            probed = await self._in_time(run, step, {"code": code, "calls": len(calls)},
                                         "running candidates")
        finally:
            self._probing -= 1
            if self._probing == 0:
                self.probe_s += time.monotonic() - self._probing_since
        self._record(TraceEvent(kind="execute", step=step,
                                latency_s=round(time.monotonic() - started, 3),
                                error=probed.load_error,
                                data={"code": code, "calls": len(calls),
                                      "failed": sum(1 for r in probed.results if not r.ok)}))
        return probed

    async def _in_time(self, run: Awaitable[T], step: str, data: dict[str, Any],
                       doing: str) -> T:
        """`run` (a sandbox run), stopped when the budget's seconds end: the wait for one of
        the sandbox's few slots counts too, so runs queued behind each other (n of them at
        once) do not hold the slots, which every problem and every `ponder serve` request
        share, past the budget's time. A stopped run is traced and is `BudgetExhausted`."""
        left = self.meter.remaining_seconds
        try:
            return await (run if math.isinf(left) else asyncio.wait_for(run, left))
        except TimeoutError:
            error = f"time limit of {self.meter.budget.seconds}s reached waiting for or {doing}"
            self._record(TraceEvent(kind="execute", step=step, error=error, data=data))
            self.meter.exhausted_reason = error
            raise BudgetExhausted(error) from None

    # -- candidates and verification -----------------------------------------------------------

    def candidate(self, text: str, *, source: str = "", usage: Usage | None = None,
                  answer: str | None = None, confidence: Confidence | None = None) -> Candidate:
        """A candidate from reply text, with its answer extracted (code for coding problems)
        unless the strategy knows it (what a program printed). An `answer` passed here is
        `answer_given`: verifiers judge it as it is and never read another out of `text`."""
        given = answer is not None
        if answer is None:
            reads = self.verifier is not None and self._verifier_reads("extract")
            answer = self.verifier.extract(text) if reads and self.verifier is not None \
                else read_answer(text, code=self.problem.is_code)
        cand = Candidate(text=text, answer=answer, source=source, usage=usage or Usage(),
                         confidence=confidence, answer_given=given)
        self.seen.append(cand)
        return cand

    def candidates(self, completions: Sequence[Completion], *, source: str = "") -> list[Candidate]:
        """One candidate per completion, with its usage and confidence."""
        return [self.candidate(c.text, source=source, usage=c.usage, confidence=c.confidence)
                for c in completions]

    async def verify(self, candidate: Candidate) -> Verdict | None:
        """Judge `candidate` with the problem's verifier (None when there is none) and keep the
        verdict on it."""
        if self.verifier is None:
            return None
        started = time.monotonic()
        verdict = await judge(self.verifier, self.problem, candidate)
        candidate.verdict = verdict
        self._record(TraceEvent(kind="verify", step=self.verifier.name, verdict=verdict,
                                latency_s=time.monotonic() - started,
                                data={"answer": candidate.answer}
                                | ({"source": "vote"} if candidate.source == "vote" else {})))
        return verdict

    def canonical(self, answer: str) -> str | None:
        """A key under which equal answers group, for voting and consensus."""
        if self._verifier_reads("canonical"):
            assert self.verifier is not None
            return self.verifier.canonical(answer)
        return answer_key(answer, code=self.problem.is_code)

    def _verifier_reads(self, method: str) -> bool:
        """Whether the verifier's `method` reads answers here: on a coding problem only its
        own (a judge's default reading is the maths one, which would lose the code)."""
        return self.verifier is not None and (
            not self.problem.is_code or self.verifier.offers(method))

    async def best(self) -> Candidate | None:
        """The best candidate seen so far, for a run cut short: every candidate not yet judged
        is verified first (while the budget's time lasts), then the highest score wins, ties
        to the latest. Without a verifier, the latest candidate."""
        if not self.seen:
            return None
        if self.verifier is None:
            return self.seen[-1]
        for cand in self.seen:
            if cand.verdict is None and self.meter.remaining_seconds > 0:
                try:
                    await self.verify(cand)
                except BudgetExhausted:  # a judge that calls the model found no budget left
                    break
        return max(reversed(self.seen), key=lambda c: c.score)

    def finish(self, candidate: Candidate | None, reason: str | None = None,
               **info: Any) -> Outcome:
        """What a strategy returns: its answer, why it stopped (one of `STOP_REASONS`; by
        default `verified` when the verifier passed the answer, else `done`), and details that
        go into `Result.info`."""
        if reason is None:
            passed = candidate is not None and candidate.verdict is not None \
                and candidate.verdict.passed
            reason = "verified" if passed else "done"
        if reason not in STOP_REASONS:
            raise ConfigError(f"stop reason {reason!r} is not one of {', '.join(STOP_REASONS)}")
        return Outcome(candidate=candidate, reason=reason, info=info)  # type: ignore[arg-type]

    def note(self, step: str, **data: Any) -> None:
        """Record a strategy decision (a vote, a pruned beam) in the trace."""
        self._record(TraceEvent(kind="note", step=step, data=data))

    # -- strategies within a strategy -------------------------------------------------------

    async def run(self, strategy: str | StrategySpec[Any],
                  params: Mapping[str, Any] | StrategyConfig | None = None) -> Outcome:
        """Run another strategy on this problem as a part of the current one, and return its
        `Outcome` (a bare candidate or text it returns made one as for a strategy `ponder.solve`
        runs).

        `strategy` is a name, found where `ponder.solve(strategy=...)` finds it, or a
        `StrategySpec`; `params` its parameters, checked as `ponder.solve` checks them, or its
        config. It spends this run's budget and seeds, its candidates join `seen` (`best`), and
        its events join this trace, each with `sub_strategy` naming it (nested ones joined by
        "/"), between a `sub_strategy/start` note with its parameters and a
        `sub_strategy/outcome` note. A `BudgetExhausted` it lets out reaches the caller, as a
        call's does.

        >>> program = await ctx.run("program", {"fallback": False})
        >>> if program.candidate is None or not program.candidate.answer:
        ...     return await ctx.run("best_of_n", {"n": 5})
        """
        spec = REGISTRY.get(strategy) if isinstance(strategy, str) else strategy
        if isinstance(params, StrategyConfig):
            if not isinstance(params, spec.config):
                raise ConfigError(f"strategy {spec.name!r} takes a {spec.config.__name__}, "
                                  f"not a {type(params).__name__}")
            config = params
        else:
            config = spec.make_config(dict(params or {}))
        within = _WITHIN.set((*_WITHIN.get(), (self, spec.name)))
        try:
            self.note("sub_strategy/start", params=config.model_dump(mode="json"))
            outcome = as_outcome(self, await spec.run(self, config), spec.name)
            self.note("sub_strategy/outcome", reason=outcome.reason,
                      answer=None if outcome.candidate is None else outcome.candidate.answer)
        finally:
            _WITHIN.reset(within)
        return outcome

    def _record(self, event: TraceEvent) -> None:
        """Add `event` to the trace, naming the sub-strategy that made it, if one did."""
        if names := [name for ctx, name in _WITHIN.get() if ctx is self]:
            event.data["sub_strategy"] = "/".join(names)
        self.trace.add(event)


def as_outcome(ctx: Context, returned: Returned, source: str) -> Outcome:
    """A strategy's return value as an `Outcome`: a bare candidate (or reply text, its
    candidate's `source`) stops with `verified` when the verifier passed it, else `done`."""
    if isinstance(returned, Outcome):
        return returned
    if isinstance(returned, str):
        returned = ctx.candidate(returned, source=source)
    return ctx.finish(returned)
