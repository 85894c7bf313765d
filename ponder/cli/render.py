"""What `ponder` draws on a terminal: a run's progress, its summary, result rows, one result in
detail with its trace as a timeline, and the strategies and verifiers on offer. Everything here
builds rich renderables; the CLI decides where they are printed.

Every text that came from a model, a problem file or a results file goes through `plain`: a
reply holding an escape sequence could otherwise retitle, clear or take over the terminal, and
an id holding a bidirectional override could print reversed."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args, get_origin

from rich.markup import escape
from rich.table import Table

from ponder.cli.cluster_view import cluster_lines
from ponder.cli.tree_view import tree_lines
from ponder.core.redact import redact_secrets

if TYPE_CHECKING:  # `ponder strategies` and `ponder show` must not load what `solve` needs
    from rich.console import Console
    from rich.progress import TaskID

    from ponder.core.types import Result, TraceEvent
    from ponder.runs.summary import RunTally, Summary
    from ponder.strategies.base import StrategySpec

ERRORS_SHOWN = 10  # distinct per-problem errors printed during a run; all are in the results
# How a run where gold chose among candidates is labelled, and the honest figure beside it.
GOLD_LABEL = "selected with gold (pass@k)"
HONEST_LABEL = "without gold (the vote)"

Shorten = Callable[[str], str]

# C0 controls but tab and newline, DEL, and C1 controls (0x9b is a one-byte CSI): each shown as
# its escape, `\x1b`, rather than acted on by the terminal.
_CONTROLS = {code: f"\\x{code:02x}" for code in (*range(0x20), *range(0x7f, 0xa0))
             if chr(code) not in "\t\n"}
# Bidirectional overrides, embeddings, isolates and marks: an id holding U+202E would print
# the rest of its line reversed, so `evil\u202eexe.txt` reads as `eviltxt.exe`, and the text
# after it, a verdict or another id, could be made to read as anything.
_CONTROLS.update({code: f"\\u{code:04x}" for code in (
    0x061c, 0x200e, 0x200f, *range(0x202a, 0x202f), *range(0x2066, 0x206a))})


def plain(text: str) -> str:
    """`text` as rich markup that prints as it is: control characters shown escaped, markup
    escaped, and credentials in URLs masked (results written before they were masked, too)."""
    return escape(redact_secrets(text.translate(_CONTROLS)))


class Reporter:
    """The progress bar and the per-problem errors on `console` while a run goes."""

    def __init__(self, tally: RunTally, total: int, *, console: Console, quiet: bool) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.tally = tally
        self.errors_shown: set[str] = set()
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[stats]}"), TimeElapsedColumn(), TextColumn("eta"),
            TimeRemainingColumn(), console=console, disable=quiet,
        )
        self.task: TaskID = self.progress.add_task(
            "solving", total=total, completed=tally.done, stats=self._stats())

    def stage(self, description: str) -> None:
        """Name what the run is doing now ("loading model", "solving")."""
        self.progress.update(self.task, description=description)

    def _stats(self) -> str:
        acc = self.tally.accuracy
        label = "pass@k" if self.tally.gold_selected else "acc"  # gold chose: see the summary
        parts = [f"{label} {acc:.1%}" if acc is not None else f"{label} –",
                 f"{self.tally.session_usage.total_tokens:,} tok",
                 f"{self.tally.tokens_per_s:,.0f} tok/s"]
        return " · ".join(parts)

    def on_result(self, result: Result) -> None:
        self.tally.add(result)
        self.progress.update(self.task, completed=self.tally.done, stats=self._stats())
        # Each error once: a server refusing every call fails every problem alike.
        if result.error and result.error not in self.errors_shown \
                and len(self.errors_shown) < ERRORS_SHOWN:
            self.errors_shown.add(result.error)
            more = " (further errors are in the results file)" \
                if len(self.errors_shown) == ERRORS_SHOWN else ""
            self.progress.console.print(
                f"[red]problem {plain(result.id)}:[/red] {plain(result.error)}{more}")


def summary_table(summary: Summary, results: Path | None = None,
                  trace: Path | None = None, *, timing: bool = True) -> Table:
    table = Table(title="ponder summary", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    done = f"{summary.done} / {summary.problems}"
    if summary.remaining:
        done += f" ({summary.remaining} remain)"
    if summary.resumed:
        done += f" ({summary.resumed} from earlier runs)"
    table.add_row("problems", done)
    if summary.judged:
        solved = f"{summary.solved} / {summary.judged} judged ({summary.accuracy or 0.0:.1%})"
        if summary.gold_selected:
            some = "" if summary.gold_selected >= summary.judged else \
                f" for {summary.gold_selected} of them"
            solved += f", {GOLD_LABEL}{some}"
        table.add_row("solved", solved)
        if summary.solved_without_gold is not None:
            table.add_row(HONEST_LABEL, f"{summary.solved_without_gold} / {summary.judged} "
                                        f"({summary.accuracy_without_gold or 0.0:.1%})")
    else:
        table.add_row("solved", "– (no gold answers or tests to judge by)")
    estimated = " (some estimated)" if summary.usage_estimated else ""
    table.add_row("tokens", f"{summary.total_tokens:,} ({summary.prompt_tokens:,} prompt + "
                            f"{summary.completion_tokens:,} completion){estimated}")
    if summary.cached_prompt_tokens:
        # Reported, not discounted: the tokens row and every budget count them in full.
        table.add_row("cached prompt", f"{summary.cached_prompt_tokens:,} of "
                                       f"{summary.prompt_tokens:,} prompt tokens "
                                       f"({summary.cached_share or 0.0:.0%}) served from the "
                                       "server's prefix cache")
    table.add_row("mean tokens", f"{summary.mean_tokens:,.0f} per problem")
    if summary.done:
        table.add_row("tokens per problem", f"min {summary.tokens_min:,} / median "
                                            f"{summary.tokens_median:,.0f} / max "
                                            f"{summary.tokens_max:,}")
    if summary.total_budget is not None:
        table.add_row("total budget", f"{summary.total_tokens:,} of {summary.total_budget:,} "
                                      f"spent ({summary.total_tokens / summary.total_budget:.0%})")
    if summary.budget_split is not None:
        from ponder.runs.budget_split import split_line  # pydantic: not for `--help`

        table.add_row("budget split", split_line(summary.budget_split))
    if summary.total_budget is not None or summary.got_extra:
        table.add_row("got extra", f"{summary.got_extra} problems (solved again by a second "
                                   "pass)")
    table.add_row("calls", f"{summary.calls:,}")
    if timing:
        table.add_row("wall time",
                      f"{summary.wall_s:.1f}s ({summary.tokens_per_s:,.0f} tok/s)")
    failures = ", ".join(f"{kind} {n}" for kind, n in summary.failures.items()) or "none"
    table.add_row("failures", failures)
    table.add_row("budget exhausted", str(summary.budget_exhausted))
    table.add_row("stop reasons", ", ".join(f"{k} {n}" for k, n in summary.stop_reasons.items()))
    compute = [f"stopped early {summary.stopped_early}", f"escalated {summary.escalated}"]
    if summary.samples:
        compute.append(f"{summary.samples:,} samples")
    table.add_row("compute", ", ".join(compute))
    if summary.unsandboxed or summary.sandbox == "none":
        table.add_row("no sandbox", f"model-written code ran unsandboxed (--sandbox none), "
                                    f"{summary.unsandboxed} verdicts among it")
    if results is not None:
        table.add_row("results", plain(str(results)))
    if trace is not None:
        table.add_row("trace", plain(str(trace)))
    return table


# -- strategies, verifiers --------------------------------------------------------------------


def strategy_params(spec: StrategySpec[Any]) -> dict[str, dict[str, Any]]:
    """Each parameter of `spec`'s config: its default, type and description."""
    return {name: {"default": field.get_default(call_default_factory=True),
                   "type": _type_name(field.annotation),
                   "description": field.description or ""}
            for name, field in spec.config.model_fields.items()}


