"""The prompt library: every built-in renders with what its strategy passes, a user's folder
overrides a built-in by name (whole, or one block through `builtin/`), errors name the
template, line and variable, and no gold field reaches a prompt."""

from __future__ import annotations

from pathlib import Path

import pytest

import ponder
from ponder import Candidate, Problem, ScriptedBackend, TemplateError
from ponder.prompts import PromptLibrary
from ponder.strategies import REGISTRY
from ponder.testing import by_step

OWN = Candidate(text="4 + 4 = 8", answer="8")
OTHERS = [{"agent": "agent 2", "answer": "9", "text": "4 + 5 = 9"}]

# The variables each strategy passes besides `problem` and `entry_point`.
BUILTINS = {
    "single/answer": {},
    "self_refine/generate": {},
    "self_refine/feedback": {"solution": "4 + 4 = 8", "verifier_feedback": "expected 9",
                             "stop_marker": "NO ISSUES"},
    "self_refine/refine": {"solution": "4 + 4 = 8", "feedback": "recount",
                           "verifier_feedback": None},
    "self_refine/debug": {"solution": "def f(x):\n    return x",
                          "failures": "- f(2)\n  expected 4; it returned 2"},
    "best_of_n/generate": {},
    "best_of_n/judge": {"candidates": [OWN, Candidate(text="4 + 5 = 9", answer="9")]},
    "ice/answer": {"persona": "You are terse."},
    "ice/revise": {"persona": None, "own": OWN, "others": OTHERS},
    "tree_search/step": {"steps": ["Step 1: 4 + 4 = 8"], "last_step": False},
    "tree_search/value": {"steps": ["Step 1: 4 + 4 = 8"]},
    "tree_search/rollout": {"steps": ["Step 1: 4 + 4 = 8"]},
    "program/write": {"few_shot": True},
    "program/repair": {"program": "print(17 * b)",
                       "error": "NameError: name 'b' is not defined"},
}


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_every_builtin_renders_a_system_and_a_user_message(name: str):
    messages = PromptLibrary().render(name, problem="What is 4 + 4?", entry_point=None,
                                      **BUILTINS[name])
    assert [m.role for m in messages] == ["system", "user"]
    assert "What is 4 + 4?" in messages[-1].content


CODE = {
    "code/tests": {"count": 5},
    "code/derive": {},
    "code/judge": {"call": "f(0)", "first": "0", "second": "1"},
}


@pytest.mark.parametrize("name", sorted(CODE))
@pytest.mark.parametrize("starter", [True, False])
def test_the_coding_templates_render_the_problem_and_name_the_entry_point(name: str,
                                                                           starter: bool):
    problem = "def f(x):\n    \"\"\"Twice x.\"\"\"\n" if starter else "Write f(x), twice x."
    messages = PromptLibrary().render(name, problem=problem, entry_point="f", code=True,
                                      starter=starter, **CODE[name])
    assert [m.role for m in messages] == ["system", "user"]
    assert problem.rstrip() in messages[-1].content
    assert "f(" in messages[-1].content


@pytest.mark.parametrize("name", sorted(n for n in BUILTINS if not n.startswith("program/")))
def test_a_coding_problem_is_asked_for_code_by_every_strategy(name: str):
    problem = "def f(x):\n    \"\"\"Twice x.\"\"\"\n"
    messages = PromptLibrary().render(name, problem=problem, entry_point="f", code=True,
                                      starter=True, **BUILTINS[name])
    text = "\n".join(m.content for m in messages)
    assert "Final answer" not in text
    if name.split("/")[1] in ("answer", "generate", "refine", "revise", "rollout", "debug"):
        assert "```python" in text


def test_every_strategy_template_is_covered_above():
    strategies = {spec.name for spec in REGISTRY.all()}
    names = {n.removesuffix(".j2") for n in PromptLibrary().names()}
    assert {n for n in names if n.split("/")[0] in strategies} == set(BUILTINS)


def test_lists_of_other_answers_are_formatted_by_the_template():
    [_, user] = PromptLibrary().render("ice/revise", problem="4 + 4?", entry_point=None,
                                       **BUILTINS["ice/revise"])
    assert "Your previous solution (answer: 8):\n4 + 4 = 8" in user.content
    assert "Solution from agent 2 (answer: 9):\n4 + 5 = 9" in user.content


