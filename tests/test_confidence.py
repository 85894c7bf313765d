"""Confidence from token log-probabilities (DeepConf): the summary's maths, log-probs read from
a real HTTP server (and a server that refuses them), and `best_of_n(selector="confidence")`."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest

import ponder
from ponder import ScriptedBackend
from ponder.backends.base import asking_confidence
from ponder.backends.openai import OpenAIBackend
from ponder.core.confidence import TokenLogprobs, group_means, summarize, weight
from ponder.core.types import Confidence, Message
from ponder.strategies.sampling import confidence_vote
from ponder.testing import FakeOpenAIServer, make_context
from ponder.testing.tokens import token_logprobs

PROBLEM = "A shirt costs $4 and a hat costs $4. How much do both cost?"
MESSAGES = [Message(role="user", content="Tom has 3 apples and buys 5 more. How many now?")]


def answers(*values: str) -> list[str]:
    return [f"Adding up gives {v}. Final answer: {v}" for v in values]


def sure(value: float, measure: str = "top_k") -> Confidence:
    """A confidence whose every summary is `value`."""
    logprob = min(value, 0.0) if measure == "sampled" else -0.1
    return Confidence(measure=measure, tokens=10, window=4,  # type: ignore[arg-type]
                      mean_logprob=logprob, mean=value, lowest_group=value)


def scripted(confidence_by_answer: dict[str, float], replies: list[str]) -> ScriptedBackend:
    """Replies in order, each as sure as its final answer says."""
    def confidence(text: str) -> Confidence:
        return sure(confidence_by_answer[text.rsplit(" ", 1)[-1]])

    return ScriptedBackend(replies, confidence=confidence)


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as fake:
        yield fake


def fast(server: FakeOpenAIServer, **kwargs: object) -> OpenAIBackend:
    return OpenAIBackend(server.base_url, timeout=2.0, max_retries=1,  # type: ignore[arg-type]
                         backoff_initial=0.01, backoff_max=0.05, **kwargs)


# -- the summary --------------------------------------------------------------------------------


def test_top_k_confidence_is_minus_the_mean_top_log_prob_and_the_lowest_window_mean():
    tokens = [TokenLogprobs(-0.1, (-0.1, -4.0, -6.0)),   # sure: confidence 10.1/3
              TokenLogprobs(-0.7, (-0.7, -0.8, -2.0)),   # torn between two: 3.5/3
              TokenLogprobs(-0.9, (-0.6, -0.9, -2.1)),   # the runner-up sampled: 3.6/3
              TokenLogprobs(-0.2, (-0.2, -3.0, -5.2))]   # sure again: 8.4/3
    conf = summarize(tokens, window=2)
    assert conf is not None and conf.measure == "top_k"
    assert (conf.tokens, conf.window) == (4, 2)
    assert conf.mean_logprob == pytest.approx(-0.475)
    assert conf.mean == pytest.approx((10.1 + 3.5 + 3.6 + 8.4) / 12, abs=1e-6)
    # Windows: (10.1+3.5)/6, (3.5+3.6)/6, (3.6+8.4)/6: the torn middle is the lowest.
    assert conf.lowest_group == pytest.approx(7.1 / 6, abs=1e-6)


def test_without_top_candidates_the_sampled_log_prob_is_the_measure():
    conf = summarize([TokenLogprobs(-0.1), TokenLogprobs(-2.0), TokenLogprobs(-0.3)], window=2)
    assert conf is not None and conf.measure == "sampled"
    assert conf.mean == conf.mean_logprob == pytest.approx(-0.8)
    assert conf.lowest_group == pytest.approx(-1.15)


def test_one_top_candidate_is_not_enough_for_the_top_k_measure():
    # With k=1, minus the top log-prob is *low* when the model is sure: not DeepConf's measure.
    conf = summarize([TokenLogprobs(-0.1, (-0.1,)), TokenLogprobs(-0.5, (-0.5, -1.0))])
    assert conf is not None and conf.measure == "sampled"


def test_a_reply_shorter_than_the_window_is_one_group():
    assert group_means([1.0, 2.0, 6.0], window=8) == [3.0]
    conf = summarize([TokenLogprobs(-1.0), TokenLogprobs(-3.0)], window=8)
    assert conf is not None and conf.lowest_group == conf.mean == -2.0


def test_no_tokens_no_confidence_and_infinite_log_probs_are_floored():
    assert summarize([]) is None
    conf = summarize([TokenLogprobs(-0.1, (-0.1, -math.inf))], window=1)
    assert conf is not None and math.isfinite(conf.mean)


@pytest.mark.parametrize("bad", [math.inf, math.nan, 7.5, 1e308])
def test_impossible_log_probs_give_a_finite_summary_that_reads_back(bad: float):
    # A log-prob is at most 0; a server's +inf (Python's JSON reads `Infinity`) made the
    # summary infinite, written as null, and the row unreadable on resume.
    for tokens in ([TokenLogprobs(bad, (bad, -1.0))], [TokenLogprobs(-0.5, (bad, bad))],
                   [TokenLogprobs(bad)]):
        conf = summarize(tokens, window=1)
        if conf is None:  # a token whose own log-prob is NaN is no token
            assert math.isnan(bad) and math.isnan(tokens[0].sampled)
            continue
        assert all(math.isfinite(v) for v in (conf.mean, conf.lowest_group, conf.mean_logprob))
        assert Confidence.model_validate_json(conf.model_dump_json()) == conf
        assert weight(conf) >= 0


def test_weights_are_non_negative_under_either_measure():
    assert weight(sure(3.0)) == 3.0
    assert weight(sure(-0.5, "sampled")) == pytest.approx(math.exp(-0.5))


# -- reading log-probs from a server, over real HTTP --------------------------------------------


async def test_log_probs_from_the_server_become_each_completions_confidence(server):
    async with fast(server, top_logprobs=3, confidence_window=4) as backend:
        with asking_confidence():
            completions = await backend.generate(MESSAGES, n=2, max_tokens=100,
                                                 temperature=0.7)
    assert server.received[0]["logprobs"] is True and server.received[0]["top_logprobs"] == 3
    for completion in completions:
        words = completion.text.split()
        expected = summarize([TokenLogprobs(t["logprob"], [x["logprob"] for x in t["top_logprobs"]])
                              for t in (token_logprobs(w, 3) for w in words)], window=4)
        assert completion.confidence == expected
        assert completion.confidence is not None and completion.confidence.tokens == len(words)
        assert completion.confidence.measure == "top_k"
    assert sum(c.usage.prompt_tokens for c in completions) > 0  # usage read as before


async def test_top_logprobs_zero_gives_the_sampled_measure_and_none_asks_for_nothing(server):
    async with fast(server, top_logprobs=0) as backend:
        with asking_confidence():
            [completion] = await backend.generate(MESSAGES, max_tokens=100)
    assert completion.confidence is not None and completion.confidence.measure == "sampled"
    async with fast(server, top_logprobs=None) as backend:
        with asking_confidence():
            [completion] = await backend.generate(MESSAGES, max_tokens=100)
    assert completion.confidence is None
    assert "logprobs" not in server.received[-1] and "top_logprobs" not in server.received[-1]


async def test_a_server_refusing_log_probs_is_asked_again_without_and_remembered():
    with FakeOpenAIServer(logprobs="refuse") as server, asking_confidence():
        async with fast(server) as backend:
            [first] = await backend.generate(MESSAGES, max_tokens=100)
            assert server.requests == 2  # refused (400 naming logprobs), then asked without
            assert first.retries == 1 and first.text.endswith("Final answer: 8")
            assert first.confidence is None and backend.top_logprobs is None
            completions = await backend.generate(MESSAGES, n=3, max_tokens=100, temperature=0.7)
            assert server.requests == 3  # learned: never asked for them again
    assert len(completions) == 3 and all(c.confidence is None for c in completions)
    assert not any("logprobs" in body for body in server.received)


async def test_other_client_errors_are_not_taken_for_a_refusal():
    with FakeOpenAIServer(status_for=lambda body: 400) as server, asking_confidence():
        async with fast(server) as backend:
            with pytest.raises(ponder.BackendError, match="400"):
                await backend.generate(MESSAGES, max_tokens=100)
            assert server.requests == 1 and backend.top_logprobs == 5


async def test_a_server_ignoring_log_probs_gives_no_confidence():
    with FakeOpenAIServer(logprobs="ignore") as server, asking_confidence():
        async with fast(server) as backend:
            [completion] = await backend.generate(MESSAGES, max_tokens=100)
            assert completion.confidence is None and backend.top_logprobs == 5


async def test_log_probs_are_asked_for_only_by_calls_that_use_them(server):
    async with fast(server) as backend:
        [plain] = await backend.generate(MESSAGES, max_tokens=100)
    assert plain.confidence is None and "logprobs" not in server.received[-1]
    result = await ponder.asolve(PROBLEM, strategy="best_of_n", backend=server.base_url, n=3)
    assert result.answer == "8"  # the plain vote: no call of it asked
    assert not any("logprobs" in body for body in server.received)
    await ponder.asolve(PROBLEM, strategy="best_of_n", backend=server.base_url, n=3,
                        selector="confidence")
    assert server.received[-1]["logprobs"] is True


async def test_confidence_vote_over_http_names_its_measure(server):
    result = await ponder.asolve(PROBLEM, strategy="best_of_n", backend=server.base_url, n=3,
                                 selector="confidence")
    assert result.answer == "8"
    assert result.info["confidence"]["measure"] == "top_k"
    [generate] = [e for e in result.trace if e.kind == "generate"]
    assert all(c.confidence is not None for c in generate.completions)
    # The trace keeps the summary only, never the per-token lists.
    assert "top_logprobs" not in generate.model_dump_json()


# -- best_of_n(selector="confidence") -----------------------------------------------------------


async def test_the_least_confident_samples_are_dropped_before_the_vote():
    backend = scripted({"7": 1.0, "8": 9.0}, answers("7", "8", "7", "8", "7"))
    plain = await ponder.asolve(PROBLEM, strategy="best_of_n", n=5, selector="vote",
                                backend=scripted({"7": 1.0, "8": 9.0},
                                                 answers("7", "8", "7", "8", "7")))
    result = await ponder.asolve(PROBLEM, strategy="best_of_n", backend=backend, n=5,
                                 selector="confidence", keep=0.4)
    assert plain.answer == "7"
    assert result.answer == "8"
    info = result.info["confidence"]
    assert (info["kept"], info["dropped"]) == ([1, 3], [0, 2, 4])
    assert info["weights"] == {"8": 18.0}
    assert info["scores"] == [1.0, 9.0, 1.0, 9.0, 1.0]
    assert result.info["votes"] == {"7": 3, "8": 2}  # the plain count, for comparison
    assert result.info["vote_answer"] == "7"
    [note] = [e for e in result.trace if e.step == "confidence_vote"]
    assert note.data["summary"]["kept"] == [1, 3]


async def test_kept_samples_vote_with_their_confidence_as_weight():
    backend = scripted({"7": 2.0, "8": 5.0}, answers("7", "7", "8"))
    result = await ponder.asolve(PROBLEM, strategy="best_of_n", backend=backend, n=3,
                                 selector="confidence", keep=1.0)
    assert result.answer == "8"  # one vote of 5 outweighs two of 2
    assert result.info["confidence"]["weights"] == {"8": 5.0, "7": 4.0}
    assert result.info["confidence"]["dropped"] == []


async def test_keep_always_keeps_at_least_one_sample_and_ties_go_to_the_earlier():
    backend = scripted({"7": 3.0, "8": 3.0}, answers("8", "7", "7", "7"))
    result = await ponder.asolve(PROBLEM, strategy="best_of_n", backend=backend, n=4,
                                 selector="confidence", keep=0.01)
    assert result.answer == "8" and result.info["confidence"]["kept"] == [0]


async def test_the_mean_metric_ranks_by_the_whole_reply():
    def confidence(text: str) -> Confidence:
        # "7": sure on the whole but with one shaky stretch; "8": evenly middling.
        if text.endswith("7"):
            return Confidence(measure="top_k", tokens=9, window=3, mean_logprob=-0.2,
                              mean=8.0, lowest_group=1.0)
        return Confidence(measure="top_k", tokens=9, window=3, mean_logprob=-0.5,
                          mean=4.0, lowest_group=4.0)

    replies = answers("7", "8", "8", "7")
    by_group = await ponder.asolve(PROBLEM, strategy="best_of_n", n=4, selector="confidence",
                                   backend=ScriptedBackend(replies, confidence=confidence))
    by_mean = await ponder.asolve(PROBLEM, strategy="best_of_n", n=4, selector="confidence",
                                  confidence_metric="mean",
                                  backend=ScriptedBackend(replies, confidence=confidence))
    assert (by_group.answer, by_mean.answer) == ("8", "7")


async def test_without_log_probs_it_is_the_plain_vote_and_says_so_once():
    backend = ScriptedBackend(answers("9", "7", "9", "7", "7", "9", "9"))
    result = await ponder.asolve(PROBLEM, strategy="best_of_n", backend=backend, n=7,
                                 selector="confidence", adaptive=True, min_samples=2)
    assert len(backend.requests) > 1  # several batches, each settled by the plain rule
    assert result.answer == "9"
    assert result.info["confidence"] == ("unavailable: the backend gave no token "
                                         "log-probabilities for 7 of 7 samples")
    notes = [e for e in result.trace if e.step == "confidence_unavailable"]
    assert len(notes) == 1 and "no token log-probabilities" in notes[0].data["reason"]


async def test_one_sample_without_confidence_means_the_plain_vote():
    def confidence(text: str) -> Confidence | None:
        return None if text.endswith("8") else sure(1.0)

    backend = ScriptedBackend(answers("7", "8", "8"), confidence=confidence)
    result = await ponder.asolve(PROBLEM, strategy="best_of_n", backend=backend, n=3,
                                 selector="confidence", keep=0.3)
    assert result.answer == "8"
    assert result.info["confidence"].endswith("for 2 of 3 samples")


def test_samples_of_different_measures_are_not_compared():
    ctx = make_context(PROBLEM)
    samples = [ctx.candidate("Final answer: 7"), ctx.candidate("Final answer: 8")]
    samples[0].confidence, samples[1].confidence = sure(2.0), sure(-0.1, "sampled")
    weighed = confidence_vote(ctx, samples, keep=0.5)
    assert weighed.unavailable is not None and "mix" in weighed.unavailable
    assert weighed.kept == [0, 1]


async def test_adaptive_stops_once_the_confident_samples_agree():
    # The first three: two sure 8s and an unsure 7. Kept (keep 0.5 → 2), the 8s agree.
    backend = scripted({"7": 1.0, "8": 6.0}, answers("8", "7", "8", "7", "7", "7", "7", "7"))
    result = await ponder.asolve(PROBLEM, strategy="best_of_n", backend=backend, n=8,
                                 selector="confidence", adaptive=True, min_samples=3)
    assert (result.answer, result.stop_reason, result.info["samples"]) == ("8", "consensus", 3)


async def test_adaptive_confidence_never_stops_on_an_unweighable_lead():
    # Plain votes would stop on "majority" at 4 of 5 (three 7s against one 8, one left); the
    # weighted vote cannot bound what the last sample weighs, so it draws it: a sure 8.
    backend = scripted({"7": 1.0, "8": 6.0}, answers("7", "8", "7", "7", "8"))
    result = await ponder.asolve(PROBLEM, strategy="best_of_n", backend=backend, n=5,
                                 selector="confidence", keep=1.0, agreement=0.95,
                                 adaptive=True, min_samples=4)
    assert result.info["samples"] == 5 and result.stop_reason == "done"
    assert result.answer == "8"  # 12 against 3
