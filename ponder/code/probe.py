"""Running one candidate program on many inputs: `run_calls` evaluates each call (`"f(3)"`,
or a block of statements) against the candidate in ONE sandbox run, each call with a time
of its own, and says what each did (`CallResult`: a value, an exception, or a timeout).

The sandbox runs the harness's `probe` mode (`ponder/sandbox/harness.py`): as in the
`unit_tests` verifier's isolated mode, the calls are evaluated by a judge that never runs the
candidate's code, the candidate's functions answer over a pipe from a process of their own,
and values cross as plain data, so what comes back is fresh builtin objects whatever the
candidate's code did. Each call runs in a forked child of the candidate's process, killed
when its time is up: an input the candidate hangs on times out alone, and one call's side
effects never reach the next.
"""

from __future__ import annotations

import decimal
import json
import math
import secrets
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict

from ponder.core.errors import PonderError
from ponder.core.types import Problem
from ponder.sandbox import HARNESS, Limits, Sandbox, SandboxResult, shared_sandbox
from ponder.sandbox.harness import decode
from ponder.verifiers.unit_tests import problem_code, program_for

# The program's start (the sandbox's, the interpreter's) and the judge's report, and then its
# load (imports included): neither is any call's time.
_START_S = 5.0
_LOAD_S = 5.0
_TEXT_LIMIT = 400
REFUSED = "report refused"
# Ints longer than this go into a key as hex: str() of one past 4300 digits raises.
_EXACT_BITS = 13_000


class CallResult(BaseModel):
    """What one call did: returned `value` (plain data), raised (`error`, "TypeError: ..."),
    or ran out of time (`timed_out`)."""

    model_config = ConfigDict(frozen=True)

    value: Any = None
    error: str | None = None
    timed_out: bool = False
    where: str | None = None  # for an error the candidate's code raised: the line that did

    @property
    def ok(self) -> bool:
        return self.error is None and not self.timed_out

    def key(self) -> str:
        """The behaviour as a canonical string: equal values share one (a set's members and a
        dict's items in a fixed order, floats to 6 significant digits, ints and integral
        floats alike, as Python's `==` has them; bool and int apart, and list and tuple, as a
        test may tell them apart), errors by their exception's type only, timeouts as one."""
        if self.timed_out:
            return "!timeout"
        if self.error is not None:
            return "!" + (self.error.split(":", 1)[0].strip() or "error")
        return json.dumps(_canonical(self.value), separators=(",", ":"))


class ProbeRun(BaseModel):
    """A candidate's results on the calls, in their order. `load_error` when its code did not
    compile or load (every result then fails with it)."""

    results: list[CallResult]
    load_error: str | None = None
    seconds: float = 0.0
    sandbox_id: str = ""


async def run_calls(problem: Problem, code: str, calls: Sequence[str], *,
                    sandbox: Sandbox | None = None, per_call_s: float = 2.0,
                    limits: Limits | None = None) -> ProbeRun:
    """Evaluate each of `calls` against the candidate `code` (shaped as the `unit_tests`
    verifier shapes it: a HumanEval body is appended to the prompt), in one sandbox run.

    Each call has `per_call_s`; the run as a whole has enough for every call to time out in
    turn (`limits.timeout_s` when larger), and `limits.cpu_s` bounds each process (each
    call's own). Equal calls run once. A report the judge did not write whole, with its nonce,
    and exit cleanly after, is refused: every call fails with "report refused"."""
    if not calls:
        return ProbeRun(results=[])
    if not per_call_s > 0:
        raise PonderError(f"per_call_s must be positive, got {per_call_s}")
    unique = list(dict.fromkeys(calls))
    program, _ = program_for(problem, code)
    margin = 0.5 + per_call_s / 4  # the judge's patience beyond a call's time (`_judge_probe`)
    base = limits or Limits()
    # Each call may cost its time, the margin the judge waits for the reply, and the margin
    # its own alarm adds on top.
    needed = _START_S + _LOAD_S + len(unique) * (per_call_s + 2 * margin)
    limits = base.model_copy(update={"timeout_s": max(base.timeout_s, needed)})
    nonce = secrets.token_hex(16)
    secret = {"calls": unique, "entry_point": problem.entry_point,
              "problem_code": problem_code(problem), "nonce": nonce, "per_call_s": per_call_s,
              "margin_s": margin, "load_s": _LOAD_S}
    result = await (sandbox or shared_sandbox()).run(
        {"harness.py": HARNESS.read_text(), "solution.py": program}, "harness.py",
        limits=limits, args=("probe",), secret=json.dumps(secret).encode(),
        peer=("harness.py", "candidate"))
    if result.setup_error is not None:
        raise PonderError(f"the probe sandbox failed to start: {result.setup_error}")
    run = _read(result, nonce, len(unique))
    by_call = dict(zip(unique, run.results, strict=True))
    return run.model_copy(update={"results": [by_call[call] for call in calls]})


