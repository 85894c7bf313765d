"""One public example of a coding problem (`Example`), and what the modules that read
examples share: the errors Python's parser raises on text a prompt or a model wrote, and the
helpers that keep such text quiet and short."""

from __future__ import annotations

import ast
import functools
import re
import warnings
from collections.abc import Callable
from typing import Literal, ParamSpec, TypeVar

from pydantic import BaseModel, ConfigDict

Origin = Literal["public", "prompt", "derived", "model"]

PARSE_ERRORS = (SyntaxError, ValueError, TypeError, MemoryError, RecursionError, OverflowError)
NUMBER = re.compile(r"(?:(?<![\w)\]])-)?[0-9]+(?:\.[0-9]+)?")  # `3-4` is no -4


class Example(BaseModel):
    """One public example: `call` run on a candidate must give `expected` (see `matches`),
    or, when `expected` is None, `call` is statements that must raise nothing. `origin` says
    how far to trust it: "public" (the problem's `tests_public`), "prompt" (read from the
    problem text by rule), "derived" (a model's asserts for the prompt's examples, checked
    with `grounded`), "model" (a model's own, trusted least). `line`: its source text."""

    model_config = ConfigDict(frozen=True)

    call: str
    expected: str | None
    origin: Origin
    line: str = ""


P = ParamSpec("P")
R = TypeVar("R")


def quiet(read: Callable[P, R]) -> Callable[P, R]:
    """`read` without the warnings Python's parser gives for text a model or a prompt wrote
    (an invalid escape such as "\\:" in a string): the text is data, and its warnings would
    only reach the user's console."""
    @functools.wraps(read)
    def quietly(*args: P.args, **kwargs: P.kwargs) -> R:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SyntaxWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            return read(*args, **kwargs)

    return quietly


def is_literal(node: ast.AST) -> bool:
    """Whether `node` is a Python literal (what `ast.literal_eval` takes)."""
    try:
        ast.literal_eval(node)
    except PARSE_ERRORS:
        return False
    return True


def clip(text: str) -> str:
    """`text` stripped and cut to 200 characters, for a message or a trace."""
    text = text.strip()
    return text if len(text) <= 200 else text[:199] + "…"
