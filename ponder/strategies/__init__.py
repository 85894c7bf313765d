"""Built-in strategies and the registry a user's own strategy joins."""

from ponder.strategies.base import StrategyConfig, StrategySpec
from ponder.strategies.registry import StrategyRegistry, make_register
from ponder.strategies.single import SingleConfig, single

REGISTRY = StrategyRegistry()
register_strategy = make_register(REGISTRY)

register_strategy("single", config=SingleConfig)(single)

__all__ = ["REGISTRY", "StrategyConfig", "StrategySpec", "register_strategy"]
