"""Verifiers decide when a strategy may stop and which candidate wins."""

from collections.abc import Callable
from typing import Any

from ponder.verifiers.base import FunctionVerifier, Verifier, as_verifier
from ponder.verifiers.registry import VerifierRegistry

REGISTRY = VerifierRegistry()


def get_verifier(spec: str | Verifier | Callable[..., Any]) -> Verifier:
    """A verifier by name (`math`, `unit_tests`, …), spec (`module:attr`, `file.py:func`),
    object or plain function."""
    return REGISTRY.get(spec)


def register_verifier(name: str) -> Callable[[Any], Any]:
    """Register a verifier class, instance or function under `name`.

    >>> @register_verifier("even")
    ... def even(problem, candidate):
    ...     return int(candidate.answer) % 2 == 0
    """

    def decorate(obj: Any) -> Any:
        REGISTRY.add(name, lambda: as_verifier(obj() if isinstance(obj, type) else obj, name=name))
        return obj

    return decorate


__all__ = ["REGISTRY", "FunctionVerifier", "Verifier", "get_verifier", "register_verifier"]
