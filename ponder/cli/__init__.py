"""`ponder` on the command line: solve a problem file, list strategies and verifiers, show a
result with its trace, draw work-precision curves, serve strategies over HTTP.

    ponder solve problems.jsonl -s best_of_n -p n=5 --budget-tokens 4000 -o runs/bon.jsonl
    ponder show runs/bon.jsonl --id gsm8k-test-3

Exit codes (docs/cli.md): 0 done; 1 the run could not start (the model, or another run
writing the same results file) or could not write its results (a full disk; the rows written
are kept whole and `--resume` carries on); 2 bad usage or input; 3 the run finished, but some
rows carry an error (`--resume --retry-errors` solves them again); 4 the backend refused every
call (a wrong model name or API key), so the run stopped after its first problems; 130
interrupted (finished rows are kept; `--resume` carries on).

Each command is a module of its own (`COMMANDS`), imported when the command runs, and the
command's own imports of the rest of ponder are made inside it: `ponder --help` loads no
pydantic model and no openai SDK, `ponder show` no strategy, backend or verifier
(benchmarks/startup.py measures it; tests/test_imports.py keeps it so).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, MutableMapping
from typing import Any

import typer
from typer.core import MarkupMode, TyperGroup
from typer.main import get_command_from_info
from typer.models import CommandInfo

from ponder.cli.options import (
    MAX_FIELD_BYTES,
    SANDBOX_ENV,
    SERVE_BUDGET_CALLS,
    SERVE_BUDGET_SECONDS,
    SERVE_BUDGET_TOKENS,
    SERVE_CLIENT_TIMEOUT_S,
    SERVE_MAX_CONNECTIONS,
    SERVE_MAX_TRACE_MB,
    SERVE_PROGRAM_SECONDS,
    LocalModel,
    default_trace,
)
from ponder.cli.render import plain

# What callers and tests import from `ponder.cli` itself.
__all__ = ["MAX_FIELD_BYTES", "SANDBOX_ENV", "SERVE_BUDGET_CALLS", "SERVE_BUDGET_SECONDS",
           "SERVE_BUDGET_TOKENS", "SERVE_CLIENT_TIMEOUT_S", "SERVE_MAX_CONNECTIONS",
           "SERVE_MAX_TRACE_MB", "SERVE_PROGRAM_SECONDS", "LocalModel", "app", "default_trace",
           "plain"]

# Each command, by name, and the module of `ponder.cli` whose function of that name it is; in
# the order `ponder --help` lists them.
COMMANDS = {"solve": "solve", "serve": "serve", "strategies": "listing",
            "verifiers": "listing", "show": "show", "bench": "bench"}


class _Commands(MutableMapping[str, Any]):
    """The commands by name, each imported and made into a click command the first time it
    is looked up: running one builds only its own options (`solve` alone has forty), while
    `--help`, which lists them all, builds them all. The values are click commands, typed
    `Any`: typer's click is its own, and private."""

    def __init__(self, markup: MarkupMode) -> None:
        self._markup = markup
        self._names = list(COMMANDS)
        self._built: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        if name not in self._built:
            module = importlib.import_module(f"{__name__}.{COMMANDS[name]}")
            self._built[name] = get_command_from_info(
                CommandInfo(callback=getattr(module, name)),
                pretty_exceptions_short=app.pretty_exceptions_short,
                rich_markup_mode=self._markup)
        return self._built[name]

    def __setitem__(self, name: str, command: Any) -> None:
        if name not in self._names:
            self._names.append(name)
        self._built[name] = command

    def __delitem__(self, name: str) -> None:
        self._names.remove(name)
        self._built.pop(name, None)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


class _Group(TyperGroup):
    """`ponder`'s group: its commands come from `_Commands`, so typer's suggestion for a
    mistyped command ("Did you mean 'solve'?") still sees every name."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self.commands = _Commands(self.rich_markup_mode)


app = typer.Typer(
    name="ponder", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
    cls=_Group, help="Make small language models think harder, within a token budget.",
)


@app.callback()
def _group() -> None:
    # A callback makes typer build a group although no command is registered with it: the
    # commands are `_Commands`'.
    pass