def _read(result: SandboxResult, nonce: str, count: int) -> ProbeRun:
    """The judge's report as results, failing closed."""
    def every(outcome: CallResult, load_error: str | None = None) -> ProbeRun:
        return ProbeRun(results=[outcome] * count, load_error=load_error,
                        seconds=round(result.seconds, 3), sandbox_id=result.run_id)

    if result.timed_out:  # past a limit that let every call time out: the load, most likely
        return every(CallResult(timed_out=True))
    report = _load_report(result.report)
    if result.report_error is not None or report is None or result.exit_code != 0 \
            or report.get("nonce") != nonce:
        return every(CallResult(error=REFUSED))
    phase = report.get("phase")
    if phase in ("compile", "load"):
        error = _clip(str(report.get("error") or phase))
        if isinstance(report.get("candidate"), dict):
            error = f"the program stopped as it loaded: {error}"
        if report.get("timeout") is True:
            return every(CallResult(timed_out=True), error)
        return every(CallResult(error=error), error)
    results = report.get("results")
    if phase != "probe" or not isinstance(results, list) or len(results) != count:
        return every(CallResult(error=REFUSED))
    return ProbeRun(results=[_result(item) for item in results],
                    seconds=round(result.seconds, 3), sandbox_id=result.run_id)


def _result(item: Any) -> CallResult:
    if not isinstance(item, dict):
        return CallResult(error=REFUSED)
    if item.get("timeout") is True:
        return CallResult(timed_out=True)
    if isinstance(item.get("error"), str):
        where = item.get("where")
        return CallResult(error=_clip(item["error"]),
                          where=_clip(where) if isinstance(where, str) else None)
    if "value" in item:
        try:
            return CallResult(value=decode(item["value"]))
        except ValueError:
            return CallResult(error=f"{REFUSED}: a value that is not plain data")
    return CallResult(error=REFUSED)


def _load_report(raw: bytes) -> dict[str, Any] | None:
    """One JSON object, or None. Its ints may be longer than `int()` takes from a string by
    default (the judge has no such limit)."""
    try:
        report = json.loads(raw.decode("utf-8"), parse_int=_int)
    except (ValueError, RecursionError):
        return None
    return report if isinstance(report, dict) else None


def _int(digits: str) -> int:
    try:
        return int(digits)
    except ValueError:  # past sys.get_int_max_str_digits(); Decimal has no such limit
        return int(decimal.Decimal(digits))


def _canonical(value: Any) -> Any:
    """`value` as JSON that equal values share."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return value if value.bit_length() <= _EXACT_BITS else {"int": hex(value)}
    if isinstance(value, float):
        return _number(value)
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    if isinstance(value, tuple):
        return {"tuple": [_canonical(v) for v in value]}
    if isinstance(value, set | frozenset):
        return {"set": sorted((_canonical(v) for v in value), key=_order)}
    if isinstance(value, dict):
        return {"dict": sorted(([_canonical(k), _canonical(v)] for k, v in value.items()),
                               key=_order)}
    return {"repr": repr(value)}  # no plain data: only a CallResult built by hand holds one


def _number(x: float) -> Any:
    if math.isnan(x):
        return {"float": "nan"}
    if math.isinf(x):
        return {"float": "inf" if x > 0 else "-inf"}
    rounded = float(f"{x:.6g}")
    if rounded.is_integer() and abs(rounded) < 2 ** 53:
        return int(rounded)  # 3.0 and 3 are equal, and 2.9999999 prints as 3
    return rounded


def _order(item: Any) -> str:
    return json.dumps(item, sort_keys=True)


def _clip(text: str) -> str:
    return text if len(text) <= _TEXT_LIMIT else text[: _TEXT_LIMIT - 1] + "…"

