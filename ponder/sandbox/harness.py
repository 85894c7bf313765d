"""Runs a candidate's code and then its tests, inside the sandbox, and reports each test.

The `unit_tests` verifier writes this file and `solution.py` (the candidate's program) into
the sandbox's directory and runs `python -I -B harness.py MODE`. The tests arrive on a file
descriptor (`PONDER_SANDBOX_SECRET_FD`) as JSON `{"public": [chunk, ...], "private": [...],
"entry_point": name, "problem_code": source, "nonce": text}` and the report, one JSON object
carrying the nonce, leaves on another (`PONDER_SANDBOX_REPORT_FD`). Standard library only:
it runs in a bare interpreter.

MODE `isolated` (the default; see docs/trust.md): this process is the judge and never runs
the candidate's code. The sandbox started the candidate's process beside it (`harness.py
candidate`, the sandbox's peer): another uid where ponder is root, without the tests and
report descriptors. The judge makes itself undumpable first, then tells the candidate to load
`solution.py` (the judge has read every file it needs by then); from then on the candidate
only answers calls: a test's `candidate(3)` or `f(2, 3)` is sent to it as plain data and its
return value comes back as plain data (None, bool, int, float, str, and lists, tuples, sets
and dicts of them), rebuilt here as fresh builtin objects, so an `__eq__` that always says
yes cannot arrive. Whatever the candidate's code does to its own process (patching builtins,
json, the harness, exit hooks, forged reports), the verdict comes from assertions evaluated
here.

The tests see the judge's own builtins. Of the candidate's names they see only those the
problem names: its entry point, and the names the tests use that are neither builtins nor the
problem's own, so a candidate's `def abs(x): return 0` is not the `abs` of
`assert abs(f(7) - 4.5) < 1e-6`. An
exception the candidate raised arrives as itself only when it cannot steer control flow:
`StopIteration` (which would end a `map` or `zip` early, unseen), `SystemExit` and the like
arrive as a `CandidateError`.

MODE `in_process`: the old way, for tests that need the candidate's own objects (classes,
instances, callbacks): the code and the tests share one process, so a hostile candidate can
forge its report. Only for trusted candidates. The tests' names are chosen as above, and the
candidate's functions raise control-flow exceptions as `CandidateError` here too.

A test is a top-level `assert`, call (HumanEval's `check(candidate)`) or compound statement
(`for`, `if __name__ == "__main__": ...`, `with`, `try`: the tests run as `__main__`), a
`test_*` function a chunk defines (called with no arguments after the chunk ran; a coroutine
is run, a generator fails), or a test method of a `unittest.TestCase` it defines. Other
statements (imports, assignments, helpers, `def check`) are setup.

Names a problem's own code defines (a HumanEval prompt's helpers, such as `poly` beside
`find_zero`) come from that code, run here, never from the candidate: a candidate that
redefines `poly` changes only its own calls.

MODE `probe` (`ponder.code.probe`): isolated mode's two processes, but instead of tests the
secret carries `calls` (`{"calls": [src, ...], "entry_point", "problem_code", "nonce",
"per_call_s"}`, and optionally `margin_s` and `load_s`), and the report says what each did:
`{"value": data}`, `{"error": "TypeName: message", "where": ...}` or `{"timeout": true}`. A
`src` is an expression (its value is the result) or else a block of statements (result
None), evaluated like a test: the judge's builtins, the problem's own code, the candidate's
names as proxies. Each call gets a copy of that namespace and, on the candidate's side, a
forked process of its own (so one call's side effects never reach another, and a call that
hangs is killed alone after `per_call_s`); the judge keeps its own deadlines too, so a
candidate that ignores its time cannot stall the report (see `_judge_probe`).
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import inspect
import json
import linecache
import os
import select
import signal
import sys
import time
import traceback
import types
from collections.abc import Iterable
from typing import Any

SOLUTION = "<solution>"
LEFT = "__ponder_left_"  # where a failing comparison's left side was kept as it was computed
_TEXT_LIMIT = 400
_LINE_LIMIT = 16 << 20  # the longest reply line the judge reads from the candidate
_DEPTH_LIMIT = 64  # nesting of a value sent either way
_PLAIN = "lists, tuples, sets and dicts of None, bool, int, float and str"


def main() -> None:
    mode = sys.argv[1] if len(sys.argv) > 1 else "isolated"
    sys.set_int_max_str_digits(0)  # a right answer may be a very long int, either way
    if mode == "candidate":
        _candidate()
        return
    # Before anything else: the candidate's process may share our uid (ponder not root).
    _undumpable()
    report_fd = int(os.environ.pop("PONDER_SANDBOX_REPORT_FD"))
    secret_fd = int(os.environ.pop("PONDER_SANDBOX_SECRET_FD"))
    # Our own source, kept in memory: a traceback must not read /work (the candidate's to
    # write once it runs) for lines of this file.
    with open(__file__, encoding="utf-8") as f:
        _remember(__file__, f.read())
    tests = _read_tests(secret_fd)
    if mode in ("isolated", "probe"):
        link = _Link.attach()
        link.send({"go": True})  # only now may the candidate's code run
        report = (_judge_isolated(link, tests) if mode == "isolated"
                  else _judge_probe(link, tests))
        link.close()
    else:
        with open("solution.py", encoding="utf-8") as f:
            code = f.read()
        report = _judge_in_process(code, tests)
    # The nonce came with the tests: a report without it was not written by this judge.
    report["nonce"] = tests.get("nonce")
    with os.fdopen(report_fd, "w") as out:
        out.write(json.dumps(report))


def _read_tests(fd: int) -> dict[str, Any]:
    with os.fdopen(fd, "rb") as f:
        tests: dict[str, Any] = json.loads(f.read())
    return tests


def _candidate() -> None:
    """The candidate's process: wait until the judge is out of reach, then load the code and
    answer calls."""
    requests = os.fdopen(int(os.environ.pop("PONDER_PEER_IN_FD")), "rb")
    replies = os.fdopen(int(os.environ.pop("PONDER_PEER_OUT_FD")), "wb")
    if requests.readline() != b'{"go": true}\n':
        return
    # Its cwd is a directory of its own inside the run's, which holds the program.
    with open(os.path.join(os.pardir, "solution.py"), encoding="utf-8") as f:
        code = f.read()
    _serve(code, requests, replies)


# -- judging ----------------------------------------------------------------------------------


def _judge_isolated(link: _Link, tests: dict[str, Any]) -> dict[str, Any]:
    try:
        loaded = link.receive()
    except CandidateGone as exc:  # it died while loading: the verifier says how
        return {"phase": "load", "error": str(exc), "candidate": link.fate}
    candidate, failure = _proxies(link, loaded)
    if failure is not None:
        return failure
    report = _judge(candidate, tests)
    if link.fate is not None:  # it died mid-tests: the verifier says how (a CPU limit, say)
        report["candidate"] = link.fate
    return report


def _proxies(link: _Link, loaded: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The candidate's names from its process's first reply: its plain values as data, its
    functions as `_Remote`s; or the report of how loading failed."""
    if "phase" in loaded:  # the code did not compile or raised while it loaded
        return {}, {"phase": str(loaded["phase"]), "error": _clip(str(loaded.get("error", "")))}
    names = loaded.get("functions")
    values = loaded.get("values")
    if not isinstance(names, list) or not isinstance(values, dict):
        return {}, {"phase": "load", "error": "the program's process sent no list of its names"}
    candidate: dict[str, Any] = {}
    for name, value in values.items():
        try:
            candidate[str(name)] = decode(value)
        except ValueError:
            continue
    candidate.update({name: _Remote(link, name) for name in names if isinstance(name, str)})
    return candidate, None


