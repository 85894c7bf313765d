"""How the fake server counts and scores tokens: a token is a whitespace-separated word of a
message's text, so tests can reason about usage and log-probs exactly."""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from typing import Any

# Tokens the fake charges around the messages, as a chat template would (role markers, a
# generation prompt). Kept below ponder.core.tokens' upper bound, which budgets rely on.
PER_MESSAGE_OVERHEAD = 4
PER_PROMPT_OVERHEAD = 3


def message_text(message: dict[str, Any]) -> str:
    """A chat message's text, whether its content is a string or a list of parts."""
    content = message.get("content")
    if isinstance(content, list):  # the multi-part form: [{"type": "text", "text": ...}]
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return str(content or "")


def count_prompt_tokens(messages: Sequence[dict[str, Any]]) -> int:
    """The prompt tokens the fake charges: each message's words plus a fixed overhead."""
    words = sum(len(message_text(m).split()) for m in messages)
    return words + PER_MESSAGE_OVERHEAD * len(messages) + PER_PROMPT_OVERHEAD


def prompt_tokens(messages: Sequence[dict[str, Any]]) -> list[str]:
    """The prompt as the fake's tokens, `count_prompt_tokens` of them: each message's words
    inside its template markers, then the generation prompt, as a chat template lays them out
    (so two prompts sharing their first messages share a prefix, and one that differs only
    in its last message shares all before it)."""
    tokens: list[str] = []
    for m in messages:
        tokens += ["<|start|>", str(m.get("role")), "<|sep|>", *message_text(m).split(),
                   "<|end|>"]
    return [*tokens, "<|start|>", "assistant", "<|sep|>"]


class PrefixCache:
    """A simulated server prefix cache, of unbounded size: `serve(tokens)` is how many of the
    prompt's leading tokens an earlier prompt already held, then remembers this one. At most
    all but the last token are reused, as vLLM and llama.cpp compute the last one again to
    sample from it. Not thread-safe: the fake calls it under its lock."""

    def __init__(self) -> None:
        # The hash of every prefix seen, chained token by token, so a lookup costs the
        # prompt's length whatever the number of earlier prompts.
        self._prefixes: set[int] = set()

    def serve(self, tokens: Sequence[str]) -> int:
        hit, chain, hits = True, 0, 0
        for token in tokens:
            chain = hash((chain, token))
            if hit and chain in self._prefixes:
                hits += 1
            else:
                hit = False
                self._prefixes.add(chain)
        return min(hits, max(0, len(tokens) - 1))


def token_logprobs(word: str, top_logprobs: int, *, lift: float = 0.0) -> dict[str, Any]:
    """The log-probs the fake gives one word, in OpenAI's shape: the word has probability
    0.5-0.99 (from its hash) and ranks first; `top_logprobs` candidates follow it, the rest
    of the probability halving down the ranks. `lift` (in [0, 1)) moves the word's
    probability that share of the way to 1 (quiz mode's surer right replies)."""
    p = 0.5 + (zlib.crc32(word.encode()) % 50) / 100
    p += lift * (1 - p)
    probs = [p, *((1 - p) / 2 ** (i + 1) for i in range(max(top_logprobs - 1, 0)))]
    names = [word, *(f"{word}~{i}" for i in range(1, len(probs)))]
    top = [{"token": t, "logprob": math.log(q), "bytes": list(t.encode())}
           for t, q in zip(names, probs, strict=True)][:top_logprobs]
    return {"token": word, "logprob": math.log(p), "bytes": list(word.encode()),
            "top_logprobs": top}
