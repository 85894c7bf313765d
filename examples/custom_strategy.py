"""A custom strategy in a few lines: sample twice, keep the reply the verifier scores higher.

    .venv/bin/python examples/custom_strategy.py

No model is needed: a `ScriptedBackend` gives one wrong and one right reply. Swap in
`backend=None` (the embedded model) or a server URL to run it for real.
"""

import ponder


@ponder.register_strategy("twice")
async def twice(ctx: ponder.Context, cfg: ponder.StrategyConfig) -> ponder.Candidate:
    """Two samples from one request; the better-judged one wins."""
    replies = await ctx.generate("single/answer", n=2, max_tokens=cfg.max_tokens, temperature=0.7)
    candidates = ctx.candidates(replies, source="twice")
    for candidate in candidates:
        await ctx.verify(candidate)
    return max(candidates, key=lambda c: c.score)


if __name__ == "__main__":
    backend = ponder.ScriptedBackend(["3 + 5 = 9.\nFinal answer: 9", "3 + 5 = 8.\nFinal answer: 8"])
    result = ponder.solve("Tom has 3 apples and buys 5 more. How many apples does he have?",
                          strategy="twice", backend=backend,
                          verifier=lambda problem, candidate: candidate.answer == "8")
    print(f"answer={result.answer} tokens={result.usage.total_tokens} calls={result.usage.calls}")
