"""Finding strategies by name: built-ins, `register_strategy`, and the `ponder.strategies`
entry-point group (an entry point names a `StrategySpec` or a decorated function)."""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

from ponder.errors import ConfigError
from ponder.strategies.base import StrategyConfig, StrategyFn, StrategySpec

ENTRY_POINT_GROUP = "ponder.strategies"


class StrategyRegistry:
    """Name → `StrategySpec`. One lives in `ponder.strategies.REGISTRY`; tests make their own."""

    def __init__(self) -> None:
        self._specs: dict[str, StrategySpec[Any]] = {}
        self._loaded_entry_points = False

    def add(self, spec: StrategySpec[Any]) -> StrategySpec[Any]:
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
        name: str, *, config: type[StrategyConfig] = StrategyConfig, description: str = ""
    ) -> Callable[[StrategyFn[Any]], StrategyFn[Any]]:
        """Register an async `fn(ctx, config)` as strategy `name`.

        >>> @register_strategy("twice")
        ... async def twice(ctx, cfg):
        ...     first = await ctx.generate("single/answer", max_tokens=cfg.max_tokens)
        ...     return ctx.candidate(first[0].text)
        """

        def decorate(fn: StrategyFn[Any]) -> StrategyFn[Any]:
            text = description or _first_paragraph(fn.__doc__)
            spec = StrategySpec(name=name, run=fn, config=config, description=text)
            registry.add(spec)
            fn.spec = spec  # type: ignore[attr-defined]
            return fn

        return decorate

    return register_strategy


def _first_paragraph(doc: str | None) -> str:
    """A docstring's opening paragraph on one line: the strategy's description in listings."""
    paragraph = (doc or "").strip().split("\n\n", 1)[0]
    return " ".join(paragraph.split())
