"""Solutions written one step at a time, as a tree: `tree_search`'s config, the node, growing
it by one `n=k` request, and rating a partial solution. Shared by `tree_search`'s beam search
and its MCTS (`ponder.strategies.mcts`), so that a step, a finished branch and a score mean
the same thing in both."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pydantic import Field, model_validator

from ponder.core.answers import last_boxed
from ponder.core.replies import has_marker, parse_rating
from ponder.strategies.base import StrategyConfig
from ponder.strategies.context import Context

NEUTRAL = 0.5  # the score of a step whose value reply held no rating: neither kept nor cut for it

# Ceilings on the tree's shape. A beam search makes about max_depth * beam_width calls of
# `branching` samples, each rated; MCTS about `iterations` expansions of `branching` children.
# Ten times the defaults or more, and finite, so that one request to `ponder serve` cannot
# ask for millions of calls (its budget is the finer bound).
MAX_WIDTH = 32  # beam_width, branching
MAX_DEPTH = 64
MAX_ITERATIONS = 256

# Each algorithm's own parameters; setting one for the other algorithm is refused, not ignored.
MCTS_ONLY = ("iterations", "exploration", "value_source", "rollout_max_tokens")
BEAM_ONLY = ("beam_width",)


class TreeSearchConfig(StrategyConfig):
    """`tree_search`'s parameters: those both algorithms use, `beam_width` for the beam, and
    those described "mcts: ..." for MCTS."""

    algorithm: Literal["beam", "mcts"] = Field(
        default="beam", description="beam search over steps, or Monte Carlo tree search")
    temperature: float = Field(default=0.7, ge=0.0, le=2.0, description="sampling temperature")
    max_tokens: int = Field(default=160, gt=0, description="completion tokens per step, at most")
    beam_width: int = Field(default=2, ge=1, le=MAX_WIDTH,
                            description="beam: partial solutions kept at each depth")
    branching: int = Field(default=3, ge=1, le=MAX_WIDTH,
                           description="next steps sampled per expanded node (n=k)")
    max_depth: int = Field(default=6, ge=1, le=MAX_DEPTH,
                           description="steps in a solution, at most")
    value_max_tokens: int = Field(default=16, gt=0, description="completion tokens for a rating")
    step_stop: list[str] = Field(default_factory=lambda: ["\n\n", "\nStep "],
                                 description="stop sequences that end one step")
    final_marker: str = Field(default="Final answer", min_length=1,
                              description="a step holding this (or a \\boxed{}) ends its branch")
    iterations: int = Field(default=10, ge=1, le=MAX_ITERATIONS,
                            description="mcts: rounds of select, expand, "
                            "evaluate and backpropagate, at most")
    exploration: float = Field(default=1.0, ge=0.0,
                               description="mcts: UCT weight c in Q + c*sqrt(ln N_parent / N)")
    value_source: Literal["auto", "verifier", "model", "rollout"] = Field(
        default="auto", description="mcts: a new node's value: auto (the verifier's partial "
        "score, else the model's rating), verifier, model, or rollout (finish the solution "
        "greedily and judge it)")
    rollout_max_tokens: int = Field(default=512, gt=0,
                                    description="mcts: completion tokens for one rollout")

    @model_validator(mode="after")
    def _params_of_the_other_algorithm(self) -> TreeSearchConfig:
        foreign = MCTS_ONLY if self.algorithm == "beam" else BEAM_ONLY
        # A default value is allowed, so that a dumped config validates again.
        changed = [name for name in foreign
                   if getattr(self, name) != type(self).model_fields[name].default]
        if changed:
            raise ValueError(f"{', '.join(changed)} only apply to algorithm="
                             f"{'mcts' if self.algorithm == 'beam' else 'beam'!r}")
        return self


@dataclass(eq=False)
class Node:
    """A partial solution: the steps from the root to here. `score` is this node's own rating;
    `parent`, `children` (None until expanded), `visits` and `value_sum` are MCTS's
    statistics, which the beam search leaves alone."""

    id: str
    steps: list[str] = field(default_factory=list)
    score: float | None = None
    final: bool = False
    parent: Node | None = field(default=None, repr=False)
    children: list[Node] | None = field(default=None, repr=False)
    visits: int = 0
    value_sum: float = 0.0

    @property
    def text(self) -> str:
        return "\n".join(self.steps)

    @property
    def depth(self) -> int:
        return len(self.steps)

    @property
    def q(self) -> float:
        """The mean value backed up through this node (0 before its first visit)."""
        return self.value_sum / self.visits if self.visits else 0.0


def is_final(step: str, cfg: TreeSearchConfig) -> bool:
    """Whether `step` ends its branch: it holds `final_marker` or a `\\boxed{}` answer."""
    return has_marker(step, cfg.final_marker) or last_boxed(step) is not None


async def expand(ctx: Context, cfg: TreeSearchConfig, node: Node, last: bool) -> list[Node]:
    """`node`'s children: `branching` next steps from ONE `n=k` request on its shared prefix,
    cut at `step_stop`, empty and repeated steps dropped. `last` asks for the final answer."""
    replies = await ctx.generate(
        "tree_search/step", n=cfg.branching, max_tokens=cfg.max_tokens,
        temperature=cfg.temperature, stop=cfg.step_stop, step=f"expand {node.id}",
        steps=node.steps, last_step=last,
    )
    children: list[Node] = []
    seen: set[str] = set()
    for reply in replies:
        step = reply.text.strip()
        if not step or step in seen:  # identical siblings would only waste a rating each
            continue
        seen.add(step)
        child_id = f"{node.id.removeprefix('root')}.{len(children)}".lstrip(".")
        children.append(Node(id=child_id, steps=[*node.steps, step], final=is_final(step, cfg),
                             parent=node))
    return children


async def score(ctx: Context, cfg: TreeSearchConfig, node: Node, *,
                ask_verifier: bool = True) -> float:
    """Rate `node` in [0, 1] and keep the rating on it: the verifier's
    `score_partial(problem, text)` where it has one and returns a number (unless
    `ask_verifier` is off), else the model's 0-10 rating (`tree_search/value.j2`)."""
    if ask_verifier and ctx.verifier is not None:
        value = await ctx.verifier.score_partial(ctx.problem, node.text)
        if value is not None:
            node.score = float(value)
            return node.score
    [reply] = await ctx.generate(
        "tree_search/value", max_tokens=cfg.value_max_tokens, temperature=0.0,
        stop=["\n"], step=f"value {node.id}", steps=node.steps,  # the score is the first line
    )
    rating = parse_rating(reply.text)
    node.score = NEUTRAL if rating is None else rating
    return node.score
