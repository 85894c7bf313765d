"""A custom verifier in 15 lines, used on its own and inside a run.

    .venv/bin/python examples/custom_verifier.py

No model is needed: `ponder.verify` judges replies directly, and the run uses a
`ScriptedBackend` that always gives the same reply.
"""

import ponder
from ponder import Candidate, Problem, ScriptedBackend, Verdict


@ponder.register_verifier("multiple_of_7")
class MultipleOf(ponder.Verifier):
    """A whole number divisible by `k`; the feedback (read by refine prompts) says why not."""

    def __init__(self, k: int = 7) -> None:
        self.k = k

    async def verify(self, problem: Problem, candidate: Candidate) -> Verdict:
        if not candidate.answer.lstrip("-").isdigit():
            return Verdict(passed=False, score=0.0, feedback=f"`{candidate.answer}` is no number.")
        left = int(candidate.answer) % self.k
        feedback = f"That leaves remainder {left} by {self.k}." if left else ""
        return Verdict.from_bool(left == 0, feedback)


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
                          verifier=MultipleOf(k=14))
    print(f"solve: answer={result.answer} passed={result.verdict and result.verdict.passed}")


if __name__ == "__main__":
    main()
