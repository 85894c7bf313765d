"""`best_of_n`: one `n=N` request, the `n` fallback, verifier / vote / judge selection, the
adaptive stopping rule, and the budget cutting sampling short."""

from __future__ import annotations

import pytest

import ponder
from ponder import Budget, ConfigError, ScriptedBackend
from ponder.testing import by_step

PROBLEM = "A shirt costs $4 and a hat costs $4. How much do both cost?"


def answers(*values: str) -> list[str]:
    return [f"Adding up gives {v}. Final answer: {v}" for v in values]


async def test_draws_all_samples_in_one_request_and_votes_by_value():
    backend = ScriptedBackend(answers("8", "$8.00", "7", "8 dollars", "9"))
    result = await ponder.asolve(PROBLEM, strategy="best_of_n", backend=backend, n=5)
    assert [r["n"] for r in backend.requests] == [5]
    assert result.info["samples"] == 5
    assert result.info["votes"] == {"8": 3, "7": 1, "9": 1}  # "$8.00" and "8 dollars" vote 8
    assert result.answer == "8"


@pytest.mark.parametrize("few_shot", [True, False])
async def test_worked_examples_are_in_the_samples_prompt_only_when_asked(few_shot: bool):
    backend = ScriptedBackend(answers("8", "8", "8"))
    await ponder.asolve(PROBLEM, strategy="best_of_n", backend=backend, n=3, few_shot=few_shot)
    [request] = backend.requests
    prompt = request["messages"][-1].content
    assert ("Here are examples" in prompt) is few_shot and PROBLEM in prompt


@pytest.mark.parametrize("backend", [ScriptedBackend(answers("8", "7", "8"), native_n=False),
                                     ScriptedBackend(answers("8", "7", "8"), max_n=2)],
                         ids=["no-native-n", "max-n-2"])
async def test_a_backend_without_full_n_still_yields_n_samples(backend):
    result = await ponder.asolve(PROBLEM, strategy="best_of_n", backend=backend, n=5)
    assert result.info["samples"] == 5
    assert len(backend.requests) > 1
    assert result.answer == "8"


async def test_with_a_verifier_the_first_passing_sample_wins():
    backend = ScriptedBackend(answers("7", "8", "7", "7", "7"))
    result = await ponder.asolve(PROBLEM, strategy="best_of_n", backend=backend, n=5,
                                 verifier=lambda problem, cand: cand.answer == "8")
    assert (result.answer, result.stop_reason) == ("8", "verified")
    verified = [e for e in result.trace if e.kind == "verify" and "source" not in e.data]
    assert len(verified) == 2  # checking stops at the first pass (the vote is judged apart)


async def test_with_a_verifier_and_no_pass_the_highest_score_wins():
    scores = {"6": 0.2, "7": 0.6, "9": 0.1}
    backend = ScriptedBackend(answers("9", "9", "7", "6", "9"))
    result = await ponder.asolve(PROBLEM, strategy="best_of_n", backend=backend, n=5,
                                 verifier=lambda problem, cand: scores[cand.answer])
    assert result.answer == "7"  # one vote, but the verifier prefers it over the majority


async def test_the_vote_selector_ignores_the_verifier():
    backend = ScriptedBackend(answers("9", "9", "7"))
    result = await ponder.asolve(PROBLEM, strategy="best_of_n", backend=backend, n=3,
                                 selector="vote", verifier=lambda p, c: c.answer == "7")
    assert result.answer == "9"
    assert result.verdict is not None and not result.verdict.passed


async def test_the_judge_picks_among_distinct_answers():
    backend = ScriptedBackend(by_step(generate=answers("9", "9", "8"),
                                      judge="Candidate 1 forgets the hat. Best: 2"))
    result = await ponder.asolve(PROBLEM, strategy="best_of_n", backend=backend, n=3,
                                 selector="judge")
    assert result.answer == "8"
    assert result.info["judge_choice"] == 2
    [judged] = backend.requests_for("judge")
    shown = judged["messages"][-1].content
    assert "Candidate 1 (answer: 9)" in shown and "Candidate 2 (answer: 8)" in shown
    assert "Candidate 3" not in shown  # one sample per distinct answer


async def test_an_unreadable_judge_falls_back_to_the_vote():
    backend = ScriptedBackend(by_step(generate=answers("9", "9", "8"), judge="They all look fine."))
    result = await ponder.asolve(PROBLEM, strategy="best_of_n", backend=backend, n=3,
                                 selector="judge")
    assert result.answer == "9"
    assert result.info["judge_choice"] is None


