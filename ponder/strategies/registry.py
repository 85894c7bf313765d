"""Finding strategies by name: built-ins, `register_strategy`, and the `ponder.strategies`
entry-point group (an entry point names a `StrategySpec` or a decorated function).

`REGISTRY` is the one `ponder.solve`, `ponder serve` and `Context.run` look names up in. It
lives here, below every strategy, so that the context can look a name up without importing
the strategies, which import the context; `ponder.strategies` registers the built-ins in it.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any, TypeVar

from ponder.core.errors import ConfigError
from ponder.strategies.spec import StrategyConfig, StrategyRun, StrategySpec

ENTRY_POINT_GROUP = "ponder.strategies"
F = TypeVar("F", bound=StrategyRun[Any])


class StrategyRegistry:
    """Name → `StrategySpec`. One lives in `ponder.strategies.REGISTRY`; tests make their own."""

    def __init__(self) -> None:
        self._specs: dict[str, StrategySpec[Any]] = {}
        self._loaded_entry_points = False

    def add(self, spec: StrategySpec[Any], *, replace: bool = False) -> StrategySpec[Any]:
        """Register `spec`; an existing name is refused unless `replace`, so that a plug-in
        named `single` cannot silently take over every `ponder.solve`."""
        if spec.name in self._specs and not replace:
            raise ConfigError(f"a strategy named {spec.name!r} already exists; pick another "
                              "name or pass replace=True")
        self._specs[spec.name] = spec
        return spec

    def get(self, name: str) -> StrategySpec[Any]:
        if name not in self._specs:
            self._load_entry_points()
        try:
            return self._specs[name]
        except KeyError:
            raise ConfigError(
                f"unknown strategy {name!r}; known: {', '.join(sorted(self._specs))}"
            ) from None

    def all(self) -> list[StrategySpec[Any]]:
        self._load_entry_points()
        return [self._specs[n] for n in sorted(self._specs)]

    def _load_entry_points(self) -> None:
        if self._loaded_entry_points:
            return
        self._loaded_entry_points = True
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            obj = ep.load()
            spec = obj if isinstance(obj, StrategySpec) else getattr(obj, "spec", None)
            if not isinstance(spec, StrategySpec):
                raise ConfigError(
                    f"entry point {ep.name!r} = {ep.value!r} is not a strategy; "
                    "decorate it with @ponder.register_strategy"
                )
            self._specs.setdefault(ep.name, spec)


def make_register(registry: StrategyRegistry) -> Callable[..., Any]:
    def register_strategy(
        name: str, *, config: type[StrategyConfig] = StrategyConfig, description: str = "",
        replace: bool = False,
    ) -> Callable[[F], F]:
        """Register an async `fn(ctx, config)` as strategy `name`; its parameters are the
        fields of `config` (a `StrategyConfig` subclass). An existing name is refused unless
        `replace=True`.

        >>> class TwiceConfig(ponder.StrategyConfig):
        ...     tries: int = 2
        >>> @register_strategy("twice", config=TwiceConfig)
        ... async def twice(ctx, cfg):
        ...     replies = await ctx.generate("single/answer", n=cfg.tries, max_tokens=64)
        ...     return ctx.finish(ctx.candidates(replies)[-1], "done", tries=cfg.tries)
        """

        def decorate(fn: F) -> F:
            text = description or _first_paragraph(fn.__doc__)
            spec = StrategySpec(name=name, run=fn, config=config, description=text)
            registry.add(spec, replace=replace)
            fn.spec = spec  # type: ignore[attr-defined]
            return fn

        return decorate

    return register_strategy


def _first_paragraph(doc: str | None) -> str:
    """A docstring's opening paragraph on one line: the strategy's description in listings."""
    paragraph = (doc or "").strip().split("\n\n", 1)[0]
    return " ".join(paragraph.split())


REGISTRY = StrategyRegistry()
register_strategy = make_register(REGISTRY)
