"""What a strategy is: an async function of a `Context` and its pydantic config that returns
`ctx.finish(candidate, reason, **info)` (a bare `Candidate`, reply text or None also works)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ponder.core.errors import ConfigError
from ponder.core.types import Candidate, Outcome
from ponder.strategies.context import Context


class StrategyConfig(BaseModel):
    """Parameters every strategy has. Subclass it to add a strategy's own."""

    model_config = ConfigDict(extra="forbid")

    # The field that counts the samples a voting strategy draws (`info["answers"]` holds one
    # answer per canonical answer); `ponder serve` raises it to a request's `n` and returns
    # up to `n` distinct answers. None for a strategy that gives one answer.
    samples_field: ClassVar[str | None] = None

    max_tokens: int = Field(default=512, gt=0, description="completion tokens per call, at most")
    temperature: float = Field(default=0.0, ge=0.0, le=2.0, description="sampling temperature")

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
StrategyFn = Callable[[Context, C], Awaitable[Outcome | Candidate | str | None]]


@dataclass(frozen=True)
class StrategySpec(Generic[C]):
    """A registered strategy: its name, function, config model and one-line description."""

    name: str
    run: StrategyFn[C]
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


def as_outcome(ctx: Context, returned: Outcome | Candidate | str | None, source: str) -> Outcome:
    """A strategy's return value as an `Outcome`: a bare candidate (or reply text) stops with
    `verified` when the verifier passed it, else `done`."""
    if isinstance(returned, Outcome):
        return returned
    if isinstance(returned, str):
        returned = ctx.candidate(returned, source=source)
    return ctx.finish(returned)
