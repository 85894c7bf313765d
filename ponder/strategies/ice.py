"""`ice` (Iterative Consensus Ensemble): several agents answer, read each other, and revise
until enough of them agree."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ponder.backends.base import Backend
from ponder.core.errors import BudgetExhausted
from ponder.core.types import Candidate, Outcome, StopReason
from ponder.strategies.base import StrategyConfig
from ponder.strategies.context import Context
from ponder.strategies.voting import (
    Votes,
    gather_within_budget,
    pick_best,
    tally,
)

# Every agent reads every other agent's answer and reasoning in each revision round, so a
# round's prompt tokens grow with the square of the agents: 32 agents is far past the 3-5 the
# method is run with, and `agents: 200000` (200k calls a round) is refused.
MAX_AGENTS = 32
MAX_ROUNDS = 20


class Agent(BaseModel):
    """One ICE agent. `backend` (Python API only) lets an agent run on its own model or server,
    e.g. `Agent(backend=OpenAIBackend(base_url=..., model="other"))`; it is left out of the
    recorded params."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    name: str | None = None
    persona: str | None = Field(default=None, description="put at the top of the system prompt")
    temperature: float | None = Field(default=None, ge=0.0, le=2.0,
                                      description="default: the strategy's temperature")
    max_tokens: int | None = Field(default=None, gt=0)
    backend: Backend | None = Field(default=None, exclude=True)


class ICEConfig(StrategyConfig):
    temperature: float = Field(default=0.7, ge=0.0, le=2.0, description="sampling temperature")
    agents: int | list[Agent] = Field(default=3, description="how many agents, or one spec each")
    max_rounds: int = Field(default=2, ge=0, le=MAX_ROUNDS,
                            description="revision rounds after round 0")
    agreement: float = Field(
        default=1.0, gt=0.0,
        description="agents that must agree to stop: a fraction (<= 1) or a count (> 1)")

    @field_validator("agents", mode="before")
    @classmethod
    def _at_most(cls, agents: Any) -> Any:
        # Before the agents are validated: a list of a million specs is refused uncounted.
        count = len(agents) if isinstance(agents, list) else agents
        if isinstance(count, int) and count > MAX_AGENTS:
            raise ValueError(f"at most {MAX_AGENTS} agents, got {count}")
        return agents

    @model_validator(mode="after")
    def _check(self) -> ICEConfig:
        count = len(self.roster())
        if count < 1:
            raise ValueError("ICE needs at least one agent")
        if self.agreement > 1 and (self.agreement != int(self.agreement) or self.agreement > count):
            raise ValueError(
                f"agreement {self.agreement} is a count of agents; it must be a whole number "
                f"no larger than the {count} agents")
        return self

    def roster(self) -> list[Agent]:
        if isinstance(self.agents, int):
            return [Agent() for _ in range(self.agents)]
        return list(self.agents)

    def needed(self) -> int:
        """How many agents make a consensus."""
        count = len(self.roster())
        if self.agreement > 1:
            return int(self.agreement)
        return max(1, math.ceil(self.agreement * count - 1e-9))


async def ice(ctx: Context, cfg: ICEConfig) -> Outcome:
    """Round 0: every agent answers alone. Rounds 1..`max_rounds`: every agent sees the others'
    latest answers and reasoning (`ice/revise.j2`) and revises; agents in a round run
    concurrently.

    Stops when `agreement` of the agents share one canonical answer (`consensus`), when the
    verifier, if any, passes an agent's answer (`verified`), after `max_rounds`
    (`max_rounds`), or when the budget runs out (`budget`; an agent that could not answer keeps
    its previous answer). The answer is the consensus, else the last round's majority (ties to
    the earlier agent).

    `info`: `rounds`, one entry per round with its `answers` (per agent), the `top` canonical
    answer and its `agreement` (share of agents).
    """
    agents = cfg.roster()
    names = [a.name or f"agent {i + 1}" for i, a in enumerate(agents)]
    needed = cfg.needed()
    latest: list[Candidate | None] = [None] * len(agents)
    rounds: list[dict[str, Any]] = []
    reason: StopReason = "max_rounds"
    for round_no in range(cfg.max_rounds + 1):
        replies, out_of_budget = await gather_within_budget(
            _answer(ctx, cfg, agent, names[i], round_no, i, latest, names)
            for i, agent in enumerate(agents))
        for i, reply in enumerate(replies):
            if reply is not None:
                latest[i] = reply
        current = [c for c in latest if c is not None]
        votes = tally(ctx, current)
        rounds.append(_record(round_no, latest, votes, len(agents)))
        ctx.note("round", **rounds[-1])
        if votes.top_votes >= needed:
            reason = "consensus"
            break
        if await _any_verified(ctx, current):
            reason = "verified"
            break
        if out_of_budget:
            reason = "budget"
            break
    final = [c for c in latest if c is not None]
    return ctx.finish(pick_best(ctx, final), reason, rounds=rounds)


async def _answer(ctx: Context, cfg: ICEConfig, agent: Agent, name: str, round_no: int,
                  index: int, latest: Sequence[Candidate | None],
                  names: Sequence[str]) -> Candidate:
    options: dict[str, Any] = {
        "max_tokens": agent.max_tokens or cfg.max_tokens,
        "temperature": cfg.temperature if agent.temperature is None else agent.temperature,
        "backend": agent.backend, "step": f"round {round_no} {name}", "persona": agent.persona,
    }
    own = latest[index]
    if round_no == 0 or own is None:
        [reply] = await ctx.generate("ice/answer", **options)
    else:
        others = [{"agent": names[j], "answer": c.answer, "text": c.text}
                  for j, c in enumerate(latest) if j != index and c is not None]
        [reply] = await ctx.generate("ice/revise", own=own, others=others, **options)
    return ctx.candidate(reply.text, source=f"{name} round {round_no}", usage=reply.usage)


async def _any_verified(ctx: Context, current: list[Candidate]) -> bool:
    if ctx.verifier is None:
        return False
    try:
        for cand in current:
            if cand.verdict is None:
                await ctx.verify(cand)
    except BudgetExhausted:
        return False
    return any(c.verdict is not None and c.verdict.passed for c in current)


def _record(round_no: int, latest: Sequence[Candidate | None], votes: Votes,
            agents: int) -> dict[str, Any]:
    return {
        "round": round_no,
        "answers": [None if c is None else c.answer for c in latest],
        "top": votes.groups[0].key if votes.groups else None,
        "agreement": votes.top_votes / agents,
    }