def _judge_in_process(code: str, tests: dict[str, Any]) -> dict[str, Any]:
    module, failure = _load(code)
    if failure is not None:
        return failure
    return _judge({name: _guarded(value) for name, value in vars(module).items()}, tests)


def _judge(candidate: dict[str, Any], tests: dict[str, Any]) -> dict[str, Any]:
    """Run the tests as a script of their own (`__main__`, with the judge's builtins), after
    the problem's own code, with the candidate's names the problem names."""
    script, own, entry_point = _script(tests)
    namespace = script.__dict__
    chunks = [(kind, f"<tests {kind} {index + 1}>", chunk)
              for kind in ("public", "private") for index, chunk in enumerate(tests.get(kind, []))]
    trees = [_parse(chunk, filename) for _, filename, chunk in chunks]
    _expose(script, candidate, own, entry_point,
            (tree for tree in trees if isinstance(tree, ast.Module)))
    sys.argv = ["<tests>"]
    results: list[dict[str, Any]] = []
    for (kind, filename, chunk), tree in zip(chunks, trees, strict=True):
        for result in _run_chunk(chunk, filename, tree, namespace, entry_point):
            results.append({**result, "public": kind == "public"})
    return {"phase": "tests", "results": results}


def _script(tests: dict[str, Any]) -> tuple[types.ModuleType, set[str], str | None]:
    """The tests' `__main__`: the judge's builtins and what the problem's own code defines
    (those names, returned too), never the problem's own entry point."""
    script = types.ModuleType("__main__")
    namespace = script.__dict__
    namespace["__builtins__"] = builtins
    entry_point = tests.get("entry_point") if isinstance(tests.get("entry_point"), str) else None
    own = _run_problem_code(tests.get("problem_code"), namespace)
    # The problem's own entry point (a reference a prompt shows) never stands in for the
    # candidate's: without one of its own, the tests find none.
    namespace.pop(entry_point or "", None)
    return script, own, entry_point


def _expose(script: types.ModuleType, candidate: dict[str, Any], own: set[str],
            entry_point: str | None, trees: Iterable[ast.AST]) -> None:
    """Give the tests' `__main__` the candidate's names they use (and its entry point), and
    make them importable as `solution`."""
    namespace = script.__dict__
    exposed = (_exposed(trees) - own) | ({entry_point} if entry_point else set())
    namespace.update({name: value for name, value in candidate.items() if name in exposed})
    solution = types.ModuleType("solution")
    solution.__dict__.update({name: namespace[name] for name in own | exposed
                              if name in namespace})
    sys.modules["solution"] = solution
    sys.modules["__main__"] = script  # unittest.main() and pickle look for the tests here


def _parse(chunk: str, filename: str) -> ast.Module | str:
    """A test chunk's tree, or why it does not compile."""
    _remember(filename, chunk)
    try:
        return ast.parse(chunk, filename)
    except SyntaxError as exc:
        return _syntax_error(exc)
    except (ValueError, RecursionError, MemoryError) as exc:
        return type(exc).__name__


# What a problem's own code may define for the tests (ponder's side keeps the same of a prompt).
DEFINITIONS = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef,
               ast.Assign, ast.AnnAssign)


