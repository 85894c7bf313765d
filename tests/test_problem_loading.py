"""One loader for problems: a row given as a dict (the Python API, a Ray Dataset) meets the
same rules, and gives the same `Problem`, as that row read from a problem file."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from ponder.core.errors import ConfigError, ProblemFileError
from ponder.core.types import Problem
from ponder.runs.problem_files import load_problems
from ponder.runs.problem_rows import ProblemRowError, as_problem, problem_from_row
from tests.conftest import DATA


def first_line(name: str) -> tuple[Path, dict[str, Any]]:
    """A shared data file, cut to its first row (the file reader numbers ids by line), and
    that row as a dict."""
    path = DATA / name
    if not path.is_file():
        pytest.skip(f"shared data {path} not present")
    with path.open(encoding="utf-8") as file:
        return path, json.loads(file.readline())


def one_row_file(tmp_path: Path, name: str, row: object) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(row) + "\n", encoding="utf-8")
    return path


def refusal(obj: object, **kwargs: Any) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        as_problem(obj, **kwargs)  # type: ignore[arg-type]
    return info.value


def file_errors(path: Path) -> list[str]:
    with pytest.raises(ProblemFileError) as info:
        load_problems(path)
    return info.value.errors


def test_a_gsm8k_row_with_its_extra_solution_field_loads_as_the_file_reader_loads_it(
        tmp_path: Path) -> None:
    _, row = first_line("gsm8k_test_public.jsonl")
    assert "solution" in row  # the field `Problem` itself would refuse
    problem = as_problem(row)
    [from_file] = load_problems(one_row_file(tmp_path, "gsm8k.jsonl", row))
    assert problem == from_file
    assert problem.id == row["id"] and problem.answer == row["answer"]
    assert problem.metadata == {"solution": row["solution"]}


def test_the_first_gsm8k_line_as_a_dict_is_the_problem_the_whole_file_gives_first() -> None:
    path, row = first_line("gsm8k_test_public.jsonl")
    assert as_problem(row) == load_problems(path)[0]


def test_a_humaneval_row_loads_under_its_own_field_names(tmp_path: Path) -> None:
    _, row = first_line("humaneval_public.jsonl")
    problem = as_problem(row)
    assert problem.id == row["task_id"] and problem.problem == row["prompt"]
    assert (problem.test, problem.entry_point) == (row["test"], row["entry_point"])
    assert problem.metadata == {"canonical_solution": row["canonical_solution"]}
    assert problem.is_code
    assert [problem] == load_problems(one_row_file(tmp_path, "he.jsonl", row))


def test_a_problem_is_returned_as_it_is_and_text_becomes_the_problem_it_asks() -> None:
    given = Problem(id="p", problem="2 + 2?")
    assert as_problem(given) is given
    assert as_problem("2 + 2?") == Problem(problem="2 + 2?")


def test_a_row_without_an_id_keeps_problems_default_unless_one_is_given() -> None:
    assert as_problem({"problem": "2 + 2?"}).id == Problem(problem="x").id
    assert problem_from_row({"problem": "2 + 2?"}, "7").id == "7"
    assert problem_from_row({"id": "mine", "problem": "2 + 2?"}, "7").id == "mine"


def test_a_mapping_that_is_not_a_dict_loads_too() -> None:
    class Row(Mapping[str, Any]):
        def __init__(self, **fields: Any) -> None:
            self.fields = fields

        def __getitem__(self, key: str) -> Any:
            return self.fields[key]

        def __iter__(self) -> Iterator[str]:
            return iter(self.fields)

        def __len__(self) -> int:
            return len(self.fields)

    assert as_problem(Row(question="2 + 2?", answer=4)) == Problem(problem="2 + 2?", answer="4")


@pytest.mark.parametrize("row,field,reason", [
    ({"problem": 42}, "problem", "must be non-empty text"),
    ({"problem": ["2 + 2?"]}, "problem", "must be non-empty text"),
    ({"problem": "  "}, "problem", "must be non-empty text"),
    ({"answer": "4"}, "problem", "missing"),
    ({"id": "q", "solution": "4"}, "problem", "missing"),
    ({"problem": "2 + 2?", "tests": 5}, "tests", ""),
    ({"problem": "2 + 2?", "metadata": "notes"}, "metadata", ""),
])
def test_a_bad_row_is_one_config_error_line_naming_the_field(
        row: dict[str, Any], field: str, reason: str) -> None:
    error = refusal(row)
    assert isinstance(error, ProblemRowError)
    message = str(error)
    assert "\n" not in message
    assert message.startswith(f"field {field!r}: {reason}")
    assert "pydantic" not in message and "validation error" not in message.lower()


def test_a_bad_row_names_its_place_when_given_and_in_the_file_its_file_and_line(
        tmp_path: Path) -> None:
    row = {"id": "q", "problem": 42}
    assert str(refusal(row, where="mine.jsonl:3")) == \
        "mine.jsonl:3: field 'problem': must be non-empty text"
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"problem": "ok"}) + "\n" + json.dumps(row) + "\n")
    assert file_errors(path) == [f"{path}:2: field 'problem': must be non-empty text"]


def test_every_field_wrong_is_named_on_the_one_line(tmp_path: Path) -> None:
    row = {"problem": "2 + 2?", "tests": 5, "entry_point": 3}
    message = str(refusal(row, where="row 9"))
    assert "\n" not in message and message.startswith("row 9: field ")
    assert "field 'tests'" in message and "field 'entry_point'" in message
    # The file reader keeps them a line each, as it reports every other error.
    errors = file_errors(one_row_file(tmp_path, "p.jsonl", row))
    assert sorted(error.split(": ")[1] for error in errors) == \
        ["field 'entry_point'", "field 'tests'"]


def test_what_is_no_problem_at_all_is_refused_by_name() -> None:
    assert str(refusal(42)) == ("expected a Problem, its text, or a mapping with a 'problem' "
                                "field, got int")
    assert str(refusal(["2 + 2?"], where="item 3")).startswith("item 3: expected a Problem")


def test_a_row_meets_the_files_rules_a_code_verifier_and_an_oversized_field() -> None:
    row = {"problem": "2 + 2?", "verifier": "os:system"}
    assert str(refusal(row)).startswith("field 'verifier': 'os:system' would run code")
    assert as_problem(row, allow_code_verifiers=True).verifier == "os:system"
    message = str(refusal({"problem": "x" * 101}, max_field_bytes=100))
    assert message == "field 'problem': 101 bytes, over the limit of 100 (raise it with " \
                      "--max-field-bytes)"
    assert str(refusal("2 + 2?\ud800")).startswith("field 'problem': holds a lone surrogate")


def test_a_refused_row_is_a_problem_file_error_too_for_code_collecting_bad_rows() -> None:
    with pytest.raises(ProblemFileError) as info:
        problem_from_row({"problem": ""}, where="row 1")
    assert info.value.errors == ["row 1: field 'problem': must be non-empty text"]
