"""Runs a candidate's code and then its tests, inside the sandbox, and reports each test.

The `unit_tests` verifier copies this file into the sandbox's directory with `payload.json`
(`{"code": str, "tests": [str, ...]}`) and runs it as `python -I -B harness.py`. Standard
library only: it runs in a bare interpreter.

The code runs as module `solution` (so tests may `from solution import f`), and the tests
in its namespace. A test is a top-level `assert`, a top-level call (HumanEval's
`check(candidate)`), or a `test_*` function a chunk defines (called with no arguments, after
the chunk ran). Other statements (imports, helpers, `def check`) are setup. The report, one
JSON object, goes to the file descriptor the sandbox names in `PONDER_SANDBOX_REPORT_FD`.
"""

from __future__ import annotations

import ast
import json
import linecache
import os
import sys
import traceback
import types
from typing import Any

SOLUTION = "<solution>"
_TEXT_LIMIT = 400


def main() -> None:
    report_fd = int(os.environ.pop("PONDER_SANDBOX_REPORT_FD"))
    with open("payload.json") as f:
        payload = json.load(f)
    os.unlink("payload.json")
    report = _run(payload["code"], payload["tests"])
    with os.fdopen(report_fd, "w") as out:
        out.write(json.dumps(report))


def _run(code: str, tests: list[str]) -> dict[str, Any]:
    _remember(SOLUTION, code)
    try:
        compiled = compile(code, SOLUTION, "exec")
    except SyntaxError as exc:
        return {"phase": "compile", "error": _syntax_error(exc)}
    # Importable as `solution` too, for tests written as `from solution import f`.
    module = types.ModuleType("solution")
    sys.modules["solution"] = module
    namespace = module.__dict__
    try:
        exec(compiled, namespace)
    except BaseException as exc:
        return {"phase": "load", "error": _describe(exc)}
    results: list[dict[str, Any]] = []
    for index, chunk in enumerate(tests):
        results.extend(_run_chunk(chunk, f"<tests {index + 1}>", namespace))
    return {"phase": "tests", "results": results}


def _run_chunk(chunk: str, filename: str, namespace: dict[str, Any]) -> list[dict[str, Any]]:
    _remember(filename, chunk)
    try:
        tree = ast.parse(chunk, filename)
    except SyntaxError as exc:
        return [_result(filename, False, f"the tests do not compile: {_syntax_error(exc)}")]
    results: list[dict[str, Any]] = []
    test_functions: list[str] = []
    for statement in tree.body:
        source = ast.get_source_segment(chunk, statement) or ast.unparse(statement)
        is_test = isinstance(statement, ast.Assert) or (
            isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Call)
        )
        try:
            exec(compile(ast.Module([statement], []), filename, "exec"), namespace)
        except BaseException as exc:
            results.append(_result(source, False, _describe(exc, setup=not is_test)))
            continue
        if is_test:
            results.append(_result(source, True))
        if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef) and (
            statement.name.startswith("test")
        ):
            test_functions.append(statement.name)
    for name in test_functions:
        try:
            namespace[name]()
        except BaseException as exc:
            results.append(_result(f"{name}()", False, _describe(exc)))
        else:
            results.append(_result(f"{name}()", True))
    return results


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
    """The value of `x` in a failing `assert x == y`, evaluated again in the test's frame."""
    if not isinstance(node.test, ast.Compare) or isinstance(node.test.left, ast.Constant):
        return None
    try:
        value = eval(compile(ast.Expression(node.test.left), "<assert>", "eval"),
                     frame.f_globals, dict(frame.f_locals))
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
