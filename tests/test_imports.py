"""The package's import graph: every module imports on its own, and no two modules import
each other, directly or round a loop, and each imports only from its own layer or below.
Every import counts: for type checking (a loop of types is a loop of design), inside a
function (a deferral is still a dependency), relative, or by name. And what importing
costs: `import ponder` and the commands that call no model load no heavy dependency (the
openai SDK, sympy, jinja2, ...)."""

from __future__ import annotations

import ast
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

import ponder
from ponder.core.types import Result
from ponder.runs.results import result_line
from tests.conftest import REPO

PACKAGE = REPO / "ponder"


def module_names() -> list[str]:
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def imports_of(name: str, source: str | None = None) -> set[str]:
    """The ponder modules `name` imports: at module level, for type checking, inside a
    function (a deferred import is still a dependency, and a loop through one is a loop),
    relatively, by `import_module`/`__import__` of a literal name, or through a lazy-name
    table."""
    path = REPO / name.replace(".", "/")
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    known = set(module_names())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    tree = ast.parse(path.read_text(encoding="utf-8") if source is None else source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's package, up `level - 1` more
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)  # submodules
        elif isinstance(node, ast.Call) and _names_import(node.func) and node.args \
                and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            found.add(node.args[0].value)  # import_module("ponder.x"), __import__("ponder.x")
    # A lazy-name table (`_LAZY = {"Name": "ponder.x.y"}`) and a "ponder.x:attr" spec are
    # imports too, made on first use. (Other strings, such as an entry-point group's name,
    # are not.)
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(getattr(target, "id", "") == "_LAZY"
                                                for target in node.targets):
            found.update(c.value for c in ast.walk(node.value)
                         if isinstance(c, ast.Constant) and isinstance(c.value, str))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and node.value.startswith("ponder.") and ":" in node.value:
            found.add(node.value.partition(":")[0])
    return {m for m in found if m in known and m != name}


def _names_import(func: ast.expr) -> bool:
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    return name in ("import_module", "__import__")


# The layers, bottom up: a module imports only from its own layer or the ones below it. The
# package root (`ponder/__init__.py`, whose names load lazily) and `__main__` stand above all.
LAYERS: list[tuple[str, ...]] = [
    ("ponder.core",),
    ("ponder.backends", "ponder.prompts", "ponder.sandbox"),
    ("ponder.verifiers", "ponder.code"),
    ("ponder.strategies",),
    ("ponder.runs",),
    ("ponder.portal", "ponder.session", "ponder.api"),
    ("ponder.bench", "ponder.serve", "ponder.ray", "ponder.testing"),
    ("ponder.cli",),
]
# The front doors are rooms of one floor: none reaches into another.
FRONT_DOORS = LAYERS[6]


def layer_of(module: str) -> int | None:
    for rank, rooms in enumerate(LAYERS):
        if any(module == room or module.startswith(room + ".") for room in rooms):
            return rank
    return None


