"""`ponder.code.examples`: the public examples read from a coding problem's prompt or its
`tests_public`, and the checks made with them (`grounded`, `matches`)."""

from __future__ import annotations

import random
import time
from typing import Any

import pytest

from ponder.code.examples import (
    Example,
    examples_from_asserts,
    grounded,
    matches,
    prompt_examples,
    public_examples,
)
from ponder.core.types import Problem
from tests.conftest import load_jsonl


def pairs(text: str, entry_point: str | None = "f") -> list[tuple[str, str | None]]:
    return [(e.call, e.expected) for e in prompt_examples(text, entry_point)]


def prompt(body: str, signature: str = "f(x)") -> str:
    return f"def {signature}:\n    \"\"\"Does a thing.\n{body}\n    \"\"\"\n"


# --- the forms prompts write examples in -------------------------------------------------


def test_doctest_examples_with_values_on_the_next_lines() -> None:
    text = prompt("    >>> f(3)\n    [1,\n     2]\n    >>> f('a')\n    'b'\n"
                  "    >>> f(0.5)\n    0.25")
    assert pairs(text) == [("f(3)", "[1, 2]"), ("f('a')", "'b'"), ("f(0.5)", "0.25")]
    example = prompt_examples(text, "f")[0]
    assert example.origin == "prompt" and example.line == ">>> f(3)\n[1,\n2]"


def test_doctest_written_as_a_comparison_or_with_the_value_after_the_call() -> None:
    text = prompt("    >>> f([1, 5]) == [5, 1]\n    >>> f([2]) [2]\n    >>> round(f(2), 2)\n"
                  "    -0.5")
    assert pairs(text) == [("f([1, 5])", "[5, 1]"), ("f([2])", "[2]"),
                           ("round(f(2), 2)", "-0.5")]


def test_a_doctest_whose_value_is_no_literal_is_skipped() -> None:
    text = prompt("    >>> f(1)\n    <object at 0x1>\n    >>> f(2)\n    3")
    assert pairs(text) == [("f(2)", "3")]


@pytest.mark.parametrize("arrow", ["==", "➞", "=>", "->", "==>", "=", "should return",
                                   "returns"])
def test_arrow_forms(arrow: str) -> None:
    assert pairs(prompt(f"    For example:\n    f([1, 2]) {arrow} 3\n    f('x'){arrow}'y'")) \
        == [("f([1, 2])", "3"), ("f('x')", "'y'")]


def test_values_end_at_a_comment_or_a_full_stop_and_lowercase_js_words_convert() -> None:
    text = prompt("    f(148, 412) should return 16.\n    f(5) returns [1, 5] # odd ones\n"
                  "    f(1, 4) => true\n    f(3, 2) => false\n    f([]) == null")
    assert pairs(text, "f") == [("f(148, 412)", "16"), ("f(5)", "[1, 5]"), ("f(1, 4)", "True"),
                                ("f(3, 2)", "False"), ("f([])", "None")]


def test_a_worked_sum_gives_its_last_value() -> None:
    text = prompt('    f("5 apples", 19) ->19 - 5 - 6 = 8\n    f([1, 3]) == 1 + 9 = 10')
    assert pairs(text) == [("f('5 apples', 19)", "8"), ("f([1, 3])", "10")]


def test_prose_values_are_skipped() -> None:
    text = prompt("    f('abc') returns a list of all prefixes\n    f(2) == 4 because 2 + 2")
    assert pairs(text) == []


def test_leetcode_blocks_map_named_inputs_to_parameters() -> None:
    text = prompt("    Example 1:\n        Input: k = 3, arr = [1,2]\n        Output: 5\n\n"
                  "    Example 2:\n        Input:\n            grid : [[0,1]]\n"
                  "            bucket_k : 2\n        Output: [4, 4] # why\n\n"
                  "    Example 3: Input: arr = [], k = 0 Output: 0", "f(arr, k)")
    assert pairs(text) == [("f([1, 2], 3)", "5"), ("f([[0, 1]], 2)", "[4, 4]"),
                           ("f([], 0)", "0")]


