"""A strategy's parameters (`StrategyConfig`) and its registration (`StrategySpec`): what the
registry holds and `Context.run` runs. Below the context on purpose: the context resolves a
strategy by name through the registry, so neither may import the context back (the precise
type of a strategy function, with its `Context`, is `ponder.strategies.base.StrategyFn`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ponder.core.errors import ConfigError
from ponder.core.types import Candidate, Outcome


class StrategyConfig(BaseModel):
    """Parameters every strategy has. Subclass it to add a strategy's own."""

    model_config = ConfigDict(extra="forbid")

    # The field that counts the samples a voting strategy draws (`SamplingInfo.answers` holds
    # one answer per canonical answer); `ponder serve` raises it to a request's `n` and
    # returns up to `n` distinct answers. None for a strategy that gives one answer.
    samples_field: ClassVar[str | None] = None

    max_tokens: int = Field(default=512, gt=0, description="completion tokens per call, at most")
    temperature: float = Field(default=0.0, ge=0.0, le=2.0, description="sampling temperature")

    def first_step_calls(self) -> int:
        """Calls the strategy's first step makes at once, each of up to `max_tokens`: what a
        total budget's plan must afford a problem (`ponder.runs.run_plan`). A sampling
        strategy's first request is cut by the budget to the samples that fit, so one."""
        return 1

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        # Checked where the class is written, not on a server's first n>1 request.
        super().__pydantic_init_subclass__(**kwargs)
        field = cls.samples_field
        if field is not None and (field not in cls.model_fields
                                  or cls.model_fields[field].annotation is not int):
            raise TypeError(f"{cls.__name__}.samples_field = {field!r} names no int field of "
                            f"the config")


C = TypeVar("C", bound=StrategyConfig)
Returned = Outcome | Candidate | str | None  # what a strategy may return
# A strategy function as the registry holds it; its first argument is the `Context`.
StrategyRun = Callable[[Any, C], Awaitable[Returned]]


@dataclass(frozen=True)
class StrategySpec(Generic[C]):
    """A registered strategy: its name, function, config model and one-line description."""

    name: str
    run: StrategyRun[C]
    config: type[C]
    description: str = ""

    def make_config(self, params: dict[str, Any] | None = None) -> C:
        """Validate `params` against the config model; the error lists what is valid."""
        try:
            return self.config.model_validate(params or {})
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'params'}: {err['msg']}"
                for err in exc.errors()
            )
            raise ConfigError(
                f"strategy {self.name!r}: {problems}. Valid parameters: {self.describe_params()}"
            ) from None

    def describe_params(self) -> str:
        return ", ".join(
            f"{name}={field.default!r}" for name, field in self.config.model_fields.items()
        )
