"""`ponder bench`: reads and checks the runs asked for, hands them to
`ponder.bench.loop.run_bench`, draws each run's progress and says how the bench went."""

from __future__ import annotations

import logging
import shlex
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from ponder.cli.options import (
    BACKEND_FLAGS,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_REFUSED,
    EXIT_ROW_ERRORS,
    LOCAL_SLOTS,
    REMOTE_CONCURRENCY,
    ApiKeyEnv,
    BaseUrls,
    BudgetTokens,
    ModelName,
    ModelPath,
    Quiet,
    SandboxChoice,
    Templates,
    UsageError,
    backend_spec,
    drain_notice,
    err,
    fail,
    in_flight,
    log_to_stderr,
    use_sandbox,
)
from ponder.cli.render import Reporter, plain
from ponder.core.errors import PonderError, ProblemFileError

if TYPE_CHECKING:
    from ponder.bench.loop import Bench
    from ponder.bench.spec import Run
    from ponder.core.types import Result


def bench(
    problems: Annotated[Path, typer.Argument(help="problems with gold (an answer, or tests)")],
    run: Annotated[list[str], typer.Option(
        "--run", help='SPEC: a strategy and key=value parameters; a comma list sweeps one '
                      '("best_of_n n=1,2,4,8 temperature=0.7"); also label=, verifier=gold '
                      '(gold picks: pass@k), local_model=NAME. Repeat for more lines')],
    out_dir: Annotated[Path, typer.Option(
        "-o", "--out", help="folder for curve.csv, curve.md, curve.png and the cached runs")],
    limit: Annotated[int | None, typer.Option(min=1, help="the first N problems")] = None,
    offset: Annotated[int, typer.Option(min=0, help="skip the first K problems")] = 0,
    base_url: BaseUrls = None,
    model: ModelName = None,
    model_path: ModelPath = None,
    api_key_env: ApiKeyEnv = None,
    budget_tokens: BudgetTokens = None,
    concurrency: Annotated[int | None, typer.Option(
        min=1, help=f"problems in flight; default {LOCAL_SLOTS} (embedded model) or "
                    f"{REMOTE_CONCURRENCY} per --base-url")] = None,
    templates: Templates = None,
    seed: Annotated[int, typer.Option(help="sampling seed")] = 0,
    title: Annotated[str | None, typer.Option(help="the plot's and table's title")] = None,
    x_axis: Annotated[str, typer.Option(
        "--x", help="the plot's x axis: tokens (per problem), or compute (FLOPs: 2 × "
                    "parameters × tokens, to compare models of different sizes)")] = "tokens",
    model_params: Annotated[float | None, typer.Option(
        min=1, help="--base-url's model's parameter count, for --x compute (the embedded "
                    "models' are known)")] = None,
    by: Annotated[str | None, typer.Option(
        help="a problem field (e.g. difficulty) to break each point's accuracy and tokens "
             "down by, in curve.md and curve_by.csv")] = None,
    paired_with: Annotated[list[str] | None, typer.Option(
        "--paired-with", metavar="LABEL",
        help="also compare every point problem by problem with the first point of this label "
             "(the first point always is); repeat for more")] = None,
    cached: Annotated[bool, typer.Option(
        "--cached", help="solve nothing: draw the curve from the rows already cached (after "
                         "a change to scoring, or to look at a bench that is far from done)"
    )] = False,
    quiet: Quiet = False,
    sandbox: SandboxChoice = "isolated",
) -> None:
    """Work-precision curves: accuracy (scored by gold) against tokens per problem, for each
    --run. A sweep over best_of_n's n (or selector, keep, confidence_metric) draws the
    largest n once and chooses again from that pool for the rest. Runs are cached in
    DIR/runs/: run the same command again to resume a stopped bench, or add --run lines to
    extend it."""
    import asyncio

    from ponder.bench.loop import backend_for, run_bench
    from ponder.bench.run import check_gold
    from ponder.bench.spec import GOLD, parse_spec, plan_runs
    from ponder.core.budget import Budget
    from ponder.prompts import PromptLibrary
    from ponder.runs.interrupt import first_interrupt_drains
    from ponder.runs.problem_files import load_problems
    from ponder.runs.refusals import BackendRefused
    from ponder.runs.run_lock import ResultsLocked

    use_sandbox(sandbox)
    log_to_stderr(logging.ERROR if quiet else logging.WARNING)
    try:
        try:
            points = [point for spec in run for point in parse_spec(spec)]
            runs = plan_runs(points)
            prompts = PromptLibrary(templates)
            # Gold-chosen points are pass@k, never a baseline for an accuracy.
            labels = list(dict.fromkeys(p.label for p in points if p.verifier != GOLD))
            for label in paired_with or ():
                if label not in labels:
                    raise PonderError(f"--paired-with {label!r}: no --run without "
                                      f"verifier=gold has that label (the labels: "
                                      f"{', '.join(labels)})")
        except PonderError as exc:
            raise UsageError(str(exc)) from None
        try:
            loaded = load_problems(problems)
        except ProblemFileError as exc:
            raise UsageError(*exc.errors) from None
        chosen = loaded[offset:None if limit is None else offset + limit]
        if not chosen:
            raise UsageError(f"{problems}: no problems left after --offset {offset}")
        spec = backend_spec(base_url, model, model_path, api_key_env, None, None, None)
        try:
            for each in runs:  # every run's model is known good before the first is solved
                backend_for(spec, each).check(BACKEND_FLAGS)
            check_gold(chosen, str(problems))
        except PonderError as exc:
            raise UsageError(str(exc)) from None
        if x_axis not in ("tokens", "compute"):
            raise UsageError(f"--x {x_axis!r}: choose tokens or compute")
        groups = None if by is None else {
            p.id: str(p.metadata[by]) for p in chosen if p.metadata.get(by) is not None}
        if by is not None and not groups:
            raise UsageError(f"--by {by}: none of the chosen problems in {problems} has the "
                             f"field {by!r}")
        if out_dir.exists() and not out_dir.is_dir():
            raise UsageError(f"-o {out_dir}: that is a file; name a folder")
        out_dir.mkdir(parents=True, exist_ok=True)
        # The command that solves the rows, which is what a reader needs to make them again.
        command = "ponder bench " + " ".join(
            shlex.quote(a) for a in sys.argv[2:] if a != "--cached")

        async def benching() -> Bench:
            stop = asyncio.Event()
            with nullcontext() if cached else first_interrupt_drains(stop, drain_notice):
                return await run_bench(
                    chosen, runs, out_dir, spec,
                    title=title or f"{problems.name}: {len(chosen)} problems",
                    command=command, x_axis=x_axis, by=by, groups=groups,
                    paired_with=paired_with or (),
                    model_params=model_params, budget=Budget(tokens=budget_tokens),
                    prompts=prompts, seed=seed, concurrency=in_flight(base_url, concurrency),
                    # The embedded model's slots are shared by a call's samples; a server's,
                    # or an explicit --concurrency, are left as asked.
                    samples_in_flight=None if (base_url or concurrency) else LOCAL_SLOTS,
                    cached=cached, stop=stop,
                    watcher=_Progress(len(chosen), len(runs), quiet=quiet))

        done = asyncio.run(benching())
    except UsageError as exc:
        fail(exc.lines)
    except ResultsLocked as exc:
        fail([str(exc)], code=EXIT_FAILED)
    except KeyboardInterrupt:
        _interrupted()
    except BackendRefused as exc:
        fail([f"{exc}; the curve holds the runs before it: once the backend is right, the "
              "same command carries on (and solves the failed rows again)"], code=EXIT_REFUSED)
    except PonderError as exc:
        fail([str(exc)], code=EXIT_FAILED)
    _report(done, out_dir, quiet=quiet)