def _type_name(annotation: Any) -> str:
    if get_origin(annotation) is Literal:
        return " | ".join(repr(arg) for arg in get_args(annotation))
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def strategies_table(specs: Sequence[StrategySpec[Any]]) -> Table:
    table = Table(title="strategies  (set a parameter with -p key=value)",
                  title_justify="left", show_lines=True)
    table.add_column("strategy", style="bold")
    table.add_column("description")
    table.add_column("parameters (default)")
    for spec in specs:
        params = "\n".join(
            f"{name}: {p['type']} = {p['default']!r}"
            + (f"  [dim]{plain(p['description'])}[/dim]" if p["description"] else "")
            for name, p in strategy_params(spec).items())
        table.add_row(spec.name, plain(spec.description), params)
    return table


def verifiers_table(rows: Sequence[tuple[str, str, str]]) -> Table:
    """A table of (name, source, description) rows."""
    table = Table(title="verifiers", title_justify="left",
                  caption="choose with --verifier NAME, module:attr or path/to/file.py:func; "
                          "by default from each problem's fields", caption_justify="left")
    table.add_column("verifier", style="bold")
    table.add_column("source")
    table.add_column("description")
    for name, source, description in rows:
        table.add_row(name, plain(source), plain(description))
    return table


# -- results and their traces -----------------------------------------------------------------


