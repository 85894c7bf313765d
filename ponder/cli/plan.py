"""`ponder solve`'s checks, all made before the first model call: the strategy and its
parameters, the verifier, the problem file, the results and trace files (locked, then read
for a resume), and the options that cannot go together. Any failure is a `UsageError`."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ponder.cli.options import UsageError, default_trace, parse_params
from ponder.core.errors import PonderError, ProblemFileError

if TYPE_CHECKING:
    from ponder.core.budget import Budget
    from ponder.core.types import Problem, Result
    from ponder.prompts import PromptLibrary
    from ponder.strategies.base import StrategyConfig, StrategySpec
    from ponder.verifiers import Verifier, VerifierChoice


@dataclass(frozen=True)
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
    total_tokens: int | None  # the whole run's budget (`ponder.runs.allocation`)
    first_share: float | None  # of it, spread evenly over the first pass

    @property
    def to_solve(self) -> list[Problem]:
        """What the run is given: the problems still to do; under a total budget every
        problem, since the total is spread over them all (those with a row in `previous`
        are not solved again, and what they spent counts against it)."""
        return self.problems if self.total_tokens is not None else self.todo


def default_out(problems: Path, strategy: str) -> Path:
    return Path(f"{problems.stem}.{strategy}.results.jsonl")


def check_total(total: int | None, first_share: float | None, *, ray: bool,
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


def make_plan(problems_path: Path, *, strategy: str, effort: str | None, param: Sequence[str],
              verifier: str | None, budget: Budget, templates: Path | None,
              out_path: Path | None, trace: Path | None, no_trace: bool, resume: bool,
              overwrite: bool, retry_errors: bool, total_tokens: int | None,
              first_share: float | None, allow_code_verifiers: bool, max_field_bytes: int,
              locks: ExitStack) -> Plan:
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
        choice = VerifierChoice(load_verifier(verifier) if verifier else None)
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
                todo, previous, changed, total_tokens, first_share)


def load_verifier(spec: str) -> Verifier:
    from ponder.verifiers import get_verifier

    try:
        return get_verifier(spec)
    except PonderError:
        raise
    except Exception as exc:  # a user's verifier file may fail to import in any way
        raise UsageError(f"--verifier {spec!r} cannot be loaded: {type(exc).__name__}: {exc}")\
            from None


def _is_nonempty(path: Path | None) -> bool:
    return path is not None and path.is_file() and path.stat().st_size > 0
