"""The OpenAI chat-completions wire format as `ponder serve` speaks it: the request body as
pydantic models, and the reply, stream chunks and errors as the JSON an OpenAI client reads.

Plain data only (no web framework), so the shapes can be read and tested on their own.

>>> ChatRequest.model_validate({"model": "best_of_n:qwen",
...                             "messages": [{"role": "user", "content": "2 + 3?"}]}).problem_text()
'2 + 3?'
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ponder.core.budget import Budget
from ponder.core.types import Usage

MAX_N = 256  # as `SamplingConfig.n`: a request cannot ask for more distinct answers than samples

# What `ponder serve` allows one request when its operator says nothing (`create_app`'s and the
# command's defaults; each can be set). The budget is generous for one problem (best_of_n's 256
# samples of 512 tokens are one call and ~140k tokens; self_refine's 20 rewrites are 41
# calls) and finite, so that one request cannot take the server.
DEFAULT_BUDGET_TOKENS = 200_000
DEFAULT_BUDGET_CALLS = 256
DEFAULT_BUDGET_SECONDS = 300.0
DEFAULT_BUDGET = Budget(tokens=DEFAULT_BUDGET_TOKENS, calls=DEFAULT_BUDGET_CALLS,
                        seconds=DEFAULT_BUDGET_SECONDS)
# A program's run (`program`, `auto`): a request's `timeout_s` above this is lowered to it, since
# runs share the machine's few sandbox slots with every other request's.
DEFAULT_PROGRAM_SECONDS = 10.0
# Traces kept for GET /v1/traces/{id}, in bytes of their JSON: a long run's trace is megabytes.
DEFAULT_MAX_TRACE_BYTES = 256 * 1024 * 1024
# A client's time to send a request (its head, then its body) and to take each part of a reply
# it has fallen behind on; a stalled client is cut off after it.
DEFAULT_CLIENT_TIMEOUT_S = 30.0
# Connections (and requests in flight) at once; more get a 503. Under a common 1024 file
# descriptors, leaving room for the upstream's connections.
DEFAULT_MAX_CONNECTIONS = 512


class ContentPart(BaseModel):
    """One part of a multi-part message; only text parts can become a problem."""

    model_config = ConfigDict(extra="allow")

    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    """One message of the conversation. Fields ponder has no use for (`name`, tool calls) are
    accepted and ignored, as clients send them."""

    model_config = ConfigDict(extra="ignore")

    role: str
    content: str | list[ContentPart] | None = None

    def text(self) -> str:
        """The message's text; a part that is not text (an image) is refused."""
        if self.content is None or isinstance(self.content, str):
            return self.content or ""
        others = sorted({p.type for p in self.content if p.type != "text"})
        if others:
            raise ValueError(f"only text content is supported, got {', '.join(others)} parts")
        return "\n".join(p.text or "" for p in self.content)


