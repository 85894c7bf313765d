"""Running code ponder does not trust: a model's program (`Context.execute`) or a candidate
against its tests (`unit_tests`), each in a run of its own with its own ids, namespaces and
limits (see docs/trust.md).

This package's names are the sandbox's API:

>>> result = await Sandbox().run({"main.py": "print(2 + 2)"}, "main.py", limits=Limits())
>>> shared_sandbox()  # the process's own, which every verifier shares
>>> Sandbox(isolation=Isolation.none())  # no sandbox at all, for trusted code only

Inside: `runner` (the `Sandbox`), `run` (one run of a program), `limits` (`Limits` and
`SandboxResult`), `isolation` (what this machine allows), `leftovers` (killing what a run left
behind), and two scripts run by path in the sandbox, `boot.py` (each run's setup) and
`harness.py` (the unit-test judge).
"""

from pathlib import Path
from typing import TYPE_CHECKING

from ponder.core.lazy import lazy_names

if TYPE_CHECKING:
    from ponder.core.errors import SandboxUnavailable
    from ponder.sandbox.isolation import Isolation
    from ponder.sandbox.limits import Limits, SandboxResult, program_error
    from ponder.sandbox.runner import SANDBOX_ENV, Sandbox, shared_sandbox

# The judge that runs a candidate's tests; run by path inside the sandbox (the verifier
# imports only its `DEFINITIONS`).
HARNESS = Path(__file__).with_name("harness.py")

# Public name -> the module that defines it, loaded on first use (PEP 562): whatever imports
# the package, or a module of it such as `isolation`, does not pay for pydantic and the runner.
_LAZY: dict[str, str] = {
    "Isolation": "ponder.sandbox.isolation",
    "Limits": "ponder.sandbox.limits",
    "program_error": "ponder.sandbox.limits",
    "SANDBOX_ENV": "ponder.sandbox.runner",
    "Sandbox": "ponder.sandbox.runner",
    "SandboxResult": "ponder.sandbox.limits",
    "SandboxUnavailable": "ponder.core.errors",
    "shared_sandbox": "ponder.sandbox.runner",
}


__getattr__, __dir__ = lazy_names(__name__, _LAZY, globals())


__all__ = [
    "HARNESS",
    "SANDBOX_ENV",
    "Isolation",
    "Limits",
    "Sandbox",
    "SandboxResult",
    "SandboxUnavailable",
    "program_error",
    "shared_sandbox",
]
