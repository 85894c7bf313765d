"""`auto`: escalate only when unsure. Cheap greedy answers first; samples only where they
disagree, and only until the vote settles or shows it will not (early exit for reasoning;
compute-optimal allocation, Snell et al. 2024: an easy problem needs one answer, a problem the
model cannot solve gains little from more samples, the ones in between gain most).

The parts are the other strategies' own: tier 0 runs `program` and `single` themselves
(`Context.run`, so their steps show in the trace as theirs); the later tiers are
`sampling.sample_until_settled` with `best_of_n`'s samples, voted by `tally`, settled by
`settled_by_vote`, and picked by `choose`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

from pydantic import Field

from ponder.core.errors import BudgetExhausted
from ponder.core.types import Candidate, Outcome, StopReason
from ponder.strategies.auto_code import CodePlan, auto_code
from ponder.strategies.code_checks import CodeChecks
from ponder.strategies.context import Context
from ponder.strategies.program import MAX_REPAIRS, ProgramRuns
from ponder.strategies.sampling import (
    MAX_SAMPLES,
    SamplingConfig,
    choose,
    sample_until_settled,
    settled_by_vote,
    vote_info,
)
from ponder.strategies.spec import StrategyConfig
from ponder.strategies.voting import gather_within_budget, tally


class AutoConfig(CodeChecks, StrategyConfig):
    """`auto`'s parameters. The thresholds' defaults are reasoned from the rules below, not
    tuned on a curve, and were fixed before the held-out check, so that check measures them
    rather than fits them (`benchmarks/curves_gsm8k.py --held-out`; the figures are in
    docs/benchmarks.md and benchmarks/results/curve_gsm8k_heldout/)."""

    samples_field: ClassVar[str | None] = "max_samples"

    temperature: float = Field(default=0.7, ge=0.0, le=2.0,
                               description="sampling temperature of the samples (tier 1 on); "
                                           "tier 0 is greedy")
    program: bool = Field(default=True,
                          description="tier 0 also writes a greedy zero-shot program, the "
                                      "second cheap answer (not for coding problems)")
    few_shot: bool = Field(default=False, description="worked examples in the prose prompts")
    batch_size: int = Field(default=3, ge=1, le=MAX_SAMPLES,
                            description="samples per escalation, from one n= request")
    max_samples: int = Field(default=8, ge=1, le=MAX_SAMPLES,
                             description="samples after tier 0, at most")
    agreement: float = Field(default=0.7, gt=0.0, le=1.0,
                             description="top answer's vote share that ends the run")
    scatter_after: int = Field(default=4, ge=2, le=MAX_SAMPLES,
                               description="answers voted before scattered ones end the run")
    scatter_share: float = Field(default=0.3, ge=0.0, lt=1.0,
                                 description="a top share at most this (or no two answers "
                                             "agreeing) is scattered: stop")
    max_repairs: int = Field(default=1, ge=0, le=MAX_REPAIRS,
                             description="repairs of tier 0's program")
    timeout_s: float = Field(default=5.0, gt=0, description="wall clock per program run")
    debug_rounds: int = Field(default=2, ge=0, le=MAX_REPAIRS,
                              description="coding problems: rewrites of the best program on "
                                          "its failing examples")
    distinguish: bool = Field(default=True,
                              description="coding problems: the model judges an input the "
                                          "two best clusters disagree on (S*)")
    judge_max_tokens: int = Field(default=384, gt=0,
                                  description="coding problems: completion tokens to judge")

    def first_step_calls(self) -> int:
        return 2 if self.program else 1  # tier 0: the program and the prose answer at once


async def auto(ctx: Context, cfg: AutoConfig) -> Outcome:
    """Start cheap and escalate tier by tier, only while the answers leave it unsure.

    Tier 0: a greedy zero-shot program (`program` with n=1 and no prose fallback, run in the
    sandbox; with `program`, and not for coding problems) and a greedy prose answer
    (`single`). They come first because each costs one call and, on the embedded model, they
    were the most accurate answers for their tokens, the program ahead of a 5-sample vote at
    fewer tokens (docs/benchmarks.md). Without a verifier the two run at once, and if they
    agree the run ends (`consensus`); with one, the program goes first and a pass ends the run
    (`verified`) before the prose answer is asked for.

    Tier 1 on: `batch_size` samples from one `n=` request (`best_of_n/generate`, step
    "tier <k>", at `temperature`), voted together with every earlier answer, up to
    `max_samples` samples in all (tier 0's answers not counted). After each tier:
    - a sample the verifier passes ends the run (`verified`); with a verifier, only a pass,
      `max_samples` or the budget end it, since its verdicts say more than agreement;
    - without one, the top answer holding at least `agreement` of the votes ends it
      (`consensus`), as does a lead over the runner-up of more votes than samples remain
      (`majority`, `settled_by_vote`'s rule);
    - and once `scatter_after` answers are in, answers that stay scattered (the top holds at
      most `scatter_share` of the votes, or no two agree) end it (`scattered`): more samples
      would hardly settle a problem the model is guessing at, so the vote's answer stands.
    With the defaults, two disagreeing cheap answers bring 3 samples (5 answers): 4 agreeing
    end it, 5 different answers end it as scattered, else 3 more samples (8 answers), where 6
    agreeing, a lead of 3 or 2 of 8 (scattered) end it, else the last 2. `done` when
    `max_samples` were drawn and the answers do not agree; `budget` when the budget cut a tier
    short (the best so far is kept).

    On a coding problem with no verifier, execution decides instead of the vote
    (`ponder.strategies.auto_code`): a greedy solution run on the problem's examples and the
    model's tests; samples clustered by behaviour only while no program passes them; the S*
    judgement between the two best clusters; the best program debugged.

    Winner: the verifier's best where there is a verifier, else the vote over all answers
    (ties to the earlier: the program's, then the prose answer's).

    `info`: `tier` (the highest that ran), `tiers` (per tier: `tier`, `kind` "greedy" or
    "samples", `drawn`, `answers`; tier 0 also `sources` and `program`, its runs, repairs
    and failures), `escalations` (why each escalation was made; one more than `tier` when the
    budget refused the last), `stopped` (why it stopped, in words), and the vote over every
    answer as in `best_of_n`: `samples` (answers voted, tier 0's included), `votes`,
    `answers`, `vote_answer`, `agreement` (the top answer's share). The trace has one
    `escalation` note per decision: escalate or stop, and why.
    """
    use_verifier = ctx.verifier is not None
    if ctx.problem.is_code and not use_verifier:
        return await auto_code(ctx, cfg, CodePlan(
            max_tokens=cfg.max_tokens, temperature=cfg.temperature, batch_size=cfg.batch_size,
            max_samples=cfg.max_samples, debug_rounds=cfg.debug_rounds,
            distinguish=cfg.distinguish, judge_max_tokens=cfg.judge_max_tokens))
    run = _Run(ctx, cfg, use_verifier)
    reason: StopReason
    try:
        reason = await run.tier0() or await run.sample()
    except BudgetExhausted:
        reason = "budget"
    if reason == "budget":
        run.decide(False, "the budget ran out")
    votes = tally(ctx, run.answers)
    sampled = vote_info(ctx, run.answers, votes)
    return ctx.finish(choose(ctx, run.answers, votes, use_verifier), reason,
                      **sampled.model_dump(), tier=len(run.tiers) - 1 if run.tiers else 0,
                      tiers=run.tiers, escalations=run.escalations, stopped=run.stopped)


class _Run:
    """One run's answers and the record of its tiers."""

    def __init__(self, ctx: Context, cfg: AutoConfig, use_verifier: bool) -> None:
        self.ctx, self.cfg, self.use_verifier = ctx, cfg, use_verifier
        self.answers: list[Candidate] = []
        self.tiers: list[dict[str, Any]] = []
        self.escalations: list[str] = []
        self.stopped = ""

    def decide(self, escalate: bool, why: str) -> None:
        """Record an escalation decision: in `escalations` when it escalates, and in the trace
        either way."""
        tier = len(self.tiers) - 1 if self.tiers else 0
        if escalate:
            self.escalations.append(why)
        else:
            self.stopped = why
        votes = tally(self.ctx, self.answers)
        self.ctx.note("escalation", tier=tier, escalate=escalate, why=why,
                      votes=votes.counts(), share=round(votes.share, 4))

    async def tier0(self) -> StopReason | None:
        """The cheap answers, and why they end the run (None: they leave it unsure)."""
        ctx, cfg = self.ctx, self.cfg
        entry: dict[str, Any] = {"tier": 0, "kind": "greedy", "drawn": 0, "answers": [],
                                 "sources": []}
        makers: list[Callable[[], Awaitable[Candidate]]] = [self._prose]
        if cfg.program and not ctx.problem.is_code:
            makers.insert(0, lambda: self._program(entry))
            entry["program"] = ProgramRuns().model_dump()
        self.tiers.append(entry)
        refused = False
        if self.use_verifier:  # one at a time, the likelier first: a pass ends the run
            for make in makers:
                cand = await make()
                self._add(entry, cand)
                if await self._passes(cand):
                    self.decide(False, f"the verifier passed tier 0's {cand.source} answer")
                    return "verified"
        else:
            made, refused = await gather_within_budget(make() for make in makers)
            for answer in made:
                if answer is not None:
                    self._add(entry, answer)
        if refused:
            return "budget"
        votes = tally(ctx, self.answers)
        if not self.use_verifier and votes.top_votes >= 2:
            self.decide(False, f"the {len(self.answers)} cheap answers agree")
            return "consensus"
        self.decide(True, self._unsure_at_tier0())
        return None

    def _unsure_at_tier0(self) -> str:
        if self.use_verifier:
            return "the verifier passed no cheap answer"
        if len(self.answers) < 2:
            return "one cheap answer, none to agree with"
        shown = " vs ".join(repr(c.answer) if c.answer else f"none ({c.source})"
                            for c in self.answers)
        return f"the cheap answers disagree: {shown}"

    async def sample(self) -> StopReason:
        """Tiers 1 on: `sample_until_settled` draws the batches, this decides when to stop."""
        ctx, cfg = self.ctx, self.cfg
        rules = SamplingConfig(n=cfg.max_samples, adaptive=True, min_samples=cfg.batch_size,
                               batch_size=cfg.batch_size, agreement=cfg.agreement,
                               max_tokens=cfg.max_tokens, temperature=cfg.temperature)
        cheap = list(self.answers)

        async def draw(k: int) -> list[Candidate]:
            tier = len(self.tiers)
            replies = await ctx.generate("best_of_n/generate", n=k, max_tokens=cfg.max_tokens,
                                         temperature=cfg.temperature, step=f"tier {tier}",
                                         few_shot=cfg.few_shot)
            batch = ctx.candidates(replies, source=f"tier {tier}")
            entry: dict[str, Any] = {"tier": tier, "kind": "samples", "drawn": 0, "answers": []}
            self.tiers.append(entry)
            for cand in batch:
                self._add(entry, cand)
            return batch

        def settle(drawn: list[Candidate]) -> StopReason | None:
            return self._settle(cheap + drawn, len(drawn), rules)

        _, reason = await sample_until_settled(ctx, rules, draw, use_verifier=self.use_verifier,
                                               settle=settle)
        if reason == "verified":
            self.decide(False, f"the verifier passed a tier {len(self.tiers) - 1} sample")
        elif reason == "done":
            self.decide(False, f"max_samples ({cfg.max_samples}) drawn")
        return reason

    def _settle(self, answers: list[Candidate], drawn: int,
                rules: SamplingConfig) -> StopReason | None:
        """Why to stop after these answers (`drawn` of them samples), or None to escalate;
        every decision is noted."""
        cfg = self.cfg
        votes = tally(self.ctx, answers)
        top, total = votes.top_votes, len(answers)
        held = f"the top answer holds {top:g} of {total} votes ({votes.share:.2f})"
        settled = settled_by_vote(rules, votes, drawn)
        if settled == "consensus":
            self.decide(False, f"{held}, at least agreement={cfg.agreement}")
            return settled
        left = cfg.max_samples - drawn
        if left <= 0:  # sampling ends here anyway: `done`, unless the answers agree
            return None
        if settled == "majority":
            self.decide(False, f"{held}; its lead of {top - votes.runner_up_votes:g} over the "
                               f"runner-up outweighs the {left} samples left")
            return settled
        if total >= cfg.scatter_after and (top < 2 or votes.share <= cfg.scatter_share):
            scattered = "no two answers agree" if top < 2 else \
                f"{held}, at most scatter_share={cfg.scatter_share}"
            self.decide(False, f"the answers stay scattered: {scattered}")
            return "scattered"
        self.decide(True, f"{held}, under agreement={cfg.agreement}")
        return None

    async def _program(self, entry: dict[str, Any]) -> Candidate:
        """Tier 0's greedy zero-shot program: `program` with one program, repaired as it
        repairs, and no prose fallback (the prose answer is tier 0's other); its runs go
        into `entry`."""
        cfg = self.cfg
        ran = await self.ctx.run("program", {
            "n": 1, "temperature": 0.0, "few_shot": False, "fallback": False,
            "max_tokens": cfg.max_tokens, "max_repairs": cfg.max_repairs,
            "timeout_s": cfg.timeout_s})
        if (runs := ProgramRuns.of(ran)) is not None:
            entry["program"] = runs.model_dump()
        if ran.candidate is None:  # no program finished: the budget cut it short
            raise BudgetExhausted("the budget cut tier 0's program short")
        return ran.candidate

    async def _prose(self) -> Candidate:
        """Tier 0's greedy prose answer: `single`'s, verified there when there is a verifier."""
        answered = await self.ctx.run("single", {
            "max_tokens": self.cfg.max_tokens, "temperature": 0.0, "few_shot": self.cfg.few_shot})
        # `single` always gives a candidate; were it ever None, it would vote for nothing.
        return answered.candidate or self.ctx.candidate("", source="single", answer="")

    async def _passes(self, cand: Candidate) -> bool:
        """Whether the verifier passes `cand` (judged here unless already judged); an answer
        left empty (a program that printed nothing) is not worth a verdict."""
        if cand.verdict is None and cand.answer:
            await self.ctx.verify(cand)
        return cand.verdict is not None and cand.verdict.passed

    def _add(self, entry: dict[str, Any], cand: Candidate) -> None:
        self.answers.append(cand)
        entry["drawn"] += 1
        entry["answers"].append(cand.answer)
        if "sources" in entry:
            entry["sources"].append(cand.source)
