"""The stand-in's tokenizer and model. A token is a chat-template marker or a
whitespace-separated word; the model answers with the sum of the numbers in the last user
message, in words a test can predict."""

from __future__ import annotations

import math
import random
import re
import zlib
from dataclasses import dataclass

from vllm.logprobs import Logprob
from vllm.sampling_params import SamplingParams

VOCAB = 50_000
BOS_ID = VOCAB  # added by encode(add_special_tokens=True), which chat templates do not want
START, END = "<|im_start|>", "<|im_end|>"
TOKEN = re.compile(r"<\|im_start\|>|<\|im_end\|>|\S+")

# One vocabulary for every tokenizer, filled as words are met, so ids never collide and the
# engine can read a prompt back from its ids.
_IDS: dict[str, int] = {}
_WORDS: list[str] = []


class Tokenizer:
    """Qwen's chat template over a word-level vocabulary."""

    def apply_chat_template(self, conversation: list[dict[str, str]], tokenize: bool = True,
                            add_generation_prompt: bool = False) -> str | list[int]:
        text = "".join(f"{START}{m['role']}\n{m['content']}{END}\n" for m in conversation)
        if add_generation_prompt:
            text += f"{START}assistant\n"
        return self.encode(text) if tokenize else text

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        words = TOKEN.findall(text)
        for word in words:
            if word not in _IDS:
                _IDS[word] = len(_WORDS)
                _WORDS.append(word)
        ids = [_IDS[word] for word in words]
        return [BOS_ID, *ids] if add_special_tokens else ids

    def decode(self, ids: list[int]) -> str:
        return " ".join(_WORDS[i] for i in ids if i != BOS_ID)


@dataclass
class Sample:
    """One sample's whole reply, which the engine hands out a token at a time."""

    text: str
    token_ids: list[int]
    ends: list[int]  # where each token's text ends
    logprobs: list[dict[int, Logprob]] | None
    finish_reason: str
    stop_reason: str | None


def last_user_message(prompt_ids: list[int]) -> str:
    """The last user turn of a prompt rendered by the chat template, read back from its ids."""
    turns: list[list[str]] = []  # each turn's role, then its words
    for word in (_WORDS[i] for i in prompt_ids if i != BOS_ID):
        if word == START:
            turns.append([])
        elif word != END and turns:
            turns[-1].append(word)
    users = [turn[1:] for turn in turns if turn[:1] == ["user"]]
    return " ".join(users[-1]) if users else ""


def reply(prompt_ids: list[int], params: SamplingParams, index: int,
          tokenizer: Tokenizer) -> Sample:
    last = last_user_message(prompt_ids)
    total = sum(int(x) for x in re.findall(r"-?\d+", last))
    if params.temperature < 1e-5:
        text = f"The numbers add up to {total}.\nFinal answer: {total}"
    else:
        rng = random.Random(zlib.crc32(f"{params.seed}/{index}/{last}".encode()))
        mood = rng.choice(["Surely", "Perhaps", "Clearly", "Counting"])
        text = f"{mood}, the numbers add up to {total}.\nFinal answer: {total}"
    finish, stop_reason = "stop", None
    for s in params.stop or []:
        if s and s in text:
            text, stop_reason = text[: text.index(s)], s
    spans = list(TOKEN.finditer(text))
    if params.max_tokens is not None and len(spans) > params.max_tokens:
        spans, finish = spans[: params.max_tokens], "length"
        text = text[: spans[-1].end()] if spans else ""
    token_ids = tokenizer.encode(text, add_special_tokens=False)
    logprobs = None if params.logprobs is None else [
        position_logprobs(span.group(), token_id, params.logprobs)
        for span, token_id in zip(spans, token_ids, strict=True)]
    return Sample(text, token_ids, [span.end() for span in spans], logprobs, finish,
                  stop_reason)


def position_logprobs(word: str, token_id: int, k: int) -> dict[int, Logprob]:
    """One generated token's log-probs: the top `k` plus the sampled token. The rank-r
    candidate has probability p (0.5-0.99, from the word) at rank 1, then (1 - p) halving
    down the ranks; the sampled token ranks first, or (one word in four) second to fourth."""
    h = zlib.crc32(word.encode())
    p = 0.5 + (h % 50) / 100
    rank = 1 if h % 4 else 2 + (h // 4) % 3
    probs = [p, *((1 - p) / 2 ** r for r in range(1, max(k, rank)))]
    ids = [(token_id + r) % VOCAB for r in range(1, len(probs) + 1)]
    ids[rank - 1] = token_id
    return {tid: Logprob(math.log(prob), r, None)
            for r, (tid, prob) in enumerate(zip(ids, probs, strict=True), start=1)
            if r <= k or tid == token_id}
