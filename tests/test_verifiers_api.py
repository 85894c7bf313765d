"""The verifier API: `ponder.verify`, names and specs, user functions, the string verifiers,
the LLM judge, combinators, and the example script."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

import ponder
from ponder import Budget, Candidate, Context, Message, Problem, ScriptedBackend, Verdict
from ponder.core.errors import BudgetExhausted, ConfigError
from ponder.core.replies import parse_rating
from ponder.verifiers import REGISTRY
from ponder.verifiers.combinators import all_of, any_of, weighted
from ponder.verifiers.exact import ContainsVerifier, ExactVerifier, RegexVerifier
from ponder.verifiers.llm_judge import LLMJudge
from ponder.verifiers.registry import BUILTINS
from ponder.verifiers.unit_tests import UnitTestVerifier

REPO = Path(__file__).resolve().parents[1]


def context(problem: Problem, backend: ScriptedBackend, *, tokens: int | None = None,
            verifier: ponder.Verifier | None = None) -> Context:
    return Context(problem, backend=backend, budget=Budget(tokens=tokens), verifier=verifier)


# -- ponder.verify -----------------------------------------------------------------------------


def test_verify_takes_a_problem_dict_or_text_and_picks_the_verifier_from_its_fields() -> None:
    assert ponder.verify({"problem": "Half of 1?", "answer": "1/2"}, "It is \\boxed{0.5}").passed
    assert ponder.verify(Problem(problem="2+2?", answer="4"), "#### 5").passed is False
    coding = {"problem": "Write inc(x).", "tests": "assert inc(1) == 2"}
    assert ponder.verify(coding, "```python\ndef inc(x):\n    return x + 1\n```").passed
    with pytest.raises(ConfigError, match="no answer or tests; pass verifier="):
        ponder.verify("What is 2+2?", "4")


async def test_averify_accepts_a_candidate_and_a_named_verifier() -> None:
    candidate = Candidate(text="The capital is Paris.", answer="Paris")
    verdict = await ponder.averify({"problem": "Capital of France?", "answer": "paris"},
                                   candidate, verifier="exact")
    assert verdict.passed


# -- names, specs and user functions -----------------------------------------------------------


def test_every_builtin_loads_by_name() -> None:
    assert set(BUILTINS) == {"math", "unit_tests", "unit_tests_full_feedback", "exact", "regex",
                             "contains", "llm_judge"}
    for name in BUILTINS:
        assert ponder.get_verifier(name).name == name
    assert set(BUILTINS) <= set(REGISTRY.names())


async def test_sync_and_async_functions_returning_bool_float_or_verdict_are_wrapped() -> None:
    problem, candidate = Problem(problem="?"), Candidate(text="42", answer="42")

    async def half(p: Problem, c: Candidate) -> float:
        return 0.5

    checks = [
        (lambda p, c: c.answer == "42", True, 1.0),
        (half, False, 0.5),
        (lambda p, c: Verdict(passed=True, score=0.9, feedback="ok"), True, 0.9),
    ]
    for fn, passed, score in checks:
        verdict = await ponder.get_verifier(fn).verify(problem, candidate)
        assert (verdict.passed, verdict.score) == (passed, score)


def test_register_verifier_makes_a_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(REGISTRY, "_factories", dict(REGISTRY._factories))

    @ponder.register_verifier("is_even")
    def is_even(problem: Problem, candidate: Candidate) -> bool:
        return int(candidate.answer) % 2 == 0

    assert ponder.verify("An even number?", "Final answer: 8", verifier="is_even").passed
    assert not ponder.verify("An even number?", "Final answer: 7", verifier="is_even").passed


def test_module_and_file_specs_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "my_checks.py").write_text(
        "def shouts(problem, candidate):\n    return candidate.text.isupper()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert ponder.verify("Say hi loudly.", "HELLO", verifier="my_checks:shouts").passed
    spec = f"{tmp_path / 'my_checks.py'}:shouts"
    assert not ponder.verify("Say hi loudly.", "hello", verifier=spec).passed
    assert ponder.get_verifier("ponder.verifiers.exact:ExactVerifier").name == "exact"


@pytest.mark.parametrize(("spec", "message"), [
    ("maths", "unknown verifier 'maths'; known: "),
    ("no_such_module_xyz:check", "cannot import 'no_such_module_xyz'"),
    ("ponder.core.answers:no_such_check", "'ponder.core.answers' has no attribute 'no_such_check'"),
    ("missing/checks.py:check", "file 'missing/checks.py' not found"),
    (":check", "must look like module:attr or file.py:func"),
])
def test_a_bad_spec_says_in_one_line_what_was_not_found(spec: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        ponder.get_verifier(spec)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_a_spec_file_that_fails_to_run_is_named(tmp_path: Path) -> None:
    broken = tmp_path / "broken.py"
    broken.write_text("import no_such_dependency_xyz\n")
    with pytest.raises(ConfigError, match=r"running .*broken\.py' failed: ModuleNotFoundError"):
        ponder.get_verifier(f"{broken}:check")


# -- exact, regex, contains --------------------------------------------------------------------


async def test_exact_ignores_case_space_and_number_format_and_hides_the_gold() -> None:
    problem = Problem(problem="?", answer="New  York")
    assert (await ExactVerifier().verify(problem, Candidate(text="", answer="new york"))).passed
    verdict = await ExactVerifier().verify(problem, Candidate(text="", answer="Boston"))
    assert not verdict.passed and "York" not in verdict.feedback
    numbers = Problem(problem="?", answer="1000")
    assert (await ExactVerifier().verify(numbers, Candidate(text="", answer="1,000.0"))).passed
    strict = ExactVerifier("Yes", case_sensitive=True)
    assert not (await strict.verify(problem, Candidate(text="", answer="yes"))).passed


async def test_regex_uses_its_own_pattern_or_the_gold_one() -> None:
    choice = RegexVerifier(r"\(?[A-D]\)?")
    assert (await choice.verify(Problem(problem="?"), Candidate(text="", answer="(B)"))).passed
    verdict = await choice.verify(Problem(problem="?"), Candidate(text="", answer="E"))
    assert not verdict.passed and r"\(?[A-D]\)?" in verdict.feedback  # a format may be told
    gold_pattern = Problem(problem="?", answer=r"4\d")
    hidden = await RegexVerifier().verify(gold_pattern, Candidate(text="", answer="50"))
    assert not hidden.passed and r"4\d" not in hidden.feedback
    searching = RegexVerifier(r"\d{3}", fullmatch=False, target="text")
    assert (await searching.verify(Problem(problem="?"),
                                   Candidate(text="code 123 ok", answer=""))).passed
    with pytest.raises(ConfigError, match="bad pattern"):
        RegexVerifier("(")


async def test_contains_looks_in_the_whole_reply() -> None:
    problem = Problem(problem="Who wrote Hamlet?", answer="Shakespeare")
    reply = Candidate(text="It was William  SHAKESPEARE, in 1600.", answer="1600")
    assert (await ContainsVerifier().verify(problem, reply)).passed
    assert not (await ContainsVerifier(target="answer").verify(problem, reply)).passed
    with pytest.raises(ConfigError, match=r"needs problem\.answer"):
        await ContainsVerifier().verify(Problem(problem="?"), reply)


# -- the LLM judge -----------------------------------------------------------------------------


@pytest.mark.parametrize(("reply", "score"), [
    ("Feedback: fine.\nScore: 8", 0.8),
    ("**Score:** 7/10", 0.7),
    ('{"feedback": "ok", "score": 0.9}', 0.9),  # a fraction below 1 is already a share
    ("Score: 1", 0.1),
    ("I would give this 3 out of 4.", 0.75),
    ("Score: 85", 0.85),
    ("Verdict: PASS", 1.0),
    ("Grade: incorrect", 0.0),
    ("Score: 12/10", 1.0),
    ("Looks right to me.", None),
])
def test_parse_rating_reads_the_usual_ways_of_writing_a_grade(reply: str,
                                                             score: float | None) -> None:
    assert parse_rating(reply) == (None if score is None else pytest.approx(score))


async def test_the_judge_in_a_run_spends_the_budget_and_never_leaks_the_reference() -> None:
    seen: list[Sequence[Message]] = []

    def grade(messages: Sequence[Message]) -> str:
        seen.append(messages)
        return "Feedback: The answer should be 42, not 41.\nScore: 2"

    problem = Problem(problem="What is 6 * 7?", answer="42")
    ctx = context(problem, ScriptedBackend(grade), tokens=10_000,
                  verifier=ponder.get_verifier("llm_judge"))
    verdict = await ctx.verify(ctx.candidate("6 * 7 = 41"))  # as a strategy would
    assert verdict is not None
    assert not verdict.passed and verdict.score == pytest.approx(0.2)
    assert "42" in seen[0][-1].content  # the judge sees the reference …
    assert "42" not in verdict.feedback  # … the solver's refine prompt does not
    assert "[the reference answer]" in verdict.feedback
    assert ctx.meter.used.calls == 1 and ctx.meter.used.total_tokens > 0
    assert [(e.kind, e.template) for e in ctx.trace.events] == [
        ("generate", "llm_judge/judge"), ("verify", None)]


async def test_the_judge_stops_when_the_budget_cannot_pay_for_it() -> None:
    problem = Problem(problem="What is 6 * 7?", answer="42")
    ctx = context(problem, ScriptedBackend("Score: 10"), tokens=20)
    with pytest.raises(BudgetExhausted):
        await LLMJudge().bind(ctx).verify(problem, Candidate(text="42", answer="42"))


async def test_the_judge_standalone_needs_its_own_backend() -> None:
    problem = Problem(problem="Name a prime.")
    judge = LLMJudge(backend=ScriptedBackend("Feedback: None\nScore: 9"), use_reference=False)
    verdict = await judge.verify(problem, Candidate(text="7", answer="7"))
    assert verdict.passed and verdict.feedback == ""
    unreadable = await LLMJudge(backend=ScriptedBackend("Hmm.")).verify(
        problem, Candidate(text="7", answer="7"))
    assert not unreadable.passed and unreadable.details["score_parsed"] is False
    with pytest.raises(ConfigError, match="llm_judge needs a model"):
        await LLMJudge().verify(problem, Candidate(text="7", answer="7"))


# -- combinators -------------------------------------------------------------------------------


async def test_all_of_stops_at_the_first_failure_and_names_it() -> None:
    calls: list[str] = []

    def expensive(problem: Problem, candidate: Candidate) -> bool:
        calls.append(candidate.answer)
        return True

    combined = all_of(RegexVerifier(r"-?\d+"), "math", expensive)
    problem = Problem(problem="?", answer="12")
    failed = await combined.verify(problem, Candidate(text="twelve", answer="twelve"))
    assert not failed.passed and failed.feedback.startswith("[regex]")
    assert calls == [] and len(failed.details["parts"]) == 1
    passed = await combined.verify(problem, Candidate(text="#### 12", answer="12"))
    assert passed.passed and calls == ["12"]
    assert combined.name == "all_of(regex, math, expensive)"


async def test_any_of_and_weighted() -> None:
    problem = Problem(problem="?", answer="0.5")
    either = any_of("exact", "math")
    verdict = await either.verify(problem, Candidate(text="", answer="\\frac12"))
    assert verdict.passed and [p["verifier"] for p in verdict.details["parts"]] == ["exact", "math"]

    mix = weighted([("math", 3.0), (lambda p, c: 0.0, 1.0)], threshold=0.7)
    mixed = await mix.verify(problem, Candidate(text="", answer="1/2"))
    assert mixed.passed and mixed.score == pytest.approx(0.75)
    with pytest.raises(ConfigError, match="weights"):
        weighted([("math", -1.0)])


async def test_combinators_bind_their_parts_and_forward_extract_and_canonical() -> None:
    problem = Problem(problem="Write inc(x).", tests="assert inc(1) == 2", answer="inc")
    judge = LLMJudge(use_reference=False)
    combined = all_of("unit_tests", judge)
    reply = "```python\ndef inc(x):\n    return x + 1\n```"
    assert combined.extract(reply) == "def inc(x):\n    return x + 1"
    assert combined.canonical("def inc(x): return x+1") == UnitTestVerifier().canonical(
        "def inc(x):\n    return x + 1")
    ctx = context(problem, ScriptedBackend("Feedback: None\nScore: 10"), tokens=10_000)
    verdict = await combined.bind(ctx).verify(
        problem, Candidate(text=reply, answer=combined.extract(reply)))
    assert verdict.passed
    assert ctx.meter.used.calls == 1  # the judge part charged the problem's budget


# -- end to end --------------------------------------------------------------------------------


async def test_a_run_verifies_its_answer_with_the_math_verifier() -> None:
    result = await ponder.asolve({"problem": "Half of 1?", "answer": "\\frac{1}{2}"},
                                 backend=ScriptedBackend("1 / 2 = 0.5\nFinal answer: 0.5"))
    assert result.answer == "0.5"
    assert result.verdict is not None and result.verdict.passed


def test_the_custom_verifier_example_runs_without_a_model() -> None:
    done = subprocess.run([sys.executable, str(REPO / "examples" / "custom_verifier.py")],
                          capture_output=True, text=True, timeout=120, check=False, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert "'Final answer: 25'       passed=False That leaves remainder 4 by 7." in done.stdout
    assert "solve: answer=28 passed=True" in done.stdout