def _run_problem_code(source: Any, namespace: dict[str, Any]) -> set[str]:
    """Run what the problem's own code (a HumanEval prompt) defines into `namespace`: its
    imports, helpers, classes and constants, each statement alone (one that fails is left
    out), never a stub (a signature with only a docstring, the candidate's to write) and no
    other statement. Returns the names it bound: the tests take those from the problem."""
    if not isinstance(source, str) or not source.strip():
        return set()
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return set()
    _remember("<problem>", source)
    bound: set[str] = set()
    for statement in tree.body:
        if not isinstance(statement, DEFINITIONS) or _is_stub(statement):
            continue
        try:
            exec(compile(ast.Module([statement], []), "<problem>", "exec", dont_inherit=True),
                 namespace)
        except BaseException:  # the problem's text, not a test: that statement is left out
            continue
        bound |= _names_bound(statement)
    return {name for name in bound if not name.startswith("__")}


def _is_stub(statement: ast.stmt) -> bool:
    """A definition whose body is only a docstring, `pass`, `...` or `raise
    NotImplementedError`: a signature for the candidate to fill."""
    if not isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return False
    return all(
        isinstance(part, ast.Pass)
        or (isinstance(part, ast.Expr) and isinstance(part.value, ast.Constant))
        or (isinstance(part, ast.Raise) and "NotImplementedError" in ast.unparse(part))
        or (isinstance(part, ast.FunctionDef | ast.AsyncFunctionDef) and _is_stub(part))
        for part in statement.body)


def _names_bound(statement: ast.stmt) -> set[str]:
    if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return {statement.name}
    if isinstance(statement, ast.Import | ast.ImportFrom):
        return {(alias.asname or alias.name).split(".")[0] for alias in statement.names}
    targets = statement.targets if isinstance(statement, ast.Assign) else [
        getattr(statement, "target", None)]
    return {node.id for target in targets if target is not None
            for node in ast.walk(target) if isinstance(node, ast.Name)}


def _exposed(trees: Iterable[ast.AST]) -> set[str]:
    """The candidate's names the tests use that are no builtins (`from solution import x`,
    `solution.x` and `s.x` after `import solution as s` count as using x)."""
    used: set[str] = set()
    for tree in trees:
        modules = {"solution"} | {alias.asname for node in ast.walk(tree)
                                  if isinstance(node, ast.Import) for alias in node.names
                                  if alias.name == "solution" and alias.asname}
        for node in ast.walk(tree):
            if isinstance(node, ast.Name):
                used.add(node.id)
            elif isinstance(node, ast.ImportFrom) and node.module == "solution":
                used.update(alias.name for alias in node.names)
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                    and node.value.id in modules:
                used.add(node.attr)
    return {name for name in used if not hasattr(builtins, name) and not name.startswith("__")}


def _load(code: str) -> tuple[types.ModuleType, dict[str, Any] | None]:
    """The candidate's code run as module `solution` (so tests may `from solution import f`),
    or how it failed."""
    _remember(SOLUTION, code)
    module = types.ModuleType("solution")
    try:  # as plain Python: none of this file's `__future__` imports
        compiled = compile(code, SOLUTION, "exec", dont_inherit=True)
    except SyntaxError as exc:
        return module, {"phase": "compile", "error": _syntax_error(exc)}
    sys.modules["solution"] = module
    try:
        exec(compiled, module.__dict__)
    except BaseException as exc:
        return module, {"phase": "load", "error": _describe(exc)}
    return module, None


_SETUP = (*DEFINITIONS, ast.AugAssign, ast.Global, ast.Nonlocal, ast.Pass)


def _run_chunk(chunk: str, filename: str, parsed: ast.Module | str, namespace: dict[str, Any],
               entry_point: str | None) -> list[dict[str, Any]]:
    if isinstance(parsed, str):
        return [_result(filename, False, f"the tests do not compile: {parsed}")]
    tree = _KeepLeft().visit(parsed)
    flags = _future_flags(tree)  # each statement compiles alone, under the chunk's futures
    results: list[dict[str, Any]] = []
    test_functions: list[str] = []
    test_classes: list[str] = []
    for statement in tree.body:
        source = ast.get_source_segment(chunk, statement) or ast.unparse(statement)
        is_test = not isinstance(statement, _SETUP) and not (
            isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant))
        try:
            exec(compile(ast.Module([statement], []), filename, "exec", flags=flags,
                         dont_inherit=True), namespace)
        except SystemExit as exc:  # unittest.main() ends so, successful or not
            passed = exc.code in (0, None, False)
            results.append(_result(source, passed, None if passed else _describe(exc)))
            continue
        except BaseException as exc:
            results.append(_result(source, False, _describe(exc, setup=not is_test)))
            continue
        if is_test:
            results.append(_result(source, True))
        if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef) and (
            statement.name.startswith("test")
        ):
            test_functions.append(statement.name)
        if isinstance(statement, ast.ClassDef):
            test_classes.append(statement.name)
    for name in test_functions:
        if _takes_no_arguments(namespace.get(name)):  # else a helper, such as test(x, want)
            results.append(_call_test(f"{name}()", namespace[name]))
    for name in test_classes:
        results += _run_test_class(namespace.get(name))
    if not results and any(isinstance(s, ast.FunctionDef) and s.name == "check"
                           for s in tree.body):
        # HumanEval's shape without its last line: `check` defined, never called.
        results.append(_call_check(namespace, entry_point))
    return results


def _future_flags(tree: ast.Module) -> int:
    import __future__

    flags = 0
    for statement in tree.body:
        if isinstance(statement, ast.ImportFrom) and statement.module == "__future__":
            for alias in statement.names:
                feature = getattr(__future__, alias.name, None)
                flags |= getattr(feature, "compiler_flag", 0)
    return flags


def _takes_no_arguments(function: Any) -> bool:
    try:
        return all(p.default is not p.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
                   for p in inspect.signature(function).parameters.values())
    except (TypeError, ValueError):
        return False


