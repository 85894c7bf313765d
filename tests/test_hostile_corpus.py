"""Every hostile candidate of `tests/hostile_corpus.py` against every unit-test mode: none
passes a wrong solution in `isolated` mode, and `in_process` (no defence, documented) fails
each one except those marked as forging there, which must still forge (so each is a real
attack)."""

from __future__ import annotations

import pytest

from ponder.core.types import Candidate, Verdict
from ponder.sandbox import Limits, Sandbox
from ponder.verifiers.unit_tests import UnitTestVerifier
from tests.hostile_corpus import CORPUS, RIGHT, SECRET

LIMITS = Limits(timeout_s=10.0, cpu_s=5, memory_mb=512)
MODES = ("isolated", "in_process")


@pytest.fixture(scope="module")
def sandbox() -> Sandbox:
    return Sandbox()


async def verdict_for(name: str, mode: str, sandbox: Sandbox) -> Verdict:
    hostile = CORPUS[name]
    verifier = UnitTestVerifier(limits=LIMITS, sandbox=sandbox, mode=mode,  # type: ignore[arg-type]
                                private_feedback="full")
    code = hostile.source()
    return await verifier.verify(hostile.problem, Candidate(text=code, answer=code))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", sorted(CORPUS))
async def test_the_hostile_candidate_gets_its_verdict(name: str, mode: str,
                                                      sandbox: Sandbox) -> None:
    hostile = CORPUS[name]
    verdict = await verdict_for(name, mode, sandbox)
    assert verdict.details.get("stage") != "compile", verdict.feedback  # the trick ran
    if mode == "in_process" and hostile.forges_in_process:
        assert verdict.passed, f"{name} no longer forges in_process: update the corpus"
        return
    assert not verdict.passed, (name, mode, verdict.feedback)
    assert verdict.score < 1.0 if hostile.partial else verdict.score == 0.0, verdict.feedback
    for text in hostile.says:
        assert text in verdict.feedback, verdict.feedback


@pytest.mark.parametrize("mode", MODES)
async def test_the_right_solution_passes_in_every_mode(mode: str, sandbox: Sandbox) -> None:
    verifier = UnitTestVerifier(limits=LIMITS, sandbox=sandbox, mode=mode)  # type: ignore[arg-type]
    verdict = await verifier.verify(SECRET, Candidate(text=RIGHT, answer=RIGHT))
    assert verdict.passed, verdict.feedback
