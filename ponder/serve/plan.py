"""A request turned into the run it asks for, before any model call. The strategy, effort
and params resolve as every front door resolves them (`Session.plan`, the effort tiers of
`ponder.strategies.effort`) and the verifier comes from the session's `VerifierChoice`; what
is serve's own is here: the "<strategy>:<model>" model names, OpenAI's `reasoning_effort`,
`n` distinct answers, the server's ceilings on a request's budget and program time, and
which field of the request each refusal names (`param`, the wire format's)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from ponder.core.budget import Budget
from ponder.core.errors import ConfigError, PonderError
from ponder.core.types import Problem
from ponder.serve.errors import Refusal
from ponder.serve.openai_wire import ChatRequest, PonderOptions
from ponder.session import Session
from ponder.strategies import REGISTRY as STRATEGIES
from ponder.strategies.base import StrategyConfig, StrategySpec
from ponder.strategies.effort import tier, tier_beside
from ponder.verifiers import REGISTRY as VERIFIERS
from ponder.verifiers import Verifier

# OpenAI's reasoning_effort levels beyond ponder's three, to the nearest tier.
OPENAI_EFFORTS = {"none": "low", "minimal": "low", "xhigh": "high"}


@dataclass(frozen=True)
class Plan:
    """One request, checked: everything its run needs."""

    request: ChatRequest
    spec: StrategySpec[Any]
    config: StrategyConfig
    budget: Budget
    problem: Problem
    verifier: Verifier | None
    n: int


class Planner:
    """Plans requests for `session`'s backend, served as `model`; `budget` and
    `program_seconds` are the ceilings a request may ask below, never above."""

    def __init__(self, session: Session, *, model: str, budget: Budget,
                 program_seconds: float) -> None:
        self.session = session
        self.model = model
        self.budget = budget
        self.program_seconds = program_seconds
        # The plain model's strategy, which a request may also name as "<it>:<model>".
        self.default = session.plan()[0].name

    def plan(self, req: ChatRequest) -> Plan:
        options = req.ponder or PonderOptions()
        strategy = self._strategy(req, options)
        effort = self._effort(req, options, strategy)
        n = req.n or 1
        spec, config = self._config(strategy, effort, {**req.standard_params(),
                                                       **options.params},
                                    n, asked=options.params)
        try:
            text = req.problem_text()
        except ValueError as exc:
            raise Refusal(400, str(exc), param="messages", code="invalid_value") from None
        # The trace id is the problem's id, so that the trace's events carry it.
        problem = Problem(id=uuid.uuid4().hex, problem=text, answer=options.answer,
                          verifier=options.verifier)
        return Plan(req, spec, self._bounded(config), within(options.budget, self.budget),
                    problem, self._verifier(problem), n)

    def _strategy(self, req: ChatRequest, options: PonderOptions) -> str | None:
        """The strategy the request names itself (`ponder.strategy`, else the model name's),
        or None for the server's; the model name is checked either way."""
        named = self._model_strategy(req.model)
        name = options.strategy or named
        if name is None:
            return None
        try:
            return STRATEGIES.get(name).name
        except ConfigError as exc:
            param = "ponder.strategy" if options.strategy else "model"
            raise Refusal(400, str(exc), param=param, code="unknown_strategy") from None

    def _model_strategy(self, model: str) -> str | None:
        """The strategy a model name asks for: "<strategy>:<model>", or None for the plain
        model."""
        if model == self.model:
            return None
        strategy, sep, rest = model.partition(":")
        if sep and rest == self.model:
            return strategy
        raise Refusal(404, f"model {model!r} does not exist; this server serves {self.model!r} "
                           f"and '<strategy>:{self.model}' for any strategy "
                           f"({', '.join(s.name for s in STRATEGIES.all())}); see GET /v1/models",
                      kind="not_found_error", param="model", code="model_not_found")

    def _effort(self, req: ChatRequest, options: PonderOptions,
                strategy: str | None) -> str | None:
        """The effort the request asks for, if any. `ponder.effort` is ponder's own: an
        unknown tier, or a strategy named beside it that is not the tier's (`single` too:
        named, it is no default), is a 400. OpenAI's `reasoning_effort` is a client's habit as
        much as a choice: its other levels map to the nearest tier, and a strategy the request
        names wins over it. Checked here, rather than left to `Session.plan`, so that the
        refusal names the field at fault."""
        if options.effort:
            try:
                tier_beside(options.effort, strategy)
            except ConfigError as exc:
                raise Refusal(400, str(exc), param="ponder.effort",
                              code="invalid_value") from None
            return options.effort
        if req.reasoning_effort is None or strategy is not None:
            return None
        effort = OPENAI_EFFORTS.get(req.reasoning_effort, req.reasoning_effort)
        try:
            tier(effort)
        except ConfigError as exc:
            raise Refusal(400, f"reasoning_effort {req.reasoning_effort!r}: {exc}",
                          param="reasoning_effort", code="invalid_value") from None
        return effort

    def _config(self, strategy: str | None, effort: str | None, params: dict[str, Any],
                n: int, *, asked: dict[str, Any]) -> tuple[StrategySpec[Any], StrategyConfig]:
        """The strategy and config the request runs, with samples enough for `n` distinct
        answers unless the request (`asked`) set its own count."""
        if effort is None and strategy == self.default and self.session.effort is None:
            strategy = None  # the plain model by its other name: the server's params apply
        spec, config = self._resolve(strategy, effort, params)
        if n == 1:
            return spec, config
        field = spec.config.samples_field
        if field is None:
            voters = [s.name for s in STRATEGIES.all() if s.config.samples_field]
            raise Refusal(400, f"n={n}: strategy {spec.name!r} gives one answer; distinct "
                               f"answers come from a strategy that samples and votes "
                               f"({', '.join(voters)})", param="n", code="invalid_value")
        if field not in asked and getattr(config, field) < n:
            spec, config = self._resolve(strategy, effort, {**params, field: n})
        samples = getattr(config, field)
        if samples < n:
            raise Refusal(400, f"n={n} distinct answers need at least {n} samples; "
                               f"ponder.params sets {field}={samples}", param="n",
                          code="invalid_value")
        return spec, config

    def _resolve(self, strategy: str | None, effort: str | None,
                 params: dict[str, Any]) -> tuple[StrategySpec[Any], StrategyConfig]:
        # The strategy and effort are checked already: what fails here is a parameter.
        try:
            return self.session.plan(strategy, effort, params)
        except ConfigError as exc:
            raise Refusal(400, str(exc), param="ponder.params", code="invalid_value") from None

    def _bounded(self, config: StrategyConfig) -> StrategyConfig:
        """`config` with every timeout (`timeout_s`, `*_timeout_s`: how long one program may
        run) lowered to the server's `program_seconds`. Runs share the sandbox's few slots
        with every other request, so a client may ask for less time, never more."""
        over = {name: self.program_seconds for name in type(config).model_fields
                if name.endswith("timeout_s")
                and isinstance(value := getattr(config, name), int | float)
                and value > self.program_seconds}
        return config.model_copy(update=over) if over else config

    def _verifier(self, problem: Problem) -> Verifier | None:
        """The verifier the request names, else the one its gold answer calls for, as the
        session's choice picks them (each loaded once and shared between requests). Only
        registered names: a `module:attr` spec would import code a client chose."""
        name = problem.verifier
        if name is not None and not VERIFIERS.is_registered(name):
            raise Refusal(400, f"unknown verifier {name!r}; known: "
                               f"{', '.join(VERIFIERS.names())}", param="ponder.verifier",
                          code="unknown_verifier")
        try:
            return self.session.verifiers.for_problem(problem)
        except PonderError as exc:
            raise Refusal(400, str(exc), param="ponder.verifier", code="invalid_value") from None


def within(asked: Budget | None, ceiling: Budget) -> Budget:
    """The request's budget, no limit above the server's; the server's when it asks none."""
    if asked is None:
        return ceiling

    def low(a: float | None, b: float | None) -> Any:
        return b if a is None else a if b is None else min(a, b)

    return Budget(tokens=low(asked.tokens, ceiling.tokens), calls=low(asked.calls, ceiling.calls),
                  seconds=low(asked.seconds, ceiling.seconds),
                  min_completion_tokens=asked.min_completion_tokens)
