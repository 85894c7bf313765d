"""Problem files: the formats and data-set shapes that load, and the input that is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ponder.core.errors import ProblemFileError
from ponder.core.types import Candidate, Problem
from ponder.runs.problem_files import load_problems
from ponder.verifiers import FunctionVerifier, Verifier, VerifierChoice
from tests.conftest import DATA, load_jsonl


def write_jsonl(path: Path, rows: list[object]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def accept_all() -> VerifierChoice:
    return VerifierChoice(FunctionVerifier(lambda problem, candidate: True, name="any"))


def errors_of(path: Path, verifiers: VerifierChoice | None = None) -> list[str]:
    with pytest.raises(ProblemFileError) as info:
        load_problems(path, verifiers)
    return info.value.errors


def test_jsonl_rows_with_ids_from_line_numbers_and_extras_in_metadata(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text('{"problem": "2+2?", "answer": 4}\n\n'
                    '{"problem": "3+3?", "answer": "6", "source": "mine"}\n')
    first, second = load_problems(path)
    assert (first.id, first.answer) == ("1", "4")
    assert (second.id, second.metadata) == ("3", {"source": "mine"})


def test_json_array_and_yaml_load_the_same_problems(tmp_path: Path) -> None:
    rows = [{"id": "a", "problem": "2+2?", "answer": "4"}, {"problem": "3+3?"}]
    (tmp_path / "p.json").write_text(json.dumps(rows, indent=2))
    (tmp_path / "p.yaml").write_text("- id: a\n  problem: 2+2?\n  answer: '4'\n- problem: 3+3?\n")
    (tmp_path / "q.yml").write_text("problems:\n  - id: a\n    problem: 2+2?\n    answer: '4'\n"
                                    "  - problem: 3+3?\n")
    loaded = [load_problems(tmp_path / name) for name in ("p.json", "p.yaml", "q.yml")]
    assert all([p.id for p in problems] == ["a", "2"] for problems in loaded)
    assert all(problems[0].answer == "4" for problems in loaded)


def test_humaneval_rows_read_prompt_as_problem_and_keep_the_solution_out_of_it() -> None:
    problems = load_problems(DATA / "humaneval_public.jsonl")
    raw = load_jsonl("humaneval_public.jsonl")
    assert len(problems) == len(raw) == 100
    first = problems[0]
    assert first.id == raw[0]["task_id"]
    assert first.problem == raw[0]["prompt"]
    assert (first.test, first.entry_point) == (raw[0]["test"], raw[0]["entry_point"])
    assert first.metadata["canonical_solution"] == raw[0]["canonical_solution"]
    assert raw[0]["canonical_solution"] not in first.problem


def test_gsm8k_rows_keep_the_gold_number_and_move_the_solution_to_metadata() -> None:
    problems = load_problems(DATA / "gsm8k_test_public.jsonl")
    raw = load_jsonl("gsm8k_test_public.jsonl")
    assert len(problems) == 300
    assert problems[0].answer == raw[0]["answer"]
    assert problems[0].metadata["solution"] == raw[0]["solution"]
    assert raw[0]["solution"] not in problems[0].problem


def test_gsm8k_original_answer_format_yields_the_number_after_the_marks(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "g.jsonl", [
        {"question": "How many?", "answer": "3 + 4 = <<3+4=7>>7 apples\n#### 1,007"}])
    [problem] = load_problems(path)
    assert (problem.problem, problem.answer) == ("How many?", "1007")
    assert problem.metadata["solution"] == "3 + 4 = <<3+4=7>>7 apples"


def test_every_bad_row_is_reported_with_file_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(
        '{"id": "a", "problem": "ok"}\n'
        '{"id": "b", "problem": "broken"\n'
        '{"id": "c", "answer": "1"}\n'
        '{"id": "a", "problem": "again"}\n'
        '{"id": "d", "problem": "x", "tests": 5}\n'
        '[1, 2]\n'
    )
    errors = errors_of(path)
    assert errors == [
        f"{path}:2: malformed JSON: Expecting ',' delimiter (column 32)",
        f"{path}:3: field 'problem': missing",
        f"{path}:4: field 'id': duplicate id 'a' (first on line 1)",
        f"{path}:5: field 'tests': Input should be a valid string or Input should be a valid list",
        f"{path}:6: expected an object with a 'problem' field, got list",
    ]


def test_an_unknown_verifier_named_by_a_row_is_refused_on_its_line(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "v.jsonl", [
        {"problem": "fine"}, {"problem": "x", "verifier": "no-such-verifier"},
        {"problem": "y", "verifier": "no-such-verifier"}])
    errors = errors_of(path, VerifierChoice())
    assert [e.split(": field 'verifier': ")[0] for e in errors] == [f"{path}:2", f"{path}:3"]
    assert "unknown verifier 'no-such-verifier'" in errors[0]


def test_a_verifier_named_by_a_row_loads_from_a_file_the_user_trusts(tmp_path: Path) -> None:
    (tmp_path / "checks.py").write_text(
        "def shout(problem, candidate):\n    return candidate.answer.isupper()\n")
    path = write_jsonl(tmp_path / "v.jsonl", [
        {"problem": "x", "verifier": f"{tmp_path / 'checks.py'}:shout"}])
    choice = VerifierChoice()
    [problem] = load_problems(path, choice, allow_code_verifiers=True)
    verifier = choice.for_problem(problem)
    assert isinstance(verifier, Verifier)
    assert verifier.name == "shout"
    assert choice.for_problem(problem) is verifier  # loaded once, shared by every row


def test_an_override_replaces_every_rows_choice(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "v.jsonl", [{"problem": "x", "verifier": "no-such-verifier"},
                                              {"problem": "y", "answer": "1"}])
    choice = accept_all()
    problems = load_problems(path, choice)
    assert {choice.for_problem(p) for p in problems} == {choice.override}


async def test_a_problem_without_gold_gets_no_verifier() -> None:
    choice = VerifierChoice()
    assert choice.for_problem(Problem(problem="Write a haiku.")) is None
    override = accept_all().override
    assert override is not None
    verdict = await override.verify(Problem(problem="x"), Candidate(text="t", answer="t"))
    assert verdict.passed


@pytest.mark.parametrize("name,text", [("e.jsonl", ""), ("e.jsonl", "\n \n"), ("e.json", "[]"),
                                       ("e.yaml", "")])
def test_an_empty_file_is_refused(tmp_path: Path, name: str, text: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    assert errors_of(path) == [f"{path}: empty: no problems found"]


def test_malformed_json_array_and_yaml_name_the_line(tmp_path: Path) -> None:
    array = tmp_path / "a.json"
    array.write_text('[\n  {"problem": "ok"},\n  {"problem": }\n]')
    yaml_file = tmp_path / "a.yaml"
    yaml_file.write_text("- problem: ok\n- problem: [unclosed\n")
    missing = tmp_path / "b.yaml"
    missing.write_text("- problem: ok\n- id: 7\n")
    assert errors_of(array) == [f"{array}:3: malformed JSON: Expecting value (column 15)"]
    assert errors_of(yaml_file)[0].startswith(f"{yaml_file}:3: malformed YAML")
    assert errors_of(missing) == [f"{missing}:2: field 'problem': missing"]


def test_a_missing_file_is_one_error(tmp_path: Path) -> None:
    [error] = errors_of(tmp_path / "nope.jsonl")
    assert error.startswith(f"{tmp_path / 'nope.jsonl'}: cannot read")
