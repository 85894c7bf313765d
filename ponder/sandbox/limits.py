"""What one sandbox run may use (`Limits`), and how it ended (`SandboxResult`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Limits(BaseModel):
    """What one run may use.

    >>> Limits(timeout_s=5, memory_mb=512)
    """

    model_config = ConfigDict(frozen=True)

    timeout_s: float = Field(default=10.0, gt=0, description="wall clock for the whole run")
    cpu_s: int = Field(default=10, gt=0, description="CPU seconds, per process")
    memory_mb: int = Field(default=2048, gt=0,
                           description="address space per process, and the run's memory cgroup")
    file_size_mb: int = Field(default=16, gt=0, description="largest file or output written")
    processes: int = Field(default=32, gt=1,
                           description="the run's pids (its cgroup), or RLIMIT_NPROC")
    open_files: int = Field(default=256, gt=16)
    disk_mb: int = Field(default=64, gt=0,
                         description="each writable tmpfs of a minimal root: /work, /tmp, /dev/shm")
    output_bytes: int = Field(default=16_384, gt=0, description="output kept, from the end")
    report_bytes: int = Field(default=1 << 20, gt=0,
                              description="a longer report is no report: the run fails closed")


@dataclass
class SandboxResult:
    """How a run ended. `report` is what the program wrote to its report file descriptor:
    all of it, or nothing when it held more than `Limits.report_bytes` (`report_error` says
    so), since a prefix is not the report."""

    run_id: str
    exit_code: int | None
    signal: int | None
    timed_out: bool
    seconds: float
    output: str
    report: bytes
    isolation: dict[str, Any]
    leftovers_killed: int = 0
    peak_processes: int | None = None  # the most the run had at once, where the cgroup says
    setup_error: str | None = None
    limits: dict[str, Any] = field(default_factory=dict)
    report_error: str | None = None


def program_error(result: SandboxResult, limits: Limits) -> str | None:
    """Why a program gave no answer, in words for a repair prompt; None when it printed one."""
    tail = "\n".join(result.output.strip().splitlines()[-12:])
    if result.setup_error is not None:
        return f"the sandbox could not start: {result.setup_error}"
    if result.timed_out:
        return f"it did not finish within {limits.timeout_s:g}s (an infinite loop?)"
    if result.signal is not None:
        return f"it was killed by signal {result.signal} (too much time or memory)\n{tail}"
    if result.exit_code != 0:
        return tail or f"it exited with code {result.exit_code}"
    if not tail:
        return "it printed nothing; print the final answer"
    return None
