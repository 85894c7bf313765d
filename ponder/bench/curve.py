"""A bench's curve written out: `curve.csv` (one row per point), `curve.md` (the table for a
README) and `curve.png` (accuracy against mean tokens per problem, log x, a line per strategy
and model, 95% intervals as bars; needs matplotlib, the `plot` extra). With a problem field to
break it down by (`ponder bench --by difficulty`), also `curve_by.csv` and a section of
curve.md: each point's accuracy and tokens per group, which shows where a strategy spends.
curve.md also compares every point with the first on the same problems, and with the first of
each label `ponder bench --paired-with` names (`ponder.bench.paired`)."""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path

from ponder.bench.paired import pair
from ponder.bench.run import CurvePoint
from ponder.core.errors import MissingDependency

PLOT_HINT = 'pip install "ponder[plot]"'


def write_csv(points: Sequence[CurvePoint], path: Path) -> None:
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=CurvePoint.columns())
        writer.writeheader()
        for point in points:
            row = point.row()
            for key in ("accuracy", "ci_low", "ci_high"):
                row[key] = round(row[key], 4)
            for key in ("mean_tokens", "mean_calls", "mean_cached_prompt_tokens"):
                row[key] = round(row[key], 1)
            writer.writerow(row)


def markdown(points: Sequence[CurvePoint], *, title: str, command: str) -> str:
    lines = [
        f"# {title}",
        "",
        f"Command: `{command}`  ",
        "Accuracy is scored by gold after the run; gold chose the answer only where the "
        "selection column says so (that figure is pass@k, not accuracy). Subsampled points "
        "are chosen again from the first n samples of their run's pool, with no new calls; "
        "their wall time is their pool's.",
        "",
        "| strategy | params | model | selection | accuracy (95% CI) | mean tokens | "
        "mean calls | wall s | subsampled |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for p in points:
        wall = "—" if p.wall_s is None else f"{p.wall_s:.0f}"
        pool = f"yes (pool n={p.pool_n})" if p.subsampled else "no"
        lines.append(
            f"| {p.label} | {p.params} | {p.model} | {p.selection} | {p.correct}/{p.problems} "
            f"({p.accuracy:.0%}, {p.ci_low:.0%}–{p.ci_high:.0%}) | {p.mean_tokens:.0f} | "
            f"{p.mean_calls:.1f} | {wall} | {pool} |")
    return "\n".join(lines) + "\n"


def group_rows(points: Sequence[CurvePoint], groups: Mapping[str, str]
               ) -> list[tuple[CurvePoint, dict[str, tuple[int, int, float]]]]:
    """Per point, per group (in the order groups first appear): correct, problems and mean
    tokens. A problem without the field is in the group "(none)"."""
    order = list(dict.fromkeys(groups.values()))
    out = []
    for p in points:
        cells: dict[str, list[int]] = {}
        for problem_id, ok, tokens in p.outcomes:
            cell = cells.setdefault(groups.get(problem_id, "(none)"), [0, 0, 0])
            cell[0] += ok
            cell[1] += 1
            cell[2] += tokens
        names = [g for g in order if g in cells] + [g for g in cells if g not in order]
        out.append((p, {g: (cells[g][0], cells[g][1], cells[g][2] / cells[g][1])
                        for g in names}))
    return out


def _honest(points: Sequence[CurvePoint]) -> list[CurvePoint]:
    """The points gold did not choose: a point gold chose is pass@k, not comparable with an
    accuracy."""
    return [p for p in points if not p.gold_chose and p.outcomes]


def baseline(points: Sequence[CurvePoint], against: str | None = None) -> CurvePoint | None:
    """The point a paired table compares with: the first labelled `against` (a sweep's
    first, where several share the label), else the first; never one gold chose."""
    return next((p for p in _honest(points) if against is None or p.label == against), None)


def paired_markdown(points: Sequence[CurvePoint], against: str | None = None) -> str:
    """Every point gold did not choose against `baseline(points, against)`, problem by
    problem (see `ponder.bench.paired`)."""
    honest = _honest(points)
    base = baseline(points, against)
    if len(honest) < 2 or base is None:
        return ""
    base_right = {problem_id: ok for problem_id, ok, _ in base.outcomes}
    lines = [
        f"## Paired against {base.label}",
        "",
        f"Each point's accuracy minus {base.label}'s ({base.params or 'no params'}) on the "
        "same problems, in percentage points, with its 95% interval (Newcombe's for paired "
        "proportions), the problems only one of the two got right, McNemar's exact p, and its "
        f"tokens per problem as a multiple of {base.label}'s, over the problems both answered "
        "(n). Points where gold chose the answer are left out: theirs is pass@k.",
        "",
        f"| strategy | params | model | selection | n | Δ points (95% CI) | only it right | "
        f"only {base.label} right | p | × tokens |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in honest:
        if (p.run, p.params, p.selection) == (base.run, base.params, base.selection):
            continue
        paired = pair({problem_id: ok for problem_id, ok, _ in p.outcomes}, base_right)
        low, high = paired.interval
        ratio = p.mean_tokens / base.mean_tokens if base.mean_tokens else float("nan")
        lines.append(
            f"| {p.label} | {p.params} | {p.model} | {p.selection} | {paired.problems} | "
            f"{_points(paired.difference)} ({_points(low)} to {_points(high)}) | "
            f"{paired.only_point} | {paired.only_baseline} | {paired.p_value:.2g} | "
            f"{ratio:.1f} |")
    return "\n".join(lines) + "\n"


def _points(share: float) -> str:
    """Percentage points to one decimal: a limit just below zero must not read as +0."""
    shown = f"{100 * share:+.1f}"
    return "0.0" if shown in ("+0.0", "-0.0") else shown


def breakdown_markdown(points: Sequence[CurvePoint], groups: Mapping[str, str], by: str) -> str:
    rows = group_rows(points, groups)
    names = list(dict.fromkeys(g for _, cells in rows for g in cells))
    lines = [
        f"## By {by}",
        "",
        f"Each cell: correct / problems with that {by}, and mean tokens per problem there.",
        "",
        "| strategy | params | model | selection | "
        + " | ".join(_cell(g) for g in names) + " |",
        "|---|---|---|---|" + "---|" * len(names),
    ]
    for p, cells in rows:
        shown = [f"{cells[g][0]}/{cells[g][1]} · {cells[g][2]:.0f} tok" if g in cells else "—"
                 for g in names]
        lines.append(f"| {p.label} | {p.params} | {p.model} | {p.selection} | "
                     + " | ".join(shown) + " |")
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    """A value from a problem file, safe in a markdown table cell."""
    return " ".join(text.split()).replace("|", "\\|")


def write_breakdown_csv(points: Sequence[CurvePoint], groups: Mapping[str, str], by: str,
                        path: Path) -> None:
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        # The point's columns as in curve.csv, then the field and its value, so that the two
        # files join on (label, params, selection) or run.
        writer.writerow(["label", "strategy", "params", "model", "selection", "run", "by",
                         "group", "correct", "problems", "accuracy", "mean_tokens"])
        for p, cells in group_rows(points, groups):
            for group, (correct, total, tokens) in cells.items():
                writer.writerow([p.label, p.strategy, p.params, p.model, p.selection, p.run, by,
                                 group, correct, total, round(correct / total, 4),
                                 round(tokens, 1)])


def plot(points: Sequence[CurvePoint], path: Path, *, title: str, x: str = "tokens") -> None:
    """Draw the curve against mean tokens per problem, or with `x="compute"` against FLOPs per
    problem (2 × parameters × tokens; points of a model whose size is unknown are left out);
    raises `MissingDependency` without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # no display on a server or in CI
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingDependency(f"curve.png needs matplotlib: {PLOT_HINT}") from None
    if x == "compute":
        points = [p for p in points if p.mean_flops is not None]
    lines: dict[tuple[str, str, str], list[CurvePoint]] = {}
    for p in points:
        lines.setdefault((p.label, p.model, p.selection), []).append(p)
    fig, ax = plt.subplots(figsize=(10, 5.5), dpi=120)
    # Lines can sit on one another (an effort tier is a strategy's point): a colour and a
    # marker each keep them apart.
    colours = plt.get_cmap("tab20").colors  # type: ignore[attr-defined]  # a ListedColormap
    markers = "osD^v<>pP*Xh"
    for number, ((label, model, selection), members) in enumerate(lines.items()):
        members = sorted(members, key=lambda p: p.mean_tokens)
        xs = [(p.mean_flops or 0.0) if x == "compute" else p.mean_tokens for p in members]
        ys = [100 * p.accuracy for p in members]
        # Clamped: at 0/n or n/n the interval's end is the point itself, give or take a float.
        below = [max(0.0, 100 * (p.accuracy - p.ci_low)) for p in members]
        above = [max(0.0, 100 * (p.ci_high - p.accuracy)) for p in members]
        name = label if len(lines) == len({k[0] for k in lines}) else f"{label} ({model})"
        if selection != "no gold":
            name += f", {selection}"
        ax.errorbar(xs, ys, yerr=[below, above], marker=markers[number % len(markers)],
                    color=colours[number % len(colours)], capsize=3, label=name,
                    markersize=7, alpha=0.85, linestyle="--" if "pass@k" in selection else "-")
    ax.set_xscale("log")
    ax.set_xlabel("FLOPs per problem (2 × parameters × tokens, log scale)" if x == "compute"
                  else "mean tokens per problem (prompt + completion, log scale)")
    ax.set_ylabel("accuracy (%), 95% CI")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_all(points: Sequence[CurvePoint], out_dir: Path, *, title: str, command: str,
              x: str = "tokens", by: str | None = None,
              groups: Mapping[str, str] | None = None,
              paired_with: Sequence[str] = ()) -> list[str]:
    """Write the three files (four with `by`: `groups` maps each problem id to its value of
    the field `by`); returns warnings (the plot, where matplotlib is missing). The paired
    tables compare every point with the first, and with each label in `paired_with`."""
    write_csv(points, out_dir / "curve.csv")
    text = markdown(points, title=title, command=command)
    written: list[CurvePoint] = []
    for against in (None, *paired_with):
        base = baseline(points, against)
        if base is None or any(base is done for done in written):
            continue  # no such point, or the same point as a table already written
        written.append(base)
        text += "\n" + paired_markdown(points, against)
    if by is not None and groups is not None:
        text += "\n" + breakdown_markdown(points, groups, by)
        write_breakdown_csv(points, groups, by, out_dir / "curve_by.csv")
    (out_dir / "curve.md").write_text(text)
    try:
        plot(points, out_dir / "curve.png", title=title, x=x)
    except MissingDependency as exc:
        return [f"curve.png not drawn: {exc}"]
    return []
