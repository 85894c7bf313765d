"""The in-process vLLM backend, against a stand-in `vllm` with vLLM's async call shapes.

No GPU here: `tests/vllm_standin/vllm` serves `AsyncLLM.generate(prompt, sampling_params,
request_id)` the way vLLM does (an async generator of RequestOutput, CompletionOutput,
prompt_token_ids, token_ids, finish_reason, and logprobs as one dict of token id → Logprob per
token) with a whitespace tokenizer, each request decoding on its own as under vLLM's continuous
batching.
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
from ponder.core.budget import Budget
from ponder.core.confidence import TokenLogprobs, summarize
from ponder.core.errors import BackendError, MissingDependency
from ponder.core.types import Message
from ponder.testing import make_context

STANDIN = Path(__file__).parent / "vllm_standin"
MESSAGES = [Message(role="system", content="Answer briefly."),
            Message(role="user", content="Tom has 3 apples and buys 5 more. How many now?")]


def forget_vllm() -> None:
    for name in [n for n in sys.modules if n == "vllm" or n.startswith("vllm.")]:
        del sys.modules[name]


@pytest.fixture
def vllm(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    monkeypatch.syspath_prepend(str(STANDIN))
    forget_vllm()
    import vllm  # type: ignore[import-not-found]  # the stand-in, found on the path above

    yield vllm
    forget_vllm()  # the stand-in must not outlive the test


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

    assert backend.engine is not None
    [params] = backend.engine.requests.values()  # one engine request for the three samples
    assert params.n == 3 and params.seed == 1
    assert params.output_kind is vllm.RequestOutputKind.FINAL_ONLY
    assert len(completions) == 3 and len({c.text for c in completions}) > 1
    assert all(c.text.endswith("Final answer: 8") for c in completions)
    prompt = await backend.count_prompt_tokens(MESSAGES)
    assert [c.usage.prompt_tokens for c in completions] == [prompt, 0, 0]
    assert all(c.usage.completion_tokens == len(c.text.split()) for c in completions)
    assert not any(c.usage.estimated for c in completions)
    assert backend.prompt_copies(3) == 1


async def test_the_prompt_is_the_chat_template_without_added_special_tokens(
        vllm: ModuleType) -> None:
    # As LLM.chat and vLLM's OpenAI server do: the template holds the special tokens, so a
    # second BOS must not be added.
    backend = VLLMBackend("qwen-standin")
    await backend.generate(MESSAGES, max_tokens=8)
    tokenizer = vllm.Tokenizer()
    text = tokenizer.apply_chat_template([m.model_dump() for m in MESSAGES], tokenize=False,
                                         add_generation_prompt=True)
    assert await backend.count_prompt_tokens(MESSAGES) == len(tokenizer.encode(text, False))


async def test_prefix_caching_is_on_unless_told_otherwise(vllm: ModuleType) -> None:
    backend = VLLMBackend("qwen-standin", engine_kwargs={"max_model_len": 2048})
    await backend.generate(MESSAGES, max_tokens=8)
    assert backend.engine is not None
    args = backend.engine.vllm_config.engine_args  # what the backend passed to AsyncEngineArgs
    assert args.enable_prefix_caching is True and args.max_model_len == 2048
    assert args.disable_log_stats is True

    off = VLLMBackend("qwen-standin", engine_kwargs={"enable_prefix_caching": False})
    await off.generate(MESSAGES, max_tokens=8)
    assert off.engine is not None
    assert off.engine.vllm_config.cache_config.enable_prefix_caching is False


async def test_prompt_tokens_the_prefix_cache_served_are_recorded(vllm: ModuleType) -> None:
    backend = VLLMBackend("qwen-standin")
    [first] = await backend.generate(MESSAGES, max_tokens=8)
    again = await backend.generate(MESSAGES, n=2, max_tokens=8, temperature=0.7)
    prompt = await backend.count_prompt_tokens(MESSAGES)
    assert prompt is not None and prompt > 16
    assert first.usage.cached_prompt_tokens == 0
    # Whole 16-token blocks, never the last token, and only with the prompt's first sample.
    assert [c.usage.cached_prompt_tokens for c in again] == [(prompt - 1) // 16 * 16, 0]

    off = VLLMBackend("qwen-standin", engine_kwargs={"enable_prefix_caching": False})
    await off.generate(MESSAGES, max_tokens=8)
    [uncached] = await off.generate(MESSAGES, max_tokens=8)
    assert uncached.usage.cached_prompt_tokens == 0


async def test_greedy_samples_are_generated_once(vllm: ModuleType) -> None:
    # vLLM refuses n > 1 at temperature 0; the backend asks once and repeats the reply.
    backend = VLLMBackend("qwen-standin")
    completions = await backend.generate(MESSAGES, n=3, max_tokens=64, temperature=0.0)
    assert len({c.text for c in completions}) == 1 and len(completions) == 3
    assert [c.usage.total_tokens > 0 for c in completions] == [True, False, False]
    assert backend.engine is not None
    assert [p.n for p in backend.engine.requests.values()] == [1]


async def test_max_tokens_and_stop_reach_the_engine(vllm: ModuleType) -> None:
    backend = VLLMBackend("qwen-standin")
    [cut] = await backend.generate(MESSAGES, max_tokens=3)
    [stopped] = await backend.generate(MESSAGES, max_tokens=64, stop=["Final answer"])
    assert cut.finish_reason == "length" and cut.usage.completion_tokens == 3
    assert stopped.finish_reason == "stop" and "Final answer" not in stopped.text


async def test_a_later_short_call_finishes_before_an_earlier_long_one(vllm: ModuleType) -> None:
    # Continuous batching: a call joins the requests already decoding instead of waiting for
    # them to finish, so a tree search's quick steps do not queue behind its long ones.
    done: list[str] = []
    async with VLLMBackend("qwen-standin",
                           engine_kwargs={"seconds_per_token": 0.03}) as backend:

        async def call(name: str, max_tokens: int, after_s: float) -> None:
            await asyncio.sleep(after_s)
            await backend.generate(MESSAGES, max_tokens=max_tokens)
            done.append(name)

        # The long reply takes 9 tokens (~0.27 s); the short one starts 0.06 s in, takes 2.
        await asyncio.gather(call("long", 64, 0.0), call("short", 2, 0.06))
        assert backend.engine is not None
        long_id, short_id = backend.engine.requests  # in the order they came
        assert backend.engine.finished == [short_id, long_id]
    assert done == ["short", "long"]


async def test_concurrent_calls_are_separate_requests(vllm: ModuleType) -> None:
    backend = VLLMBackend("qwen-standin", engine_kwargs={"seconds_per_token": 0.01})
    questions = [[Message(role="user", content=f"What is {i} + {i}?")] for i in range(5)]

    replies = await asyncio.gather(*(backend.generate(q, n=2, max_tokens=64, temperature=0.7)
                                     for q in questions))

    assert backend.engine is not None
    assert [p.n for p in backend.engine.requests.values()] == [2] * 5
    assert [r[0].text.split()[-1] for r in replies] == [str(2 * i) for i in range(5)]


async def test_a_cancelled_call_aborts_its_engine_request(vllm: ModuleType) -> None:
    async with VLLMBackend("qwen-standin",
                           engine_kwargs={"seconds_per_token": 0.05}) as backend:
        engine = backend.engine
        assert engine is not None
        call = asyncio.create_task(backend.generate(MESSAGES, max_tokens=64))
        while not engine.running:
            await asyncio.sleep(0.01)
        [request_id] = engine.running

        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call

        assert (request_id, False) in engine.aborted  # the backend's own abort, by its id
        assert not engine.running and request_id not in engine.finished


async def test_a_prompt_too_long_fails_alone(vllm: ModuleType) -> None:
    backend = VLLMBackend("qwen-standin", engine_kwargs={"max_model_len": 40})
    long = [Message(role="user", content="word " * 100)]

    short_reply, long_reply = await asyncio.gather(
        backend.generate(MESSAGES, max_tokens=8), backend.generate(long, max_tokens=8),
        return_exceptions=True)

    assert isinstance(short_reply, list) and short_reply[0].text
    assert isinstance(long_reply, BackendError)
    assert "maximum model length of 40" in str(long_reply)
    assert long_reply.status == 400


async def test_a_request_vllm_refuses_is_a_400_a_pool_does_not_retry(vllm: ModuleType) -> None:
    backend = VLLMBackend("qwen-standin")
    with pytest.raises(BackendError, match="max_tokens must be at least 1") as refused:
        await backend.generate(MESSAGES, max_tokens=0)  # vLLM's ValueError
    assert refused.value.status == 400 and not refused.value.server_fault

    assert backend.engine is not None
    backend.engine.shutdown()  # the engine is gone: another server could still answer
    with pytest.raises(BackendError, match="EngineCore") as dead:
        await backend.generate(MESSAGES, max_tokens=8)
    assert dead.value.server_fault


async def test_a_model_that_cannot_load_is_a_backend_error(vllm: ModuleType) -> None:
    backend = VLLMBackend("missing/model")
    with pytest.raises(BackendError, match="could not load 'missing/model'"):
        await backend.generate(MESSAGES, max_tokens=8)


async def test_concurrent_first_calls_load_the_engine_once(
        vllm: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    loads = []
    load = vllm.AsyncLLM.from_engine_args

    def counted(args: object) -> object:
        loads.append(args)
        return load(args)

    monkeypatch.setattr(vllm.AsyncLLM, "from_engine_args", counted)
    backend = VLLMBackend("qwen-standin", engine_kwargs={"load_seconds": 0.1})
    await asyncio.gather(*(backend.generate(MESSAGES, max_tokens=8) for _ in range(3)))
    assert len(loads) == 1
    assert backend.engine is not None and len(backend.engine.requests) == 3


async def test_the_event_loop_stays_free_while_the_model_loads(vllm: ModuleType) -> None:
    backend = VLLMBackend("qwen-standin", engine_kwargs={"load_seconds": 0.3})
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    await backend.generate(MESSAGES, max_tokens=8)
    ticker.cancel()
    assert ticks >= 10  # the loop ran other work while the load blocked its thread


async def test_closing_shuts_down_the_engine_it_started(vllm: ModuleType) -> None:
    async with VLLMBackend("qwen-standin") as backend:
        engine = backend.engine
        await backend.generate(MESSAGES, max_tokens=8)
    assert engine is not None and engine.errored and backend.engine is None


async def test_an_engine_passed_in_is_used_and_left_open(vllm: ModuleType) -> None:
    engine = vllm.AsyncLLM.from_engine_args(vllm.AsyncEngineArgs(model="qwen-standin"))
    async with VLLMBackend("qwen-standin", engine=engine) as backend:
        await backend.generate(MESSAGES, max_tokens=8)
    assert len(engine.requests) == 1 and backend.engine is engine and not engine.errored


async def test_current_vllms_plain_get_tokenizer(vllm: ModuleType,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    tokenizer = vllm.Tokenizer()
    monkeypatch.setattr(vllm.AsyncLLM, "get_tokenizer", lambda self: tokenizer)
    [reply] = await VLLMBackend("qwen-standin").generate(MESSAGES, max_tokens=64)
    assert reply.text.endswith("Final answer: 8")


async def test_an_older_vllm_without_asyncllm_or_final_only(
        vllm: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    kinds = vllm.RequestOutputKind
    monkeypatch.setitem(sys.modules, "vllm.v1.engine.async_llm", None)  # import fails
    monkeypatch.delattr(sys.modules["vllm.sampling_params"], "RequestOutputKind")
    backend = VLLMBackend("qwen-standin")
    [reply] = await backend.generate(MESSAGES, max_tokens=64)

    assert type(backend.engine) is vllm.AsyncLLMEngine
    [params] = backend.engine.requests.values()
    assert params.output_kind is kinds.CUMULATIVE  # one output per step: the last one counts
    assert reply.text.endswith("Final answer: 8") and reply.finish_reason == "stop"
    assert reply.usage.completion_tokens == len(reply.text.split())


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
    assert backend.engine is not None
    tokenizer = await backend.engine.get_tokenizer()
    ranked_low = 0
    for completion in completions:
        ids = tokenizer.encode(completion.text, False)
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
    with asking_confidence(), pytest.raises(BackendError,
                                            match="greater than max allowed: 20") as refused:
        await backend.generate(MESSAGES, max_tokens=8)
    assert refused.value.status == 400
