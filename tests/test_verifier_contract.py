"""The verifier contract: `verify` is the one required method, sync or async; registries
refuse to replace a name silently."""

from __future__ import annotations

from typing import Any

import pytest

import ponder
from ponder import Candidate, ConfigError, Problem, Verdict
from ponder.strategies.registry import StrategyRegistry, make_register
from ponder.verifiers import VerifierChoice, as_verifier
from ponder.verifiers.base import judge
from ponder.verifiers.registry import VerifierRegistry

PROBLEM = Problem(problem="Name an even number.")
EVEN, ODD = Candidate(text="Final answer: 4", answer="4"), Candidate(text="7", answer="7")


class AsyncNoName(ponder.Verifier):
    async def verify(self, problem: Problem, candidate: Candidate) -> Verdict:
        return Verdict.from_bool(int(candidate.answer) % 2 == 0)


class SyncVerify(ponder.Verifier):
    def verify(self, problem: Problem, candidate: Candidate) -> bool:  # type: ignore[override]
        return int(candidate.answer) % 2 == 0


class DuckTyped:
    """Not a ponder.Verifier at all: a plain class with a sync verify and its own canonical."""

    def verify(self, problem: Problem, candidate: Candidate) -> float:
        return 1.0 if int(candidate.answer) % 2 == 0 else 0.25

    def canonical(self, answer: str) -> str:
        return answer.strip().lower()


@pytest.mark.parametrize("verifier", [AsyncNoName(), SyncVerify(), DuckTyped(),
                                      lambda p, c: int(c.answer) % 2 == 0])
async def test_any_shape_of_verify_judges_and_gets_defaults(verifier: Any) -> None:
    v = as_verifier(verifier)
    assert (await judge(v, PROBLEM, EVEN)).passed
    assert not (await judge(v, PROBLEM, ODD)).passed
    assert v.name  # a default name where the object has none
    assert v.extract("so \\boxed{12}") == "12"
    assert await v.score_partial(PROBLEM, "half way") is None


def test_default_names_and_own_methods() -> None:
    assert AsyncNoName().name == "async_no_name"
    adapted = as_verifier(DuckTyped())
    assert adapted.name == "duck_typed" and adapted.canonical(" ABC ") == "abc"
    assert adapted.offers("canonical") and not adapted.offers("extract")


async def test_a_verifier_in_a_run_and_in_ponder_verify() -> None:
    verdict = await ponder.averify(PROBLEM, "Final answer: 10", AsyncNoName())
    assert verdict.passed
    result = await ponder.asolve(PROBLEM, verifier=SyncVerify(),
                                 backend=ponder.ScriptedBackend("Final answer: 6"))
    assert result.verdict is not None and result.verdict.passed
    assert result.stop_reason == "verified"


@pytest.mark.parametrize(("thing", "message"), [
    (42, r"42 is not a verifier: subclass ponder\.Verifier and write `async def verify"),
    (AsyncNoName, r"AsyncNoName is a class; pass an instance, AsyncNoName\(\)"),
])
def test_what_is_not_a_verifier_gets_one_line_saying_what_to_write(thing: Any,
                                                                     message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        as_verifier(thing)
    assert "\n" not in str(caught.value)


def test_a_verifier_that_returns_nonsense_is_named() -> None:
    class Wrong(ponder.Verifier):
        async def verify(self, problem: Problem, candidate: Candidate) -> Verdict:
            return "yes"  # type: ignore[return-value]

    with pytest.raises(ConfigError, match=r"verifier 'wrong' returned str; return a Verdict"):
        ponder.verify(PROBLEM, "1", Wrong())


def test_one_rule_picks_a_problems_verifier() -> None:
    choice = VerifierChoice()
    assert choice.for_problem(Problem(problem="2+2?", answer="4")).name == "math"  # type: ignore[union-attr]
    assert choice.for_problem(Problem(problem="f", tests=["assert 1"])).name == "unit_tests"  # type: ignore[union-attr]
    assert choice.for_problem(Problem(problem="hi")) is None
    assert VerifierChoice("exact").for_problem(Problem(problem="2+2?", answer="4")).name == "exact"  # type: ignore[union-attr]


def test_registering_a_taken_verifier_name_is_refused_unless_replace() -> None:
    registry = VerifierRegistry()
    registry.add("even", AsyncNoName)
    with pytest.raises(ConfigError, match=r"verifier named 'even' already exists.*replace=True"):
        registry.add("even", SyncVerify)
    with pytest.raises(ConfigError, match=r"'math' already exists"):
        registry.add("math", SyncVerify)
    registry.add("even", SyncVerify, replace=True)
    assert isinstance(registry.get("even"), SyncVerify)


def test_registering_a_taken_strategy_name_is_refused_unless_replace() -> None:
    registry = StrategyRegistry()
    register = make_register(registry)

    async def first(ctx: ponder.Context, cfg: ponder.StrategyConfig) -> None:
        return None

    async def second(ctx: ponder.Context, cfg: ponder.StrategyConfig) -> None:
        return None

    register("single")(first)
    with pytest.raises(ConfigError, match=r"strategy named 'single' already exists"):
        register("single")(second)
    register("single", replace=True)(second)
    assert registry.get("single").run is second


def test_the_shared_registry_protects_the_builtins() -> None:
    with pytest.raises(ConfigError, match="already exists"):
        ponder.register_strategy("single")(lambda ctx, cfg: None)
    with pytest.raises(ConfigError, match="already exists"):
        ponder.register_verifier("math")(lambda p, c: True)
