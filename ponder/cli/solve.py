"""`ponder solve`: every problem of a file through one `Session` (or on Ray workers), one
result row per problem as it finishes, then the summary and an exit code that says how the
run went (docs/cli.md)."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from contextlib import ExitStack, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ponder.cli.options import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_REFUSED,
    EXIT_ROW_ERRORS,
    LOCAL_SLOTS,
    MAX_FIELD_BYTES,
    REMOTE_CONCURRENCY,
    SANDBOX_ENV,
    ApiKeyEnv,
    BackoffMax,
    BaseUrls,
    BudgetTokens,
    LocalModel,
    ModelName,
    ModelPath,
    Quiet,
    RequestTimeout,
    SandboxChoice,
    Templates,
    UsageError,
    backend_spec,
    drain_notice,
    err,
    fail,
    in_flight,
    log_to_stderr,
    out,
    use_sandbox,
)
from ponder.cli.plan import Plan, check_total, make_plan
from ponder.cli.render import Reporter, plain, summary_table
from ponder.core.errors import PonderError

if TYPE_CHECKING:
    from ponder.backends.spec import BackendSpec
    from ponder.ray.run import SolveJob
    from ponder.session import Session


def solve(
    problems: Annotated[Path, typer.Argument(help="JSONL, JSON array or YAML problem file")],
    strategy: Annotated[str, typer.Option("-s", "--strategy", help="see `ponder strategies`")]
    = "single",
    param: Annotated[list[str] | None, typer.Option(
        "-p", "--param", help="strategy parameter key=value (repeat); values parse as JSON")]
    = None,
    effort: Annotated[str | None, typer.Option(
        help="low, medium or high: picks the strategy and its parameters (-p overrides "
             "them; not with -s); see ponder.strategies.effort")] = None,
    verifier: Annotated[str | None, typer.Option(
        help="NAME, module:attr or file.py:func; default: from each problem's fields")] = None,
    allow_code_verifiers: Annotated[bool, typer.Option(
        "--allow-code-verifiers",
        help="let the problem file's rows name module:attr or file.py:func verifiers, which "
             "run code; only for a file you trust")] = False,
    max_field_bytes: Annotated[int, typer.Option(
        min=1, help="the largest field a problem file may hold; a JSONL line, or a JSON or "
                    "YAML file, over 16 times this is refused unparsed")] = MAX_FIELD_BYTES,
    base_url: BaseUrls = None,
    model: ModelName = None,
    model_path: ModelPath = None,
    local_model: LocalModel = None,
    api_key_env: ApiKeyEnv = None,
    budget_tokens: BudgetTokens = None,
    total_budget_tokens: Annotated[int | None, typer.Option(
        min=1, help="tokens for the whole run, never exceeded (a resumed run counts what its "
                    "results file spent): a first pass gives every problem an even share, "
                    "then what is left goes to the problems the budget stopped unsettled, most "
                    "promising first")] = None,
    first_share: Annotated[float | None, typer.Option(
        # No typer bounds: its help would print 0.0<=x<=1.0, but 0 is refused (check_total).
        help="with --total-budget-tokens: the share of it (above 0, at most 1) the first pass "
             "spreads evenly over the problems; default 1.0 (an equal split, then what it "
             "leaves to the unsettled)")] = None,
    max_calls: Annotated[int | None, typer.Option(min=1, help="model calls per problem")]
    = None,
    timeout: Annotated[float | None, typer.Option(
        min=0.001, help="wall-clock seconds per problem")] = None,
    request_timeout: RequestTimeout = None,
    retries: Annotated[int | None, typer.Option(
        min=0, help="retries per model call (a server); default 5, or 1 each for several "
                    "--base-url (a failed call moves to another)")] = None,
    backoff_max: BackoffMax = None,
    concurrency: Annotated[int | None, typer.Option(
        min=1, help=f"problems in flight; default {LOCAL_SLOTS} (embedded model; with --ray, "
                    f"per worker) or {REMOTE_CONCURRENCY} per --base-url")] = None,
    ray_address: Annotated[str | None, typer.Option(
        "--ray", metavar="ADDRESS",
        help="solve on Ray workers: 'local' starts a cluster here that ends with this run, "
             "'auto' joins the one `ray start` made, else ray://HOST:PORT or HOST:PORT; this "
             "process writes the results (needs the ray extra; see docs/ray.md)")] = None,
    ray_workers: Annotated[int | None, typer.Option(
        min=1, help="with --ray: worker processes, one CPU each; default one per CPU of the "
                    "cluster")] = None,
    out_path: Annotated[Path | None, typer.Option(
        "-o", "--out", help="results JSONL; default <problems>.<strategy>.results.jsonl")]
    = None,
    resume: Annotated[bool, typer.Option(
        "--resume", help="carry on a stopped run: skip problems the results file has")] = False,
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="replace an existing results file")] = False,
    retry_errors: Annotated[bool, typer.Option(
        "--retry-errors", help="with --resume: solve again the problems that failed")] = False,
    trace: Annotated[Path | None, typer.Option(
        help="trace JSONL; default beside the results, <results>.trace.jsonl")] = None,
    no_trace: Annotated[bool, typer.Option("--no-trace", help="record no trace")] = False,
    templates: Templates = None,
    seed: Annotated[int | None, typer.Option(help="sampling seed")] = None,
    quiet: Quiet = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
    sandbox: SandboxChoice = "isolated",
) -> None:
    """Solve every problem in a file, one result line per problem as it finishes."""
    from ponder.core.budget import Budget

    use_sandbox(sandbox)
    log_to_stderr(logging.ERROR if quiet else logging.WARNING)
    # The results file and trace stay locked from before they are read until the run ends.
    with ExitStack() as locks:
        try:
            if ray_workers is not None and ray_address is None:
                raise UsageError("--ray-workers goes with --ray")
            check_total(total_budget_tokens, first_share, ray=ray_address is not None,
                        retry_errors=retry_errors)
            plan = make_plan(
                problems, strategy=strategy, effort=effort, param=param or [],
                verifier=verifier, budget=Budget(tokens=budget_tokens, calls=max_calls,
                                                 seconds=timeout),
                templates=templates, out_path=out_path, trace=trace, no_trace=no_trace,
                resume=resume, overwrite=overwrite, retry_errors=retry_errors,
                total_tokens=total_budget_tokens, first_share=first_share,
                allow_code_verifiers=allow_code_verifiers, max_field_bytes=max_field_bytes,
                locks=locks)
            spec = backend_spec(base_url, model, model_path, api_key_env, request_timeout,
                                retries, backoff_max, local_model=local_model)
            if ray_address is None:
                from ponder.session import Session

                # Made here, before the run's clock starts: making a server's client loads
                # its SDK, which is start-up, not solving.
                session = Session(spec, verifier=plan.verifiers, budget=plan.budget,
                                  prompts=plan.prompts, seed=seed,
                                  concurrency=in_flight(base_url, concurrency))

                def run(reporter: Reporter) -> None:
                    if _solve_here(plan, session, reporter=reporter):
                        raise KeyboardInterrupt  # stopped early: reported as interrupted
            else:
                job = _ray_job(plan, spec, verifier, templates, seed)
                # A server's calls in flight are the server's to bear, however many workers
                # make them; an embedded model's slots are per process, so per worker.
                ray_in_flight = concurrency or (REMOTE_CONCURRENCY * len(base_url) if base_url
                                                else None)

                def run(reporter: Reporter) -> None:
                    _solve_on_ray(plan, job, ray_address, workers=ray_workers,
                                  concurrency=ray_in_flight, reporter=reporter)
        except UsageError as exc:
            fail(exc.lines)
        except PonderError as exc:  # another run holds the files, or their locks cannot be made
            fail([str(exc)], code=EXIT_FAILED)
        _report(plan, run, quiet=quiet, as_json=as_json)


def _solve_here(plan: Plan, session: Session, *, reporter: Reporter) -> bool:
    """Solve the plan's problems in `session`, closing it after; whether a first Ctrl-C
    stopped it early."""
    import asyncio

    from ponder.runs.interrupt import first_interrupt_drains
    from ponder.runs.solve_many import run_files

    async def solving() -> bool:
        stop = asyncio.Event()
        reporter.stage("loading model")  # the embedded model: once, before any problem
        try:  # not `async with`: it would leave the backend open when starting it fails
            await session.start()
            reporter.stage("solving")
            reporter.tally.solving_since = time.monotonic()
            # Only now: a Ctrl-C while the model loads stops at once, with nothing in flight.
            with first_interrupt_drains(stop, drain_notice), \
                    run_files(plan.out, plan.trace) as (writer, sink):
                await session.run(
                    plan.to_solve, session.solver(plan.spec, plan.config, trace=sink),
                    total_tokens=plan.total_tokens, first_share=plan.first_share,
                    previous=plan.previous, writer=writer, on_result=reporter.on_result,
                    on_second_pass=lambda waiting: reporter.stage(f"second pass ({waiting})"),
                    stop=stop)
        finally:
            await session.aclose()
        return stop.is_set()

    return asyncio.run(solving())


def _ray_job(plan: Plan, backend: BackendSpec, verifier: str | None,
             templates: Path | None, seed: int | None) -> SolveJob:
    """What each Ray worker needs to solve as this run would: specs, not live objects. Paths
    go absolute, since a worker may not start where this process did."""
    from ponder.ray.run import SolveJob

    if verifier is not None:
        target, sep, attr = verifier.rpartition(":")
        if sep and target.endswith(".py"):
            verifier = f"{Path(target).resolve()}:{attr}"
    return SolveJob(plan.spec, plan.config, backend, verifier=verifier, budget=plan.budget,
                    templates_dir=None if templates is None else str(templates.resolve()),
                    seed=seed, trace=plan.trace is not None)


def _solve_on_ray(plan: Plan, job: SolveJob, address: str, *, workers: int | None,
                  concurrency: int | None, reporter: Reporter) -> None:
    """`plan` solved on Ray workers; this process writes the results and trace, through the
    same `record_rows` as a local run."""
    import asyncio

    from ponder.ray.run import cluster, cluster_cpus, solve_on_ray
    from ponder.runs.solve_many import record_rows, run_files

    if not plan.todo:  # a finished run resumed: no cluster to start
        return
    reporter.stage("starting Ray")
    with cluster(address), ExitStack() as stack:
        workers = workers or cluster_cpus()
        at_once = concurrency or LOCAL_SLOTS * workers
        writer, sink = stack.enter_context(run_files(plan.out, plan.trace))
        reporter.stage("solving")
        reporter.tally.solving_since = time.monotonic()
        asyncio.run(record_rows(
            lambda emit: solve_on_ray(plan.todo, job, workers=workers, concurrency=at_once,
                                      emit=emit, trace_sink=sink),
            writer=writer, on_result=reporter.on_result))


def _report(plan: Plan, run: Callable[[Reporter], None], *, quiet: bool,
            as_json: bool) -> None:
    """Run a checked plan (`run`, here or on Ray) with progress, print its summary, and exit
    with the code that says how it went."""
    from ponder.runs.refusals import BackendRefused
    from ponder.runs.summary import RunTally

    if not quiet:
        _warn_resumed(plan)
    tally = RunTally(len(plan.problems), plan.previous, total_budget=plan.total_tokens,
                     sandbox=os.environ.get(SANDBOX_ENV, "isolated"))
    reporter = Reporter(tally, len(plan.problems), console=err, quiet=quiet)
    interrupted, refused = False, None
    try:
        with reporter.progress if plan.todo else nullcontext():
            run(reporter)
    except KeyboardInterrupt:
        interrupted = True
    except BackendRefused as exc:
        refused = exc
    except PonderError as exc:  # the model, Ray or a worker would not start; a full disk
        fail([str(exc)], code=EXIT_FAILED)
    summary = tally.summary(interrupted=interrupted)
    if as_json:
        payload = {**summary.model_dump(), "results_path": str(plan.out),
                   "trace_path": str(plan.trace) if plan.trace else None}
        print(json.dumps(payload, indent=2))
    elif not quiet:
        out.print(summary_table(summary, plan.out, plan.trace))
    if interrupted:
        err.print(f"interrupted: {summary.remaining} of {summary.problems} problems remain; "
                  f"run again with --resume to finish them")
        raise typer.Exit(EXIT_INTERRUPTED)
    # A total budget's count would lose what failed rows spent: they cannot be solved again.
    retry = "--resume" if plan.total_tokens is not None else "--resume --retry-errors"
    if refused is not None:
        fail([f"{refused}; once the backend is right, run the same command with {retry} "
              f"(the failed rows are in {plan.out})"], code=EXIT_REFUSED)
    if summary.errors:
        again = "" if plan.total_tokens is not None else \
            f"; run the same command with {retry} to solve them again"
        fail([f"{summary.errors} of {summary.done} problems failed (their rows are in "
              f"{plan.out}){again}"], code=EXIT_ROW_ERRORS)


def _warn_resumed(plan: Plan) -> None:
    if plan.previous:
        err.print(f"resuming {plain(str(plan.out))}: {len(plan.previous)} done, "
                  f"{len(plan.todo)} to go")
    if plan.changed:
        edited = (f"1 problem ({plain(plan.changed[0])}) was edited since its row was written; "
                  "solving it again" if len(plan.changed) == 1 else
                  f"{len(plan.changed)} problems (e.g. {plain(plan.changed[0])}) were edited "
                  "since their rows were written; solving them again")
        err.print(f"[yellow]warning:[/yellow] {edited}")
    params = plan.config.model_dump()
    other = [r for r in plan.previous if r.strategy != plan.spec.name or r.params != params]
    if other:
        err.print(f"[yellow]warning:[/yellow] {len(other)} earlier rows were made with another "
                  f"strategy or parameters (e.g. {plain(other[0].strategy)} "
                  f"{plain(json.dumps(other[0].params))})")
