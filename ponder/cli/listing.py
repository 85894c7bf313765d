"""`ponder strategies` and `ponder verifiers`: what there is to choose from."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from ponder.cli.options import out
from ponder.cli.render import strategies_table, strategy_params, verifiers_table


def strategies(as_json: Annotated[bool, typer.Option("--json", help="as JSON")] = False) -> None:
    """Each strategy with its parameters and their defaults."""
    from ponder.strategies import REGISTRY as STRATEGIES

    specs = STRATEGIES.all()
    if as_json:
        print(json.dumps({spec.name: {"description": spec.description,
                                      "params": strategy_params(spec)}
                          for spec in specs}, default=str, indent=2))
        return
    out.print(strategies_table(specs))


def verifiers() -> None:
    """Each verifier: built-in, registered in code, or installed as a plug-in."""
    from importlib.metadata import entry_points

    from ponder.verifiers import REGISTRY as VERIFIERS
    from ponder.verifiers.registry import BUILTINS
    from ponder.verifiers.registry import ENTRY_POINT_GROUP as VERIFIER_ENTRY_POINTS

    plugins = {ep.name: ep.value for ep in entry_points(group=VERIFIER_ENTRY_POINTS)}
    rows = [(name,
             "built-in" if name in BUILTINS
             else f"plug-in {plugins[name]}" if name in plugins else "registered",
             _describe_verifier(name))
            for name in VERIFIERS.names()]
    out.print(verifiers_table(rows))


def _describe_verifier(name: str) -> str:
    from ponder.verifiers import get_verifier

    try:
        verifier = get_verifier(name)
    except Exception as exc:  # a broken plug-in must not hide the others
        return f"(cannot load: {type(exc).__name__}: {exc})"
    target = getattr(verifier, "fn", verifier)
    doc = (getattr(target, "__doc__", None) or type(verifier).__doc__ or "").strip()
    return doc.splitlines()[0] if doc else ""