def test_named_inputs_that_are_some_of_the_parameters_become_keywords() -> None:
    text = prompt("    Input: k = 3\n    Output: 5", "f(arr=(), k=1)")
    assert pairs(text) == [("f(k=3)", "5")]


def test_an_assignment_then_a_return_line() -> None:
    text = prompt("    arr = [2, 1]\n          -> sort arr -> [1, 2]\n    return ['Two', 'One']\n"
                  "    If it is empty:\n    arr = []\n    return = []", "f(arr)")
    assert pairs(text) == [("f([2, 1])", "['Two', 'One']"), ("f([])", "[]")]


def test_for_inputs_the_output_should_be() -> None:
    assert pairs(prompt("    for lst = [1,2] the output should be 3", "f(lst)")) == \
        [("f([1, 2])", "3")]
    text = prompt('    For s = "ab", c = "a", the result should be (\'b\',False)\n'
                  '    For t = 1 the output should be 2', "f(s, c)")  # t is no parameter
    assert pairs(text) == [("f('ab', 'a')", "('b', False)")]
    assert pairs(prompt("    For N = 150, the sum is 6 the output should be \"110\".",
                        "f(N)")) == [("f(150)", "'110'")]


def test_unquoted_words_are_strings_unless_they_name_a_parameter() -> None:
    text = prompt("    f(abcd) => True\n    f(s) = 3\n    f(x, y) == 2", "f(s)")
    assert pairs(text) == [("f('abcd')", "True"), ("f('x', 'y')", "2")]


def test_a_recurrence_states_terms_not_examples() -> None:
    text = prompt("    tri(1) = 3\n    tri(n) = 1 + n / 2, if n is even.\n"
                  "    tri(2) = 1 + (2 / 2) = 2\n    Examples:\n    tri(3) = [1, 3, 2, 8]",
                  "tri(n)")
    assert pairs(text, "tri") == [("tri(3)", "[1, 3, 2, 8]")]


def test_a_stray_name_means_the_only_function() -> None:
    one = "def g(x):\n    \"\"\"\n    h(2) == 4\n    ord('a') = 97\n    G(3) == 9\n    \"\"\"\n"
    assert pairs(one, "g") == [("g(2)", "4"), ("g(3)", "9")]
    two = "def helper(x):\n    pass\n\n" + one
    assert pairs(two, "g") == [("g(3)", "9")]  # a variant of the name still counts
    assert pairs(one, None) == [("g(2)", "4"), ("g(3)", "9")]


def test_examples_are_deduplicated_in_order() -> None:
    text = prompt("    >>> f(1)\n    2\n    f(1) == 2\n    f(0) == 1\n    f(1) => 2")
    assert pairs(text) == [("f(1)", "2"), ("f(0)", "1")]


def test_plain_text_problems() -> None:
    assert pairs("Write add(a, b). add(2, 3) == 5, add(-1, 1) == 0", "add") == \
        [("add(2, 3)", "5"), ("add(-1, 1)", "0")]
    assert pairs("Write add(a, b). add(2, 3) == 5", None) == [("add(2, 3)", "5")]
    assert pairs("", "f") == [] and pairs("no examples at all", None) == []


# --- tests strings, and which examples a problem shows ------------------------------------


def test_examples_from_asserts() -> None:
    source = ("assert f(1) == -2\nassert f((1, 2)) == {1: None}\nassert 5 == f(5)\n"
              "assert abs(f(0.5) - 0.25) < 1e-6\nassert math.isclose(f(1), 2)\n"
              "assert not f(3)\nassert f(4) == g(4), 'message'\nassert f(6) == {1, 2}")
    found = examples_from_asserts(source, "public")
    assert [(e.call, e.expected) for e in found] == [
        ("f(1)", "-2"), ("f((1, 2))", "{1: None}"), ("f(5)", "5"),
        ("abs(f(0.5) - 0.25) < 1e-06", "True"), ("math.isclose(f(1), 2)", "True"),
        ("f(3)", "False"), ("f(4) == g(4)", "True"), ("f(6)", "{1, 2}")]
    assert {e.origin for e in found} == {"public"}
    assert found[0].line == "assert f(1) == -2"


