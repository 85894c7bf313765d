"""What `ponder bench --run SPEC` asks for: a SPEC is a strategy name and `key=value`
parameters, where a comma list sweeps a parameter (`"best_of_n n=1,2,4,8 temperature=0.7"`).

A SPEC expands to points; points that differ only in how they choose among samples share one
pool of samples (`Run`), drawn once at the largest `n` and re-chosen offline for the others
(`ponder.strategies.sample_pool`). Every other point is a run of its own.

A SPEC may begin with `effort=low|medium|high` instead of a strategy: the tier's strategy and
parameters (`ponder.strategies.effort`), labelled with the effort, further parameters
overriding them.

Keys that are not the strategy's own: `label=` names the line on the plot, `verifier=gold`
lets the problem's gold choose among candidates (the figure is then pass@k, and labelled so),
`verifier=NAME` a registered verifier that is given no gold, and `local_model=NAME` runs the
point on another embedded model.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import shlex
from dataclasses import dataclass, field
from typing import Any, Literal

from ponder.core.confidence import METRICS, Metric
from ponder.core.errors import ConfigError

BENCH_KEYS = ("label", "verifier", "local_model")
# Parameters that only choose among samples already drawn: sweeping them needs no new calls.
CHOICE_KEYS = ("n", "selector", "keep", "confidence_metric")
# Strategies whose samples `ponder.strategies.sample_pool` can choose among again.
# `program`'s repairs and prose fallback depend on which programs were drawn, so its `n` is
# run point by point.
POOLED = ("best_of_n",)
GOLD = "gold"
GOLD_SELECTION = "gold (pass@k)"  # a point's selection where gold picked the answer

# "auto": by behaviour where the pool recorded it (a coding problem), else the vote.
Selector = Literal["vote", "confidence", "behaviour", "auto"]


@dataclass(frozen=True)
class Choice:
    """How a pooled point picks its answer from the first `n` samples of its pool."""

    n: int
    selector: Selector
    keep: float
    metric: Metric


@dataclass(frozen=True)
class Point:
    """One point of a curve: a strategy with fixed parameters."""

    strategy: str
    params: dict[str, Any]  # as given (validated), without the bench keys
    label: str
    verifier: str | None = None
    local_model: str | None = None
    choice: Choice | None = None  # set when the point is re-chosen from a pool

    @property
    def selection(self) -> str:
        """Who picked the answer: the strategy's own rule, or gold (then it is pass@k)."""
        if self.verifier == GOLD:
            return GOLD_SELECTION
        if self.verifier is not None:
            return f"verifier {self.verifier}"
        return "no gold"

    def describe(self) -> str:
        return " ".join(f"{k}={_show(v)}" for k, v in self.params.items())


@dataclass
class Run:
    """What is solved once per problem: a strategy and its parameters; `points` are read
    from its rows (several, when it is a pool)."""

    strategy: str
    params: dict[str, Any]
    verifier: str | None = None
    local_model: str | None = None
    points: list[Point] = field(default_factory=list)

    @property
    def pooled(self) -> bool:
        return any(p.choice is not None for p in self.points)

    @property
    def key(self) -> str:
        """A name for its results file, the same however the SPEC was written."""
        ident = json.dumps([self.strategy, self.params, self.verifier, self.local_model],
                           sort_keys=True, default=str)
        return f"{self.strategy}-{hashlib.sha256(ident.encode()).hexdigest()[:10]}"

    @property
    def pool_n(self) -> int | None:
        return int(self.params["n"]) if self.pooled else None


