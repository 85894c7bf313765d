"""The math verifier: answer extraction, equivalence, voting keys, and hang protection."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

import ponder
from ponder.core.answers import canonical_answer, extract_answer, last_boxed, strip_tags
from ponder.core.errors import ConfigError
from ponder.core.types import Candidate, Problem
from ponder.verifiers.math import MathVerifier, canonical_math
from ponder.verifiers.sympy_worker import SympyWorkerPool
from tests.conftest import load_jsonl


async def check(gold: str, reply: str, verifier: MathVerifier | None = None, *,
                answer: str | None = None) -> ponder.Verdict:
    """Verify `reply` as the context would: its answer extracted, unless `answer` is given."""
    verifier = verifier or MathVerifier()
    candidate = Candidate(text=reply, answer=verifier.extract(reply) if answer is None else answer)
    return await verifier.verify(Problem(problem="?", answer=gold), candidate)


# -- extraction -------------------------------------------------------------------------------


@pytest.mark.parametrize(("reply", "answer"), [
    ("so the total is \\boxed{\\frac{1}{\\sqrt{2}}}.", "\\frac{1}{\\sqrt{2}}"),
    ("first \\boxed{1}, then \\boxed{\\{1, \\{2\\}\\}}", "\\{1, \\{2\\}\\}"),
    ("it is \\boxed 7 in all", "7"),
    ("3 + 5 = 8\nFinal answer: 8", "8"),
    ("**Final Answer:** $\\dfrac{3}{4}$.", "\\dfrac{3}{4}"),
    ("The final answer is 12 apples.", "12 apples"),
    ("She pays 3 * 6 = 18 dollars.\n#### 18", "18"),
    ("The answer is #### 1,234", "1,234"),
    ("Let me answer this: 2 + 2 is 4, and 4 + 3 = 7 in total", "7"),
    # the last number: grouped by spaces, a fraction, a decimal comma, never inside a word
    ("In all, 1 000 people came.", "1000"),
    ("So the probability is 2/3. <|im_start|>user", "2/3"),
    ("Soucis : 2,74 $ a..", "2,74"),
    ("It costs 1,234.50 in all", "1234.50"),
    ("AZYUK2A", "AZYUK2A"),
    # an exponent is not a number of its own
    ("The area is 10 m^2.", "10"),
    ("It holds 300 cm^{3}", "300"),
    ("it falls at 9.8 m s^{-2}", "9.8"),
    ("about 5 times 10^-2", "10"),
    # a LaTeX fraction last is the answer, not its denominator
    ("so x = \\frac{10}{9}", "\\frac{10}{9}"),
    ("so x = -\\dfrac34.", "-\\dfrac34"),
    ("x = \\frac{1}{2}, so 5 of them", "5"),
    ("so x = \\frac{10}{9}+1", "1"),
    # the last anchor on the line, not the first
    ("Final Answer: The final answer is 7.78. I hope it is correct.", "7.78"),
    ("The answer is 3.5 apples. Let me check: 7 / 2 = 3.5.", "3.5 apples"),
    ("Final Answer: The final answer is 7.78.", "7.78"),
    ("##### 5", "5"),
])
def test_extract_answer_finds_the_final_answer(reply: str, answer: str) -> None:
    assert extract_answer(reply) == answer


@pytest.mark.parametrize(("reply", "answer"), [
    ("The area is $5\\pi$ square units.", "5\\pi"),        # not its last number, 5
    ("We get \\(3\\sqrt{13}\\).", "3\\sqrt{13}"),
    ("so $x = 3$, then y = 7", "7"),                        # the number is past the span
    ("It costs $12 and $1 more", "1"),                       # dollars, not a math span
    ("x is $42$", "42"),
])
def test_math_extraction_takes_the_whole_span_around_an_unmarked_last_number(
        reply: str, answer: str) -> None:
    assert MathVerifier().extract(reply) == answer


async def test_a_multiple_of_pi_does_not_pass_for_its_coefficient() -> None:
    # A reply with no answer marker once passed as its last number: 5π against gold 5.
    verdict = await ponder.averify({"problem": "?", "answer": "5"}, "The height is $5\\pi$.")
    assert not verdict.passed
    assert (await ponder.averify({"problem": "?", "answer": "5\\pi"},
                                 "The height is $5\\pi$.")).passed


def test_last_boxed_needs_a_closed_box() -> None:
    assert last_boxed("\\boxed{\\frac{1}{2}") is None
    assert last_boxed("no box here") is None


# -- the data sets' gold answers ---------------------------------------------------------------


async def test_every_math500_gold_answer_verifies_against_itself_bare_and_boxed() -> None:
    rows = load_jsonl("math500_public.jsonl")
    failures = []
    for row in rows:
        gold = row["answer"]
        sentence = f"Putting it together, the answer is $\\boxed{{{gold}}}$."
        for verdict in (await check(gold, gold, answer=gold), await check(gold, sentence)):
            if not verdict.passed:
                failures.append((row["id"], verdict.details))
    assert not failures


def test_every_math500_gold_answer_parses_and_matches_itself_in_sympy() -> None:
    """The in-process shortcut accepts identical strings, so ask math-verify directly: a
    gold that did not parse could never match a differently written correct answer."""
    pool = SympyWorkerPool(size=1)
    try:
        failures = []
        for row in load_jsonl("math500_public.jsonl"):
            reply = pool.call({"op": "equal", "gold": row["answer"], "answer": row["answer"]},
                              timeout_s=30)
            if not (reply["equal"] and reply["gold_parsed"]):
                failures.append((row["answer"], reply))
        assert not failures
    finally:
        pool.close()


async def test_every_gsm8k_gold_answer_verifies_without_a_worker() -> None:
    rows = load_jsonl("gsm8k_test_public.jsonl")
    verifier = MathVerifier()
    failures = []
    for row in rows:
        gold = row["answer"]
        with_commas = f"{int(gold):,}" if gold.lstrip("-").isdigit() else gold
        for reply in (gold, f"The answer is #### {gold}", f"So she has {with_commas}.\n#### "
                      f"{with_commas}", f"Final answer: ${with_commas}"):
            verdict = await check(gold, reply, verifier)
            # decided in-process: a GSM8K number never pays for a process hop
            if not verdict.passed or verdict.details["method"] not in ("exact", "numeric"):
                failures.append((row["id"], reply, verdict.details))
    assert not failures


# -- equivalence -------------------------------------------------------------------------------

EQUIVALENT = [
    ("\\frac{1}{2}", "0.5"),
    ("\\frac12", "1/2"),
    ("0.5", "\\dfrac{1}{2}"),
    ("1/3", "0.333333"),
    ("2", "x=2"),
    ("x=5", "5"),
    ("y = 2x + 3", "2x+3"),
    ("1000", "1,000"),
    ("10,\\!080", "10080"),
    ("\\$36", "36"),
    ("5.4 \\text{ cents}", "5.4"),
    ("18", "18 dollars"),
    ("30^\\circ", "30"),
    ("10\\%", "10"),
    ("\\text{(C)}", "C"),
    ("\\text{Evelyn}", "Evelyn"),
    ("3\\sqrt{13}", "\\sqrt{117}"),
    ("2\\sqrt{2}", "\\sqrt{8}"),
    ("\\frac{\\sqrt{2}}{2}", "\\frac{1}{\\sqrt{2}}"),
    ("\\frac{\\pi}{2}", "\\pi/2"),
    ("-\\frac{\\pi}{6}", "-\\pi/6"),
    ("2\\pi", "6.283185"),
    ("[-2, 7]", "x \\in [-2,7]"),
    ("(-\\infty, 0]", "(-\\infty,0]"),
    ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3, \\pi/2)"),
    ("\\{1, 2\\}", "\\{2, 1\\}"),
    ("3, 5, 7", "7, 5, 3"),
    ("x^2+2x+1", "(x+1)^2"),
    ("\\cot x", "\\frac{\\cos x}{\\sin x}"),
    ("6 - 5i", "6-5i"),
    ("\\begin{pmatrix} -1/3 \\\\ 2/3 \\end{pmatrix}",
     "\\begin{pmatrix} -\\frac{1}{3} \\\\ \\frac{2}{3} \\end{pmatrix}"),
]

NOT_EQUIVALENT = [
    ("\\frac{1}{2}", "0.51"),
    ("1/3", "0.33"),  # a decimal must agree to 6 places
    ("1234567", "1234568"),  # no relative tolerance on integers
    ("2", "-2"),
    ("2", "x=3"),
    ("10\\%", "0.1"),  # a percentage compares by its number
    ("\\sqrt{2}", "1.414"),
    ("2\\sqrt{2}", "\\sqrt{6}"),
    ("\\frac{\\pi}{2}", "\\frac{\\pi}{3}"),
    ("\\pi", "3.14"),
    ("[-2, 7]", "(-2, 7)"),
    ("(3,4]", "[3,4]"),
    ("(1, 2)", "(2, 1)"),
    ("3, 5, 7", "3, 5"),
    ("\\{1, 2\\}", "\\{1, 3\\}"),
    ("x^2+2x+1", "(x-1)^2"),
    ("y = 2x + 3", "y = 2x - 3"),
    ("6 - 5i", "6 + 5i"),
    ("\\text{(C)}", "D"),
    ("\\text{Evelyn}", "Navin"),
]


@pytest.mark.parametrize(("gold", "answer"), EQUIVALENT)
async def test_equivalent_answers_pass(gold: str, answer: str) -> None:
    verdict = await check(gold, f"Therefore the answer is $\\boxed{{{answer}}}$.")
    assert verdict.passed, verdict.details
    assert verdict.score == 1.0


@pytest.mark.parametrize(("gold", "answer"), NOT_EQUIVALENT)
async def test_near_misses_fail_without_revealing_the_gold(gold: str, answer: str) -> None:
    verdict = await check(gold, f"Therefore the answer is $\\boxed{{{answer}}}$.")
    assert not verdict.passed, verdict.details
    assert verdict.score == 0.0
    assert answer in verdict.feedback and "incorrect" in verdict.feedback
    assert gold not in verdict.feedback.replace(answer, "")


# From the issue: right answers that ponder's own extraction, run before math-verify, lost.
# math-verify's extraction now reads replies written in LaTeX.
RIGHT_REPLIES = [
    ("10/9", "\\frac{10}{9}"),
    ("$1/3$", "$\\frac13 $"),
    ("$1/3$", "$\\dfrac{1}{3}$"),
    ("$1/3$", "$\\frac{1}{3} \\text{meters}$"),
    ("$1/3$", "$k = \\frac{1}{3}$"),
    ("$x >= 5$", "Therefore $x \\geq 5$ is the solution."),
    ("$x \\leq 5$", "$5 \\geq x$"),
    ("$[0,1)$", "$[0,1)$"),
    ("1000", "1 000"),
    ("1,22", "1.22"),
    ("0,111", "0.111"),
    ("$(2,1),(1,2)$", "So \\boxed{(1, 2)} and \\boxed{(2, 1)}."),
    ("$34$", "Final Answer: The largest $n$ is 34."),
]
# Wrong answers the old pipeline passed: a number inside a word, the last number of a LaTeX
# fraction, a list read as a thousands separator.
WRONG_REPLIES = [
    ("2", "AZYUK2A"),
    ("$2$", "$\\frac{1+\\sqrt{5}}{2}$"),
    ("$1$", "$-[0,1)$"),
    ("So the answer is: \\[ \\boxed{32349} \\]", "is $\\boxed{32, 349}$"),
    ("$x > 5$", "Therefore $x < 5$ is the solution."),
]


@pytest.mark.parametrize(("gold", "reply"), RIGHT_REPLIES)
async def test_right_answers_in_latex_pass(gold: str, reply: str) -> None:
    verdict = await ponder.averify(Problem(problem="?", answer=gold), reply, "math")
    assert verdict.passed, verdict.details


@pytest.mark.parametrize(("gold", "reply"), WRONG_REPLIES)
async def test_wrong_answers_fail(gold: str, reply: str) -> None:
    verdict = await ponder.averify(Problem(problem="?", answer=gold), reply, "math")
    assert not verdict.passed, verdict.details


async def test_an_answer_given_on_its_own_is_the_one_judged() -> None:
    """The text is read again only when the answer was taken from it."""
    verifier = MathVerifier()
    given = Candidate(text="I first thought $\\boxed{3}$.", answer="5")
    assert (await verifier.verify(Problem(problem="?", answer="5"), given)).passed
    assert not (await verifier.verify(Problem(problem="?", answer="3"), given)).passed


async def test_a_printed_answer_is_judged_without_the_restated_question() -> None:
    """MATH-500 precalculus/24313, as the embedded model's program answered it: the reply
    restates the expression to simplify (which equals gold, cot x) and ends on the printed
    1.0. math-verify, reading the text, would pick the restated expression; the answer is
    what the program printed, and that is what the verdict must be about."""
    text = ("Here's the corrected program:\n\n```python\nimport math\n\nx = math.pi / 4\n"
            "result = (math.tan(x) * math.cos(x)) / math.sin(x)\nprint(result)\n```\n\n"
            "This program will correctly compute the answer to the question "
            "\\(\\frac{\\sec x}{\\sin x} - \\frac{\\sin x}{\\cos x}\\) for the example "
            "value \\(x = \\frac{\\pi}{4}\\).\n\nOutput:\n1.0")
    verifier = MathVerifier()
    assert verifier.extract(text) == "1.0"
    problem = Problem(problem="?", answer="\\cot x")
    printed = Candidate(text=text, answer="1.0", answer_given=True)
    assert not (await verifier.verify(problem, printed)).passed
    failed = Candidate(text=text, answer="", answer_given=True)  # no output: nothing to judge
    assert not (await verifier.verify(problem, failed)).passed
    right = printed.model_copy(update={"answer": "\\cot x"})
    assert (await verifier.verify(problem, right)).passed


async def test_plain_numbers_never_reach_the_worker() -> None:
    verdict = await check("72", "Natalia sold 48 + 24 = 72 clips.\n#### 72")
    assert verdict.details["method"] == "exact"
    verdict = await check("0.25", "1/4")
    assert verdict.details["method"] == "numeric"


async def test_a_reply_without_an_answer_is_told_to_box_one() -> None:
    verdict = await MathVerifier().verify(Problem(problem="?", answer="3"),
                                          Candidate(text="", answer=""))
    assert not verdict.passed
    assert "\\boxed{}" in verdict.feedback


async def test_a_problem_without_gold_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match="needs a gold answer"):
        await MathVerifier().verify(Problem(problem="?"), Candidate(text="3", answer="3"))


# -- hanging expressions -----------------------------------------------------------------------


async def test_a_hanging_expression_fails_within_the_limit_and_the_worker_comes_back() -> None:
    pool = SympyWorkerPool(size=1)
    verifier = MathVerifier(timeout_s=1.5, pool=pool)
    try:
        assert (await check("2\\sqrt{2}", "\\boxed{\\sqrt{8}}", verifier)).passed  # warm
        started = time.monotonic()
        verdict = await check("2", "\\boxed{9^{9^{9^{9}}}}", verifier)
        elapsed = time.monotonic() - started
        assert not verdict.passed
        assert verdict.details["method"] == "timeout"
        assert "could not be checked within 1.5s" in verdict.feedback
        assert elapsed < 1.5 + 1.0
        assert pool.kills == 1
        assert (await check("\\frac{\\pi}{2}", "\\boxed{\\pi/2}", verifier)).passed  # restarted
    finally:
        pool.close()


def test_symbolic_checks_work_outside_the_main_thread() -> None:
    """The limit is a process kill, not signal.alarm, so threads and foreign loops are fine."""
    verdicts: list[ponder.Verdict] = []
    worker = threading.Thread(target=lambda: verdicts.append(
        ponder.verify({"problem": "?", "answer": "2\\sqrt{2}"}, "\\boxed{\\sqrt{8}}")))
    worker.start()
    worker.join(timeout=60)
    assert verdicts and verdicts[0].passed
    assert verdicts[0].details["method"] == "symbolic"


async def test_concurrent_checks_share_the_pool() -> None:
    pairs = EQUIVALENT[16:24]
    verdicts = await asyncio.gather(*(check(g, f"\\boxed{{{a}}}") for g, a in pairs))
    assert all(v.passed for v in verdicts)


# -- voting keys -------------------------------------------------------------------------------


def test_equal_answers_share_a_voting_key() -> None:
    halves = ["0.5", "\\frac12", "1/2", "\\dfrac{1}{2}", "$0.50$", "x = \\frac{1}{2}", "2/4"]
    assert {canonical_math(a) for a in halves} == {"0.5"}
    assert canonical_math("1/3") == canonical_math("0.333333")
    assert canonical_math("1,000") == canonical_math("1000") == "1000"
    assert canonical_math("\\left( 1, 2 \\right)") == canonical_math("(1,2)")
    assert canonical_math("2") != canonical_math("3")
    assert canonical_math("") is None
    assert canonical_math("\\cfrac{1}{2}") == "0.5"
    # not thousands, so not the number they would make without the comma
    assert canonical_math("0,111") != canonical_math("111")
    assert canonical_math("32, 349") != canonical_math("32349")


def test_the_context_votes_with_the_math_key() -> None:
    verifier = MathVerifier()
    keys = [verifier.canonical(verifier.extract(reply)) for reply in
            ("so \\boxed{\\frac{1}{2}}", "Final answer: 0.5", "#### 1/2")]
    assert len(set(keys)) == 1


# The prompts ask for "Final answer: <answer>", and the embedded model copies the tags: 2 of
# ice's 100 GSM8K rows were right and scored wrong for them.
@pytest.mark.parametrize("reply", [
    "7. Final answer: <answer>Final answer: 18.</answer>",
    "The answer is <answer>18</answer>",
    "Final answer: <Final answer: $18.00>",
    "Final answer: <18>",
    "**Final answer:** <answer> 18 </answer>.",
])
def test_an_answer_in_the_prompts_placeholder_tags_is_read(reply: str) -> None:
    assert extract_answer(reply) in ("18", "$18.00")
    assert ponder.verify({"problem": "How many?", "answer": "18"}, reply).passed


@pytest.mark.parametrize("recorded", ["<answer>18</answer>", "18>", "<answer>18", "18.</answer>"])
def test_a_tagged_answer_recorded_before_is_judged_and_votes_as_its_value(recorded: str) -> None:
    # Rows already written keep the answer as it was read then; scoring and votes read it now.
    verdict = ponder.verify({"problem": "How many?", "answer": "18"},
                            Candidate(text="Some working.", answer=recorded))
    assert verdict.passed
    assert canonical_math(recorded) == "18"
    assert canonical_answer(recorded) == "18"


def test_angle_brackets_that_are_the_answer_stay() -> None:
    assert strip_tags("<1, 2>") == "<1, 2>"  # a vector
    assert strip_tags("x < 5") == "x < 5"
    assert strip_tags("<answer>") == ""  # the placeholder, copied unfilled: no answer