def shortener(limit: int | None) -> Shorten:
    """Cuts a text to `limit` characters, saying how many went; None keeps every text whole."""
    def shorten(text: str) -> str:
        if limit is None or len(text) <= limit:
            return text
        return f"{text[:limit]}… [{len(text) - limit} more chars]"
    return shorten


def rows_table(rows: Sequence[Result]) -> Table:
    table = Table(title="results", title_justify="left")
    for column in ("id", "answer", "verdict", "tokens", "calls", "seconds", "stop", "error"):
        table.add_column(column, justify="right" if column in ("tokens", "calls", "seconds")
                         else "left")
    for r in rows:
        table.add_row(plain(r.id), plain(_one_line(r.answer or "", 30)), _verdict_mark(r),
                      f"{r.usage.total_tokens:,}", str(r.usage.calls), f"{r.elapsed_s:.1f}",
                      r.stop_reason, plain(_one_line(r.error or "", 50)))
    return table


def _one_line(text: str, limit: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _verdict_mark(result: Result) -> str:
    if result.verdict is None:
        return "–"
    mark = "[green]✓[/green]" if result.verdict.passed else "[red]✗[/red]"
    return f"{mark} {result.verdict.score:.2f}"


def result_panel(r: Result, shorten: Shorten) -> Table:
    table = Table(title=f"problem {plain(r.id)}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    table.add_row("answer", plain(r.answer if r.answer is not None else "–"))
    if r.verdict is not None:
        verdict = f"{_verdict_mark(r)}"
        if r.verdict.feedback:
            verdict += f"  {plain(shorten(r.verdict.feedback))}"
        table.add_row("verdict", verdict)
    else:
        table.add_row("verdict", "– (no verifier)")
    estimated = " (estimated)" if r.usage.estimated else ""
    table.add_row("usage", f"{r.usage.total_tokens:,} tokens ({r.usage.prompt_tokens:,} prompt "
                           f"+ {r.usage.completion_tokens:,} completion) in {r.usage.calls} "
                           f"call(s){estimated}{_cached(r.usage.cached_prompt_tokens)}")
    if compute := _compute(r):
        table.add_row("compute", plain(compute))
    if (escalations := r.info.get("escalations")) and isinstance(escalations, list):
        table.add_row("escalations", plain(shorten("; ".join(map(str, escalations)))))
    if selection := _selection(r):
        table.add_row("selected by", plain(selection))
    table.add_row("elapsed", f"{r.elapsed_s:.2f}s")
    table.add_row("strategy", plain(f"{r.strategy} {json.dumps(r.params)}"))
    stop = r.stop_reason + (" (budget exhausted)" if r.budget_exhausted else "")
    table.add_row("stop", plain(stop))
    if r.error:
        table.add_row("error", f"[red]{plain(r.error)}[/red]")
    if r.info:
        table.add_row("info", plain(shorten(json.dumps(r.info, default=str))))
    if r.text is not None:
        table.add_row("reply", plain(shorten(r.text)))
    return table


def _cached(tokens: int) -> str:
    """The prompt tokens a server's prefix cache served, where it said any."""
    return f", {tokens:,} prompt cached" if tokens else ""


def _compute(r: Result) -> str:
    """The compute beyond tokens and calls: samples, the top answer's vote share, and `auto`'s
    tier and escalations."""
    info, parts = r.info, []
    if isinstance(info.get("samples"), int):
        parts.append(f"{info['samples']} samples")
    if isinstance(info.get("agreement"), int | float):
        parts.append(f"agreement {info['agreement']:.0%}")
    if isinstance(info.get("tier"), int):
        escalations = info.get("escalations")
        count = len(escalations) if isinstance(escalations, list) else 0
        parts.append(f"tier {info['tier']}, {count} escalation{'' if count == 1 else 's'}")
    return " · ".join(parts)


def _selection(r: Result) -> str:
    """Who chose among the candidates, where a verifier did, and how the vote alone fared."""
    by = r.info.get("selected_by")
    if not by:
        return ""
    label = "gold (pass@k)" if by == "gold" else str(by)
    vote = r.info.get("vote_correct")
    verdict = "not judged" if vote is None else "right" if vote else "wrong"
    return f"{label}; without it the vote answers {r.info.get('vote_answer')!r}: {verdict}"


def timeline_table(events: Sequence[TraceEvent], shorten: Shorten) -> Table:
    table = Table(title="timeline", title_justify="left", show_lines=True)
    table.add_column("t", justify="right")
    table.add_column("event")
    table.add_column("detail")
    t0 = events[0].ts
    for e in events:
        table.add_row(f"+{e.ts - t0:.2f}s", plain(f"{e.kind} {e.step}"), _event_detail(e, shorten))
    return table


def _event_detail(e: TraceEvent, shorten: Shorten) -> str:
    lines: list[str] = []
    if e.kind == "generate":
        head = [f"n={e.data.get('n', 1)}", f"max_tokens={e.data.get('max_tokens', '?')}",
                f"{e.usage.prompt_tokens}+{e.usage.completion_tokens} tok"
                + _cached(e.usage.cached_prompt_tokens), f"{e.latency_s:.2f}s"]
        if e.retries:
            head.append(f"{e.retries} retries")
        if e.data.get("replayed"):
            head.append("replayed from the first pass, free")
        lines.append(" · ".join(head))
        if e.messages:
            last = e.messages[-1]
            lines.append(f"[dim]{last.role}:[/dim] {plain(shorten(last.content))}")
        for i, c in enumerate(e.completions):
            label = f"reply {i + 1}" if len(e.completions) > 1 else "reply"
            lines.append(f"[cyan]{label}:[/cyan] {plain(shorten(c.text))}")
    elif e.kind == "verify" and e.verdict is not None:
        mark = "[green]passed[/green]" if e.verdict.passed else "[red]failed[/red]"
        answer = e.data.get("answer")
        lines.append(f"{mark} score {e.verdict.score:.2f}"
                     + (f" · answer {plain(shorten(str(answer)))}" if answer is not None else ""))
        if e.verdict.feedback:
            lines.append(plain(shorten(e.verdict.feedback)))
    elif e.kind == "execute" and "calls" in e.data:  # a candidate run on a problem's inputs
        lines.append(f"ran {e.data['calls']} calls in {e.latency_s:.2f}s, "
                     f"{e.data.get('failed', 0)} failed")
        lines.append(f"[dim]program:[/dim] {plain(shorten(str(e.data.get('code', ''))))}")
    elif e.kind == "execute":
        lines.append(f"ran {e.latency_s:.2f}s")
        lines.append(f"[dim]program:[/dim] {plain(shorten(str(e.data.get('code', ''))))}")
        lines.append(f"[cyan]output:[/cyan] {plain(shorten(str(e.data.get('output', ''))))}")
    elif e.kind == "note" and e.step == "mcts_tree":
        lines.extend(plain(line) for line in tree_lines(e.data.get("nodes")))
    elif e.kind == "note" and e.step == "clusters" and (drawn := cluster_lines(e.data)):
        lines.extend(plain(line) for line in drawn)
    elif e.data:
        lines.append(plain(shorten(json.dumps(e.data, default=str))))
    if e.error:
        lines.append(f"[red]{plain(e.error)}[/red]")
    return "\n".join(lines)
