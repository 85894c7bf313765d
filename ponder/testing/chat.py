"""What the fake server answers a chat request, apart from the HTTP that carries it: a fault
drawn from a seeded RNG, a refusal a real server would give, or the completion, from `reply`
or the quiz. `FakeOpenAIServer` (in `fake_server`) serves it."""

from __future__ import annotations

import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal

from ponder.backends.scripted import apply_stop
from ponder.testing.quiz import DEFAULT_DISTRACTORS, Quiz, QuizItem
from ponder.testing.tokens import (
    PrefixCache,
    count_prompt_tokens,
    message_text,
    prompt_tokens,
    token_logprobs,
)

FAULTS = ("429", "500", "hang", "drop", "malformed")
LOGPROBS_MODES = ("serve", "refuse", "ignore")
# How the simulated prefix cache's hits are reported: "openai" in
# `usage.prompt_tokens_details.cached_tokens` (OpenAI's and vLLM's shape), "llama.cpp" in
# `timings` (`cache_n` beside `prompt_n`, as llama-server did before it sent OpenAI's too).
PREFIX_CACHE_MODES = ("off", "openai", "llama.cpp")

Reply = Callable[[list[dict[str, Any]]], str]
StatusFor = Callable[[dict[str, Any]], int | None]


def default_reply(messages: list[dict[str, Any]]) -> str:
    """A deterministic reply: the sum of the numbers in the last user message, as a final
    answer (so "Tom has 3 apples and buys 5 more" gets 8)."""
    last = next((message_text(m) for m in reversed(messages) if m.get("role") == "user"), "")
    numbers = [int(x) for x in re.findall(r"-?\d+", last)]
    if not numbers:
        return "There are no numbers to work with.\nFinal answer: 0"
    terms, total = " + ".join(str(x) for x in numbers), sum(numbers)
    return f"Adding the numbers in the question: {terms} = {total}.\nFinal answer: {total}"


