"""`auto` on a coding problem with no verifier: escalate only while execution leaves it unsure.

Tier 0: one greedy solution, run on the problem's stated examples: if it passes them all,
the run ends (`examples_pass`). Only then does the model write tests (one more call), which
end the run too where the problem states no example and the greedy solution passes them.

Tier 1 on: samples from one `n=` request, `batch_size` at a time up to `max_samples`, every
program run once on the same inputs and clustered by behaviour (`ponder.code.behaviour`),
until the best cluster's program is settled. Then:

- where the two best clusters pass the same stated examples but disagree on an input, the
  model reads the specification and says which output is right for it (S*, Li et al. 2025;
  `distinguish`), and its choice goes first;
- a best program that still fails an example is debugged on the failures
  (`ponder.strategies.self_debug`, `debug_rounds` rewrites).

No gold is read: the examples are those the problem states (`tests_public` or its text).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ponder.code.behaviour import Cluster, behaviour_of, rank
from ponder.code.examples import Example
from ponder.code.probe import CallResult
from ponder.core.errors import BudgetExhausted
from ponder.core.replies import has_marker
from ponder.core.types import Behaviour, Candidate, Outcome, StopReason
from ponder.strategies.code_checks import (
    CodeChecks,
    cluster_summary,
    example_counts,
    note_clusters,
    run_all,
    run_examples,
    settled,
    stated_examples,
    written_tests,
)
from ponder.strategies.context import Context
from ponder.strategies.sampling import vote_info
from ponder.strategies.self_debug import debug
from ponder.strategies.voting import tally


@dataclass(frozen=True)
class CodePlan:
    """What `auto`'s config says of its escalation on a coding problem."""

    max_tokens: int
    temperature: float
    batch_size: int
    max_samples: int
    debug_rounds: int
    distinguish: bool
    judge_max_tokens: int


async def auto_code(ctx: Context, checks: CodeChecks, plan: CodePlan) -> Outcome:
    """See the module. `info`: `tier`, `tiers` (per tier: `kind`, `drawn`), `stopped` (why,
    in words), `examples` (stated, written), `clusters` (the final ranking's first eight),
    `distinguished` (the S* judgement, where one was made), `debugging` (the versions), and
    the vote's fields as `best_of_n` records them, with each sample's `behaviour`."""
    run = _CodeRun(ctx, checks, plan)
    reason: StopReason = "done"
    try:
        reason = await run.solve()
    except BudgetExhausted:
        reason = "budget"
        run.stopped = run.stopped or "the budget ran out"
    winner = run.winner()
    votes = tally(ctx, run.answers)
    # Tier 0 may end before its answer ran on every input: it then records no behaviour.
    found = run.found + [None] * (len(run.answers) - len(run.found))
    sampled = vote_info(ctx, run.answers, votes, found)
    return ctx.finish(winner, reason, **sampled.model_dump(), tier=len(run.tiers) - 1,
                      tiers=run.tiers, stopped=run.stopped, probe_s=round(ctx.probe_s, 3),
                      **run.info)


