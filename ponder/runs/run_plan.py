"""How a total budget's first pass is planned before it spends (`ponder.runs.allocation`).

An even share T/N that cannot pay for one call of what a problem runs buys nothing: the call
is refused and the problem ends with no answer. So before the first pass spends, the plan
prices one problem's first step (its calls' prompt bounds plus the completion tokens they
ask for) and picks what the share can pay for, cheapest last:

1. the strategy as configured (`auto`'s first step is two greedy calls at once: the program
   and the prose answer);
   A sampling strategy (`best_of_n`) needs one sample to fit: the meter cuts its request
   to the samples that do, so fewer samples come on their own;
2. `single`, greedy, with a `max_tokens` that fits the share, if it leaves at least
   `floor_completion` (a reply shorter than that rarely reaches its answer line);
3. rationed: one `single` call for as many problems as the total can pay for at the floor,
   in order; the rest get no call in the first pass, and the plan says how many.

Prompt bounds are what the run's `PromptCalibration` would reserve now. Before any reply
that is the byte bound, three to five times the real prompt, which would price every tier
out; so when the strategy's own step does not fit at that price, the first problem is solved
first, one at a time (`single`, probes), its reply teaches the calibration, and the plan is priced
again with the learned bound.

A problem run below its strategy (steps 2 and 3, or the probe) is not settled by it: later
passes solve it again with the strategy itself, continuing from its replies.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ponder.core.calibration import PromptCalibration
from ponder.core.types import Problem, Result
from ponder.prompts import PromptLibrary
from ponder.runs.budget_split import PLAN_KEY
from ponder.strategies import REGISTRY
from ponder.strategies.base import StrategyConfig, StrategySpec

# A reply cut shorter than this rarely reaches an answer line (GSM8K replies run 60-200
# tokens; on the fake quiz, rationed calls at 64 came back cut short and all but worthless),
# so no call asks for less (unless the strategy's max_tokens is lower).
FLOOR_COMPLETION = 128
# The template whose prompt prices a call: every strategy's first step asks about the
# problem with a prompt of about this size.
PRICING_TEMPLATE = "single/answer"
# Of the problems' prompt bounds, the one the plan pays for: a high quantile, so that few
# problems' calls are cut short, without one long outlier pricing the rest out.
PRICING_QUANTILE = 0.9


@dataclass(frozen=True)
class Rung:
    """What the first pass runs for each problem: a strategy and its config."""

    spec: StrategySpec[Any]
    config: StrategyConfig
    own: bool  # the caller's own strategy and config

    @property
    def label(self) -> str:
        return self.spec.name if self.own else \
            f"{self.spec.name} max_tokens={self.config.max_tokens}"


@dataclass(frozen=True)
class FirstPassPlan:
    """The first pass: what runs, each problem's cap, and how many problems get a call."""

    rung: Rung
    cap: int
    afforded: int  # of the problems planned, the first `afforded` get a call
    planned: int
    prompt: int | None  # the prompt bound one call was priced at (None: not priced)
    step_cost: int | None  # one problem's first step at that price
    probed: bool = False

    @property
    def skipped(self) -> int:
        return self.planned - self.afforded

    def note(self, *, probe: bool = False) -> dict[str, Any]:
        """What a row's `info[PLAN_KEY]` says of the plan its first pass ran under."""
        return {"tier": self.rung.spec.name, "label": self.rung.label, "cap": self.cap,
                "own": self.rung.own and not probe, "probe": probe,
                "afforded": self.afforded, "skipped": self.skipped,
                "prompt_bound": self.prompt, "step_cost": self.step_cost}


def below_strategy(row: Result) -> bool:
    """Whether `row`'s first pass ran something cheaper than the run's strategy (or made no
    call because the plan could not afford one): a later pass may still improve it."""
    plan = row.info.get(PLAN_KEY)
    return isinstance(plan, dict) and plan.get("own") is False


def step_cost(rung: Rung, prompt: int, copies: Callable[[int], int]) -> int:
    """What one problem's first step costs at `prompt` tokens a prompt copy: `copies(n)` is
    how many copies of the prompt the backend charges for n samples."""
    return rung.config.first_step_calls() * (prompt * copies(1) + rung.config.max_tokens)


def cheap(config: StrategyConfig, max_tokens: int) -> Rung:
    """`single`, greedy, at `max_tokens`: the cheapest useful call."""
    spec = REGISTRY.get("single")
    few_shot = bool(getattr(config, "few_shot", False))
    return Rung(spec, spec.make_config({"max_tokens": max_tokens, "temperature": 0.0,
                                        "few_shot": few_shot}), own=False)


async def prompt_bound(problems: Sequence[Problem], prompts: PromptLibrary,
                       calibration: PromptCalibration, label: str) -> int:
    """The prompt bound the plan prices a call at: what the calibration would reserve now for
    `problems`' prompts, at `PRICING_QUANTILE`."""
    bounds = []
    for problem in problems:
        messages = prompts.render(PRICING_TEMPLATE, problem=problem.problem,
                                  entry_point=problem.entry_point, few_shot=False)
        bound = await calibration.bound((label, PRICING_TEMPLATE, len(messages)), messages)
        bounds.append(bound.tokens)
    bounds.sort()
    return bounds[min(len(bounds) - 1, int(PRICING_QUANTILE * len(bounds)))] if bounds else 0


def plan_first_pass(spec: StrategySpec[Any], config: StrategyConfig, *, tokens: int,
                    problems: int, share: int, prompt: int, copies: Callable[[int], int],
                    min_completion: int, per_problem: int | None) -> FirstPassPlan:
    """The first pass for `problems` problems sharing `tokens`, each at `share`, one call's
    prompt priced at `prompt` (see the module's docstring for the rule)."""
    own = Rung(spec, config, own=True)
    cost = step_cost(own, prompt, copies)
    if cost <= share:
        return FirstPassPlan(own, share, problems, problems, prompt, cost)
    floor = max(min_completion, min(FLOOR_COMPLETION, config.max_tokens))
    if share - prompt >= floor:
        rung = cheap(config, min(config.max_tokens, share - prompt))
        return FirstPassPlan(rung, share, problems, problems, prompt,
                             step_cost(rung, prompt, copies))
    # Not one call each: as many as the total pays for at the floor, in order, sharing it.
    afforded = min(problems, tokens // (prompt + floor))
    cap = tokens // afforded if afforded else 0
    if per_problem is not None:
        cap = min(cap, per_problem)
    rung = cheap(config, max(1, min(config.max_tokens, cap - prompt)))
    return FirstPassPlan(rung, max(1, cap), afforded, problems, prompt,
                         step_cost(rung, prompt, copies))


def unpriced(spec: StrategySpec[Any], config: StrategyConfig, share: int,
             problems: int) -> FirstPassPlan:
    """The strategy itself at `share`: a plan made without pricing (nothing to price by)."""
    return FirstPassPlan(Rung(spec, config, own=True), share, problems, problems, None, None)
