"""Built-in strategies and the registry a user's own strategy joins."""

from ponder.strategies.auto import AutoConfig, auto
from ponder.strategies.best_of_n import BestOfNConfig, best_of_n
from ponder.strategies.ice import Agent, ICEConfig, ice
from ponder.strategies.program import ProgramConfig, program
from ponder.strategies.registry import REGISTRY, StrategyRegistry, register_strategy
from ponder.strategies.self_refine import SelfRefineConfig, self_refine
from ponder.strategies.single import SingleConfig, single
from ponder.strategies.spec import StrategyConfig, StrategySpec
from ponder.strategies.tree_search import TreeSearchConfig, tree_search

register_strategy("single", config=SingleConfig)(single)
register_strategy("self_refine", config=SelfRefineConfig)(self_refine)
register_strategy("best_of_n", config=BestOfNConfig)(best_of_n)
register_strategy("ice", config=ICEConfig)(ice)
register_strategy("tree_search", config=TreeSearchConfig)(tree_search)
register_strategy("program", config=ProgramConfig)(program)
register_strategy("auto", config=AutoConfig)(auto)

__all__ = ["REGISTRY", "Agent", "StrategyConfig", "StrategyRegistry", "StrategySpec",
           "register_strategy"]