class _CodeRun:
    def __init__(self, ctx: Context, checks: CodeChecks, plan: CodePlan) -> None:
        self.ctx, self.checks, self.cfg = ctx, checks, plan
        self.answers: list[Candidate] = []
        self.found: list[Behaviour | None] = []
        self.examples: list[Example] = []
        self.results: list[list[CallResult]] = []  # each answer's calls, as `found`
        self.tiers: list[dict[str, Any]] = []
        self.info: dict[str, Any] = {}
        self.stopped = ""
        self.chosen: Candidate | None = None

    def decide(self, escalate: bool, why: str) -> None:
        if not escalate:
            self.stopped = why
        self.ctx.note("escalation", tier=len(self.tiers) - 1, escalate=escalate, why=why)

    def winner(self) -> Candidate | None:
        if self.chosen is not None:
            return self.chosen
        clusters = rank(self.found)
        if clusters:
            return self.answers[clusters[0].members[0]]
        return self.answers[0] if self.answers else None

    async def solve(self) -> StopReason:
        ctx, cfg = self.ctx, self.cfg
        self.tiers.append({"tier": 0, "kind": "greedy", "drawn": 1})
        [reply] = await ctx.generate("single/answer", max_tokens=cfg.max_tokens,
                                     temperature=0.0, step="tier 0")
        self.answers.append(ctx.candidate(reply.text, source="greedy", usage=reply.usage))
        # The stated examples alone judge the greedy solution: on problems 0-49 of HumanEval
        # a greedy solution that passed them passed the hidden tests 33 times in 34, and the
        # model's tests (a call's tokens) are written only for a problem that goes on.
        self.examples = await stated_examples(ctx, self.checks)
        greedy = self.answers[0]
        behaviour, results = await run_examples(ctx, greedy, self.examples, self.checks)
        if behaviour is not None and all(behaviour.public):
            self.info["examples"] = example_counts(self.examples)
            self.decide(False, "the greedy solution passes the problem's examples")
            return "examples_pass"
        written = await written_tests(ctx, self.checks, self.examples)
        self.examples += written
        self.info["examples"] = example_counts(self.examples)
        if not self.examples:
            self.decide(False, "no example to run and no test written: the greedy answer stands")
            return "done"
        if greedy.answer.strip():  # only the model's tests are new to it
            results += (await run_examples(ctx, greedy, written, self.checks))[1]
            behaviour = behaviour_of(results, self.examples)
        self.found.append(behaviour)
        self.results.append(results)
        if settled(behaviour):
            self.decide(False, "the greedy solution passes the model's tests")
            return "examples_pass"
        while len(self.answers) - 1 < cfg.max_samples:
            self.decide(True, "no program passes the examples yet")
            await self._sample(min(cfg.batch_size, cfg.max_samples - len(self.answers) + 1))
            if settled(self._top_behaviour()):
                break
        clusters = rank(self.found)
        note_clusters(ctx, self.examples, clusters)
        self.info["clusters"] = cluster_summary(clusters)
        if cfg.distinguish and len(clusters) > 1:
            await self._distinguish(clusters[0], clusters[1])
        best = self.winner()
        assert best is not None
        at = self.answers.index(best)
        if settled(self.found[at]):
            self.decide(False, "the best cluster's program passes the examples")
            return "examples_pass"
        if cfg.debug_rounds == 0:
            self.decide(False, "no program passes the examples; no debugging asked for")
            return "done"
        self.decide(False, "debugging the best cluster's program")
        debugged = await debug(ctx, best, self.examples, self.checks, rounds=cfg.debug_rounds,
                               max_tokens=cfg.max_tokens, ran=(self.found[at], self.results[at]))
        self.info["debugging"] = debugged.versions
        self.chosen = debugged.best
        return debugged.reason

    def _top_behaviour(self) -> Behaviour | None:
        clusters = rank(self.found)
        return self.found[clusters[0].members[0]] if clusters else None

    async def _sample(self, k: int) -> None:
        ctx, cfg = self.ctx, self.cfg
        tier = len(self.tiers)
        replies = await ctx.generate("best_of_n/generate", n=k, max_tokens=cfg.max_tokens,
                                     temperature=cfg.temperature, step=f"tier {tier}")
        batch = ctx.candidates(replies, source=f"tier {tier}")
        self.tiers.append({"tier": tier, "kind": "samples", "drawn": len(batch)})
        self.answers.extend(batch)
        for behaviour, results in await run_all(ctx, batch, self.examples, self.checks):
            self.found.append(behaviour)
            self.results.append(results)
        if len(batch) < k:
            raise BudgetExhausted("the budget gave fewer samples than asked")

    async def _distinguish(self, first: Cluster, second: Cluster) -> None:
        """S*: where the two best clusters pass the same stated examples and disagree on an
        input, the model says which output is right; its pick goes first."""
        if first.public_passed != second.public_passed:
            return
        a, b = self.answers[first.members[0]], self.answers[second.members[0]]
        runs = [self.results[first.members[0]], self.results[second.members[0]]]
        if len(runs[0]) != len(self.examples) or len(runs[1]) != len(self.examples):
            return
        # Only an input the problem states no answer for is worth the model's judgement (a
        # stated example's answer is known), and only where one of them returned a value.
        split = next((i for i, (x, y) in enumerate(zip(*runs, strict=True))
                      if self.examples[i].origin == "model" and x.key() != y.key()
                      and (x.ok or y.ok)), None)
        if split is None:
            return
        shown = [_shown(r[split]) for r in runs]
        [reply] = await self.ctx.generate(
            "code/judge", max_tokens=self.cfg.judge_max_tokens, temperature=0.0,
            step="distinguish", call=self.examples[split].call, first=shown[0],
            second=shown[1])
        pick = _choice(reply.text)
        self.info["distinguished"] = {"call": self.examples[split].call, "outputs": shown,
                                      "choice": pick}
        self.ctx.note("distinguish", call=self.examples[split].call, outputs=shown,
                      choice=pick)
        if pick == "B":
            self.chosen = b
        elif pick == "A":
            self.chosen = a

def _shown(result: CallResult) -> str:
    if result.timed_out:
        return "(does not finish)"
    if result.error is not None:
        return f"raises {result.error}"[:300]
    return repr(result.value)[:300]


def _choice(text: str) -> str | None:
    """The judge's "Correct: A" or "Correct: B", read from its last such line."""
    for line in reversed(text.strip().splitlines()):
        if has_marker(line, "Correct:"):
            tail = line.rsplit(":", 1)[-1].strip().strip("*.` ").upper()
            if tail in ("A", "B"):
                return tail
    return None

