"""`ponder serve`: strategies behind an OpenAI-compatible chat endpoint (docs/serve.md)."""

from __future__ import annotations

import logging
from contextlib import suppress
from typing import Annotated

import typer

from ponder.cli.options import (
    EXIT_FAILED,
    SERVE_BUDGET_CALLS,
    SERVE_BUDGET_SECONDS,
    SERVE_BUDGET_TOKENS,
    SERVE_CLIENT_TIMEOUT_S,
    SERVE_MAX_CONNECTIONS,
    SERVE_MAX_TRACE_MB,
    SERVE_PROGRAM_SECONDS,
    ApiKeyEnv,
    BackoffMax,
    BaseUrls,
    LocalModel,
    ModelName,
    ModelPath,
    RequestTimeout,
    SandboxChoice,
    Templates,
    UsageError,
    backend_spec,
    err,
    fail,
    log_to_stderr,
    parse_params,
    use_sandbox,
)
from ponder.cli.render import plain


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
    request_timeout: RequestTimeout = None,
    retries: Annotated[int | None, typer.Option(
        min=0, help="retries per model call (a server)")] = None,
    backoff_max: BackoffMax = None,
    templates: Templates = None,
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
        fail([f"--log-level {log_level!r}: choose debug, info, warning or error"])
    # --log-level is ponder's and uvicorn's; libraries stay at warnings (httpx would log
    # every upstream call at info).
    use_sandbox(sandbox)
    log_to_stderr(logging.WARNING)
    logging.getLogger("ponder").setLevel(getattr(logging, level))
    try:
        import uvicorn

        from ponder.serve.app import create_app, server_config
        from ponder.session import Session
    except ImportError as exc:
        fail([f"ponder serve needs starlette and uvicorn ({exc}); pip install starlette "
              "uvicorn"], code=EXIT_FAILED)
    try:
        params = parse_params(param or [])
        budget = Budget(tokens=budget_tokens, calls=budget_calls, seconds=budget_seconds)
        spec = backend_spec(base_url, model, model_path, api_key_env, request_timeout,
                            retries, backoff_max, local_model=local_model)
    except UsageError as exc:
        fail(exc.lines)
    try:
        session = Session(spec, strategy=strategy, params=params, budget=budget,
                          templates_dir=templates)
        server = create_app(session=session, model=served_model_name or model or "ponder",
                            api_key=api_key, max_traces=max_traces,
                            max_trace_bytes=max(1, int(max_trace_mb * 1024 * 1024)),
                            program_seconds=max_program_seconds,
                            client_timeout_s=client_timeout)
        config = server_config(server, host=host, port=port, log_level=level.lower(),
                               client_timeout_s=client_timeout,
                               max_connections=max_connections)
    except ConfigError as exc:
        fail([str(exc)])
    if api_key is None and host not in ("127.0.0.1", "localhost", "::1"):
        err.print(f"[yellow]warning:[/yellow] listening on {plain(host)} with no --api-key: "
                  "anyone who can reach it spends your model's compute")
    running = uvicorn.Server(config)
    with suppress(KeyboardInterrupt):  # Ctrl-C is how a server stops
        running.run()
    if not running.started:  # uvicorn has logged why (the port in use, ...)
        fail(["the server did not start"], code=EXIT_FAILED)