def _call_check(namespace: dict[str, Any], entry_point: str | None) -> dict[str, Any]:
    if entry_point is None or entry_point not in namespace:
        return _result("check()", False, "the tests define check() but never call it, and "
                                         "the problem names no entry point to call it with")
    return _call_test(f"check({entry_point})", lambda: namespace["check"](
        namespace[entry_point]))


def _call_test(label: str, function: Any) -> dict[str, Any]:
    """A test function's result: a coroutine is run to its end; a generator is no test
    (calling it runs none of its body)."""
    try:
        outcome = function()
        if inspect.iscoroutine(outcome):
            import asyncio

            asyncio.run(outcome)
        elif inspect.isgenerator(outcome) or inspect.isasyncgen(outcome):
            return _result(label, False, "a generator is not a test: its body never ran")
    except BaseException as exc:
        return _result(label, False, _describe(exc))
    return _result(label, True)


def _run_test_class(case: Any) -> list[dict[str, Any]]:
    """Each test method of a `unittest.TestCase` (run as a suite, so its class fixtures run;
    a skipped test is not a passed one), or of a pytest-style `Test*` class (an instance per
    method, as pytest makes)."""
    if not isinstance(case, type):
        return []
    unittest = sys.modules.get("unittest")
    if unittest is not None and issubclass(case, unittest.TestCase):
        suite = unittest.TestLoader().loadTestsFromTestCase(case)
        methods = list(suite)  # a suite lets go of each test once it has run
        outcome = unittest.TestResult()
        suite.run(outcome)
        why: dict[str, str] = {}
        for test, text in outcome.failures + outcome.errors:
            why.setdefault(test.id(), _clip(text.strip().splitlines()[-1]))
        for test, reason in outcome.skipped:
            why.setdefault(test.id(), f"skipped ({_clip(str(reason))}): a skipped test is "
                                      "not a passed one")
        for test in outcome.unexpectedSuccesses:
            why.setdefault(test.id(), "an unexpected success")
        for test, text in outcome.errors:  # a class fixture that failed names no method
            if not hasattr(test, "_testMethodName"):
                return [_result(f"{case.__name__}", False, _clip(text.strip().splitlines()[-1]))]
        return [_result(f"{case.__name__}.{test._testMethodName}()", test.id() not in why,
                        why.get(test.id())) for test in methods]
    if not case.__name__.startswith("Test"):
        return []
    results = []
    for method in sorted(name for name in vars(case) if name.startswith("test")):
        try:
            instance = case()
        except BaseException as exc:
            results.append(_result(f"{case.__name__}.{method}()", False, _describe(exc)))
            continue
        results.append(_call_test(f"{case.__name__}.{method}()", getattr(instance, method)))
    return results


class _KeepLeft(ast.NodeTransformer):
    """`assert x == y` becomes `assert (__ponder_left_<line>_<column>__ := x) == y`: a
    failing test's left side is shown as it was computed, never computed again (a second call
    to the candidate would tell it its first answer failed), and never another assert's."""

    def visit_Assert(self, node: ast.Assert) -> ast.AST:
        test = node.test
        if isinstance(test, ast.Compare) and not isinstance(test.left, ast.Constant):
            test.left = ast.copy_location(
                ast.NamedExpr(ast.Name(_left_name(node), ast.Store()), test.left), test.left)
            ast.fix_missing_locations(node)
        return node


def _left_name(node: ast.Assert) -> str:
    return f"{LEFT}{node.lineno}_{node.col_offset}__"


# -- probing: what the candidate does with each of many inputs ----------------------------------


def _judge_probe(link: _Link, secret: dict[str, Any]) -> dict[str, Any]:
    """Evaluate each of `secret["calls"]` as the tests would be, each within `per_call_s`.

    Two deadlines bound a call. The candidate's process runs each request in a forked child
    and kills it when the call's time is up (`_apart`), so an honest candidate that hangs on
    one input answers `timeout` and goes on to the next. The judge waits for a reply only
    until that time and a margin (`_Link.receive_by`), and an alarm bounds the call's own
    evaluation here (`_bounded`). A candidate that missed the judge's deadline has a reply
    owing, so the line is out of step: that call and every later one time out, and the
    report is written."""
    per_call_s = _seconds(secret.get("per_call_s"), 2.0)
    margin = _seconds(secret.get("margin_s"), 0.5 + per_call_s / 4)
    load_s = _seconds(secret.get("load_s"), 10.0)
    link.margin = margin
    try:
        loaded = link.receive_by(time.monotonic() + load_s)
    except CandidateGone as exc:
        return {"phase": "load", "error": str(exc), "candidate": link.fate}
    except Overdue:
        return {"phase": "load", "timeout": True,
                "error": f"Timeout: the program did not finish loading within {load_s:g}s"}
    candidate, failure = _proxies(link, loaded)
    if failure is not None:
        return failure
    raw = secret.get("calls")
    calls = [src if isinstance(src, str) else "" for src in (raw if isinstance(raw, list) else [])]
    compiled = [_compile_call(src, f"<call {index + 1}>") for index, src in enumerate(calls)]
    script, own, entry_point = _script(secret)
    _expose(script, candidate, own, entry_point,
            (tree for _, tree in compiled if tree is not None))
    sys.argv = ["<calls>"]
    signal.signal(signal.SIGALRM, _on_alarm)
    results: list[dict[str, Any]] = []
    for code, _ in compiled:
        if link.stalled:
            results.append({"timeout": True})
        elif isinstance(code, str):
            results.append({"error": _clip(code), "where": None})
        else:
            results.append(_probe_call(code, dict(script.__dict__), link, per_call_s))
    report: dict[str, Any] = {"phase": "probe", "results": results}
    if link.fate is not None:
        report["candidate"] = link.fate
    return report


