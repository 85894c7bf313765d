"""Public names that load their module on first use (PEP 562), for a package whose importers
should not pay for what they do not touch: `import ponder` must not load the openai SDK, nor
`import ponder.sandbox` pydantic.

>>> __getattr__, __dir__ = lazy_names(__name__, {"Sandbox": "ponder.sandbox.runner"}, globals())
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib import import_module
from typing import Any


def lazy_names(package: str, modules: Mapping[str, str], namespace: dict[str, Any],
               ) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The package's `__getattr__` and `__dir__`: a name in `modules` (name → the module that
    defines it) is imported when first asked for and kept in `namespace` (the package's
    globals), so later lookups find it without coming here."""

    def getattr_(name: str) -> Any:
        module = modules.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(module), name)
        namespace[name] = value
        return value

    def dir_() -> list[str]:
        return sorted({*namespace, *namespace.get("__all__", ())})

    return getattr_, dir_
