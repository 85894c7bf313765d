"""The in-process vLLM backend, against a stand-in `vllm` with vLLM's call shapes.

No GPU here: `tests/vllm_standin/vllm` answers `LLM.chat` the way vLLM does (RequestOutput,
CompletionOutput, prompt_token_ids, token_ids, finish_reason, and logprobs as one dict of token
id → Logprob per token) with a whitespace tokenizer.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

import ponder
from ponder.backends.base import asking_confidence
from ponder.backends.vllm import VLLMBackend
from ponder.budget import Budget
from ponder.confidence import TokenLogprobs, summarize
from ponder.errors import BackendError, MissingDependency
from ponder.testing import make_context
from ponder.types import Message

STANDIN = Path(__file__).parent / "vllm_standin"
MESSAGES = [Message(role="system", content="Answer briefly."),
            Message(role="user", content="Tom has 3 apples and buys 5 more. How many now?")]


@pytest.fixture
def vllm(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    monkeypatch.syspath_prepend(str(STANDIN))
    monkeypatch.delitem(sys.modules, "vllm", raising=False)
    import vllm  # type: ignore[import-not-found]  # the stand-in, found on the path above

    yield vllm
    sys.modules.pop("vllm", None)  # the stand-in must not outlive the test


def test_importing_the_backend_does_not_import_vllm() -> None:
    code = "import sys, ponder.backends.vllm; assert 'vllm' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


async def test_missing_vllm_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "vllm", None)  # makes `import vllm` fail
    backend = VLLMBackend("Qwen/Qwen2.5-0.5B-Instruct")
    with pytest.raises(MissingDependency, match=r'pip install "ponder\[vllm\]"'):
        await backend.generate(MESSAGES, max_tokens=32)


async def test_n_samples_are_one_request_charging_the_prompt_once(vllm: ModuleType) -> None:
    backend = VLLMBackend("qwen-standin")
    completions = await backend.generate(MESSAGES, n=3, max_tokens=64, temperature=0.8, seed=1)

    assert backend.llm is not None and backend.llm.batches == [1]
    assert len(completions) == 3 and len({c.text for c in completions}) > 1
    assert all(c.text.endswith("Final answer: 8") for c in completions)
    prompt = await backend.count_prompt_tokens(MESSAGES)
    assert [c.usage.prompt_tokens for c in completions] == [prompt, 0, 0]
    assert all(c.usage.completion_tokens == len(c.text.split()) for c in completions)
    assert backend.prompt_copies(3) == 1


async def test_prefix_caching_is_on_unless_told_otherwise(vllm: ModuleType) -> None:
    backend = VLLMBackend("qwen-standin", engine_kwargs={"max_model_len": 2048})
    await backend.generate(MESSAGES, max_tokens=8)
    assert backend.llm is not None
    assert backend.llm.enable_prefix_caching is True and backend.llm.max_model_len == 2048

    off = VLLMBackend("qwen-standin", engine_kwargs={"enable_prefix_caching": False})
    await off.generate(MESSAGES, max_tokens=8)
    assert off.llm is not None and off.llm.enable_prefix_caching is False


async def test_greedy_samples_are_generated_once(vllm: ModuleType) -> None:
    # vLLM refuses n > 1 at temperature 0; the backend asks once and repeats the reply.
    backend = VLLMBackend("qwen-standin")
    completions = await backend.generate(MESSAGES, n=3, max_tokens=64, temperature=0.0)
    assert len({c.text for c in completions}) == 1 and len(completions) == 3
    assert [c.usage.total_tokens > 0 for c in completions] == [True, False, False]


async def test_max_tokens_and_stop_reach_the_engine(vllm: ModuleType) -> None:
    backend = VLLMBackend("qwen-standin")
    [cut] = await backend.generate(MESSAGES, max_tokens=3)
    [stopped] = await backend.generate(MESSAGES, max_tokens=64, stop=["Final answer"])
    assert cut.finish_reason == "length" and cut.usage.completion_tokens == 3
    assert stopped.finish_reason == "stop" and "Final answer" not in stopped.text


async def test_concurrent_calls_share_one_engine_batch(vllm: ModuleType) -> None:
    backend = VLLMBackend("qwen-standin")
    questions = [[Message(role="user", content=f"What is {i} + {i}?")] for i in range(5)]

    replies = await asyncio.gather(*(backend.generate(q, n=2, max_tokens=64, temperature=0.7)
                                     for q in questions))

    assert backend.llm is not None and backend.llm.batches == [5]
    assert [r[0].text.split()[-1] for r in replies] == [str(2 * i) for i in range(5)]


async def test_a_prompt_too_long_fails_alone(vllm: ModuleType) -> None:
    backend = VLLMBackend("qwen-standin", engine_kwargs={"max_model_len": 40})
    long = [Message(role="user", content="word " * 100)]

    short_reply, long_reply = await asyncio.gather(
        backend.generate(MESSAGES, max_tokens=8), backend.generate(long, max_tokens=8),
        return_exceptions=True)

    assert isinstance(short_reply, list) and short_reply[0].text
    assert isinstance(long_reply, BackendError)
    assert "maximum model length of 40" in str(long_reply)


async def test_a_model_that_cannot_load_is_a_backend_error(vllm: ModuleType) -> None:
    backend = VLLMBackend("missing/model")
    with pytest.raises(BackendError, match="could not load 'missing/model'"):
        await backend.generate(MESSAGES, max_tokens=8)


async def test_the_event_loop_stays_free_during_an_engine_call(vllm: ModuleType) -> None:
    backend = VLLMBackend("qwen-standin", engine_kwargs={"delay_s": 0.3})
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    await backend.generate(MESSAGES, max_tokens=8)
    ticker.cancel()
    assert ticks >= 10  # the loop ran other work while the engine blocked its thread


async def test_an_engine_passed_in_is_used_and_left_open(vllm: ModuleType) -> None:
    engine = vllm.LLM("qwen-standin")
    async with VLLMBackend("qwen-standin", llm=engine) as backend:
        await backend.generate(MESSAGES, max_tokens=8)
    assert engine.batches == [1] and backend.llm is engine


async def test_budget_and_solve_work_through_the_engine(vllm: ModuleType) -> None:
    backend = VLLMBackend("qwen-standin")
    ctx = make_context(backend=backend, budget=Budget(tokens=60))
    completions = await ctx.generate("single/answer", n=4, max_tokens=200, temperature=0.7)
    assert ctx.meter.used.total_tokens <= 60 and completions

    result = await ponder.asolve("Tom has 3 apples and buys 5 more.", backend=backend)
    assert result.answer == "8" and result.usage.calls == 1


async def test_a_vllm_backend_string_names_the_model(vllm: ModuleType) -> None:
    result = await ponder.asolve("Tom has 3 apples and buys 5 more.", backend="vllm:qwen-standin")
    assert result.error is None and result.usage.calls == 1
    assert result.trace[0].kind == "generate"


async def test_log_probs_become_each_samples_confidence(vllm: ModuleType) -> None:
    backend = VLLMBackend("qwen-standin", top_logprobs=2, confidence_window=4)
    with asking_confidence():
        completions = await backend.generate(MESSAGES, n=3, max_tokens=64, temperature=0.8,
                                             seed=1)
    ranked_low = 0
    for completion in completions:
        ids = backend.llm.get_tokenizer().encode(completion.text, False)  # type: ignore[union-attr]
        positions = [vllm.position_logprobs(w, t, 2) for w, t in
                     zip(completion.text.split(), ids, strict=True)]
        # vLLM's shape: the top 2 and the sampled token, three entries where it ranks lower;
        # only the top 2 count towards a token's confidence.
        ranked_low += sum(len(p) == 3 for p in positions)
        expected = summarize([TokenLogprobs(p[t].logprob,
                                            [lp.logprob for lp in p.values() if lp.rank <= 2])
                              for p, t in zip(positions, ids, strict=True)], window=4)
        assert completion.confidence == expected
        assert expected is not None and expected.measure == "top_k"
        assert expected.tokens == completion.usage.completion_tokens
    assert ranked_low > 0


async def test_top_logprobs_reach_the_sampling_params(vllm: ModuleType) -> None:
    [unasked] = await VLLMBackend("qwen-standin").generate(MESSAGES, max_tokens=64)
    assert unasked.confidence is None  # no call of a strategy that ranks by confidence
    with asking_confidence():
        sampled = VLLMBackend("qwen-standin", top_logprobs=0)
        [reply] = await sampled.generate(MESSAGES, max_tokens=64)
        assert reply.confidence is not None and reply.confidence.measure == "sampled"

        off = VLLMBackend("qwen-standin", top_logprobs=None)
        [reply] = await off.generate(MESSAGES, max_tokens=64)
        assert reply.confidence is None

        greedy = await VLLMBackend("qwen-standin").generate(MESSAGES, n=3, max_tokens=64)
        assert greedy[0].confidence is not None
        assert len({c.confidence for c in greedy}) == 1  # the copies are of one reply


async def test_more_log_probs_than_the_engine_serves_is_a_backend_error(
        vllm: ModuleType) -> None:
    backend = VLLMBackend("qwen-standin", top_logprobs=21)
    with asking_confidence(), pytest.raises(BackendError, match="greater than max allowed: 20"):
        await backend.generate(MESSAGES, max_tokens=8)
