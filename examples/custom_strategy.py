"""A custom strategy in 15 lines: answer, and answer again until the verifier passes.

    .venv/bin/python examples/custom_strategy.py

No model is needed: a `ScriptedBackend` gives a wrong reply, then a right one. Pass
`backend=None` (the embedded model) or a server URL to run it for real.
"""

from pydantic import Field

import ponder


class RetryConfig(ponder.StrategyConfig):
    tries: int = Field(default=3, ge=1, description="attempts, at most")


@ponder.register_strategy("retry", config=RetryConfig)
async def retry(ctx: ponder.Context, cfg: RetryConfig) -> ponder.Outcome:
    """Answer greedily, then resample until the verifier passes, `tries` attempts at most."""
    candidate = None
    for attempt in range(1, cfg.tries + 1):
        [reply] = await ctx.generate("single/answer", max_tokens=cfg.max_tokens,
                                     temperature=0.0 if attempt == 1 else 0.8)
        candidate = ctx.candidate(reply.text, source=f"try {attempt}")
        verdict = await ctx.verify(candidate)
        if verdict is None or verdict.passed:  # no verifier: the first answer is all we know
            return ctx.finish(candidate, tries=attempt)  # "verified" when it passed
    return ctx.finish(candidate, "max_iters", tries=cfg.tries)


if __name__ == "__main__":
    backend = ponder.ScriptedBackend(["3 + 5 = 9.\nFinal answer: 9", "3 + 5 = 8.\nFinal answer: 8"])
    result = ponder.solve({"problem": "Tom has 3 apples and buys 5 more. How many now?",
                           "answer": "8"}, strategy="retry", backend=backend, tries=3)
    print(f"answer={result.answer} stop={result.stop_reason} tries={result.info['tries']} "
          f"tokens={result.usage.total_tokens} calls={result.usage.calls}")
