"""`ponder show`: a results file's rows, or one row in detail with its trace as a timeline."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ponder.cli.options import default_trace, fail, out
from ponder.cli.render import (
    plain,
    result_panel,
    rows_table,
    shortener,
    summary_table,
    timeline_table,
)
from ponder.core.errors import PonderError


def show(
    results: Annotated[Path, typer.Argument(help="a results JSONL written by `ponder solve`")],
    problem_id: Annotated[str | None, typer.Option("--id", help="one problem in detail")]
    = None,
    trace: Annotated[Path | None, typer.Option(
        help="its trace JSONL; default <results>.trace.jsonl")] = None,
    full: Annotated[bool, typer.Option("--full", help="do not shorten texts")] = False,
) -> None:
    """One problem's answer, verdict, usage and trace as a timeline; without --id, every row."""
    from ponder.core.tracing import last_attempt, read_trace_jsonl
    from ponder.runs.results_reader import read_results
    from ponder.runs.summary import RunTally

    if not results.is_file():
        fail([f"{results}: no such results file"])
    try:
        rows = read_results(results)
    except PonderError as exc:
        fail([str(exc)])
    if problem_id is None:
        # An id's last row is its result (a total budget's second pass supersedes the first).
        latest = list({r.id: r for r in rows}.values())
        out.print(rows_table(latest))
        tally = RunTally(len(latest))
        for row in latest:
            tally.add(row)
        out.print(summary_table(tally.summary(), timing=False))
        return
    matches = [r for r in rows if r.id == problem_id]
    if not matches:
        some = ", ".join(r.id for r in rows[:5])
        fail([f"{results}: no row with id {problem_id!r} (ids include {some})"])
    row = matches[-1]
    shorten = shortener(None if full else 400)
    out.print(result_panel(row, shorten))
    trace_path = trace or default_trace(results)
    if not trace_path.is_file():
        out.print(f"[dim]no trace at {plain(str(trace_path))}; `ponder solve` writes one "
                  "unless --no-trace[/dim]")
        return
    try:
        events = last_attempt(read_trace_jsonl(trace_path, problem_id))
    except PonderError as exc:
        fail([str(exc)])
    if not events:
        out.print(f"[dim]{plain(str(trace_path))} has no events for {plain(problem_id)}[/dim]")
        return
    out.print(timeline_table(events, shorten))
