"""A user's strategy: registered in a few lines, or installed through the `ponder.strategies`
entry-point group; and every built-in is registered with a config that refuses unknown
parameters."""

from __future__ import annotations

from importlib.metadata import EntryPoint
from typing import ClassVar

import pytest

import ponder
from ponder import ConfigError, ScriptedBackend
from ponder.strategies import REGISTRY, registry
from ponder.strategies.registry import ENTRY_POINT_GROUP, StrategyRegistry, make_register

plugins = StrategyRegistry()


@make_register(plugins)("shout")
async def shout(ctx: ponder.Context, cfg: ponder.StrategyConfig) -> str:
    """Answer in capitals."""
    [reply] = await ctx.generate("single/answer", max_tokens=cfg.max_tokens)
    return reply.text.upper()


def test_builtins_are_registered():
    assert {"single", "self_refine", "best_of_n", "ice", "tree_search"} <= {
        spec.name for spec in REGISTRY.all()}


@pytest.mark.parametrize("name", ["self_refine", "best_of_n", "ice", "tree_search"])
def test_a_builtin_refuses_unknown_parameters(name: str):
    with pytest.raises(ConfigError, match=f"strategy '{name}'.*Valid parameters: max_tokens="):
        REGISTRY.get(name).make_config({"no_such_param": 1})


def test_an_entry_point_strategy_is_found_by_name(monkeypatch: pytest.MonkeyPatch):
    found = EntryPoint(name="shout", value=f"{__name__}:shout", group=ENTRY_POINT_GROUP)
    monkeypatch.setattr(registry, "entry_points",
                        lambda group: [found] if group == ENTRY_POINT_GROUP else [])
    fresh = StrategyRegistry()
    spec = fresh.get("shout")
    assert spec.run is shout
    assert spec.description == "Answer in capitals."


async def test_an_entry_point_strategy_runs_like_a_builtin(monkeypatch: pytest.MonkeyPatch):
    found = EntryPoint(name="shout", value=f"{__name__}:shout", group=ENTRY_POINT_GROUP)
    monkeypatch.setattr(registry, "entry_points", lambda group: [found])
    # A copy of the shared registry that has not looked at entry points yet; undone after.
    monkeypatch.setattr(REGISTRY, "_specs", dict(REGISTRY._specs))
    monkeypatch.setattr(REGISTRY, "_loaded_entry_points", False)
    result = await ponder.asolve("2 + 2?", strategy="shout",
                                 backend=ScriptedBackend("final answer: four"))
    assert result.answer == "FOUR"
    assert result.strategy == "shout"


def test_an_entry_point_that_is_not_a_strategy_is_named(monkeypatch: pytest.MonkeyPatch):
    wrong = EntryPoint(name="oops", value="os.path:join", group=ENTRY_POINT_GROUP)
    monkeypatch.setattr(registry, "entry_points", lambda group: [wrong])
    with pytest.raises(ConfigError, match=r"'oops'.*not a strategy"):
        StrategyRegistry().get("oops")


def test_a_samples_field_that_names_no_int_field_is_refused_where_the_class_is_written():
    with pytest.raises(TypeError, match="names no int field"):
        class Missing(ponder.StrategyConfig):
            samples_field: ClassVar[str | None] = "samples"

    with pytest.raises(TypeError, match="names no int field"):
        class NotAnInt(ponder.StrategyConfig):
            samples_field: ClassVar[str | None] = "samples"
            samples: float = 2.0

    class Counted(ponder.StrategyConfig):
        samples_field: ClassVar[str | None] = "samples"
        samples: int = 4

    assert Counted().samples == 4 and "samples_field" not in Counted.model_fields