def room_of(module: str) -> str:
    return next(room for rooms in LAYERS for room in rooms
                if module == room or module.startswith(room + "."))


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def walk(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state and (cycle := walk(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := walk(node)):
            return cycle
    return None


def test_the_import_graph_has_no_cycle() -> None:
    graph = {name: imports_of(name) for name in module_names()}
    assert sum(len(edges) for edges in graph.values()) > 50  # the check sees the imports
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_function_level_imports_count() -> None:
    """`ponder solve` imports most of what it runs inside the command; those are edges too."""
    assert "ponder.runs.solve_many" in imports_of("ponder.cli.solve")


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    wrong = []
    for name, used_modules in sorted(graph.items()):
        if name in ("ponder", "ponder.__main__"):
            continue
        rank = layer_of(name)
        if rank is None:
            wrong.append(f"{name} is in no layer of LAYERS")
            continue
        for used in sorted(used_modules):
            used_rank = layer_of(used)
            if used_rank is None:
                wrong.append(f"{name} imports {used}, which is in no layer")
            elif used_rank > rank:
                wrong.append(f"{name} (layer {rank}) imports {used} (layer {used_rank})")
            elif LAYERS[rank] == FRONT_DOORS and room_of(name) != room_of(used) \
                    and used_rank == rank:
                wrong.append(f"{name} reaches into another front door: {used}")
    return wrong


def test_every_form_of_import_is_seen() -> None:
    source = """
from ..runs import results
def later():
    importlib.import_module("ponder.cli.solve")
    __import__("ponder.serve.app")
_LAZY = {"Curve": "ponder.bench.curve"}
SPEC = "ponder.verifiers.math:MathVerifier"
GROUP = "ponder.strategies"  # an entry-point group's name, not an import
"""
    assert imports_of("ponder.core.redact", source) == {
        "ponder.runs", "ponder.runs.results", "ponder.cli.solve", "ponder.serve.app",
        "ponder.bench.curve", "ponder.verifiers.math"}


def test_every_module_imports_only_from_its_layer_and_below() -> None:
    graph = {name: imports_of(name) for name in module_names()}
    assert layer_violations(graph) == []


def test_the_layer_check_sees_a_wrong_import() -> None:
    assert layer_violations({"ponder.core.budget": {"ponder.runs.results"},
                             "ponder.serve.app": {"ponder.bench.curve"},
                             "ponder.runs.results": {"ponder.core.types"},
                             "ponder.elsewhere": set()}) == [
        "ponder.core.budget (layer 0) imports ponder.runs.results (layer 4)",
        "ponder.elsewhere is in no layer of LAYERS",
        "ponder.serve.app reaches into another front door: ponder.bench.curve",
    ]


ALONE = """
import importlib, json, sys
failures = {}
for name in sys.argv[1:]:
    for loaded in [m for m in sys.modules if m == "ponder" or m.startswith("ponder.")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except BaseException as exc:
        failures[name] = f"{type(exc).__name__}: {exc}"
print(json.dumps(failures))
"""


def test_every_module_imports_alone() -> None:
    """Each module imported first, with no other ponder module loaded (in one fresh process:
    third-party packages stay loaded between modules, which is not what this tests)."""
    names = [n for n in module_names() if n != "ponder.__main__"]  # a script: it runs the CLI
    done = subprocess.run([sys.executable, "-c", ALONE, *names], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {}


# -- what importing costs: `import ponder` and the quick commands load no heavy dependency ----

# Each costs tens to hundreds of milliseconds to import; a command that does not call a model
# must not pay for them (benchmarks/startup.py measures the time, this keeps the structure).
HEAVY = ("openai", "httpx", "httpx2", "tenacity", "sympy", "math_verify",
         "latex2sympy2_extended", "xllamacpp", "vllm", "jinja2", "ray", "pyarrow")

LOADED = """
import json, sys
{code}
print(json.dumps(sorted({{name.split(".")[0] for name in sys.modules}})))
"""

RUN_CLI = """
from typer.testing import CliRunner
from ponder.cli import app
done = CliRunner().invoke(app, sys.argv[1:])
assert done.exit_code == 0, done.output
"""


def top_level_modules_after(code: str, *args: str) -> set[str]:
    """The top-level packages a fresh interpreter holds after running `code`."""
    done = subprocess.run([sys.executable, "-c", LOADED.format(code=code), *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout.splitlines()[-1]))


@pytest.mark.parametrize("code", ["import ponder", "import ponder.cli", "import ponder.ray"])
def test_importing_ponder_loads_no_heavy_dependency(code: str) -> None:
    assert top_level_modules_after(code) & set(HEAVY) == set()


def test_help_loads_no_model_code() -> None:
    loaded = top_level_modules_after(RUN_CLI, "--help")
    assert loaded & {*HEAVY, "pydantic", "yaml"} == set()


def test_strategies_and_show_load_no_heavy_dependency(tmp_path: Path) -> None:
    results = tmp_path / "run.jsonl"
    results.write_text(result_line(Result(id="p1", answer="8")), encoding="utf-8")
    for args in (["strategies"], ["show", str(results)], ["show", str(results), "--id", "p1"]):
        assert top_level_modules_after(RUN_CLI, *args) & set(HEAVY) == set(), args


def test_every_public_name_is_there_on_first_use() -> None:
    """The package root loads its names lazily (PEP 562); each is still `ponder.X`, in
    `dir(ponder)` and `from ponder import *`, and is the object its own module defines."""
    namespace: dict[str, object] = {}
    exec("from ponder import *", namespace)
    for name in ponder.__all__:
        assert getattr(ponder, name) is namespace[name], name
        assert name in dir(ponder)
    assert ponder.OpenAIBackend is importlib.import_module("ponder.backends.openai").OpenAIBackend
    assert ponder.solve is importlib.import_module("ponder.api").solve
    with pytest.raises(AttributeError, match="no attribute 'nonesuch'"):
        ponder.nonesuch  # noqa: B018
