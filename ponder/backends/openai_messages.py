"""The chat request ponder sends an OpenAI-compatible server and the reply it reads back,
checked: a reply that is not a chat completion is a `MalformedReply` (retried), never a crash,
and the usage a reply reports is shared among its choices so that it adds up exactly.

The prompt tokens a server served from its prefix cache are read where each server puts them:
`usage.prompt_tokens_details.cached_tokens` (OpenAI; vLLM with
`--enable-prompt-tokens-details`; llama.cpp's server since early 2026) or `timings.cache_n`
(llama.cpp's server since late 2025). They are only reported, never charged differently, so
a count that cannot be right is dropped rather than retried: the reply is still good."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ponder.backends.openai_retry import MalformedReply
from ponder.core.confidence import DEFAULT_WINDOW, TokenLogprobs, summarize
from ponder.core.types import Completion, Confidence, Message, Usage


@dataclass(frozen=True)
class ChatReply:
    """The parts of a chat completion ponder uses, checked."""

    texts: list[str]
    reasons: list[str | None]
    prompt_tokens: int | None
    completion_tokens: int | None
    confidences: list[Confidence | None]
    cached_prompt_tokens: int | None = None  # as the server said; `completions` checks it

    @classmethod
    def parse(cls, response: Any, window: int = DEFAULT_WINDOW) -> ChatReply:
        """A reply's JSON (as the SDK decoded it) checked; `MalformedReply` when it is not a
        chat completion."""
        if not isinstance(response, dict):
            raise MalformedReply(f"reply is not a chat completion: a JSON "
                                 f"{type(response).__name__}, not an object")
        choices = response.get("choices")
        if not isinstance(choices, list) or not choices:
            raise MalformedReply("reply has no choices")
        texts: list[str] = []
        reasons: list[str | None] = []
        for choice in choices:
            if not isinstance(choice, dict):
                raise MalformedReply(f"reply is not a chat completion: a choice is a JSON "
                                     f"{type(choice).__name__}")
            message = choice.get("message")
            if message is not None and not isinstance(message, dict):
                raise MalformedReply(f"reply is not a chat completion: a message is a JSON "
                                     f"{type(message).__name__}")
            texts.append(str((message or {}).get("content") or ""))
            reason = choice.get("finish_reason")
            reasons.append(None if reason is None else str(reason))
        usage = response.get("usage")
        if usage is not None and not isinstance(usage, dict):
            raise MalformedReply(f"usage is a JSON {type(usage).__name__}, not an object")
        prompt = (usage or {}).get("prompt_tokens")
        completion = (usage or {}).get("completion_tokens")
        if prompt is not None and not isinstance(prompt, int):
            raise MalformedReply(f"usage.prompt_tokens is {prompt!r}")
        if completion is not None and not isinstance(completion, int):
            raise MalformedReply(f"usage.completion_tokens is {completion!r}")
        confidences = [choice_confidence(c, window) for c in choices]
        return cls(texts, reasons, prompt, completion, confidences,
                   reported_cached_tokens(response, usage))


def reported_cached_tokens(response: dict[str, Any], usage: dict[str, Any] | None) -> int | None:
    """The prompt tokens a reply says its server served from its prefix cache; None where it
    says nothing, or says something that is not a count of tokens (a string, a bool, a negative
    number: a wrong figure in a report is worse than none)."""
    details = (usage or {}).get("prompt_tokens_details")
    # OpenAI's field first: llama.cpp's server sends both where it has both, and they agree.
    if isinstance(details, dict) and (cached := _count(details.get("cached_tokens"))) is not None:
        return cached
    timings = response.get("timings")
    # `cache_n` only: llama.cpp's older `tokens_cached` counts the whole slot (generated
    # tokens too), not the prompt tokens this request reused.
    return _count(timings.get("cache_n")) if isinstance(timings, dict) else None


def _count(value: Any) -> int | None:
    """`value` as a count of tokens, or None where it is not one (bool is an int in Python,
    and `true` in JSON is no count)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


def choice_confidence(choice: dict[str, Any], window: int) -> Confidence | None:
    """A choice's confidence from its `logprobs.content` (OpenAI's shape: per token `logprob`
    and `top_logprobs`); None when it has none. A log-probs section that is not as it should
    be only costs the confidence, never the reply."""
    try:
        content = (choice.get("logprobs") or {}).get("content")
        if not content:
            return None
        tokens = [TokenLogprobs(float(item["logprob"]),
                                tuple(float(t["logprob"]) for t in item.get("top_logprobs") or ()))
                  for item in content]
    except (AttributeError, KeyError, TypeError, ValueError):
        return None
    return summarize(tokens, window=window)


class ChatRequest:
    """One chat request's fixed parts: its arguments for a given n, and its completions from
    the reply."""

    def __init__(self, model: str, messages: Sequence[Message], max_tokens: int,
                 temperature: float, stop: Sequence[str] | None, seed: int | None) -> None:
        self.model = model
        self.message_models = list(messages)
        self.messages = [m.model_dump() for m in messages]
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.stop = list(stop) if stop else None
        self.seed = seed

    def body(self, n: int, index: int, top_logprobs: int | None = None) -> dict[str, Any]:
        """The request's arguments for `n` samples, as the `index`th of parallel requests,
        asking for `top_logprobs` candidates per token unless it is None."""
        body: dict[str, Any] = {
            "model": self.model, "messages": self.messages, "max_tokens": self.max_tokens,
            "temperature": self.temperature,
        }
        if top_logprobs is not None:
            body["logprobs"] = True
            body["top_logprobs"] = top_logprobs
        if n > 1:
            body["n"] = n
        if self.stop:
            body["stop"] = self.stop
        if self.seed is not None:
            body["seed"] = self.seed + index  # distinct samples from parallel requests
        return body

    def completions(self, reply: ChatReply, n: int, retries: int, *, prompt: int, completion: int,
                    estimated: bool) -> list[Completion]:
        """At most `n` of the reply's choices, carrying between them the call's whole usage."""
        # A server sending more choices than asked for still charged for them all: their
        # tokens stay on the kept completions, so the budget sees the whole cost.
        keep = min(n, len(reply.texts))
        shares = split_tokens(completion, [len(t) for t in reply.texts])
        shares = [*shares[: keep - 1], sum(shares[keep - 1:])]
        # More cached tokens than the prompt charged is a count of something else: dropped.
        cached = reply.cached_prompt_tokens
        cached = cached if cached is not None and cached <= prompt else 0
        return [
            Completion(
                text=text, finish_reason=reason, retries=retries, confidence=confidence,
                # The cached tokens go with the prompt, on the first completion only.
                usage=Usage(prompt_tokens=prompt if i == 0 else 0, completion_tokens=share,
                            estimated=estimated, cached_prompt_tokens=cached if i == 0 else 0),
            )
            for i, (text, reason, confidence, share) in enumerate(
                zip(reply.texts[:keep], reply.reasons[:keep], reply.confidences[:keep], shares,
                    strict=True))
        ]


def split_tokens(total: int, weights: list[int]) -> list[int]:
    """Share `total` tokens among choices by text length; the shares add up exactly."""
    if not weights:
        return []
    if not any(weights):
        weights = [1] * len(weights)
    shares = [total * w // sum(weights) for w in weights]
    shares[-1] += total - sum(shares)
    return shares