async def test_no_judge_call_when_all_samples_agree():
    backend = ScriptedBackend(by_step(generate=answers("8")))
    result = await ponder.asolve(PROBLEM, strategy="best_of_n", backend=backend, n=3,
                                 selector="judge")
    assert result.answer == "8"
    assert backend.requests_for("judge") == []


async def test_adaptive_stops_when_the_first_samples_agree():
    backend = ScriptedBackend(answers("8"))
    result = await ponder.asolve(PROBLEM, strategy="best_of_n", backend=backend, n=5,
                                 adaptive=True, min_samples=3)
    assert [r["n"] for r in backend.requests] == [3]
    assert (result.info["samples"], result.stop_reason) == (3, "consensus")


async def test_adaptive_keeps_sampling_while_two_more_could_overturn_the_lead():
    backend = ScriptedBackend(answers("8", "8", "7", "8", "7"))
    result = await ponder.asolve(PROBLEM, strategy="best_of_n", backend=backend, n=5,
                                 adaptive=True, min_samples=3, agreement=0.7)
    assert [r["n"] for r in backend.requests] == [3, 1]  # 2/3 is not enough; 3/4 is
    assert (result.answer, result.info["samples"], result.stop_reason) == ("8", 4, "consensus")


async def test_adaptive_stops_when_the_rest_cannot_change_the_winner():
    backend = ScriptedBackend(answers("8", "8", "7", "8", "7"))
    result = await ponder.asolve(PROBLEM, strategy="best_of_n", backend=backend, n=5,
                                 adaptive=True, min_samples=3, agreement=0.9)
    assert (result.info["samples"], result.stop_reason) == (4, "majority")  # 3-1 with 1 left


async def test_adaptive_with_no_agreement_draws_all_n():
    backend = ScriptedBackend(answers("1", "2", "3", "4", "5"))
    result = await ponder.asolve(PROBLEM, strategy="best_of_n", backend=backend, n=5,
                                 adaptive=True, batch_size=2)
    assert [r["n"] for r in backend.requests] == [3, 2]
    assert result.info["samples"] == 5
    assert result.answer == "1"  # all tied: the first answer


async def test_adaptive_with_a_verifier_stops_at_the_first_pass():
    backend = ScriptedBackend(answers("7", "7", "7", "8", "7", "7"))
    result = await ponder.asolve(PROBLEM, strategy="best_of_n", backend=backend, n=6,
                                 adaptive=True, verifier=lambda p, c: c.answer == "8")
    # three agreeing samples do not stop it: the verifier rejected them
    assert (result.answer, result.info["samples"], result.stop_reason) == ("8", 4, "verified")


async def test_a_short_budget_draws_fewer_samples_and_says_so():
    one = await ponder.asolve(PROBLEM, strategy="best_of_n", n=1, max_tokens=50,
                              backend=ScriptedBackend(answers("8")))
    # The prompt once, and room for three samples of at least `min_completion_tokens` (16) each.
    budget = Budget(tokens=one.usage.prompt_tokens + 3 * 16 + 2)
    backend = ScriptedBackend(answers("8", "7", "8", "9", "9"))
    result = await ponder.asolve(PROBLEM, strategy="best_of_n", backend=backend, n=5,
                                 max_tokens=50, budget=budget)
    assert result.info["samples"] == 3
    assert result.answer == "8"
    assert result.stop_reason == "budget" and result.budget_exhausted
    assert result.usage.total_tokens <= budget.tokens


async def test_adaptive_out_of_budget_votes_over_what_it_has():
    backend = ScriptedBackend(answers("8", "7", "9", "7"))
    first = await ponder.asolve(PROBLEM, strategy="best_of_n", n=3, max_tokens=50,
                                backend=ScriptedBackend(answers("8", "7", "9")))
    result = await ponder.asolve(PROBLEM, strategy="best_of_n", backend=backend, n=5,
                                 adaptive=True, max_tokens=50,
                                 budget=Budget(tokens=first.usage.prompt_tokens + 3 * 16 + 2))
    assert result.info["samples"] == 3
    assert result.stop_reason == "budget"
    assert result.answer == "8"


async def test_unknown_parameters_are_refused_with_the_valid_ones():
    with pytest.raises(ConfigError, match=r"samples.*Valid parameters:.*n=5.*adaptive=False"):
        await ponder.asolve(PROBLEM, strategy="best_of_n", backend=ScriptedBackend(), samples=3)


async def test_the_confidence_selector_checks_its_keep_share():
    with pytest.raises(ConfigError, match="keep"):
        await ponder.asolve(PROBLEM, strategy="best_of_n", backend=ScriptedBackend(),
                            selector="confidence", keep=0)
