"""`ponder show`'s drawing of a coding problem's behaviour clusters (the `clusters` note that
`best_of_n` and `auto` write): the tests every candidate ran, then each cluster, best first,
with its size and a mark per test it passed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ponder.cli.tree_view import clean

CALL_CHARS = 60


def cluster_lines(data: Mapping[str, Any]) -> list[str]:
    """Plain lines (no markup) for the note's `tests` and `clusters`; [] when it has none."""
    tests = data.get("tests")
    clusters = data.get("clusters")
    if not isinstance(tests, list) or not isinstance(clusters, list):
        return []
    lines = []
    for i, test in enumerate(tests, start=1):
        if not isinstance(test, Mapping):
            continue
        expected = test.get("expected")
        shown = clean(str(test.get("call", "")), CALL_CHARS)
        if expected is not None:
            shown += f" == {clean(str(expected), CALL_CHARS)}"
        lines.append(f"test {i} [{test.get('origin', '?')}]: {shown}")
    for rank, cluster in enumerate(clusters, start=1):
        if not isinstance(cluster, Mapping):
            continue
        members = cluster.get("members") or []
        marks = _marks(cluster.get("public")) + " | " + _marks(cluster.get("model"))
        lines.append(
            f"cluster {rank}: {len(members)} candidate{'s' * (len(members) != 1)} "
            f"(#{', #'.join(str(m + 1) for m in members[:8])}"
            f"{', …' if len(members) > 8 else ''}) · stated "
            f"{cluster.get('public_passed', 0)}/{cluster.get('public_total', 0)} · model "
            f"{cluster.get('model_passed', 0)}/{cluster.get('model_total', 0)} · score "
            f"{cluster.get('score', 0)} · {marks}")
    return lines


def _marks(passed: Any) -> str:
    if not isinstance(passed, list) or not passed:
        return "-"
    return "".join("✓" if p is True else "✗" for p in passed)
