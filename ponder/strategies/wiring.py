"""`Wiring`: what one problem is solved with besides its strategy. The run's parts travel as
this one value from whoever wires a run (`Session`, `Solver`) to the `Context`, rather than as
the same nine arguments threaded through every layer between them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ponder.core.budget import Budget

if TYPE_CHECKING:
    from ponder.backends.base import Backend
    from ponder.core.budget import RunMeter
    from ponder.core.calibration import PromptCalibration
    from ponder.core.replay import Replay
    from ponder.core.tracing import TraceSink
    from ponder.prompts import PromptLibrary
    from ponder.verifiers.base import Verifier


@dataclass(frozen=True)
class Wiring:
    """`backend` answers the calls, within `budget` (and the whole run's `run_meter`, when a
    run has one); `prompts` render them; `verifier` judges candidates; `seed` makes sampling
    repeatable; `trace_sink` receives every event; `replay` answers calls an earlier run of
    the problem already paid for (`ponder.core.replay`); `calibration` is the prompt bounds
    the run's calls learn (`ponder.core.calibration`), one for all its problems (None: the
    problem's own)."""

    backend: Backend
    budget: Budget = field(default_factory=Budget)
    prompts: PromptLibrary | None = None
    verifier: Verifier | None = None
    seed: int | None = None
    trace_sink: TraceSink | None = None
    run_meter: RunMeter | None = None
    replay: Replay | None = None
    calibration: PromptCalibration | None = None