def _seconds(value: Any, default: float) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < 1e6
    return float(value) if ok else default


def _compile_call(src: str, filename: str) -> tuple[types.CodeType | str, ast.AST | None]:
    """A call's code (an expression's, else a block's) and its tree; or why it does not
    compile."""
    _remember(filename, src)
    try:
        expression = ast.parse(src, filename, mode="eval")
        return compile(expression, filename, "eval", dont_inherit=True), expression
    except SyntaxError:
        pass  # not an expression: a block of statements, then
    except (ValueError, RecursionError, MemoryError) as exc:
        return type(exc).__name__, None
    try:
        block = ast.parse(src, filename)
        return compile(block, filename, "exec", dont_inherit=True), block
    except SyntaxError as exc:
        return _syntax_error(exc), None
    except (ValueError, RecursionError, MemoryError) as exc:
        return type(exc).__name__, None


def _probe_call(code: types.CodeType, scope: dict[str, Any], link: _Link,
                budget: float) -> dict[str, Any]:
    link.deadline = time.monotonic() + budget
    try:
        # Past the link's own deadline: the alarm is for time spent here, not waiting.
        outcome = _bounded(lambda: _evaluate(code, scope), budget + 2 * link.margin)
    finally:
        link.deadline = None
    if outcome is None:  # the alarm: a request still owed a reply puts the line out of step
        link.stalled = link.stalled or link.awaiting
        return {"timeout": True}
    return outcome


def _evaluate(code: types.CodeType, scope: dict[str, Any]) -> dict[str, Any]:
    try:
        value = eval(code, scope)  # an "exec" code object gives None
    except (CallTimedOut, Overdue):
        return {"timeout": True}
    except _Overrun:
        raise
    except BaseException as exc:
        return {"error": _error_text(exc), "where": getattr(exc, "ponder_where", None)}
    try:
        return {"value": encode(value, loose=True)}
    except ValueError as exc:
        return {"error": f"{NotPlainData.__name__}: the call's value is {exc}, not {_PLAIN}",
                "where": None}


def _error_text(exc: BaseException) -> str:
    """`TypeName: message`; a `CandidateError` already reads so, with the candidate's own
    exception's name."""
    if isinstance(exc, CandidateError):
        return _clip(str(exc))
    message = _clip(str(exc))
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


class _Overrun(BaseException):
    """The judge's alarm: a call's evaluation here ran past its time."""


_ALARM = {"armed": False}


def _on_alarm(signum: int, frame: Any) -> None:
    if _ALARM["armed"]:
        _ALARM["armed"] = False  # once per arming: never again in `_bounded`'s cleanup
        raise _Overrun


def _bounded(run: Any, seconds: float) -> Any:
    """`run()`, or None when it takes more than `seconds` (the alarm interrupts Python code
    and blocking reads and writes, not one long C call such as `10 ** 10 ** 9`)."""
    _ALARM["armed"] = True
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        try:
            return run()
        finally:
            _ALARM["armed"] = False
            signal.setitimer(signal.ITIMER_REAL, 0)
    except _Overrun:  # also when it struck in the `finally`, before the alarm was disarmed
        return None


# -- the candidate's process, and the judge's line to it ---------------------------------------


class CandidateError(Exception):
    """An exception the candidate's code raised that is no builtin exception, or one that
    would steer the tests' control flow (`StopIteration` ends a `map` silently)."""


class NotPlainData(BaseException):
    """A value isolated mode cannot carry between the judge and the candidate. Not a
    `TypeError`, nor any `Exception`: a test expecting the candidate to raise one must not
    take the harness's own refusal for it."""


# Raised by a candidate, these would not read as a failure: StopIteration and
# StopAsyncIteration end iterations, the rest are meant for an interpreter, not a test.
_CONTROL_FLOW = (StopIteration, StopAsyncIteration, GeneratorExit, KeyboardInterrupt,
                 SystemExit)


def _guarded(value: Any) -> Any:
    """A function of the candidate's (in_process mode) whose control-flow exceptions reach
    the tests as `CandidateError`."""
    if not isinstance(value, types.FunctionType):
        return value
    function = value

    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except _CONTROL_FLOW as exc:
            error = CandidateError(f"{type(exc).__name__}: {_clip(str(exc))}")
            where = _where(exc)
            if where is not None:
                error.ponder_where = where  # type: ignore[attr-defined]
            raise error from None

    call.__name__ = call.__qualname__ = function.__name__
    call.__doc__ = function.__doc__
    return call


class CandidateGone(Exception):
    """The candidate's process exited or broke the protocol; every later call fails too."""


class CallTimedOut(BaseException):
    """A probe call's time ran out (the candidate's process said so, or none was left to
    ask). No `Exception`, so a call's own `except Exception` does not take it for a result."""


class Overdue(BaseException):
    """No reply came by the judge's deadline: the line to the candidate is out of step."""