class RequestBudget(Budget):
    """`ponder.budget` in a request: a `Budget` that refuses misspelt limits, and numbers too
    large to do arithmetic with (a 400-digit token count overflows a float)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tokens: int | None = Field(default=None, gt=0, le=10**15,
                               description="prompt + completion tokens")
    calls: int | None = Field(default=None, gt=0, le=10**9,
                              description="model calls (n samples = 1 call)")
    seconds: float | None = Field(default=None, gt=0, le=10**9, description="wall-clock time")
    min_completion_tokens: int = Field(
        default=16, ge=1, le=10**9,
        description="a call that could write fewer tokens than this is not made")


class PonderOptions(BaseModel):
    """The request's `ponder` field: what the model name cannot say. It wins over the model
    name (`strategy`) and over the standard fields (`params`)."""

    model_config = ConfigDict(extra="forbid")

    strategy: str | None = Field(default=None, description="a strategy name; see GET /v1/models")
    effort: str | None = Field(default=None, description="low, medium or high: a tier's "
                                                          "strategy and params "
                                                          "(ponder.effort)")
    params: dict[str, Any] = Field(default_factory=dict, description="the strategy's config")
    budget: RequestBudget | None = Field(
        default=None, description="tokens, calls, seconds for this request; the server's "
                                  "budget is the ceiling")
    verifier: str | None = Field(default=None, description="a registered verifier's name")
    answer: str | None = Field(default=None, description="gold answer: picks the math verifier "
                                                         "and never reaches a prompt")


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")

    include_usage: bool = False


class ChatRequest(BaseModel):
    """`POST /v1/chat/completions`. The problem is the last user message (`problem_text`);
    earlier messages, the system message among them, do not reach the strategy, whose own
    templates set the scene. OpenAI fields ponder does not use (`top_p`, `stop`, `tools`, …)
    are ignored, so that any client's defaults are accepted."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, gt=0)
    max_completion_tokens: int | None = Field(default=None, gt=0)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    n: int | None = Field(default=None, ge=1, le=MAX_N)
    seed: int | None = None
    # OpenAI's field for how hard a reasoning model thinks: here, an effort tier.
    reasoning_effort: str | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    ponder: PonderOptions | None = None

    def problem_text(self) -> str:
        """The last user message's text; raises ValueError when there is none or it is empty."""
        last = next((m for m in reversed(self.messages) if m.role == "user"), None)
        if last is None:
            raise ValueError("messages has no user message; the last one is the problem")
        text = last.text()
        if not text.strip():
            raise ValueError("the last user message is empty")
        return text

    def standard_params(self) -> dict[str, Any]:
        """The strategy parameters the standard fields set: `max_tokens` (per model call) and
        `temperature`, where given."""
        params: dict[str, Any] = {}
        max_tokens = self.max_completion_tokens or self.max_tokens
        if max_tokens is not None:
            params["max_tokens"] = max_tokens
        if self.temperature is not None:
            params["temperature"] = self.temperature
        return params


FinishReason = Literal["stop", "length"]


def wire_usage(usage: Usage) -> dict[str, int]:
    return {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens}


@dataclass(frozen=True)
class Reply:
    """A finished run as the API returns it: `answers` are the choices, the winner first; its
    whole reply (`reasoning`) goes in `reasoning_content`, vLLM's field for a reasoning
    model's thinking."""

    reply_id: str
    created: int
    model: str
    answers: list[str]
    finish_reason: FinishReason
    usage: Usage
    ponder: dict[str, Any]
    reasoning: str | None = None

    def body(self) -> dict[str, Any]:
        """A `chat.completion`."""
        choices = []
        for index, answer in enumerate(self.answers):
            message: dict[str, Any] = {"role": "assistant", "content": answer}
            if index == 0 and self.reasoning is not None:
                message["reasoning_content"] = self.reasoning
            choices.append({"index": index, "message": message,
                            "finish_reason": self.finish_reason, "logprobs": None})
        return {"id": self.reply_id, "object": "chat.completion", "created": self.created,
                "model": self.model, "choices": choices, "usage": wire_usage(self.usage),
                "ponder": self.ponder}

    def chunks(self, *, include_usage: bool) -> Iterator[dict[str, Any]]:
        """The same reply as `chat.completion.chunk`s: per choice its role, its answer a word
        at a time, and its finish reason. The `ponder` field rides on the last chunk; with
        `include_usage` (a client's `stream_options`) that is a final chunk with no choices
        and the usage, as OpenAI sends it."""

        def chunk(choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
            return {"id": self.reply_id, "object": "chat.completion.chunk",
                    "created": self.created, "model": self.model, "choices": choices, **extra}

        for index, answer in enumerate(self.answers):
            yield chunk([{"index": index, "delta": {"role": "assistant", "content": ""},
                          "finish_reason": None, "logprobs": None}])
            for piece in re.findall(r"\s*\S+\s*", answer):
                yield chunk([{"index": index, "delta": {"content": piece},
                              "finish_reason": None, "logprobs": None}])
        ends: list[dict[str, Any]] = [
            {"index": i, "delta": {}, "finish_reason": self.finish_reason, "logprobs": None}
            for i in range(len(self.answers))]
        if not include_usage:
            yield chunk(ends, ponder=self.ponder)
            return
        yield chunk(ends)
        yield chunk([], usage=wire_usage(self.usage), ponder=self.ponder)


ErrorType = Literal["invalid_request_error", "authentication_error", "not_found_error",
                    "rate_limit_error", "server_error"]


def error_body(message: str, *, kind: ErrorType, param: str | None = None,
               code: str | None = None) -> dict[str, Any]:
    """OpenAI's error shape, which its clients turn into their own exceptions."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}
