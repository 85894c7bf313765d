"""The fake server's quiz mode: replies right with each problem's `p_correct`, wrong ones drawn
from a few agreeing distractors, reproducible, with usage counted as for any reply."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import ponder
from ponder import Problem
from ponder.core.answers import canonical_answer, extract_answer, extract_code
from ponder.prompts.library import PromptLibrary
from ponder.testing import FakeOpenAIServer, Quiz, QuizFileError, QuizItem
from ponder.testing.fake_server import main
from ponder.testing.quiz import wrong_answers
from ponder.testing.tokens import count_prompt_tokens

REPO = Path(__file__).resolve().parents[1]
QUESTION = "Tom has 3 apples and buys 5 more. How many apples does Tom have now?"
HOUSE = ("Josh decides to try flipping a house.  He buys a house for $80,000 and then puts in "
         "$50,000 in repairs.  This increased the value of the house by 150%.  How much "
         "profit did he make?")


def ask(problem: str) -> list[dict[str, Any]]:
    return [{"role": "system", "content": "Think step by step."},
            {"role": "user", "content": problem}]


def post(server: FakeOpenAIServer, messages: list[dict[str, Any]], **fields: Any) -> Any:
    body = {"model": server.model, "messages": messages, **fields}
    request = urllib.request.Request(f"{server.base_url}/chat/completions",
                                     data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def texts(reply: dict[str, Any]) -> list[str]:
    return [c["message"]["content"] for c in reply["choices"]]


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_the_right_answer_rate_is_close_to_p_correct(p: float) -> None:
    quiz = Quiz([QuizItem(problem=QUESTION, answer="8", p_correct=p)], seed=3)
    draws = [d for _ in range(500) for d in quiz.draw(ask(QUESTION), n=4) or []]
    right = sum(extract_answer(d.text) == "8" for d in draws)
    assert right == sum(d.right for d in draws)  # the extractor reads what was drawn
    # Seeded, so deterministic; 4.5 binomial standard deviations would be a 1-in-150,000 miss.
    assert abs(right / len(draws) - p) <= 4.5 * math.sqrt(p * (1 - p) / len(draws))
    assert quiz.stats == {"matched": 500, "unmatched": 0, "right": right,
                          "wrong": len(draws) - right}


def test_p_correct_zero_and_one_are_never_and_always_right() -> None:
    quiz = Quiz([QuizItem(problem="always", answer="1", p_correct=1.0),
                 QuizItem(problem="never", answer="1", p_correct=0.0)])
    assert all(d.right for d in quiz.draw(ask("always"), n=200) or [])
    assert not any(d.right for d in quiz.draw(ask("never"), n=200) or [])


def test_replies_are_reproducible_for_a_seed_yet_repeated_samples_differ() -> None:
    items = [QuizItem(problem=QUESTION, answer="8", p_correct=0.5)]

    def run(seed: int) -> list[list[str]]:
        with FakeOpenAIServer(quiz=items, seed=seed) as server:
            return [texts(post(server, ask(QUESTION), n=3, seed=7)) for _ in range(4)]

    first = run(seed=1)
    assert run(seed=1) == first
    assert run(seed=2) != first
    # Four identical requests (one `seed` field) still get fresh samples, and so do choices.
    assert len({text for reply in first for text in reply}) == 12
    # The request's `seed` field takes part too.
    with FakeOpenAIServer(quiz=items, seed=1) as server:
        assert texts(post(server, ask(QUESTION), n=3, seed=8)) != first[0]


def test_wrong_answers_come_from_few_distractors_and_often_agree() -> None:
    quiz = Quiz([QuizItem(problem=HOUSE, answer="70000", p_correct=0.0)], seed=5)
    distractors = quiz.wrong_answers(0)
    assert len(distractors) == 3 and len({canonical_answer(d) for d in distractors}) == 3
    assert "70000" not in distractors
    assert all(d.isdigit() for d in distractors)  # integral and non-negative, like the answer
    answers = Counter(extract_answer(d.text) for d in quiz.draw(ask(HOUSE), n=2000) or [])
    assert set(answers) == set(distractors)
    # Weights 4:2:1 down the list, so the first distractor takes about 4/7 of wrong replies.
    shares = [answers[d] / 2000 for d in distractors]
    for share, expected in zip(shares, (4 / 7, 2 / 7, 1 / 7), strict=True):
        assert abs(share - expected) < 0.05
    # With one distractor every wrong reply agrees.
    one = Quiz([QuizItem(problem=HOUSE, answer="70000", p_correct=0.0)], distractors=1)
    assert len({d.answer for d in one.draw(ask(HOUSE), n=50) or []}) == 1


def test_distractors_depend_on_the_problem_alone_and_fit_the_answer() -> None:
    assert wrong_answers(HOUSE, "70000", 3) == wrong_answers(HOUSE, "70000", 3)
    assert Quiz([QuizItem(problem=HOUSE, answer="70000", p_correct=0.5)],
                seed=9).wrong_answers(0) == wrong_answers(HOUSE, "70000", 3)
    decimals = wrong_answers("change", "11.25", 5)
    assert len(set(decimals)) == 5 and "11.25" not in decimals
    assert all(float(d) >= 0 for d in decimals)
    assert len(wrong_answers("zero", "0", 20)) == 20  # enough, even near the bound
    assert wrong_answers("frac", "\\frac{1}{2}", 2) == ("\\frac{1}{2} + 1", "\\frac{1}{2} + 2")
    item = QuizItem(problem="many", answer="12", p_correct=0.0, distractors=6)
    assert len(Quiz([item]).wrong_answers(item)) == 6


def test_matching_takes_the_last_user_message_and_the_longest_problem() -> None:
    short = QuizItem(problem="What is 2 + 3?", answer="5", p_correct=1.0)
    long = QuizItem(problem="What is 2 + 3? Then double it.", answer="10", p_correct=1.0)
    quiz = Quiz([short, long])
    assert quiz.match(ask("Problem:\n  What is 2 +\n3?   Then double it.\n")) == long
    assert quiz.match(ask("What is 2 + 3?")) == short
    two_turns = [{"role": "user", "content": "What is 2 + 3? Then double it."},
                 {"role": "assistant", "content": "What is 2 + 3?"},
                 {"role": "user", "content": "Again: What is 2 + 3?"}]
    assert quiz.match(two_turns) == short
    assert quiz.match([{"role": "system", "content": "What is 2 + 3?"},
                       {"role": "user", "content": "hello"}]) is None


def test_unknown_problems_get_the_usual_reply() -> None:
    items = [QuizItem(problem=HOUSE, answer="70000", p_correct=1.0)]
    with FakeOpenAIServer(quiz=items) as server:
        [text] = texts(post(server, ask(QUESTION)))
        assert text.endswith("Final answer: 8")  # default_reply: the sum of the numbers
        assert server.quiz is not None and server.quiz.stats["unmatched"] == 1
    with FakeOpenAIServer(quiz=items, reply=lambda messages: "Final answer: 42") as server:
        assert texts(post(server, ask(QUESTION), n=2)) == ["Final answer: 42"] * 2
        [text] = texts(post(server, ask(HOUSE)))
        assert extract_answer(text) == "70000"


def test_program_requests_get_a_program_that_prints_the_drawn_answer() -> None:
    quiz = Quiz([QuizItem(problem=HOUSE, answer="70000", p_correct=0.5),
                 QuizItem(problem="What is half of 22.5?", answer="11.25", p_correct=1.0)])
    library = PromptLibrary()
    for few_shot in (True, False):
        messages = [m.model_dump() for m in library.render("program/write", problem=HOUSE,
                                                           few_shot=few_shot)]
        for draw in quiz.draw(messages, n=4) or []:
            assert "```python" in draw.text
            printed = subprocess.run([sys.executable, "-c", extract_code(draw.text)],
                                     capture_output=True, text=True, timeout=30, check=True)
            assert printed.stdout.strip() == draw.answer
    repair = [m.model_dump() for m in library.render(
        "program/repair", problem="What is half of 22.5?", program="print(x)",
        error="NameError: name 'x' is not defined")]
    [draw] = quiz.draw(repair) or []
    printed = subprocess.run([sys.executable, "-c", extract_code(draw.text)],
                             capture_output=True, text=True, timeout=30, check=True)
    assert printed.stdout.strip() == "11.25"
    # A prose prompt for the same problem gets prose.
    [draw] = quiz.draw(ask(HOUSE)) or []
    assert "```" not in draw.text and draw.text.endswith("\\boxed{" + draw.answer + "}.")


def test_the_program_strategy_solves_against_the_quiz() -> None:
    right = Problem(id="house", problem=HOUSE, answer="70000")
    with FakeOpenAIServer(quiz=[QuizItem(problem=HOUSE, answer="70000", p_correct=1.0)]) as s:
        result = ponder.solve(right, strategy="program", backend=s.base_url)
        assert result.answer == "70000" and result.correct
        assert result.info["runs"] == 1
    with FakeOpenAIServer(quiz=[QuizItem(problem=HOUSE, answer="70000", p_correct=0.0)]) as s:
        result = ponder.solve(right, strategy="program", backend=s.base_url)
        assert s.quiz is not None and result.answer in s.quiz.wrong_answers(0)
        assert not result.correct


def test_a_vote_over_samples_beats_one_sample_at_p_one_half() -> None:
    # No gold, so no verifier: best_of_n wins by the vote alone.
    with FakeOpenAIServer(quiz=[QuizItem(problem=QUESTION, answer="8", p_correct=0.5)]) as s:
        single = [ponder.solve(QUESTION, backend=s.base_url).answer for _ in range(20)]
        voted = [ponder.solve(QUESTION, strategy="best_of_n", n=9, temperature=0.7,
                              backend=s.base_url).answer for _ in range(20)]
    # One sample is right half the time; a plurality of 9 about three times in four (its
    # runner-up, the first distractor, has 2/7 of the votes).
    assert single.count("8") < voted.count("8") and voted.count("8") >= 12


def test_usage_is_prompt_words_plus_overhead_and_completion_words() -> None:
    items = [QuizItem(problem=QUESTION, answer="8", p_correct=0.5)]
    with FakeOpenAIServer(quiz=items, seed=4) as server:
        messages = ask(QUESTION)
        reply = post(server, messages, n=5)
        words = [len(t.split()) for t in texts(reply)]
        assert reply["usage"] == {"prompt_tokens": count_prompt_tokens(messages),
                                  "completion_tokens": sum(words),
                                  "total_tokens": count_prompt_tokens(messages) + sum(words)}
        assert all(44 <= w <= 124 for w in words)  # 40-120 filler words and the answer line
        cut = post(server, messages, n=2, max_tokens=10)
        assert [c["finish_reason"] for c in cut["choices"]] == ["length"] * 2
        assert cut["usage"]["completion_tokens"] == 20
        assert server.usage_served["completion_tokens"] == sum(words) + 20


def test_right_replies_can_be_made_surer() -> None:
    items = [QuizItem(problem=QUESTION, answer="8", p_correct=0.5)]

    def mean_logprobs(confidence: float) -> dict[bool, float]:
        with FakeOpenAIServer(quiz=items, quiz_confidence=confidence) as server:
            reply = post(server, ask(QUESTION), n=40, logprobs=True, top_logprobs=2)
        by_rightness: dict[bool, list[float]] = {True: [], False: []}
        for choice in reply["choices"]:
            right = extract_answer(choice["message"]["content"]) == "8"
            by_rightness[right] += [t["logprob"] for t in choice["logprobs"]["content"]]
        return {k: sum(v) / len(v) for k, v in by_rightness.items()}

    plain, lifted = mean_logprobs(0.0), mean_logprobs(0.6)
    assert abs(plain[True] - plain[False]) < 0.05  # the same filler words either way
    assert lifted[True] > plain[True] + 0.1 and lifted[False] == pytest.approx(plain[False])
    with pytest.raises(ValueError, match="quiz_confidence"):
        FakeOpenAIServer(quiz=items, quiz_confidence=1.0)


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_a_jsonl_quiz_loads_and_serves(tmp_path: Path) -> None:
    quiz = write(tmp_path / "quiz.jsonl", [
        json.dumps({"id": "a", "problem": QUESTION, "answer": 8, "p_correct": 1}),
        "",
        json.dumps({"problem": HOUSE, "answer": "70000", "p_correct": 0.25, "distractors": 2}),
    ])
    items = QuizItem.load_jsonl(quiz)
    assert [(i.answer, i.p_correct, i.distractors) for i in items] == [
        ("8", 1.0, None), ("70000", 0.25, 2)]
    with FakeOpenAIServer.from_quiz_file(quiz) as server:
        [text] = texts(post(server, ask(QUESTION)))
        assert extract_answer(text) == "8"


def test_a_bad_quiz_line_is_named_with_its_file_line_and_field(tmp_path: Path) -> None:
    quiz = write(tmp_path / "bad.jsonl", [
        json.dumps({"problem": QUESTION, "answer": "8", "p_correct": 0.5}),
        json.dumps({"problem": HOUSE, "answer": "70000", "p_correct": 1.5}),
        "{not json",
        json.dumps({"problem": "no answer", "p_correct": 0.5}),
        json.dumps([1, 2]),
        json.dumps({"problem": f"  {QUESTION} ", "answer": "8", "p_correct": 0.5}),
    ])
    with pytest.raises(QuizFileError) as caught:
        QuizItem.load_jsonl(quiz)
    lines = str(caught.value).splitlines()
    assert len(lines) == 5
    assert lines[0] == f"{quiz}:2: field 'p_correct': Input should be less than or equal to 1"
    assert lines[1].startswith(f"{quiz}:3: not valid JSON")
    assert lines[2].startswith(f"{quiz}:4: field 'answer': Field required")
    assert lines[3] == f"{quiz}:5: a quiz item must be a JSON object, not list"
    assert lines[4] == f"{quiz}:6: field 'problem': the same problem as line 1"
    with pytest.raises(QuizFileError, match="no quiz items"):
        QuizItem.load_jsonl(write(tmp_path / "empty.jsonl", [""]))


def test_the_command_line_refuses_a_bad_quiz_and_serves_a_good_one(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = write(tmp_path / "bad.jsonl", [json.dumps({"problem": "x", "answer": "1"})])
    with pytest.raises(SystemExit) as exit_info:
        main(["--quiz", str(bad)])
    assert exit_info.value.code == 2
    assert f"{bad}:1: field 'p_correct': Field required" in capsys.readouterr().err

    good = write(tmp_path / "good.jsonl", [
        json.dumps({"problem": HOUSE, "answer": "70000", "p_correct": 1.0})])
    process = subprocess.Popen(
        [sys.executable, "-m", "ponder.testing.fake_server", "--port", "0", "--quiz",
         str(good), "--exit-with-parent"], stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        body = {"model": "fake-model", "messages": ask(HOUSE)}
        request = urllib.request.Request(f"{url}/chat/completions",
                                         data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            [text] = texts(json.load(response))
        assert extract_answer(text) == "70000"
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_the_mixed_benchmark_quiz_is_a_30_40_30_mix_of_gsm8k_problems() -> None:
    items = QuizItem.load_jsonl(REPO / "benchmarks" / "data" / "quiz_mixed.jsonl")
    assert len(items) == 100
    assert Counter(i.p_correct for i in items) == {0.9: 30, 0.5: 40, 0.1: 30}
    assert Counter(i.p_correct for i in items[:10]) == {0.9: 3, 0.5: 4, 0.1: 3}
    assert all(canonical_answer(i.answer) is not None for i in items)