def parse_spec(spec: str) -> list[Point]:
    """The points of one SPEC, in sweep order. Raises `ConfigError` naming what is wrong."""
    from ponder.strategies import REGISTRY

    words = shlex.split(spec)
    if not words:
        raise ConfigError("an empty --run; give a strategy name and key=value parameters")
    name, pairs = words[0], words[1:]
    effort_label = None
    if name.startswith("effort="):
        from ponder.strategies.effort import tier

        effort = name.partition("=")[2]
        chosen = tier(effort)
        name, effort_label = chosen.strategy, f"effort={effort}"
        given = {pair.partition("=")[0] for pair in pairs}
        pairs = [f"{k}={json.dumps(v)}" for k, v in chosen.params.items() if k not in given] \
            + pairs
    strategy = REGISTRY.get(name)
    sweeps: dict[str, list[Any]] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--run {spec!r}: {pair!r} is not key=value")
        if key in sweeps:
            raise ConfigError(f"--run {spec!r}: {key} is given twice")
        sweeps[key] = [_value(v) for v in _split(value)] if key not in ("label",) else [value]
    bench = {k: sweeps.pop(k) for k in BENCH_KEYS if k in sweeps}
    for key, values in bench.items():
        if len(values) > 1:
            raise ConfigError(f"--run {spec!r}: {key} cannot be swept; give one value")
    label = str(bench["label"][0]) if "label" in bench else effort_label
    verifier = str(bench["verifier"][0]) if "verifier" in bench else None
    local_model = str(bench["local_model"][0]) if "local_model" in bench else None
    points = []
    keys = list(sweeps)
    for combo in itertools.product(*(sweeps[k] for k in keys)):
        params = dict(zip(keys, combo, strict=True))
        strategy.make_config(params)  # refuse a bad value now, before any model call
        points.append(Point(strategy=name, params=params, label=label or name,
                            verifier=verifier, local_model=local_model))
    return points


def plan_runs(points: list[Point]) -> list[Run]:
    """Group points into runs: a pooled strategy's points that differ only in `CHOICE_KEYS`
    share one run at their largest `n`, its samples drawn with their confidence.
    Points that ask for the same run twice are kept once."""
    from ponder.strategies import REGISTRY

    runs: dict[str, Run] = {}
    seen: set[str] = set()
    for point in points:
        config = REGISTRY.get(point.strategy).make_config(point.params).model_dump()
        ident = json.dumps([point.label, point.strategy, config, point.verifier,
                            point.local_model], sort_keys=True, default=str)
        if ident in seen:
            continue
        seen.add(ident)
        choice = _choice(point, config)
        if choice is None:
            own = Run(point.strategy, config, point.verifier, point.local_model)
            runs.setdefault(own.key, own).points.append(point)
            continue
        shared = {k: v for k, v in config.items() if k not in CHOICE_KEYS}
        group = json.dumps(["pool", point.strategy, shared, point.local_model],
                           sort_keys=True, default=str)
        pool = runs.setdefault(group, Run(point.strategy, shared, None, point.local_model))
        pool.points.append(_with_choice(point, choice))
    out = []
    for run in runs.values():
        if run.pooled:
            # A pool always asks for log-probabilities (they cost decode time, not tokens), so
            # that a later --run choosing by confidence finds its samples already drawn.
            choices = [p.choice for p in run.points if p.choice is not None]
            run.params = {**run.params, "n": max(c.n for c in choices),
                          "selector": "confidence"}
        out.append(run)
    return out


def _choice(point: Point, config: dict[str, Any]) -> Choice | None:
    """How `point` chooses among its samples, when a pool can answer it; else None."""
    if point.strategy not in POOLED or point.verifier is not None or config.get("adaptive"):
        return None
    selector = config.get("selector")
    if selector not in ("vote", "confidence", "behaviour", "auto"):
        return None
    metric = config.get("confidence_metric", "lowest_group")
    if metric not in METRICS:
        return None
    return Choice(n=int(config["n"]), selector=selector, keep=float(config.get("keep", 0.5)),
                  metric=metric)


def _with_choice(point: Point, choice: Choice) -> Point:
    return Point(point.strategy, point.params, point.label, point.verifier, point.local_model,
                 choice)


def _split(value: str) -> list[str]:
    """`1,2,4` → three values; a JSON list or object stays one value."""
    if value.startswith(("[", "{", '"')):
        return [value]
    return value.split(",")


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _show(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)