def test_a_chunk_with_other_statements_is_one_check() -> None:
    source = "import math\nfor x in range(3):\n    assert f(x) == x\n"
    assert examples_from_asserts(source, "model") == [
        Example(call=source.strip(), expected=None, origin="model", line=source.strip())]
    assert examples_from_asserts("assert f(1) ==", "public") == []
    assert examples_from_asserts("", "public") == []
    assert examples_from_asserts("(" * 500, "public") == []


def test_tests_public_win_over_the_prompt() -> None:
    text = prompt("    >>> f(1)\n    2")
    both = Problem(problem=text, entry_point="f", tests_public=["assert f(9) == 9"])
    assert [(e.call, e.origin) for e in public_examples(both)] == [("f(9)", "public")]
    alone = Problem(problem=text, entry_point="f", tests_public="assert f(8) == 8\n")
    assert [e.call for e in public_examples(alone)] == ["f(8)"]
    bare = Problem(problem=text, entry_point="f")
    assert [(e.call, e.origin) for e in public_examples(bare)] == [("f(1)", "prompt")]
    broken = Problem(problem=text, entry_point="f", tests_public=["assert f("])
    assert [e.call for e in public_examples(broken)] == ["f(1)"]


class _Guarded(Problem):
    """A problem that fails the test the moment a gold field is read."""

    def __getattribute__(self, name: str) -> Any:
        if name in ("test", "tests", "answer"):
            raise AssertionError(f"public_examples read the gold field {name!r}")
        return super().__getattribute__(name)


def test_gold_is_never_read() -> None:
    text = prompt("    >>> f(1)\n    2")
    gold: dict[str, Any] = dict(answer="918273645", test="def check(candidate):\n"
                "    assert candidate(314159) == 271828\n", tests=["assert f(1618) == 3399"])
    found = public_examples(Problem(problem=text, entry_point="f", **gold))
    assert found and not any(secret in e.call + (e.expected or "") + e.line
                             for e in found for secret in ("918273645", "314159", "271828",
                                                           "1618", "3399"))
    guarded = _Guarded(problem=text, entry_point="f", **gold)
    with pytest.raises(AssertionError):
        _ = guarded.test  # the guard works
    assert public_examples(guarded) == found


# --- grounded, matches --------------------------------------------------------------------


def test_grounded_accepts_what_the_prompt_states() -> None:
    text = 'f([1,2, 3.0]) == -4 and f("ab c") returns 0.50; also f(x) ➞ True'
    for call, expected in [("f([1, 2, 3])", "-4"), ("f('ab c')", "0.5"), ("f(1)", "True"),
                           ("f([3.0, 2])", "[1, 0]"), ("f(0, 1)", "True")]:
        assert grounded(Example(call=call, expected=expected, origin="derived"), text)
    check = Example(call="x = f(3)\nassert x == -4", expected=None, origin="derived")
    assert grounded(check, text)


def test_an_expected_true_false_none_0_or_1_must_be_written_in_the_prompt() -> None:
    text = "Note that 4 is not prime, and 7 is."
    assert not grounded(Example(call="is_prime(4)", expected="True", origin="derived"), text)
    assert not grounded(Example(call="is_prime(7)", expected="1", origin="derived"), text)
    said = "is_prime(4) returns false"
    assert grounded(Example(call="is_prime(4)", expected="False", origin="derived"), said)


