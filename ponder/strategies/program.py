"""`program`: program-aided reasoning (PAL, Gao et al. 2023; program of thought, Chen et al.
2023). The model writes Python that computes the answer; ponder runs it in the sandbox and
takes what it prints. A coder model that says 17 × 23 = 401 in prose writes `print(17 * 23)`.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from ponder.core.answers import extract_answer, extract_code
from ponder.core.errors import BudgetExhausted
from ponder.core.types import Candidate, Completion, Execution, InfoPart, Outcome
from ponder.strategies.context import Context
from ponder.strategies.sampling import (
    MAX_SAMPLES,
    SamplingConfig,
    choose,
    sample_until_settled,
    vote_info,
)
from ponder.strategies.voting import gather_within_budget, tally

# Repairs of one program: each is a model call and a sandbox run, and a program still broken
# after a few rewrites (one is the default) rarely comes right later.
MAX_REPAIRS = 10


class ProgramConfig(SamplingConfig):
    n: int = Field(default=1, ge=1, le=MAX_SAMPLES,
                   description="programs, at most (one n= request)")
    temperature: float = Field(default=0.0, ge=0.0, le=2.0,
                               description="sampling temperature (raise it with n > 1)")
    max_tokens: int = Field(default=400, gt=0, description="completion tokens per program")
    max_repairs: int = Field(default=1, ge=0, le=MAX_REPAIRS,
                             description="repairs of a program that raised, hung or printed "
                                         "nothing, the error shown")
    timeout_s: float = Field(default=5.0, gt=0, description="wall clock per program run")
    fallback: bool = Field(default=True,
                           description="a prose answer when no program printed one")
    # Off by default: the worked examples are prompt tokens a small model does not turn into
    # right programs (on the embedded model they lost on both halves of GSM8K; the figures are
    # in docs/benchmarks.md); a larger model may use them better.
    few_shot: bool = Field(default=False, description="worked examples in the prompt")


class ProgramRuns(InfoPart):
    """What `program` records of its programs in `info`: `runs` (programs run, repairs
    included), `repairs`, and `failed` (programs that never printed an answer)."""

    marker: ClassVar[str] = "runs"

    runs: int = 0
    repairs: int = 0
    failed: int = 0


async def program(ctx: Context, cfg: ProgramConfig) -> Outcome:
    """Write a program (`program/write.j2`), run it, answer with its last printed line.

    A program that raises, does not finish in `timeout_s` or prints nothing is shown its error
    and rewritten (`program/repair.j2`, greedy), `max_repairs` times at most. With `n > 1` the
    programs come from one `n=` request, each is run (and repaired) on its own, and the printed
    answers are chosen between exactly as `best_of_n` chooses (`sampling.py`): the verifier's
    best where there is one, else the vote over canonical answers, with the same adaptive
    stopping. A program that never printed an answer votes for nothing. When no program
    printed one, `fallback` asks for a prose answer (`single/answer.j2`).

    Running code costs no tokens but counts against `Budget.seconds`.

    `info`: the `SamplingInfo` (`samples`, `votes`, `vote_answer`, ... as in `best_of_n`), the
    `ProgramRuns` (`runs`, `repairs`, `failed`) and `fallback` (whether the prose answer was
    used).
    """
    use_verifier = ctx.verifier is not None
    counts = ProgramRuns()
    written = 0

    async def draw(k: int) -> list[Candidate]:
        nonlocal written
        count, ran = await _write_programs(ctx, cfg, k, counts, first=written)
        written += count
        return ran

    samples, reason = await sample_until_settled(ctx, cfg, draw, use_verifier=use_verifier)
    votes = tally(ctx, samples)
    sampled = vote_info(ctx, samples, votes)
    winner = choose(ctx, samples, votes, use_verifier)
    fallback = False
    if cfg.fallback and not any(s.answer for s in samples) and reason != "budget":
        try:
            [reply] = await ctx.generate("single/answer", max_tokens=cfg.max_tokens,
                                         temperature=0.0, step="fallback")
            winner = ctx.candidate(reply.text, source="fallback", usage=reply.usage)
            fallback = True
        except BudgetExhausted:
            reason = "budget"
    return ctx.finish(winner, reason, **sampled.model_dump(), **counts.model_dump(),
                      fallback=fallback)


async def _write_programs(ctx: Context, cfg: ProgramConfig, k: int, counts: ProgramRuns, *,
                         first: int = 0) -> tuple[int, list[Candidate]]:
    """`k` programs from one `n=k` request (`program/write`), each run and repaired on its own
    (`counts` tallies them), numbered in the trace from `first`: how many were written, and
    the candidates of those that finished. A program the budget cut short is left out, so
    fewer candidates than asked tell the sampling loop that the budget ran out."""
    replies = await ctx.generate("program/write", n=k, max_tokens=cfg.max_tokens,
                                 temperature=cfg.temperature, step="write",
                                 few_shot=cfg.few_shot)
    ran, _ = await gather_within_budget(
        _run(ctx, cfg, reply, str(first + i), counts) for i, reply in enumerate(replies))
    return len(replies), [c for c in ran if c is not None]


async def _run(ctx: Context, cfg: ProgramConfig, reply: Completion, label: str,
               counts: ProgramRuns) -> Candidate:
    """Run one program, repairing it as allowed; its candidate answers with what it printed,
    or with nothing."""
    text = reply.text
    for attempt in range(cfg.max_repairs + 1):
        code = extract_code(text)
        counts.runs += 1
        step = f"run {label}" + (f" repair {attempt}" if attempt else "")
        execution = await ctx.execute(code, timeout_s=cfg.timeout_s, step=step)
        if execution.ok:
            return ctx.candidate(f"{text}\n\nOutput:\n{execution.output.strip()}",
                                 source=f"program {label}", usage=reply.usage,
                                 answer=printed_answer(execution))
        if attempt == cfg.max_repairs:
            break
        counts.repairs += 1
        [fix] = await ctx.generate("program/repair", max_tokens=cfg.max_tokens, temperature=0.0,
                                   step=f"repair {label}", program=code,
                                   error=execution.error)
        text = fix.text
    counts.failed += 1
    return ctx.candidate(text, source=f"program {label} (failed)", usage=reply.usage, answer="")


def printed_answer(execution: Execution) -> str:
    """The answer in a program's last printed line: a bare value as it is, else the value a
    sentence ends on ("The answer is 18." → 18)."""
    lines = [line.strip() for line in execution.output.splitlines() if line.strip()]
    return extract_answer(lines[-1]) if lines else ""