class _Link:
    """The judge's end of two pipes to the candidate's process: one JSON line each way."""

    def __init__(self, pid: int, reader: Any, writer: Any) -> None:
        self.pid = pid
        self.reader = reader
        self.writer = writer
        self.gone: str | None = None
        self.fate: dict[str, int | None] | None = None
        # Probe mode only: the current call's deadline (each request carries the time left,
        # and replies are awaited until it and `margin`), and the line's state.
        self.deadline: float | None = None
        self.margin = 0.0
        self.awaiting = False  # a request sent and its reply not yet read
        self.stalled = False  # a reply missed its deadline, so any later line may be stale
        self._pending = bytearray()

    @classmethod
    def attach(cls) -> _Link:
        """The line to the candidate's process the sandbox started beside this one."""
        return cls(int(os.environ.pop("PONDER_PEER_PID")),
                   os.fdopen(int(os.environ.pop("PONDER_PEER_IN_FD")), "rb"),
                   os.fdopen(int(os.environ.pop("PONDER_PEER_OUT_FD")), "wb"))

    def call(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        try:
            request: dict[str, Any] = {
                "call": name, "args": [encode(a) for a in args],
                "kwargs": {str(k): encode(v) for k, v in kwargs.items()}}
        except ValueError as exc:
            raise NotPlainData(f"isolated tests pass only {_PLAIN} to the candidate: {exc}; "
                            "use mode='in_process' for trusted code") from None
        if self.deadline is not None:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise CallTimedOut("the call's time ran out")
            request["budget_s"] = left
        self.send(request)
        if self.deadline is None:
            reply = self.receive()
        else:
            reply = self.receive_by(self.deadline + self.margin)
            if reply.get("timeout") is True:
                raise CallTimedOut(_clip(str(reply.get("message", ""))))
        if "value" in reply:
            try:
                return decode(reply["value"])
            except ValueError as exc:
                raise NotPlainData(f"{name}() returned a value that is not plain data ({exc}): "
                                f"return {_PLAIN}") from None
        raise _rebuild(reply)

    def send(self, message: dict[str, Any]) -> None:
        if self.gone:
            raise CandidateGone(self.gone)
        self.awaiting = True
        try:
            self.writer.write(json.dumps(message).encode() + b"\n")
            self.writer.flush()
        except (BrokenPipeError, OSError):
            self.gone = self._reap()
            raise CandidateGone(self.gone) from None

    def receive(self) -> dict[str, Any]:
        if self.gone:
            raise CandidateGone(self.gone)
        line = self.reader.readline(_LINE_LIMIT + 1)
        if not line.endswith(b"\n"):
            self.gone = (self._reap() if not line
                         else "the program's process sent a reply too long to read")
            raise CandidateGone(self.gone)
        return self._message(line)

    def receive_by(self, deadline: float) -> dict[str, Any]:
        """`receive`, waiting no later than `deadline` (`time.monotonic()`): past it, raise
        `Overdue` and mark the line stalled. Reads the pipe itself, never through `reader`,
        whose buffer a `select` cannot see."""
        if self.gone:
            raise CandidateGone(self.gone)
        state = _fill(self.reader.fileno(), self._pending, deadline)
        if state == "late":
            self.stalled = True
            raise Overdue
        if state != "line":
            # A process that shut its end but lives on must not hold the judge in waitpid.
            self.gone = (self._reap(until=time.monotonic() + 1.0) if state == "eof"
                         else "the program's process sent a reply too long to read")
            raise CandidateGone(self.gone)
        end = self._pending.index(b"\n") + 1
        line = bytes(self._pending[:end])
        del self._pending[:end]
        self.awaiting = False
        return self._message(line)

    def _message(self, line: bytes) -> dict[str, Any]:
        try:
            message = json.loads(line)
        except (ValueError, RecursionError):
            self.gone = "the program's process sent a reply that is not JSON"
            raise CandidateGone(self.gone) from None
        if not isinstance(message, dict):
            self.gone = "the program's process sent a reply that is not an object"
            raise CandidateGone(self.gone)
        return message

    def _reap(self, until: float | None = None) -> str:
        """How the candidate's process ended, once it closed its end of the line (waiting
        for it no later than `until`, when given)."""
        try:
            if until is None:
                _, status = os.waitpid(self.pid, 0)
            else:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
                while pid == 0 and time.monotonic() < until:
                    time.sleep(0.01)
                    pid, status = os.waitpid(self.pid, os.WNOHANG)
                if pid == 0:
                    return "the program's process closed its line to the judge"
        except ChildProcessError:
            return "the program's process exited"
        code = os.waitstatus_to_exitcode(status)
        self.fate = {"exit_code": None if code < 0 else code, "signal": -code if code < 0 else None}
        if code < 0:
            return f"the program's process was killed by signal {-code}"
        return f"the program's process exited with code {code}"

    def close(self) -> None:
        for stream in (self.writer, self.reader):
            with contextlib.suppress(OSError):
                stream.close()


class _Remote:
    """Stands in the tests for one of the candidate's functions: calling it asks the
    candidate's process."""

    def __init__(self, link: _Link, name: str) -> None:
        self._link = link
        self.__name__ = name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._link.call(self.__name__, args, kwargs)

    def __repr__(self) -> str:
        return f"<candidate function {self.__name__}>"


def _rebuild(reply: dict[str, Any]) -> BaseException:
    """The exception the candidate's call raised, as a builtin exception where its name is
    one (so a test's `except ValueError` works), else a `CandidateError`."""
    name, message = str(reply.get("raise", "Exception")), _clip(str(reply.get("message", "")))
    if name == NotPlainData.__name__:
        return NotPlainData(message)
    kind = getattr(builtins, name, None)
    if isinstance(kind, type) and issubclass(kind, Exception) and not issubclass(
            kind, _CONTROL_FLOW):
        try:
            exc: BaseException = kind(message)
        except Exception:
            exc = CandidateError(f"{name}: {message}")
    else:
        exc = CandidateError(f"{name}: {message}")
    where = reply.get("where")
    if isinstance(where, str):
        exc.ponder_where = _clip(where)  # type: ignore[attr-defined]
    return exc


def _serve(code: str, requests: Any, replies: Any) -> None:
    """The candidate's side: load the code, say what it defines, then answer calls."""
    module, failure = _load(code)

    def reply(message: dict[str, Any]) -> None:
        replies.write(json.dumps(message).encode() + b"\n")
        replies.flush()

    if failure is not None:
        reply(failure)
        return
    functions, values = [], {}
    for name, value in vars(module).items():
        if name.startswith("__"):
            continue
        if callable(value):
            functions.append(name)
        else:  # modules and the code's own objects are not plain: tests reach them in_process
            with contextlib.suppress(ValueError):
                values[name] = encode(value)
    reply({"functions": functions, "values": values})
    for line in requests:
        request = json.loads(line)
        budget = request.get("budget_s")  # probe mode's requests: each call in a child
        if isinstance(budget, int | float) and not isinstance(budget, bool):
            reply(_apart(module, request, float(budget), (requests, replies)))
        else:
            reply(_answer(module, request))


def _answer(module: types.ModuleType, request: dict[str, Any]) -> dict[str, Any]:
    """The reply to one call of the candidate's code."""
    try:
        fn = getattr(module, request["call"])
        result = fn(*[decode(a) for a in request["args"]],
                    **{k: decode(v) for k, v in request["kwargs"].items()})
    except BaseException as exc:  # SystemExit too: the judge decides what a failure is
        return {"raise": type(exc).__name__, "message": str(exc)[:_TEXT_LIMIT],
                "where": _where(exc)}
    try:
        return {"value": encode(result, loose=True)}
    except ValueError as exc:
        return {"raise": NotPlainData.__name__, "message": f"returned {exc}: return {_PLAIN}"}


def _apart(module: types.ModuleType, request: dict[str, Any], budget: float,
           link: tuple[Any, ...]) -> dict[str, Any]:
    """`_answer`, in a forked child that is killed (with its process group) once `budget`
    seconds pass: a call that hangs costs only itself, the code is loaded once, and RLIMIT_CPU
    counts each call's own CPU time. The child is always killed and reaped before the reply,
    so no call leaves a process running into the next."""
    try:
        read_end, write_end = os.pipe()
    except OSError as exc:
        return {"raise": type(exc).__name__, "message": f"could not start the call: {exc}"}
    try:
        pid = os.fork()
    except OSError as exc:
        os.close(read_end)
        os.close(write_end)
        return {"raise": type(exc).__name__, "message": f"could not start the call: {exc}"}
    if pid == 0:
        failed = True
        try:
            os.close(read_end)
            with contextlib.suppress(OSError):
                os.setpgid(0, 0)
            for stream in link:  # the call's code has no business on the judge's line
                with contextlib.suppress(OSError):
                    os.close(stream.fileno())
            data = memoryview(json.dumps(_answer(module, request)).encode() + b"\n")
            while data:
                data = data[os.write(write_end, data):]
            failed = False
        finally:
            os._exit(1 if failed else 0)
    os.close(write_end)
    with contextlib.suppress(OSError):  # the child does it too; whichever runs first
        os.setpgid(pid, pid)
    pending = bytearray()
    state = _fill(read_end, pending, time.monotonic() + budget)
    os.close(read_end)
    for kill in (os.killpg, os.kill):  # before the reap: the pid is not yet free for reuse
        with contextlib.suppress(OSError):
            kill(pid, signal.SIGKILL)
    status: int | None
    try:
        _, status = os.waitpid(pid, 0)
    except ChildProcessError:  # the code ignored SIGCHLD: its children reap themselves
        status = None
    code = None if status is None else os.waitstatus_to_exitcode(status)
    if state == "line":
        with contextlib.suppress(ValueError, RecursionError):
            message = json.loads(pending[:pending.index(b"\n")])
            if isinstance(message, dict) and ("value" in message or "raise" in message):
                return message
        return {"raise": "ProtocolError", "message": "the call's process wrote something "
                                                     "other than its answer to its reply"}
    if state == "late" or code == -signal.SIGXCPU:
        return {"timeout": True, "message": f"the call took more than {budget:.3g}s"}
    if state == "long":
        return {"raise": NotPlainData.__name__, "message": "returned a value too long to send"}
    if code is not None and code < 0:
        return {"raise": "ProcessKilled",
                "message": f"the call's process was killed by signal {-code}"}
    return {"raise": "ProcessExit",
            "message": f"the call's process exited with code {code} and no reply"}


def _fill(fd: int, pending: bytearray, deadline: float) -> str:
    """Read `fd` into `pending` until it holds a whole line ("line"), the writer closes
    ("eof"), `deadline` (`time.monotonic()`) passes ("late") or it outgrows a reply
    ("long")."""
    scanned = 0
    while b"\n" not in pending[scanned:]:
        scanned = len(pending)
        if scanned > _LINE_LIMIT:
            return "long"
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return "late"
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return "eof"
        pending += chunk
    return "line"


def _where(exc: BaseException) -> str | None:
    mine = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == SOLUTION]
    if not mine:
        return None
    return f"raised at line {mine[-1].lineno} of your code: {(mine[-1].line or '').strip()}"


