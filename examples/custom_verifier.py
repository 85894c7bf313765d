"""A custom verifier in a few lines, used on its own and inside a run.

    .venv/bin/python examples/custom_verifier.py

No model is needed: `ponder.verify` judges replies directly, and the run uses a
`ScriptedBackend` that always gives the same reply.
"""

import ponder
from ponder import Candidate, Problem, ScriptedBackend, Verdict


@ponder.register_verifier("multiple_of_7")
def multiple_of_7(problem: Problem, candidate: Candidate) -> Verdict:
    """Feedback says what was wrong: a strategy puts it into the next refine prompt."""
    if not candidate.answer.lstrip("-").isdigit():
        return Verdict(passed=False, score=0.0, feedback=f"`{candidate.answer}` is not a number.")
    remainder = int(candidate.answer) % 7
    return Verdict(passed=remainder == 0, score=1.0 if remainder == 0 else 0.0,
                   feedback="" if remainder == 0 else f"That leaves remainder {remainder} by 7.")


def main() -> None:
    question = "Name a multiple of 7 between 20 and 30."
    for reply in ("3 * 7 = 21.\nFinal answer: 21", "Final answer: 25", "Final answer: many"):
        verdict = ponder.verify(question, reply, verifier="multiple_of_7")
        print(f"{reply.splitlines()[-1]!r:24} passed={verdict.passed} {verdict.feedback}")

    # A plain function works too, without registering it.
    verdict = ponder.verify(question, "Final answer: 28", verifier=lambda p, c: c.answer == "28")
    print(f"lambda verifier: passed={verdict.passed}")

    # Inside a run the verifier judges the strategy's answer.
    result = ponder.solve(question, backend=ScriptedBackend("4 * 7 = 28.\nFinal answer: 28"),
                          verifier="multiple_of_7")
    print(f"solve: answer={result.answer} passed={result.verdict and result.verdict.passed}")


if __name__ == "__main__":
    main()
