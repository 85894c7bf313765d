"""A request body read within the server's limits and parsed as a `ChatRequest`: too large,
too slow, not JSON, nested too deeply or not text is refused before anything is planned."""

from __future__ import annotations

import asyncio
import json
import re

from pydantic import ValidationError
from starlette.requests import Request

from ponder.serve.errors import Refusal
from ponder.serve.openai_wire import ChatRequest

# As a problem file's largest line (16 fields of 1 MiB): a request is one problem.
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
# A lone surrogate escape (\ud800) in a body: worth the check that the text encodes as UTF-8.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


async def read_body(request: Request, *, max_bytes: int, timeout_s: float) -> ChatRequest:
    """`request`'s body as a `ChatRequest`: at most `max_bytes`, arrived within `timeout_s`
    (a stalled upload holds a connection and a task)."""
    raw = bytearray()
    try:
        async with asyncio.timeout(timeout_s):
            async for part in request.stream():
                raw += part
                if len(raw) > max_bytes:
                    raise Refusal(413, f"request body over {max_bytes:,} bytes",
                                  code="request_too_large")
    except TimeoutError:
        raise Refusal(408, f"the request body did not arrive within {timeout_s:g}s",
                      code="request_timeout", headers={"connection": "close"}) from None
    try:
        data = json.loads(raw)
    except ValueError:
        raise Refusal(400, "request body is not valid JSON", code="invalid_json") from None
    except RecursionError:
        raise Refusal(400, "request body is nested too deeply", code="invalid_json") from None
    if _SURROGATE_ESCAPE.search(raw):
        try:  # a lone surrogate cannot be sent on to the model server as UTF-8
            json.dumps(data, ensure_ascii=False).encode()
        except UnicodeEncodeError:
            raise Refusal(400, "request body holds a lone surrogate (\\ud800-\\udfff), "
                               "which is not text", code="invalid_json") from None
    try:
        return ChatRequest.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise Refusal(400, f"{where or 'body'}: {first['msg']}", param=where or None,
                      code="invalid_value") from None