def encode(value: Any, depth: int = 0, *, loose: bool = False) -> Any:
    """`value` as JSON, if it is plain data of exactly builtin types (no subclasses).

    `loose` (the candidate's replies) also takes a container's subclass (a `Counter`, a
    namedtuple) as the plain container its items make: what crosses is only those items, so
    the subclass's own `__eq__` stays behind. Scalars must be exact either way."""
    if depth > _DEPTH_LIMIT:
        raise ValueError("a value nested too deep")
    kind = type(value)
    if value is None or kind in (bool, int, float, str):
        return value
    if loose and kind not in (list, tuple, set, frozenset, dict):
        base = next((b for b in (dict, list, tuple, frozenset, set) if isinstance(value, b)),
                    None)
        if base is not None:
            value = dict(value.items()) if base is dict else base(iter(value))
            kind = base
    if kind is list:
        return [encode(v, depth + 1, loose=loose) for v in value]
    if kind in (tuple, set, frozenset):
        return {kind.__name__: [encode(v, depth + 1, loose=loose) for v in value]}
    if kind is dict:
        return {"dict": [[encode(k, depth + 1, loose=loose), encode(v, depth + 1, loose=loose)]
                         for k, v in value.items()]}
    raise ValueError(f"a {kind.__name__}")


def decode(data: Any, depth: int = 0) -> Any:
    """Plain data from JSON that `encode` wrote, built from fresh builtin objects; anything
    else is refused."""
    try:
        return _decode(data, depth)
    except TypeError:  # an unhashable member of a set or key of a dict
        raise ValueError("not plain data") from None


