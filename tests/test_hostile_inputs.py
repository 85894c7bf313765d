"""A problem file is data: a hostile one cannot run code, nor blow up the loader. Each refusal
is one line naming the file, the line and the field, and nothing is imported or run first."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from ponder import cli
from ponder.cli import app
from ponder.core.errors import ProblemFileError
from ponder.runs import problem_formats as problem_files  # where `_YAML_LOADER` is patched
from ponder.runs.problem_files import load_problems
from ponder.runs.problem_rows import MAX_FIELD_BYTES
from ponder.runs.results_reader import read_results
from ponder.testing import FakeOpenAIServer
from ponder.verifiers import VerifierChoice

EVIL = """\
import pathlib
pathlib.Path({marker!r}).write_text("this ran")

def v(problem, candidate):
    return True
"""


def errors_of(path: Path, **options: object) -> list[str]:
    with pytest.raises(ProblemFileError) as caught:
        load_problems(path, VerifierChoice(), **options)  # type: ignore[arg-type]
    return caught.value.errors


def write_rows(path: Path, *rows: object) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as fake:
        yield fake


# -- a row's verifier cannot run code -------------------------------------------------------


def test_a_row_naming_a_python_file_as_its_verifier_is_refused_before_it_runs(
        tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    (tmp_path / "evil.py").write_text(EVIL.format(marker=str(marker)))
    path = write_rows(tmp_path / "p.jsonl", {"problem": "2+2?", "answer": "4"},
                      {"problem": "3+3?", "verifier": f"{tmp_path / 'evil.py'}:v"})
    [error] = errors_of(path)
    assert error.startswith(f"{path}:2: field 'verifier': '{tmp_path / 'evil.py'}:v' would run "
                            "code; a problem file may name a registered verifier (")
    assert error.endswith("or pass --allow-code-verifiers if you trust this file")
    assert not marker.exists()


def test_a_row_naming_a_module_as_its_verifier_is_refused_before_it_is_imported(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "ran"
    (tmp_path / "evil_module.py").write_text(EVIL.format(marker=str(marker)))
    monkeypatch.syspath_prepend(str(tmp_path))
    path = write_rows(tmp_path / "p.jsonl", {"problem": "2+2?", "verifier": "evil_module:v"})
    [error] = errors_of(path)
    assert error.startswith(f"{path}:1: field 'verifier': 'evil_module:v' would run code")
    assert not marker.exists() and "evil_module" not in sys.modules


def test_ponder_solve_runs_no_code_from_a_problem_file_unless_allowed(
        server: FakeOpenAIServer, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    (tmp_path / "evil.py").write_text(EVIL.format(marker=str(marker)))
    path = write_rows(tmp_path / "p.jsonl",
                      {"problem": "2+2?", "verifier": f"{tmp_path / 'evil.py'}:v"})
    out = tmp_path / "r.jsonl"
    args = ["solve", str(path), "--base-url", server.base_url, "-o", str(out)]

    refused = CliRunner().invoke(app, args)
    assert refused.exit_code == 2
    assert refused.stderr.startswith(f"error: {path}:1: field 'verifier': ")
    assert len(refused.stderr.strip().splitlines()) == 1
    assert not marker.exists() and server.requests == 0

    trusted = CliRunner().invoke(app, [*args, "--allow-code-verifiers"])
    assert trusted.exit_code == 0, trusted.stderr
    assert marker.exists()
    [row] = read_results(out)
    assert row.verdict is not None and row.verdict.passed


def test_registered_verifiers_stay_allowed_in_a_problem_file(tmp_path: Path) -> None:
    path = write_rows(tmp_path / "p.jsonl", {"problem": "Say hi", "answer": "hi",
                                             "verifier": "exact"})
    choice = VerifierChoice()
    [problem] = load_problems(path, choice)
    assert getattr(choice.for_problem(problem), "name", None) == "exact"


# -- nothing in a problem file can blow up ----------------------------------------------------


def laughs(levels: int) -> str:
    """A YAML "billion laughs": each anchor is nine aliases of the one before."""
    lines = ["- problem: What is this?", "  scratch:", "    - &l0 [lol, lol, lol, lol, lol, lol,"
             " lol, lol, lol]"]
    for level in range(1, levels):
        lines.append(f"    - &l{level} [" + ", ".join([f"*l{level - 1}"] * 9) + "]")
    lines.append(f"  answer: *l{levels - 1}")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("loader", ["CSafeLoader", "SafeLoader"])  # libyaml, or pure Python
def test_a_yaml_alias_bomb_is_refused_without_expanding_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loader: str) -> None:
    if not hasattr(yaml, loader):
        pytest.skip(f"PyYAML here has no {loader}")
    monkeypatch.setattr(problem_files, "_YAML_LOADER", getattr(yaml, loader))
    # 9 levels: 554 bytes that would expand to 387 million strings (GBs); 6 keep the old
    # loader's failure quick.
    for levels in (6, 9):
        path = tmp_path / f"bomb{levels}.yaml"
        path.write_text(laughs(levels))
        assert errors_of(path) == [f"{path}:3: malformed YAML: the value anchored here is "
                                   "repeated by an alias (*name); aliases are not allowed in "
                                   "problem files, write the value out"]


@pytest.mark.parametrize("name,text", [
    ("deep.jsonl", '{"problem": "x", "metadata": ' + "[" * 100_000 + "]" * 100_000 + "}\n"),
    ("deep.json", '[{"problem": "x", "metadata": ' + "[" * 100_000 + "]" * 100_000 + "}]\n"),
    ("deep.yaml", "- problem: x\n  metadata: " + "[" * 100_000 + "]" * 100_000 + "\n"),
])
def test_json_or_yaml_nested_100k_deep_is_one_error_not_a_recursion_error(
        tmp_path: Path, name: str, text: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    [error] = errors_of(path)
    assert error.startswith(f"{path}:")
    assert "nest" in error


def test_rows_nested_deeper_than_100_levels_are_refused(tmp_path: Path) -> None:
    path = write_rows(tmp_path / "p.jsonl", {"problem": "x", "metadata": {"a": [[[[1]]]]}},
                      {"problem": "y", "scratch": json.loads("[" * 500 + "]" * 500)})
    assert errors_of(path) == [f"{path}:2: nested more than 100 levels deep"]


def test_an_integer_of_5000_digits_is_one_error(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text('{"problem": "x", "answer": 1' + "0" * 5000 + "}\n")
    assert errors_of(path) == [f"{path}:1: malformed JSON: Exceeds the limit (4300 digits) for "
                               "integer string conversion: value has 5001 digits"]


def test_a_field_over_the_limit_is_refused_naming_it_and_the_limit_is_overridable(
        tmp_path: Path) -> None:
    path = write_rows(tmp_path / "p.jsonl", {"problem": "short"},
                      {"problem": "x" * 3000, "answer": "1", "metadata": {"note": "y" * 3000}})
    assert errors_of(path, max_field_bytes=1000) == [
        f"{path}:2: field 'problem': 3,000 bytes, over the limit of 1,000 "
        "(raise it with --max-field-bytes)",
        f"{path}:2: field 'metadata': 3,012 bytes, over the limit of 1,000 "
        "(raise it with --max-field-bytes)",
    ]
    assert len(load_problems(path, max_field_bytes=4000)) == 2


def test_the_default_limit_is_one_mebibyte_a_field(tmp_path: Path) -> None:
    assert MAX_FIELD_BYTES == 1 << 20
    assert cli.MAX_FIELD_BYTES == MAX_FIELD_BYTES  # the CLI's copy, kept to start fast
    path = write_rows(tmp_path / "p.jsonl", {"problem": "x" * (MAX_FIELD_BYTES + 1)})
    assert errors_of(path) == [f"{path}:1: field 'problem': 1,048,577 bytes, over the limit of "
                               "1,048,576 (raise it with --max-field-bytes)"]


def test_a_line_over_16_fields_worth_is_refused_unparsed_and_the_next_rows_still_load(
        tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    huge = json.dumps({"problem": "x" * 50_000})
    path.write_text(f'{{"id": "a", "problem": "1+1?"}}\n{huge}\n{{"id": "b", "problem": "y"}}\n'
                    f"{huge[:30_000]}")  # a huge torn last line, too
    assert errors_of(path, max_field_bytes=1000) == [
        f"{path}:2: line of 50,016 bytes, over the limit of 16,000 (16 x --max-field-bytes); "
        "not parsed",
        f"{path}:4: line of 30,000 bytes, over the limit of 16,000 (16 x --max-field-bytes); "
        "not parsed",
    ]


@pytest.mark.parametrize("suffix,text", [
    (".json", json.dumps([{"problem": "x" * 900}] * 20)),
    (".yaml", "".join(f"- problem: {'x' * 900}\n" for _ in range(20))),
])
def test_a_json_array_or_yaml_file_over_16_fields_worth_is_refused_unparsed(
        tmp_path: Path, suffix: str, text: str) -> None:
    path = tmp_path / f"p{suffix}"
    path.write_text(text)
    [error] = errors_of(path, max_field_bytes=1000)
    assert error.startswith(f"{path}: larger than 16,000 bytes, the most ")
    assert error.endswith("write it as JSONL, which is read a line at a time, or raise "
                          "--max-field-bytes")
    assert len(load_problems(path, max_field_bytes=2000)) == 20


def test_ponder_solve_takes_max_field_bytes(server: FakeOpenAIServer, tmp_path: Path) -> None:
    path = write_rows(tmp_path / "p.jsonl", {"problem": "What is 1 + 2? " + "Think. " * 300})
    out = tmp_path / "r.jsonl"
    args = ["solve", str(path), "--base-url", server.base_url, "-o", str(out)]
    refused = CliRunner().invoke(app, [*args, "--max-field-bytes", "1000"])
    assert refused.exit_code == 2
    assert refused.stderr.strip() == (f"error: {path}:1: field 'problem': 2,115 bytes, over the "
                                      "limit of 1,000 (raise it with --max-field-bytes)")
    assert server.requests == 0
    assert CliRunner().invoke(app, [*args, "--max-field-bytes", "4000"]).exit_code == 0


# -- text that is not what it seems -----------------------------------------------------------


@pytest.mark.parametrize("loader", ["CSafeLoader", "SafeLoader"])
@pytest.mark.parametrize("text,line,key,first", [
    # A second `problems:` list: the parser kept the last, the loader paired its items with
    # the first's lines, and failed with "zip() argument 2 is shorter than argument 1".
    ("problems:\n  - problem: '1+1?'\nproblems:\n  - problem: '2+2?'\n  - problem: '3+3?'\n",
     3, "problems", 1),
    # Within a row, the last `answer:` silently won.
    ("- problem: '2+2?'\n  answer: '4'\n  answer: '5'\n", 3, "answer", 2),
])
def test_a_yaml_key_given_twice_is_one_error_naming_the_file_line_and_key(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loader: str, text: str, line: int,
        key: str, first: int) -> None:
    if not hasattr(yaml, loader):
        pytest.skip(f"PyYAML here has no {loader}")
    monkeypatch.setattr(problem_files, "_YAML_LOADER", getattr(yaml, loader))
    path = tmp_path / "p.yaml"
    path.write_text(text)
    assert errors_of(path) == [f"{path}:{line}: malformed YAML: key {key!r} given twice in one "
                               f"mapping (first on line {first}); keep one"]


def test_the_same_key_in_different_mappings_is_no_duplicate(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("- problem: '2+2?'\n  metadata: {problem: a, notes: {problem: b}}\n"
                    "- problem: '3+3?'\n")
    first, second = load_problems(path)
    assert first.metadata == {"problem": "a", "notes": {"problem": "b"}}
    assert second.problem == "3+3?"


@pytest.mark.parametrize("row,field", [
    ({"problem": "What is 2+2?\ud800"}, "problem"),
    ({"problem": "2+2?", "answer": "\udfff4"}, "answer"),
    ({"problem": "2+2?", "metadata": {"notes": ["ok", {"deep": "x\ud83d"}]}}, "metadata"),
    ({"problem": "2+2?", "metadata": {"k\udc00": 1}}, "metadata"),  # in a key
    ({"problem": "2+2?", "source\ud800": "gsm8k"}, "source\ud800"),  # an unknown field's name
])
def test_a_lone_surrogate_anywhere_in_a_row_is_refused_at_load(
        tmp_path: Path, row: dict[str, object], field: str) -> None:
    # json.dumps writes it as the escape `\ud800`, which json.loads turns back into one: the
    # row loaded, and the run failed on it with UnicodeEncodeError.
    path = write_rows(tmp_path / "p.jsonl", {"problem": "fine"}, row)
    [error] = errors_of(path)
    assert error.startswith(f"{path}:2: field {field!r}: holds a lone surrogate (\\u")
    assert error.endswith("), half of a UTF-16 pair, which is not text")


def test_a_surrogate_pair_written_as_escapes_is_one_character_and_loads(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text('{"problem": "smile \\ud83d\\ude00"}\n')
    [problem] = load_problems(path)
    assert problem.problem == "smile \U0001f600"


@pytest.mark.parametrize("suffix,text", [
    (".json", '[{"problem": "ok"},\n {"problem": "x\\ud800"}]'),
    (".yaml", '- problem: ok\n- problem: "x\\ud800"\n'),  # the pure-Python parser allows it
])
def test_a_lone_surrogate_in_a_json_array_or_yaml_file_is_refused_on_its_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str, text: str) -> None:
    monkeypatch.setattr(problem_files, "_YAML_LOADER", yaml.SafeLoader)
    path = tmp_path / f"p{suffix}"
    path.write_text(text)
    assert errors_of(path) == [f"{path}:2: field 'problem': holds a lone surrogate (\\ud800), "
                               "half of a UTF-16 pair, which is not text"]


@pytest.mark.parametrize("row,field", [({"id": "a\u0000b", "problem": "x"}, "id"),
                                       ({"task_id": "HumanEval/\u00000", "prompt": "x"},
                                        "task_id")])
def test_a_nul_in_an_id_is_refused_at_load(tmp_path: Path, row: dict[str, str],
                                           field: str) -> None:
    path = write_rows(tmp_path / "p.jsonl", row)
    assert errors_of(path) == [f"{path}:1: field {field!r}: holds a NUL character (\\x00), "
                               "which an id may not"]


def test_ponder_solve_refuses_a_lone_surrogate_and_a_nul_id_before_any_model_call(
        server: FakeOpenAIServer, tmp_path: Path) -> None:
    path = write_rows(tmp_path / "p.jsonl", {"id": "a\u0000", "problem": "1+1?"},
                      {"id": "b", "problem": "2+2?\ud800"})
    out = tmp_path / "r.jsonl"
    refused = CliRunner().invoke(app, ["solve", str(path), "--base-url", server.base_url,
                                       "-o", str(out)])
    assert refused.exit_code == 2, refused.stderr
    assert refused.stderr.splitlines() == [
        f"error: {path}:1: field 'id': holds a NUL character (\\x00), which an id may not",
        f"error: {path}:2: field 'problem': holds a lone surrogate (\\ud800), half of a "
        "UTF-16 pair, which is not text"]
    assert server.requests == 0 and not out.exists()


BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"


def test_bidirectional_controls_are_shown_escaped_as_esc_is() -> None:
    assert cli.plain(f"id{BIDI}\x1b") == (
        "id\\u202a\\u202b\\u202c\\u202d\\u202e\\u2066\\u2067\\u2068\\u2069\\u200e\\u200f"
        "\\u061c\\x1b")


def test_an_id_with_a_right_to_left_override_prints_escaped(
        server: FakeOpenAIServer, tmp_path: Path) -> None:
    # `evil\u202eexe.txt` prints as "eviltxt.exe" on a terminal that acts on the override.
    path = write_rows(tmp_path / "p.jsonl", {"id": "evil\u202eexe.txt", "problem": "1+1?"},
                      {"id": f"b{BIDI}", "problem": "2+2?"})
    out = tmp_path / "r.jsonl"
    solved = CliRunner().invoke(app, ["solve", str(path), "--base-url", server.base_url,
                                      "-o", str(out), "--quiet"])
    assert solved.exit_code == 0, solved.stderr
    for args, seen in ((["show", str(out)], "evil\\u202eexe"),  # the table cuts it short
                       (["show", str(out), "--id", "evil\u202eexe.txt"], "evil\\u202eexe.txt")):
        shown = CliRunner().invoke(app, args)
        assert shown.exit_code == 0, shown.stderr
        assert not set(BIDI) & set(shown.stdout), repr(shown.stdout)
        assert seen in shown.stdout