class FakeChat:
    """The fake's configuration and its answers to chat requests, with the counters tests
    read. Its options are `FakeOpenAIServer`'s, which documents them and serves the answers
    over HTTP."""

    def __init__(
        self,
        *,
        latency_s: float = 0.0,
        fault_rate: float = 0.0,
        faults: Sequence[str] = FAULTS,
        seed: int = 0,
        reply: Reply | None = None,
        native_n: bool = True,
        include_usage: bool = True,
        hang_s: float = 30.0,
        retry_after_s: float | None = 0.05,
        model: str = "fake-model",
        api_key: str | None = None,
        max_context: int | None = None,
        status_for: StatusFor | None = None,
        logprobs: Literal["serve", "refuse", "ignore"] = "serve",
        port: int = 0,
        quiz: Iterable[QuizItem | Mapping[str, Any]] | None = None,
        distractors: int = DEFAULT_DISTRACTORS,
        quiz_confidence: float = 0.0,
        prefix_cache: Literal["off", "openai", "llama.cpp"] = "off",
    ) -> None:
        unknown = set(faults) - set(FAULTS)
        if unknown:
            raise ValueError(f"unknown faults {sorted(unknown)}; choose from {list(FAULTS)}")
        if not 0.0 <= fault_rate <= 1.0:
            raise ValueError(f"fault_rate must lie in [0, 1], got {fault_rate}")
        if fault_rate > 0 and not faults:
            raise ValueError("fault_rate > 0 needs at least one fault kind")
        if logprobs not in LOGPROBS_MODES:
            raise ValueError(f"logprobs must be one of {list(LOGPROBS_MODES)}, got {logprobs!r}")
        if not 0.0 <= quiz_confidence < 1.0:
            raise ValueError(f"quiz_confidence must lie in [0, 1), got {quiz_confidence}")
        if prefix_cache not in PREFIX_CACHE_MODES:
            raise ValueError(f"prefix_cache must be one of {list(PREFIX_CACHE_MODES)}, "
                             f"got {prefix_cache!r}")
        self.quiz = Quiz(quiz, seed=seed, distractors=distractors) if quiz is not None else None
        self.quiz_confidence = quiz_confidence
        self.latency_s = latency_s
        self.fault_rate = fault_rate
        self.faults = tuple(faults)
        self.reply = reply or default_reply
        self.native_n = native_n
        self.include_usage = include_usage
        self.hang_s = hang_s
        self.retry_after_s = retry_after_s
        self.model = model
        self.api_key = api_key
        self.max_context = max_context
        self.status_for = status_for
        self.logprobs = logprobs
        self.prefix_cache = prefix_cache
        self._cache = PrefixCache()
        self.faults_injected: dict[str, int] = dict.fromkeys(FAULTS, 0)
        self.received: list[dict[str, Any]] = []
        self._served = {"prompt_tokens": 0, "completion_tokens": 0, "replies": 0,
                        "cached_prompt_tokens": 0}
        self._port = port  # where FakeOpenAIServer listens; 0 picks a free port
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._requests = 0
        self._stopping = threading.Event()  # set on stop, to end a "hang" or latency early

    @property
    def requests(self) -> int:
        """Chat requests received so far, faulted ones included."""
        with self._lock:
            return self._requests

    @property
    def usage_served(self) -> dict[str, int]:
        """What the successful chat replies so far charged: `prompt_tokens` and
        `completion_tokens` summed over them, and how many `replies` (each one request,
        whatever its `n`); faulted and refused requests charge nothing. With `prefix_cache`
        on, `cached_prompt_tokens` sums the prompt tokens the replies said were cached."""
        with self._lock:
            return dict(self._served)

    # -- what a chat request gets ---------------------------------------------------------------

    def _draw_fault(self) -> str | None:
        with self._lock:
            self._requests += 1
            if self.fault_rate and self._rng.random() < self.fault_rate:
                fault = self._rng.choice(self.faults)
                self.faults_injected[fault] += 1
                return fault
        return None

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)

    def _check(self, body: dict[str, Any], auth: str | None) -> tuple[int, str] | None:
        """An error status and message for a request a real server would refuse."""
        if self.api_key is not None and auth != f"Bearer {self.api_key}":
            return 401, "Incorrect API key provided."
        if self.status_for is not None:
            status = self.status_for(body)
            if status is not None:
                return status, f"fake server answers {status} to this request"
        if body.get("model") != self.model:
            return 404, f"The model `{body.get('model')}` does not exist."
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return 400, "messages must be a non-empty list"
        n = body.get("n") or 1
        if not isinstance(n, int) or n < 1:
            return 400, f"n must be a positive integer, got {n!r}"
        if self.logprobs == "refuse" and (body.get("logprobs") or "top_logprobs" in body):
            return 400, "logprobs is not supported by this model"
        if self.max_context is not None:
            wanted = count_prompt_tokens(messages) + int(_max_tokens(body) or 0)
            if wanted > self.max_context:
                return 400, (f"This model's maximum context length is {self.max_context} "
                             f"tokens. However, you requested {wanted} tokens.")
        return None

    def _completion(self, body: dict[str, Any]) -> dict[str, Any]:
        messages: list[dict[str, Any]] = body["messages"]
        n = int(body.get("n") or 1) if self.native_n else 1
        max_tokens = _max_tokens(body)
        stop = body.get("stop")
        stops = [stop] if isinstance(stop, str) else list(stop or [])
        top_logprobs = int(body.get("top_logprobs") or 0)
        serve_logprobs = self.logprobs == "serve" and bool(body.get("logprobs"))
        drawn = self.quiz.draw(messages, n, body.get("seed")) if self.quiz is not None else None
        choices, completion_tokens = [], 0
        for i in range(n):
            if drawn is None:
                raw, lift = self.reply(messages), 0.0
            else:
                raw, lift = drawn[i].text, self.quiz_confidence if drawn[i].right else 0.0
            text, finish = apply_stop(raw, stops)
            words = text.split()
            if max_tokens is not None and len(words) > max_tokens:
                text, finish, words = " ".join(words[:max_tokens]), "length", words[:max_tokens]
            completion_tokens += len(words)
            logprobs = {"content": [token_logprobs(w, top_logprobs, lift=lift) for w in words]} \
                if serve_logprobs else None
            choices.append({"index": i, "message": {"role": "assistant", "content": text},
                            "finish_reason": finish, "logprobs": logprobs})
        prompt_count = count_prompt_tokens(messages)
        with self._lock:
            serial = self._requests
            cached = self._cache.serve(prompt_tokens(messages)) \
                if self.prefix_cache != "off" else 0
            self._served["prompt_tokens"] += prompt_count
            self._served["completion_tokens"] += completion_tokens
            self._served["replies"] += 1
            self._served["cached_prompt_tokens"] += cached
        reply: dict[str, Any] = {
            "id": f"chatcmpl-fake-{serial}", "object": "chat.completion",
            "created": int(time.time()), "model": self.model, "choices": choices,
        }
        if self.include_usage:
            reply["usage"] = {"prompt_tokens": prompt_count,
                              "completion_tokens": completion_tokens,
                              "total_tokens": prompt_count + completion_tokens}
            if self.prefix_cache == "openai":
                reply["usage"]["prompt_tokens_details"] = {"cached_tokens": cached}
        if self.prefix_cache == "llama.cpp":
            reply["timings"] = {"cache_n": cached, "prompt_n": prompt_count - cached,
                                "predicted_n": completion_tokens}
        return reply


def _max_tokens(body: dict[str, Any]) -> int | None:
    value = body.get("max_completion_tokens", body.get("max_tokens"))
    return int(value) if value is not None else None

