"""A coding problem's checks, as strategies use them: the inputs every candidate runs on (the
examples the problem states, and tests the model writes), each candidate's behaviour on them,
and the clusters that choose among candidates (`ponder.code.behaviour`).

No gold reaches any of it: the examples come from `tests_public` or the problem's text
(`ponder.code.examples.public_examples` never reads `test` or `tests`), and what the model
sees is the problem's text alone.
"""

from __future__ import annotations

import ast
import asyncio
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, Field

from ponder.code.behaviour import STATED, Cluster, behaviour_of, passed, rank
from ponder.code.examples import Example, examples_from_asserts, grounded, public_examples
from ponder.code.probe import CallResult
from ponder.core.answers import extract_code
from ponder.core.errors import BudgetExhausted
from ponder.core.types import Behaviour, Candidate
from ponder.strategies.context import Context

# Inputs a candidate runs on, at most: a prompt's examples and the model's tests are a dozen
# or two; the cap keeps one sandbox run's worst case (each call timing out) bounded.
MAX_CALLS = 32


class CodeChecks(BaseModel):
    """How a coding strategy checks candidates (a part of its config)."""

    write_tests: int = Field(
        default=6, ge=0, le=20,
        description="coding problems: tests the model writes (one call), trusted below the "
                    "problem's own examples; 0: none")
    derive_examples: bool = Field(
        default=True,
        description="coding problems whose examples ponder cannot read: one call turns them "
                    "into asserts, kept only where every value is in the problem's text")
    tests_max_tokens: int = Field(default=384, gt=0,
                                  description="completion tokens for the tests call")
    per_call_s: float = Field(default=2.0, gt=0, le=60,
                              description="seconds each input may run")


async def gather_examples(ctx: Context, checks: CodeChecks,
                          spent: list[int] | None = None) -> list[Example]:
    """The problem's stated examples, then up to `write_tests` tests the model writes. The
    calls' tokens are added to `spent`."""
    stated = await stated_examples(ctx, checks, spent)
    return stated + await written_tests(ctx, checks, stated, spent)


async def stated_examples(ctx: Context, checks: CodeChecks,
                          spent: list[int] | None = None) -> list[Example]:
    """The examples the problem states: its `tests_public`, else those its text states, else
    (`derive_examples`) the model's rewriting of them as asserts, kept only where every value
    is in the text. A call the budget cannot pay for leaves none."""
    stated = public_examples(ctx.problem)
    if not stated and checks.derive_examples and ctx.problem.entry_point:
        try:
            derived = await _asserts(ctx, "code/derive", checks, "derived", spent)
        except BudgetExhausted:
            return []
        stated = [e for e in derived if grounded(e, ctx.problem.problem)]
        ctx.note("derived_examples", offered=len(derived), kept=len(stated))
    stated = stated[:MAX_CALLS]
    ctx.note("examples", origin="stated", examples=[e.model_dump() for e in stated])
    return stated


async def written_tests(ctx: Context, checks: CodeChecks, stated: Sequence[Example],
                        spent: list[int] | None = None) -> list[Example]:
    """Up to `write_tests` tests the model writes (one call), none calling what a stated
    example calls; none when the budget cannot pay for the call."""
    if not checks.write_tests or not ctx.problem.entry_point:
        return []
    try:
        written = await _asserts(ctx, "code/tests", checks, "model", spent,
                                 count=checks.write_tests)
    except BudgetExhausted:
        return []
    seen = {e.call for e in stated}
    written = [e for e in written if e.call not in seen]
    written = written[:min(checks.write_tests, MAX_CALLS - len(stated))]
    ctx.note("examples", origin="model", examples=[e.model_dump() for e in written])
    return written


async def _asserts(ctx: Context, template: str, checks: CodeChecks, origin: str,
                   spent: list[int] | None, **variables: Any) -> list[Example]:
    [reply] = await ctx.generate(template, max_tokens=checks.tests_max_tokens,
                                 temperature=0.0, step=template.replace("code/", "tests/"),
                                 **variables)
    if spent is not None:
        spent.append(reply.usage.total_tokens)
    entry = ctx.problem.entry_point or ""
    found = examples_from_asserts(only_asserts(extract_code(reply.text)),
                                  origin)  # type: ignore[arg-type]
    # Only the entry point applied to literals: a call the model wrote runs in the judge,
    # which never runs the model's code (an argument such as sum(range(10**10)) would stall
    # it, and __import__ would reach it).
    return [e for e in found if e.expected is not None and literal_call(e.call, entry)]


def only_asserts(code: str) -> str:
    """The top-level asserts of a reply's code, one per line: a model often writes its own
    function above its tests, and a block with other statements would be read as one check.
    Code that does not parse (a reply cut at max_tokens) is read line by line."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        lines = [line.strip() for line in code.splitlines()]
        return "\n".join(line for line in lines if line.startswith("assert ")
                         and _parses(line))
    return "\n".join(ast.unparse(node) for node in tree.body if isinstance(node, ast.Assert))


def _parses(line: str) -> bool:
    try:
        ast.parse(line)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return False
    return True


def literal_call(call: str, entry: str) -> bool:
    """Whether `call` is `entry(...)` with only literal arguments."""
    try:
        node = ast.parse(call, mode="eval").body
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id == entry):
            return False
        for arg in [*node.args, *(k.value for k in node.keywords)]:
            ast.literal_eval(arg.value if isinstance(arg, ast.Starred) else arg)
    except (SyntaxError, ValueError, TypeError, MemoryError, RecursionError):
        return False
    return all(k.arg is not None for k in node.keywords)


async def behaviours(ctx: Context, candidates: Sequence[Candidate], examples: Sequence[Example],
                     checks: CodeChecks) -> list[Behaviour | None]:
    """Each candidate's behaviour on `examples` (see `run_all`)."""
    return [behaviour for behaviour, _ in await run_all(ctx, candidates, examples, checks)]


