"""Connecting to Ray: `cluster` (a local cluster for one run, or one that exists), the
watchdog that cleans up after a driver killed mid-run, and `import_ray`, the one place Ray is
imported (`import ponder.ray` does not: Ray loads when a run needs it)."""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

from ponder.core.errors import ConfigError, MissingDependency, PonderError
from ponder.core.redact import redact_secrets

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'ponder[ray]'"
WATCHDOG_EXIT_S = 5.0  # how long a driver waits for its watchdog at a clean exit


def import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise MissingDependency(f"running on Ray needs the 'ray' extra; run: {INSTALL_HINT}") \
            from exc
    return ray


@contextlib.contextmanager
def cluster(address: str = "local", *, num_cpus: int | None = None,
            **init_options: Any) -> Iterator[None]:
    """Connected to Ray for the block. "local" starts a cluster on this machine (`num_cpus`,
    default all) that ends with the block, or with this process however it ends: Ray ends its
    own servers with the process, and a watchdog (`ponder.ray.watchdog`) the helpers that
    outlive a killed one. "auto" joins the cluster `ray start` made here, and any other
    address is Ray's (`ray://host:10001`, `host:6379`); leaving disconnects, and the workers
    this process started there end with it. When Ray is already initialised in this process,
    that connection is used and left as it is.

    >>> with cluster("local", num_cpus=2):
    ...     rows = solve_dataset(ray.data.from_items(problems), backend=url).take_all()
    """
    ray = import_ray()
    if ray.is_initialized():
        yield
        return
    options = {"logging_level": logging.WARNING, **init_options}
    watchdog = None
    try:
        if address == "local":
            # A cluster started for one run reports nothing to Ray's usage-stats server
            # unless the user's environment asks for it.
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
            watchdog = _start_watchdog()
            _init(ray, address, num_cpus=num_cpus, include_dashboard=False, **options)
            _ask_scan(watchdog)
        else:
            if num_cpus is not None:
                raise ConfigError("num_cpus is for a local cluster; a cluster joined has "
                                  "the CPUs it was started with")
            _init(ray, address, **options)
        yield
    finally:
        if ray.is_initialized():
            ray.shutdown()
        if watchdog is not None:
            _stop_watchdog(watchdog)


def cluster_cpus() -> int:
    """The CPUs of the connected cluster (at least 1): one worker each by default."""
    return max(1, int(import_ray().cluster_resources().get("CPU", 1)))


def _init(ray: Any, address: str, **options: Any) -> None:
    try:
        ray.init(address=address, **options)
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
        raise PonderError(f"Ray at {redact_secrets(address)!r}: {exc}") from None


def _start_watchdog() -> subprocess.Popen[bytes]:
    # Its own session: a Ctrl-C to the terminal or a kill of this process's group must not
    # take it down with the driver it is there to clean up after.
    return subprocess.Popen([sys.executable, "-m", "ponder.ray.watchdog", str(os.getpid())],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            start_new_session=True)


def _ask_scan(watchdog: subprocess.Popen[bytes]) -> None:
    """Have the watchdog note Ray's processes now, not half a second on. A watchdog gone is
    a safety net gone, not a reason to stop the run."""
    assert watchdog.stdin is not None
    try:
        watchdog.stdin.write(b"scan\n")
        watchdog.stdin.flush()
    except OSError:
        log.warning("the Ray watchdog (pid %d) has exited; if this process is killed, Ray's "
                    "helper processes may outlive it by a minute", watchdog.pid)


def _stop_watchdog(watchdog: subprocess.Popen[bytes]) -> None:
    """Close its pipe (it stops what Ray left running) and wait for it to finish."""
    assert watchdog.stdin is not None
    with contextlib.suppress(OSError):
        watchdog.stdin.close()
    try:
        watchdog.wait(WATCHDOG_EXIT_S)
    except subprocess.TimeoutExpired:
        log.warning("the Ray watchdog (pid %d) is still stopping Ray's processes",
                    watchdog.pid)