def _decode(data: Any, depth: int) -> Any:
    if depth > _DEPTH_LIMIT:
        raise ValueError("nested too deep")
    if data is None or type(data) in (bool, int, float, str):
        return data
    if type(data) is list:
        return [_decode(v, depth + 1) for v in data]
    if type(data) is dict and len(data) == 1:
        [(tag, items)] = data.items()
        if type(items) is list:
            if tag == "tuple":
                return tuple(_decode(v, depth + 1) for v in items)
            if tag in ("set", "frozenset"):
                members = (_decode(v, depth + 1) for v in items)
                return set(members) if tag == "set" else frozenset(members)
            if tag == "dict" and all(type(p) is list and len(p) == 2 for p in items):
                return {_decode(k, depth + 1): _decode(v, depth + 1) for k, v in items}
    raise ValueError("not plain data")


def _undumpable() -> None:
    """Bar processes of our uid (the candidate's) from ptrace and from /proc/<pid>/mem, fd/
    and environ of this one: prctl(PR_SET_DUMPABLE, 0)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(4, 0, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE, 0) failed")


# -- feedback -----------------------------------------------------------------------------------


def _result(test: str, passed: bool, error: str | None = None) -> dict[str, Any]:
    return {"test": _clip(test), "passed": passed, "error": error}


def _describe(exc: BaseException, *, setup: bool = False) -> str:
    """What went wrong, for the model: the failing assertion and what its left side was, or
    the exception and the line of the solution that raised it."""
    frames = traceback.extract_tb(exc.__traceback__)
    lines: list[str] = []
    if setup:
        lines.append("error while setting up the tests")
    if isinstance(exc, AssertionError):
        where = _innermost_test_frame(exc)
        if where is not None:
            frame, line = where
            node = _assert_node(frame.f_code.co_filename, line)
            source = ast.unparse(node) if node is not None else (
                linecache.getline(frame.f_code.co_filename, line).strip())
            lines.append(f"failed: {_clip(source)}")
            got = _left_side(node, frame) if node is not None else None
            if got is not None:
                lines.append(f"left side was: {got}")
        if str(exc):
            lines.append(f"AssertionError: {_clip(str(exc))}")
    else:
        lines.append(f"{type(exc).__name__}: {_clip(str(exc))}".rstrip(": "))
        mine = [f for f in frames if f.filename == SOLUTION]
        if mine:
            lines.append(f"raised at line {mine[-1].lineno} of your code: "
                         f"{_clip((mine[-1].line or '').strip())}")
        elif isinstance(getattr(exc, "ponder_where", None), str):
            lines.append(exc.ponder_where)  # type: ignore[attr-defined]
    return "\n".join(lines) or type(exc).__name__


def _innermost_test_frame(exc: BaseException) -> tuple[types.FrameType, int] | None:
    """The deepest frame of the traceback that runs test code, and its line."""
    tb, found = exc.__traceback__, None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename.startswith("<tests"):
            found = (tb.tb_frame, tb.tb_lineno)
        tb = tb.tb_next
    return found


def _assert_node(filename: str, line: int) -> ast.Assert | None:
    try:
        tree = ast.parse("".join(linecache.getlines(filename)))
    except SyntaxError:
        return None
    for node in ast.walk(tree):
        if isinstance(node, ast.Assert) and node.lineno <= line <= (node.end_lineno or line):
            return node
    return None


def _left_side(node: ast.Assert, frame: types.FrameType) -> str | None:
    """The value of `x` in a failing `assert x == y`, as the assertion computed it."""
    if not isinstance(node.test, ast.Compare) or isinstance(node.test.left, ast.Constant):
        return None
    missing = object()
    value = frame.f_locals.get(_left_name(node), missing)
    if value is missing:
        return None
    try:
        return _clip(repr(value))
    except BaseException as exc:
        return f"an error ({type(exc).__name__}: {_clip(str(exc))})"


def _syntax_error(exc: SyntaxError) -> str:
    where = f" (line {exc.lineno})" if exc.lineno else ""
    text = f"\n    {exc.text.strip()}" if exc.text else ""
    return f"SyntaxError: {exc.msg}{where}{text}"


def _remember(filename: str, source: str) -> None:
    """Let tracebacks and our messages quote lines of code that has no file."""
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)


def _clip(text: str) -> str:
    return text if len(text) <= _TEXT_LIMIT else text[: _TEXT_LIMIT - 1] + "…"


if __name__ == "__main__":
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 3000))
    main()