async def run_all(ctx: Context, candidates: Sequence[Candidate], examples: Sequence[Example],
                  checks: CodeChecks) -> list[tuple[Behaviour | None, list[CallResult]]]:
    """Each candidate's behaviour on `examples` and its calls' results, one sandbox run per
    distinct program (run at once, as the sandbox's slots allow); (None, []) for a candidate
    with no code, or when there are no examples to run."""
    if not examples:
        return [(None, [])] * len(candidates)
    calls = [e.call for e in examples]
    programs: dict[str, int] = {}
    for candidate in candidates:
        if candidate.answer.strip():
            programs.setdefault(candidate.answer, len(programs))
    runs = await asyncio.gather(*(ctx.probe(code, calls, per_call_s=checks.per_call_s)
                                  for code in programs))
    by_code = {code: (behaviour_of(runs[i].results, examples), runs[i].results)
               for code, i in programs.items()}
    return [by_code.get(c.answer, (None, [])) if c.answer.strip() else (None, [])
            for c in candidates]


def note_clusters(ctx: Context, examples: Sequence[Example], clusters: Sequence[Cluster]) -> None:
    """The clusters in the trace, best first, with the tests each passed: what `ponder show`
    draws."""
    ctx.note("clusters", tests=[{"call": e.call, "expected": e.expected, "origin": e.origin}
                                for e in examples],
             clusters=[c.model_dump() for c in clusters])


def example_counts(examples: Sequence[Example]) -> dict[str, int]:
    """How many examples the problem stated and how many the model wrote, for `info`."""
    stated = sum(1 for e in examples if e.origin in STATED)
    return {"stated": stated, "written": len(examples) - stated}


def cluster_summary(clusters: Sequence[Cluster]) -> list[dict[str, Any]]:
    """The first eight clusters as `info` records them: size, tests passed, score."""
    return [{"size": len(c.members), "public_passed": c.public_passed,
             "public_total": c.public_total, "model_passed": c.model_passed,
             "model_total": c.model_total, "score": c.score} for c in clusters[:8]]


async def select_by_behaviour(ctx: Context, checks: CodeChecks, samples: Sequence[Candidate],
                              ) -> tuple[Candidate | None, list[Behaviour | None], dict[str, Any]]:
    """The sample the best behaviour cluster puts first (None: nothing ran), every sample's
    behaviour, and what `info` records of the choice."""
    spent: list[int] = []
    examples = await gather_examples(ctx, checks, spent)
    found = await behaviours(ctx, samples, examples, checks)
    clusters = rank(found)
    note_clusters(ctx, examples, clusters)
    info: dict[str, Any] = {
        "tokens": sum(spent),
        "examples": example_counts(examples), "clusters": cluster_summary(clusters),
        "probe_s": round(ctx.probe_s, 3)}
    winner = samples[clusters[0].members[0]] if clusters else None
    return winner, found, info


async def run_examples(ctx: Context, candidate: Candidate, examples: Sequence[Example],
                       checks: CodeChecks) -> tuple[Behaviour | None, list[CallResult]]:
    """One candidate run on `examples`: its behaviour (None with no code or no examples) and
    each call's result, for feedback."""
    if not examples or not candidate.answer.strip():
        return None, []
    probed = await ctx.probe(candidate.answer, [e.call for e in examples],
                             per_call_s=checks.per_call_s)
    return behaviour_of(probed.results, examples), probed.results


def settled(behaviour: Behaviour | None, *, model_share: float = 0.5) -> bool:
    """Whether a candidate needs no more work: it passes every stated example (there must be
    one, or a model-written test), and the model's tests do not contradict it, which with
    tests often wrong means it passes at least `model_share` of them."""
    if behaviour is None or not (behaviour.public or behaviour.model):
        return False
    if not all(behaviour.public):
        return False
    if not behaviour.model:
        return True
    return behaviour.model_passed >= model_share * len(behaviour.model)


def failures(examples: Sequence[Example], results: Sequence[CallResult], *,
             stated_only: bool, limit: int = 3) -> str:
    """The failed examples as the model reads them: the call, the value expected, and what
    came back (a value, an exception, a timeout). Stated examples first; the model's own
    tests only where `stated_only` is off, and labelled as possibly wrong."""
    if len(results) != len(examples):
        return ""
    lines: list[str] = []
    order = sorted(range(len(examples)), key=lambda i: examples[i].origin not in STATED)
    for i in order:
        example, result = examples[i], results[i]
        if passed(result, example):
            continue
        if stated_only and example.origin not in STATED:
            continue
        label = {"model": " (a test you wrote earlier: it may itself be wrong)",
                 "derived": " (rewritten from the problem's examples)"}.get(example.origin, "")
        if result.timed_out:
            got = "it did not finish in time (an infinite loop, or too slow)"
        elif result.error is not None:
            got = f"it raised {result.error}" + (f" ({result.where})" if result.where else "")
        else:
            got = f"it returned {_clip(repr(result.value))}"
        want = "to run without an error" if example.expected is None \
            else f"expected {_clip(example.expected)}"
        lines.append(f"- {_clip(example.call)}{label}\n  {want}; {got}")
        if len(lines) == limit:
            break
    return "\n".join(lines)


def _clip(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"
