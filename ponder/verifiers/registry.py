"""Finding verifiers: built-in names, `register_verifier`, the `ponder.verifiers` entry-point
group, and specs `module:attr` or `path/to/file.py:func`."""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from functools import partial
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any

from ponder.errors import ConfigError
from ponder.verifiers.base import Verifier, as_verifier

ENTRY_POINT_GROUP = "ponder.verifiers"

# Built-ins are imported on first use: the unit-test sandbox and sympy are not cheap to load.
BUILTINS: dict[str, str] = {
    "math": "ponder.verifiers.math:MathVerifier",
    "unit_tests": "ponder.verifiers.unit_tests:UnitTestVerifier",
    "exact": "ponder.verifiers.exact:ExactVerifier",
    "regex": "ponder.verifiers.exact:RegexVerifier",
    "contains": "ponder.verifiers.exact:ContainsVerifier",
    "llm_judge": "ponder.verifiers.llm_judge:LLMJudge",
}


class VerifierRegistry:
    """Name → factory returning a Verifier. One lives in `ponder.verifiers.REGISTRY`."""

    def __init__(self) -> None:
        self._factories: dict[str, Callable[[], Verifier]] = {}
        self._loaded_entry_points = False

    def add(self, name: str, factory: Callable[[], Verifier]) -> None:
        self._factories[name] = factory

    def names(self) -> list[str]:
        self._load_entry_points()
        return sorted(set(self._factories) | set(BUILTINS))

    def get(self, spec: str | Verifier | Callable[..., Any]) -> Verifier:
        """A verifier from a name, a `module:attr` or `file.py:func` spec, or an object."""
        if not isinstance(spec, str):
            return as_verifier(spec)
        if spec in self._factories:
            return self._factories[spec]()
        if spec in BUILTINS:
            return _load_attr(BUILTINS[spec], spec)()
        if ":" in spec:
            return _from_spec(spec)
        self._load_entry_points()
        if spec in self._factories:
            return self._factories[spec]()
        raise ConfigError(f"unknown verifier {spec!r}; known: {', '.join(self.names())}")

    def _load_entry_points(self) -> None:
        if self._loaded_entry_points:
            return
        self._loaded_entry_points = True
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            self._factories.setdefault(ep.name, partial(_load_entry_point, ep))


def _load_entry_point(ep: EntryPoint) -> Verifier:
    return _instantiate(ep.load(), ep.name)


def _instantiate(obj: Any, name: str) -> Verifier:
    if isinstance(obj, type):
        obj = obj()
    return as_verifier(obj, name=name)


def _load_attr(target: str, label: str) -> Any:
    module_name, _, attr = target.partition(":")
    module = importlib.import_module(module_name)
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ConfigError(f"verifier {label!r}: module {module_name!r} has no {attr!r}") from None


def _from_spec(spec: str) -> Verifier:
    """Load `module:attr` or `path/to/file.py:attr`; a class is instantiated with no arguments."""
    target, _, attr = spec.rpartition(":")
    if not target or not attr:
        raise ConfigError(f"verifier spec {spec!r} must look like module:attr or file.py:func")
    if target.endswith(".py"):
        path = Path(target)
        if not path.is_file():
            raise ConfigError(f"verifier spec {spec!r}: file {target!r} not found")
        module_spec = importlib.util.spec_from_file_location(f"ponder_user_{path.stem}", path)
        if module_spec is None or module_spec.loader is None:
            raise ConfigError(f"verifier spec {spec!r}: cannot load {target!r} as Python")
        module = importlib.util.module_from_spec(module_spec)
        try:
            module_spec.loader.exec_module(module)
        except Exception as exc:
            raise ConfigError(f"verifier spec {spec!r}: running {target!r} failed: "
                              f"{type(exc).__name__}: {exc}") from exc
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as exc:
            raise ConfigError(f"verifier spec {spec!r}: cannot import {target!r} ({exc})") from None
    if not hasattr(module, attr):
        raise ConfigError(f"verifier spec {spec!r}: {target!r} has no attribute {attr!r}")
    return _instantiate(getattr(module, attr), attr)