def write(folder: Path, name: str, text: str) -> None:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


async def test_a_user_folder_overrides_a_builtin_of_the_same_name(tmp_path: Path):
    write(tmp_path, "self_refine/feedback.j2",
          "{% block system %}You are a strict reviewer.{% endblock %}"
          "{% block user %}Just say {{ stop_marker }}.{% endblock %}")
    backend = ScriptedBackend(by_step(generate="Final answer: 8", feedback="NO ISSUES"))
    result = await ponder.asolve("4 + 4?", strategy="self_refine", backend=backend,
                                 templates_dir=tmp_path)
    assert result.stop_reason == "no_improvement"
    assert backend.requests[1]["messages"][-1].content == "Just say NO ISSUES."


def test_an_override_may_extend_the_builtin_it_replaces(tmp_path: Path):
    write(tmp_path, "single/answer.j2",
          '{% extends "builtin/single/answer.j2" %}'
          "{% block system %}{{ super() }} Be brief.{% endblock %}")
    [system, user] = PromptLibrary(tmp_path).render("single/answer", problem="4 + 4?")
    assert system.content.startswith("You are a careful problem solver.")
    assert system.content.endswith("Be brief.")
    assert user.content == "4 + 4?"


def test_builtins_that_extend_single_answer_follow_its_override(tmp_path: Path):
    write(tmp_path, "single/answer.j2",
          "{% block system %}Answer in French.{% endblock %}{% block user %}{{ problem }}"
          "{% endblock %}")
    [system, _] = PromptLibrary(tmp_path).render("best_of_n/generate", problem="4 + 4?")
    assert system.content == "Answer in French."


def test_a_missing_variable_names_the_template_line_and_variable(tmp_path: Path):
    write(tmp_path, "mine/ask.j2",
          "{% block system %}Be careful.{% endblock %}\n{% block user %}\n{{ problem }}\n"
          "{{ hint }}\n{% endblock %}")
    with pytest.raises(TemplateError, match=r"'mine/ask.j2' line 4: 'hint' is undefined"):
        PromptLibrary(tmp_path).render("mine/ask", problem="4 + 4?")


def test_a_syntax_error_names_the_template_and_line(tmp_path: Path):
    write(tmp_path, "mine/broken.j2", "line one\n{% if %}\n")
    with pytest.raises(TemplateError, match=r"mine/broken.j2.*line 2"):
        PromptLibrary(tmp_path).render("mine/broken", problem="x")


def test_an_unknown_template_or_folder_is_named():
    with pytest.raises(TemplateError, match=r"'nope/none\.j2' not found"):
        PromptLibrary().render("nope/none")
    with pytest.raises(TemplateError, match="does not exist"):
        PromptLibrary("/no/such/folder")


@pytest.mark.parametrize("strategy", ["single", "self_refine", "best_of_n", "ice", "tree_search"])
async def test_gold_fields_never_reach_a_prompt(strategy: str):
    problem = Problem(problem="What is 4 + 4?", answer="GOLD-ANSWER-31337",
                      tests=["assert GOLD_TEST"], metadata={"solution": "GOLD-SOLUTION"})
    wrong = "4 + 4 = 9. Final answer: 9"
    backend = ScriptedBackend(by_step(
        answer=wrong, generate=wrong, feedback=wrong, refine=wrong, judge=wrong, revise=wrong,
        step=wrong, value="Score: 5"))
    await ponder.asolve(problem, strategy=strategy, backend=backend,
                        verifier=lambda p, c: c.answer == p.answer)
    prompts = " ".join(m.content for r in backend.requests for m in r["messages"])
    assert "What is 4 + 4?" in prompts
    assert "GOLD" not in prompts


@pytest.mark.parametrize("name", ["single/answer", "program/write"])
def test_few_shot_examples_appear_only_when_asked(name: str) -> None:
    prompts = PromptLibrary()
    with_examples = prompts.render(name, problem="What is 17 * 23?", entry_point=None,
                                   few_shot=True)[-1].content
    without = prompts.render(name, problem="What is 17 * 23?", entry_point=None,
                             few_shot=False)[-1].content
    assert "Here are examples" in with_examples and "Here are examples" not in without
    assert "What is 17 * 23?" in with_examples and "What is 17 * 23?" in without
