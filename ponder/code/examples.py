"""A coding problem's public examples, the calls and results its prompt states (or its
`tests_public`), as `Example`s a candidate can be run on before any gold test is: read from
asserts (`examples_from_asserts`), from the prompt by rule (`ponder.code.prompt_reader`), or
from a model's restatement of the prompt's examples, kept only where `grounded` in its text;
judged by `matches`, and written for the unit-test judge by `as_assert`.
"""

from __future__ import annotations

import ast
import math
import re
from decimal import Decimal, InvalidOperation

from ponder.code.example import NUMBER, PARSE_ERRORS, Example, Origin, clip, is_literal, quiet
from ponder.code.prompt_reader import prompt_examples
from ponder.core.types import Problem

__all__ = ["Example", "Origin", "as_assert", "examples_from_asserts", "grounded", "matches",
           "prompt_examples", "public_examples"]


@quiet
def examples_from_asserts(source: str, origin: Origin) -> list[Example]:
    """A tests string as examples. Bare asserts give one each: `assert CALL == LITERAL` keeps
    both (feedback can say what was expected), `assert not X` expects X False, any other
    expects its test True. A chunk with any other statement is one example that must run
    cleanly, since its asserts may need what the rest defines. Bad syntax gives []."""
    try:
        tree = ast.parse(source)
        if not all(isinstance(node, ast.Assert) for node in tree.body):
            return [Example(call=source.strip(), expected=None, origin=origin,
                            line=clip(source))]
        found = []
        for node in tree.body:
            assert isinstance(node, ast.Assert)
            call, expected = _split_assert(node.test)
            line = clip(ast.get_source_segment(source, node) or ast.unparse(node))
            found.append(Example(call=call, expected=expected, origin=origin, line=line))
        return found
    except PARSE_ERRORS:
        return []


def public_examples(problem: Problem) -> list[Example]:
    """What a candidate may be judged on in the open: `tests_public` where they hold any
    example, else what the prompt states. No gold field (`test`, `tests`, `answer`) is read,
    so no private test can leak into feedback through an example."""
    public = problem.tests_public
    chunks = [] if public is None else [public] if isinstance(public, str) else list(public)
    found = [example for chunk in chunks for example in examples_from_asserts(chunk, "public")]
    return found or prompt_examples(problem.problem, problem.entry_point)


@quiet
def grounded(example: Example, text: str) -> bool:
    """Whether every value the example uses appears in `text`: a model may restate the
    prompt's examples as asserts, but a value it invents is as likely wrong as its code.
    Strings count by content, numbers by value (`3.0` is `3`); function names, True, False,
    None and the ints 0 and 1 are too common to count."""
    numbers: set[Decimal] | None = None
    try:
        trees: list[ast.AST] = [ast.parse(example.call)]
        if example.expected is not None:
            trees.append(ast.parse(example.expected, mode="eval"))
        for value in (v for tree in trees for v in _constants(tree)):
            if isinstance(value, str):
                if value not in text and value.encode("unicode_escape").decode() not in text:
                    return False
            elif isinstance(value, int | float):
                if numbers is None:
                    numbers = {Decimal(m.group()) for m in NUMBER.finditer(text)}
                number = Decimal(repr(value))
                if number not in numbers:
                    return False
            elif repr(value) not in text:  # bytes, complex, Ellipsis: as written
                return False
        if example.expected is not None and not _trivial_written(example.expected, text):
            return False
    except (*PARSE_ERRORS, InvalidOperation):
        return False
    return True


def _trivial_written(expected: str, text: str) -> bool:
    """Whether an expected True, False, None, 0 or 1 (the values `_constants` skips) is
    written in `text` as a word: an answer the model made up is not grounded by a prompt
    that merely mentions the inputs."""
    value = ast.literal_eval(expected)
    if not (value is None or isinstance(value, bool) or (type(value) is int and value in (0, 1))):
        return True
    return re.search(rf"\b{re.escape(str(value))}\b", text, re.IGNORECASE) is not None


def matches(value: object, expected: str) -> bool:
    """Whether `value` is what `expected` (a literal's source) says: Python's `==`, as
    HumanEval's asserts judge (so True == 1, and [1] != (1,)), except that floats at any
    depth need only be within 1e-6, as examples print them rounded. An `expected` that is no
    literal matches nothing."""
    try:
        wanted = ast.literal_eval(expected)
    except PARSE_ERRORS:
        return False
    try:
        return _same(value, wanted, 0)
    except Exception:  # a candidate's object may do anything in __eq__: it is no match
        return False


def _same(value: object, wanted: object, depth: int) -> bool:
    if depth > 100:
        return bool(value == wanted)
    if isinstance(value, float) or isinstance(wanted, float):
        return isinstance(value, int | float) and isinstance(wanted, int | float) and \
            math.isclose(value, wanted, rel_tol=1e-6, abs_tol=1e-6)
    for kind in (list, tuple):
        if isinstance(value, kind) and isinstance(wanted, kind):
            return len(value) == len(wanted) and all(
                _same(v, w, depth + 1) for v, w in zip(value, wanted, strict=True))
    if isinstance(value, dict) and isinstance(wanted, dict):
        return value.keys() == wanted.keys() and all(
            _same(value[key], wanted[key], depth + 1) for key in wanted)
    return bool(value == wanted)


def _split_assert(test: ast.expr) -> tuple[str, str]:
    if isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq):
        for call, value in ((test.left, test.comparators[0]), (test.comparators[0], test.left)):
            if is_literal(value) and not is_literal(call):
                return ast.unparse(call), ast.unparse(value)
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        return ast.unparse(test.operand), "False"
    return ast.unparse(test), "True"


def _constants(tree: ast.AST) -> list[object]:
    """The values a tree writes (a negative number as one), less the trivial ones."""
    values: list[object] = []
    negated: set[int] = set()
    for node in ast.walk(tree):  # breadth first: a `-` comes before its number
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and \
                isinstance(node.operand, ast.Constant) and \
                isinstance(number := node.operand.value, int | float) and \
                not isinstance(number, bool):
            negated.add(id(node.operand))
            values.append(-number)
        elif isinstance(node, ast.Constant) and id(node) not in negated and not (
                node.value is None or isinstance(node.value, bool) or
                (type(node.value) is int and node.value in (0, 1))):
            values.append(node.value)
    return values


def as_assert(example: Example) -> str:
    """`example` as a test the unit-test judge runs: `assert call == expected` (a float
    within 1e-6, as a prompt prints it rounded), or the check block itself."""
    if example.expected is None:
        return example.call
    try:
        expected = ast.literal_eval(example.expected)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        expected = None
    if isinstance(expected, float):
        return f"assert abs({example.call} - {example.expected}) <= 1e-6"
    return f"assert {example.call} == {example.expected}"