def test_grounded_rejects_invented_values() -> None:
    text = 'f([1,2, 3.0]) == -4 and f("ab c") returns 0.50 (see 7-8)'
    for call, expected in [("f([1, 2, 5])", "-4"), ("f(-8)", "7"), ("f('abc')", "0.5"),
                           ("f(2)", "4"), ("f(1)", "-2"), ("f(-3)", "1"), ("f(2)", "'zz'"),
                           ("f(", "1")]:
        assert not grounded(Example(call=call, expected=expected, origin="model"), text)


def test_matches() -> None:
    assert matches(0.1 + 0.2, "0.3") and matches([1, (2.0000001, "a")], "[1, (2.0, 'a')]")
    assert matches({"a": [1.0, 2]}, "{'a': [1, 2.0000000001]}")
    assert matches(6.0, "6") and matches(True, "1")  # Python's == on bool and int
    assert not matches(1.1, "1") and not matches([1], "(1,)") and not matches("1", "1")
    assert not matches([1, 2], "[1]") and not matches({"a": 1}, "{'b': 1}")
    assert not matches(1, "f(1)") and not matches(None, "") and matches(None, "None")
    assert matches({1, 2}, "{2, 1}") and not matches(10 ** 400, "1.0")

    class Hostile:
        def __eq__(self, other: object) -> bool:
            raise RuntimeError("no")

    assert not matches(Hostile(), "1")


# --- hostile text --------------------------------------------------------------------------


def test_any_text_is_read_fast_and_never_raises() -> None:
    """Prompts are user input: random text, and shapes that would make a naive reader
    quadratic or recurse too deep."""
    rng = random.Random(1234)
    alphabet = "f(x)[]{},'\"\\=>-➞#:.;0123456789 \t\n>>>truenullInputOutputreturnFor\u00e9\u4e2d"
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 3000)))
             for _ in range(150)]
    texts += ["".join(chr(rng.randint(0, 0x10FFFF)) for _ in range(2000)) for _ in range(20)]
    started = time.perf_counter()
    for text in texts:
        for entry_point in ("f", None):
            assert all(isinstance(e, Example) for e in prompt_examples(text, entry_point))
        examples_from_asserts(text, "model")
        grounded(Example(call=text, expected=text[:50], origin="model"), text)
        matches(text, text)
    # Hostile shapes, each at the 100,000 characters read: linear time, no deep recursion.
    texts = ["(" * 200_000, "[" * 60_000 + "]" * 60_000, "f(" * 60_000, "f(1) == 2\n" * 20_000,
              ">>> f(1)\n" * 30_000, "f('" + "\\" * 100_000, "def f(" + "a, " * 30_000,
              ((("f(" + "x" * 60 + " ") * 30) + "\n") * 60, "f(1) = " + "1 + " * 40_000,
              "Input: " + "x = [1], " * 20_000 + "\nOutput: 1", "f(" + "[" * 999 + "]" * 999 + ")"]
    for text in texts:
        assert all(isinstance(e, Example) for e in prompt_examples(text, "f"))
    assert time.perf_counter() - started < 20


# --- the real prompts ----------------------------------------------------------------------


def test_humaneval_prompts_state_examples_their_solutions_satisfy() -> None:
    rows = load_jsonl("humaneval_public.jsonl")
    total, failed, without = 0, [], []
    for row in rows:
        found = prompt_examples(row["prompt"], row["entry_point"])
        if not found:
            without.append(row["task_id"])
        namespace: dict[str, Any] = {}
        exec(row["prompt"] + row["canonical_solution"], namespace)  # trusted reference code
        for example in found:
            total += 1
            try:
                assert example.expected is not None
                passed = matches(eval(example.call, namespace), example.expected)
            except Exception:
                passed = False
            if not passed:
                failed.append(f"{row['task_id']}: {example.call} == {example.expected}")
    covered = len(rows) - len(without)
    print(f"{covered}/{len(rows)} problems have examples ({total} in all; none: {without}); "
          f"{total - len(failed)}/{total} hold for the canonical solutions; failing: {failed}")
    assert covered >= 85, without
    assert (total - len(failed)) / total >= 0.95, failed