def _report(done: Bench, out_dir: Path, *, quiet: bool) -> None:
    """Say what the bench drew, and exit with the code that says how it went."""
    for warning in done.warnings:
        err.print(f"[yellow]warning:[/yellow] {plain(warning)}")
    if not quiet:
        for p in done.points:
            err.print(f"{plain(p.label)} {plain(p.params)} [{plain(p.selection)}]: "
                      f"{p.correct}/{p.problems} ({p.accuracy:.0%}), "
                      f"{p.mean_tokens:.0f} tokens/problem"
                      + (" (subsampled)" if p.subsampled else ""))
        err.print(f"wrote {plain(str(out_dir / 'curve.csv'))}, curve.md"
                  + ("" if done.warnings else ", curve.png"))
    if done.stopped:  # after the curve of the rows so far was written
        _interrupted()
    if done.failed_rows:
        rows = "1 row" if done.failed_rows == 1 else f"{done.failed_rows} rows"
        fail([f"{rows} failed, counted wrong in the curve (the errors are in "
              f"{out_dir / 'runs'}); the same command solves them again"],
             code=EXIT_ROW_ERRORS)


def _interrupted() -> NoReturn:
    err.print("interrupted: finished rows are kept; run the same command to resume")
    raise typer.Exit(EXIT_INTERRUPTED)


class _Progress:
    """The bench's `Watcher`: each run's progress bar on stderr, and its rows found cached."""

    def __init__(self, problems: int, runs: int, *, quiet: bool) -> None:
        self.problems, self.runs, self.quiet = problems, runs, quiet
        self.name = ""
        self.reporter: Reporter | None = None

    def run_began(self, number: int, run: Run) -> None:
        from ponder.runs.summary import RunTally

        self.name = f"[{number}/{self.runs}] {plain(run.strategy)} " + " ".join(
            f"{k}={v}" for k, v in run.params.items() if k != "max_tokens")
        self.reporter = Reporter(RunTally(self.problems), self.problems, console=err,
                                 quiet=self.quiet)
        self.reporter.progress.start()
        self.reporter.stage(self.name[:60])

    def rows_found(self, run: Run, previous: list[Result], todo: int) -> None:
        from ponder.runs.summary import RunTally

        assert self.reporter is not None  # the run began
        self.reporter.tally = RunTally(self.problems, previous)
        self.reporter.progress.update(self.reporter.task, completed=len(previous))
        if not self.quiet and previous:
            err.print(f"{self.name}: {len(previous)} rows cached, {todo} to solve")

    def on_result(self, row: Result) -> None:
        assert self.reporter is not None
        self.reporter.on_result(row)

    def run_ended(self, run: Run) -> None:
        assert self.reporter is not None
        self.reporter.progress.stop()
