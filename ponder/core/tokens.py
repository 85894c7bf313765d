"""Token counts that are safe upper bounds when no tokenizer is at hand."""

from __future__ import annotations

from collections.abc import Sequence

from ponder.core.types import Message

# Chat templates wrap each message in role markers (Qwen: `<|im_start|>user\n` … `<|im_end|>\n`,
# five tokens) and some add a default system prompt of about 30 tokens when none is given.
PER_MESSAGE_OVERHEAD = 8
PER_PROMPT_OVERHEAD = 64


def prompt_upper_bound(messages: Sequence[Message]) -> int:
    """An upper bound on the prompt tokens any byte-level BPE tokenizer will count.

    Byte-level BPE never spends more than one token per UTF-8 byte, so bytes bound tokens.
    """
    body = sum(len(m.content.encode("utf-8")) for m in messages)
    return body + PER_MESSAGE_OVERHEAD * len(messages) + PER_PROMPT_OVERHEAD


def estimate_tokens(text: str) -> int:
    """A typical-case estimate (about four characters a token), for servers that omit usage."""
    return max(1, (len(text) + 3) // 4) if text else 0
