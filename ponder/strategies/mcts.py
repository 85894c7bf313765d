"""Monte Carlo tree search over reasoning steps: `tree_search` with `algorithm="mcts"`.

The loop and its parts follow two reference implementations:

- optillm's `mcts.py`: the select → expand → simulate → backpropagate round; a node's actions
  from one request with `n` samples; an unvisited child tried before any UCT comparison (its
  `visits + 1e-8` denominator, made explicit here); a neutral value for an unreadable rating;
  the answer by visit count.
- llm-reasoners' `reasoners/algorithm/mcts.py`: UCT as `Q + w_exp * sqrt(ln N_parent / N)`
  with Q the mean of the values backed up through a node (`calc_q=np.mean`); `depth_limit`
  as a terminal condition; `children` None until a node is expanded; a terminal node that is
  selected again only backs its value up again; `output_strategy="max_visit"` (the finished
  node with the most visits) as the answer rule.

Not taken: optillm's random choice of the child to simulate and its random multi-step
simulation (here the first new child is valued, and a rollout is one greedy call), and
llm-reasoners' `fast_reward` for every child at expansion (k ratings per expansion; here one
node is valued per round, and its siblings wait their turn in selection).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ponder.core.errors import BudgetExhausted, ConfigError
from ponder.core.types import Candidate, Outcome, StopReason
from ponder.strategies.context import Context
from ponder.strategies.steps import NEUTRAL, Node, TreeSearchConfig, expand, score

STEP_CHARS = 120  # of each step's text in the trace's tree note; the calls hold the whole text


@dataclass
class Solutions:
    """The whole solutions met on the way: finished tree nodes (by id) and rollouts."""

    finished: dict[str, Candidate] = field(default_factory=dict)
    rollouts: list[tuple[Node, Candidate]] = field(default_factory=list)


async def mcts(ctx: Context, cfg: TreeSearchConfig) -> Outcome:
    """Monte Carlo tree search over steps. Each of `iterations` rounds:

    1. select: from the root, descend to the child with the highest UCT,
       `Q + exploration * sqrt(ln N_parent / N)` (Q the mean value backed up through it), an
       unvisited child first (in the order sampled), until a node not visited yet or not
       expanded yet;
    2. expand: a node selected for the second time (the root, the first time) that is not
       terminal gets `branching` children from ONE `n=k` request (`tree_search/step.j2`, cut
       at `step_stop`; the step that reaches `max_depth` asks for the final answer); its first
       child is valued this round, its siblings wait for selection;
    3. evaluate: the new node's value in [0, 1], by `value_source`: `verifier`, the verifier's
       `score_partial(problem, text)`; `model`, the model's 0-10 rating
       (`tree_search/value.j2`); `rollout`, the rest of the solution written greedily
       (`tree_search/rollout.j2`, `rollout_max_tokens`) and judged by the verifier's verdict,
       or without a verifier rated by the model; `auto`, `score_partial` where the verifier
       gives one, else the rating. A finished node (its step holds `final_marker` or a
       `\\boxed{}` answer) is valued by its verdict where there is a verifier, else rated;
    4. backpropagate: the value is added to every node on the path, and each counts a visit.

    A terminal node (finished, at `max_depth`, or a dead end the model wrote no step for) is
    never expanded; selecting it again backs its value up again at no cost, so a good finished
    solution gathers visits. The search ends when the verifier passes a finished node or a
    rollout (`verified`), when every branch is closed (`done`), after `iterations` rounds
    (`max_iters`), or when the budget runs out (`budget`).

    The answer: the finished node with the most visits (ties to the higher Q, then the earlier
    node); else the rollout with the highest value; else the partial solution reached by
    following the most-visited child down from the root, finished greedily by one more call
    (`tree_search/rollout.j2`, `rollout_max_tokens`; verified where there is a verifier), so
    that a search stopped before any solution was whole still answers the question (the
    partial solution itself where the budget cannot pay for that call; the root's empty text
    when the model wrote no first step).

    `info`: `algorithm` ("mcts"); `iterations`, the rounds completed; `chosen`, the answer's
    node id (or "rollout from <id>"); `tree`, every node in pre-order
    as {`id`, `parent`, `visits`, `value`, `final`}, `value` being Q (None before a visit).
    The trace's `mcts_tree` note holds the same nodes with each one's last step clipped to
    120 characters, which `ponder show` draws as a tree.
    """
    if cfg.value_source == "verifier" and (
            ctx.verifier is None or not ctx.verifier.offers("score_partial")):
        raise ConfigError("tree_search value_source='verifier' needs a verifier with "
                          "score_partial; use 'auto' to fall back to the model's rating")
    root = Node(id="root")
    solutions = Solutions()
    reason: StopReason = "max_iters"
    try:
        for _ in range(cfg.iterations):
            if closed(root, cfg):
                reason = "done"
                break
            path = select(root, cfg.exploration)
            if path[-1] is root or path[-1].visits:  # met before: grow it
                path += await grow(ctx, cfg, path[-1])
            node = path[-1]
            if node is root:  # the model wrote no first step; `closed` ends the search next
                continue
            passed = await evaluate(ctx, cfg, node, solutions) if node.score is None else None
            backpropagate(path, node.score if node.score is not None else NEUTRAL)
            if passed is not None:
                origin = node.id if node.final else f"rollout from {node.id}"
                return _finish(ctx, root, passed, origin, "verified")
    except BudgetExhausted:
        reason = "budget"
    end = most_visited_path_end(root)
    if end is not root and not solutions.rollouts and not any(n.final for n in walk(root)):
        # No whole solution yet (10 rounds seldom reach depth 6): the most-visited path,
        # finished greedily, answers, where its partial text has only a stray last number.
        try:
            _, cand = await write_rest(ctx, cfg, end)
        except BudgetExhausted:
            reason = "budget"
        else:
            try:  # a judge that calls the model spends from the same budget
                verdict = await ctx.verify(cand)
            except BudgetExhausted:
                return _finish(ctx, root, cand, f"rollout from {end.id}", "budget")
            return _finish(ctx, root, cand, f"rollout from {end.id}",
                           "verified" if verdict is not None and verdict.passed else reason)
    answer, chosen = choose(ctx, root, solutions)
    return _finish(ctx, root, answer, chosen, reason)


def uct(child: Node, parent_visits: int, exploration: float) -> float:
    """`child`'s UCT score under a parent visited `parent_visits` times; infinite until the
    child is visited, so that each child is valued once before any is preferred."""
    if child.visits == 0:
        return math.inf
    return child.q + exploration * math.sqrt(math.log(max(parent_visits, 1)) / child.visits)


def select(root: Node, exploration: float) -> list[Node]:
    """The path from `root` down by UCT to a node not visited yet or not expanded yet (among
    equal UCT scores, the earlier child)."""
    path = [root]
    node = root
    while node.children:
        parent_visits = node.visits
        node = max(node.children, key=lambda c: uct(c, parent_visits, exploration))
        path.append(node)
        if node.visits == 0:
            break
    return path


async def grow(ctx: Context, cfg: TreeSearchConfig, leaf: Node) -> list[Node]:
    """Expansion: `leaf`'s children from one `n=k` request, of which the first is valued this
    round; nothing for a terminal node, whose value is only backed up again."""
    if terminal(leaf, cfg):
        return []
    leaf.children = await expand(ctx, cfg, leaf, last=leaf.depth + 1 >= cfg.max_depth)
    return leaf.children[:1]


def terminal(node: Node, cfg: TreeSearchConfig) -> bool:
    """Finished, at the depth limit, or expanded into nothing."""
    return node.final or node.depth >= cfg.max_depth or node.children == []


def closed(node: Node, cfg: TreeSearchConfig) -> bool:
    """Whether nothing under `node` is left to expand or value."""
    if node.children:
        return all(closed(c, cfg) for c in node.children)
    return node.children == [] or (node.visits > 0 and terminal(node, cfg))


async def evaluate(ctx: Context, cfg: TreeSearchConfig, node: Node,
                   solutions: Solutions) -> Candidate | None:
    """Value `node` into `node.score`; returns a whole solution the verifier passed, if any."""
    if node.final:
        cand = ctx.candidate(node.text, source=f"node {node.id}")
        solutions.finished[node.id] = cand
        return await _judge(ctx, cfg, node, cand, rated=node)
    if cfg.value_source == "rollout":
        return await rollout(ctx, cfg, node, solutions)
    if cfg.value_source == "verifier":
        assert ctx.verifier is not None  # checked before the search
        value = await ctx.verifier.score_partial(ctx.problem, node.text)
        node.score = NEUTRAL if value is None else float(value)  # it declined this one
    else:
        await score(ctx, cfg, node, ask_verifier=cfg.value_source == "auto")
    return None


async def rollout(ctx: Context, cfg: TreeSearchConfig, node: Node,
                  solutions: Solutions) -> Candidate | None:
    """Simulate: finish `node`'s solution greedily in one call; its judgement is `node`'s value."""
    whole, cand = await write_rest(ctx, cfg, node)
    solutions.rollouts.append((node, cand))
    return await _judge(ctx, cfg, node, cand, rated=whole)


async def write_rest(ctx: Context, cfg: TreeSearchConfig, node: Node) -> tuple[Node, Candidate]:
    """`node`'s solution finished greedily in one call (`tree_search/rollout.j2`): the whole
    solution as a node off the tree, and as a candidate."""
    [reply] = await ctx.generate(
        "tree_search/rollout", max_tokens=cfg.rollout_max_tokens, temperature=0.0,
        step=f"rollout {node.id}", steps=node.steps,
    )
    whole = Node(id=f"{node.id} rollout", steps=[*node.steps, reply.text.strip()], parent=node)
    return whole, ctx.candidate(whole.text, source=f"rollout from node {node.id}")


async def _judge(ctx: Context, cfg: TreeSearchConfig, node: Node, cand: Candidate, *,
                 rated: Node) -> Candidate | None:
    """`node`'s value from a whole solution: the verdict on `cand`, else the model's rating of
    `rated` (the partial scorer has nothing to add to a finished solution)."""
    verdict = await ctx.verify(cand)
    if verdict is None:
        node.score = await score(ctx, cfg, rated, ask_verifier=False)
        return None
    node.score = verdict.score
    return cand if verdict.passed else None


def backpropagate(path: list[Node], value: float) -> None:
    for node in path:
        node.visits += 1
        node.value_sum += value


def choose(ctx: Context, root: Node, solutions: Solutions) -> tuple[Candidate, str]:
    """The answer, and the node it came from; see `mcts` for the rule."""
    finished = [n for n in walk(root) if n.final]
    if finished:
        best = max(finished, key=lambda n: (n.visits, n.q))  # max keeps the earliest of equals
        cand = solutions.finished.get(best.id) or ctx.candidate(best.text,
                                                                source=f"node {best.id}")
        return cand, best.id
    if solutions.rollouts:
        origin, cand = max(solutions.rollouts,
                           key=lambda pair: -1.0 if pair[0].score is None else pair[0].score)
        return cand, f"rollout from {origin.id}"
    node = most_visited_path_end(root)
    return ctx.candidate(node.text, source=f"node {node.id} (unfinished)"), node.id


def most_visited_path_end(root: Node) -> Node:
    """The node reached by following the most-visited child down from `root` (ties to the
    higher Q, then the earlier child); the root itself when the model wrote no first step."""
    node = root
    while node.children:
        node = max(node.children, key=lambda c: (c.visits, c.q))
    return node


def walk(root: Node) -> Iterator[Node]:
    """Every node under `root`, in pre-order (children in the order sampled)."""
    stack = [root]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(reversed(node.children or []))


def tree_nodes(root: Node, *, step_chars: int | None = None) -> list[dict[str, Any]]:
    """The tree as plain data, in pre-order; with `step_chars`, each node's last step too."""
    nodes = []
    for node in walk(root):
        entry: dict[str, Any] = {
            "id": node.id, "parent": node.parent.id if node.parent else None,
            "visits": node.visits, "value": round(node.q, 3) if node.visits else None,
            "final": node.final,
        }
        if step_chars is not None:
            step = node.steps[-1] if node.steps else ""
            entry["step"] = step if len(step) <= step_chars else step[: step_chars - 1] + "…"
        nodes.append(entry)
    return nodes


def _finish(ctx: Context, root: Node, answer: Candidate, chosen: str,
            reason: StopReason) -> Outcome:
    ctx.note("mcts_tree", nodes=tree_nodes(root, step_chars=STEP_CHARS))
    return ctx.finish(answer, reason, algorithm="mcts", iterations=root.visits, chosen=chosen,
                      tree=tree_nodes(root))
