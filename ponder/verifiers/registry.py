"""Finding verifiers: built-in names, `register_verifier`, the `ponder.verifiers` entry-point
group, specs `module:attr` or `path/to/file.py:func`, and the one rule that picks a problem's
verifier (`VerifierChoice`), which the API, `ponder.verify` and problem files all use."""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from functools import partial
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any

from ponder.core.errors import ConfigError
from ponder.core.types import Problem
from ponder.verifiers.base import Verifier, as_verifier

VerifierLike = Verifier | str | Callable[..., Any]

ENTRY_POINT_GROUP = "ponder.verifiers"

# Built-ins are imported on first use: the unit-test sandbox and sympy are not cheap to load.
BUILTINS: dict[str, str] = {
    "math": "ponder.verifiers.math:MathVerifier",
    "unit_tests": "ponder.verifiers.unit_tests:UnitTestVerifier",
    "unit_tests_full_feedback": "ponder.verifiers.unit_tests:full_feedback",
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

    def add(self, name: str, factory: Callable[[], Verifier], *, replace: bool = False) -> None:
        """Register `factory` as `name`; an existing name (a built-in too) is refused unless
        `replace`, so that a plug-in cannot silently take over `math`."""
        if not replace and (name in self._factories or name in BUILTINS):
            raise ConfigError(f"a verifier named {name!r} already exists; pick another name "
                              "or pass replace=True")
        self._factories[name] = factory

    def names(self) -> list[str]:
        self._load_entry_points()
        return sorted(set(self._factories) | set(BUILTINS))

    def is_registered(self, name: str) -> bool:
        """Whether `name` is a built-in, registered or installed verifier. Nothing is imported:
        entry points are listed, not loaded."""
        return name in BUILTINS or name in self._factories or name in self.names()

    def get(self, spec: VerifierLike) -> Verifier:
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


REGISTRY = VerifierRegistry()


def is_code_spec(spec: str) -> bool:
    """Whether loading `spec` would import a module or run a file (`module:attr`,
    `file.py:func`) rather than take a registered verifier by name."""
    return ":" in spec and not REGISTRY.is_registered(spec)


def get_verifier(spec: VerifierLike) -> Verifier:
    """A verifier by name (`math`, `unit_tests`, …), spec (`module:attr`, `file.py:func`),
    object or plain function."""
    return REGISTRY.get(spec)


def register_verifier(name: str, *, replace: bool = False) -> Callable[[Any], Any]:
    """Register a verifier class, instance or function under `name`.

    >>> @register_verifier("even")
    ... def even(problem, candidate):
    ...     return int(candidate.answer) % 2 == 0
    """

    def decorate(obj: Any) -> Any:
        REGISTRY.add(name, lambda: as_verifier(obj() if isinstance(obj, type) else obj, name=name),
                     replace=replace)
        return obj

    return decorate


def spec_for(problem: Problem) -> str | None:
    """The verifier a problem's own fields call for: its `verifier`, else `unit_tests` for
    tests and `math` for a gold answer, else none."""
    if problem.verifier:
        return problem.verifier
    # An empty `tests_public` only marks a coding problem whose gold was taken away.
    if any(t is not None for t in (problem.test, problem.tests)) or problem.tests_public:
        return "unit_tests"
    if problem.answer is not None:
        return "math"
    return None


class VerifierChoice:
    """Which verifier judges each problem: `override` for all when given (a name, spec, object
    or function), else the one the problem's fields call for (`spec_for`). Each spec loads once.

    >>> VerifierChoice().for_problem(Problem(problem="2+2?", answer="4")).name
    'math'
    """

    def __init__(self, override: VerifierLike | None = None) -> None:
        self.override = None if override is None else get_verifier(override)
        self._loaded: dict[str, Verifier | Exception] = {}

    def spec_for(self, problem: Problem) -> str | None:
        """The spec `problem` loads its verifier from; None with an override or no verifier."""
        return None if self.override is not None else spec_for(problem)

    def for_problem(self, problem: Problem) -> Verifier | None:
        """The verifier for `problem`, None when nothing calls for one; raises what loading
        its spec raised."""
        if self.override is not None:
            return self.override
        spec = spec_for(problem)
        if spec is None:
            return None
        if spec not in self._loaded:
            try:
                self._loaded[spec] = get_verifier(spec)
            except Exception as exc:  # a user's plug-in may fail in any way; report, not crash
                self._loaded[spec] = exc
        loaded = self._loaded[spec]
        if isinstance(loaded, Exception):
            raise loaded
        return loaded
