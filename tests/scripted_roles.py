"""A `ScriptedBackend` reply that answers each built-in strategy template with its own script,
so a strategy test can say "the feedback says X, the rewrite says Y" without caring about the
order in which concurrent calls arrive.

The role of a request is read from the system prompt of the built-in template that made it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence

from ponder.types import Message

Script = str | Sequence[str] | Callable[[Sequence[Message]], str]

# Most specific first: the rewrite and revise prompts also call the model a problem solver.
ROLE_MARKERS = {
    "feedback": "strict reviewer",
    "refine": "fixes mistakes",
    "judge": "expert judge",
    "value": "grade partial",
    "step": "one step at a time",
    "revise": "working with other solvers",
    "answer": "careful problem solver",
}


def role_of(messages: Sequence[Message]) -> str:
    system = next((m.content for m in messages if m.role == "system"), "")
    for role, marker in ROLE_MARKERS.items():
        if marker in system:
            return role
    raise AssertionError(f"no built-in template role in system prompt {system!r}")


def by_role(**scripts: Script) -> Callable[[Sequence[Message]], str]:
    """A reply function: `answer=` for draft/sample/agent answers, `feedback=`, `refine=`,
    `judge=`, `step=`, `value=`, `revise=`. A list is replied in order and then repeats."""
    cycles: dict[str, Iterator[str]] = {}

    def reply(messages: Sequence[Message]) -> str:
        role = role_of(messages)
        if role not in scripts:
            raise AssertionError(f"the test scripted no reply for role {role!r}")
        script = scripts[role]
        if callable(script):
            return script(messages)
        if isinstance(script, str):
            return script
        return next(cycles.setdefault(role, itertools.cycle(script)))

    return reply


def user_text(request: dict[str, object]) -> str:
    """The user message of a request `ScriptedBackend` recorded."""
    messages = request["messages"]
    assert isinstance(messages, list)
    return next(m.content for m in messages if m.role == "user")


def requests_for(backend: object, role: str) -> list[dict[str, object]]:
    recorded: list[dict[str, object]] = backend.requests  # type: ignore[attr-defined]
    return [r for r in recorded if role_of(r["messages"]) == role]  # type: ignore[arg-type]
