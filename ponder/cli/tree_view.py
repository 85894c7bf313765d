"""A search tree from a trace note (`mcts_tree`) drawn as indented text, one node a line, with
its visits and value:

    root  visits=6 value=0.55
    ├─ 0  visits=1 value=0.20  "Step 1: a guess"
    └─ 1  visits=4 value=0.80  "Step 1: 6 * 4 = 24"
       └─ 1.0  visits=3 value=0.90 final  "Final answer: 24"

The note comes from a results file, which may have been written by anyone: every field may be
missing or of the wrong type, parents may loop, and model text may hold escape sequences.
Nothing here raises on such data; model text loses its control characters, so the lines are
safe to print (markup escaping is the caller's, as for any other text).
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Mapping
from typing import Any

STEP_CHARS = 60  # of a step's text on its line
MAX_LINES = 200  # a tree larger than this is cut, and the line after says by how much


def tree_lines(nodes: Any, *, step_chars: int = STEP_CHARS,
               max_lines: int = MAX_LINES) -> list[str]:
    """The lines that draw `nodes` ({id, parent, step, visits, value, final} each, as
    `ctx.note("mcts_tree", nodes=...)` records them) as a tree. A node whose parent is missing
    or unknown starts a tree of its own; children keep the order they were listed in.

    >>> tree_lines([{"id": "root", "parent": None, "visits": 2, "value": 0.5},
    ...             {"id": "0", "parent": "root", "step": "6 * 4 = 24", "visits": 1,
    ...              "value": 1.0, "final": True}])
    ['root  visits=2 value=0.50', '└─ 0  visits=1 value=1.00 final  "6 * 4 = 24"']
    """
    if not isinstance(nodes, list | tuple):
        return []
    entries = [n for n in nodes if isinstance(n, Mapping)]
    ids = [str(n.get("id", "?")) for n in entries]
    first: dict[str, int] = {}  # a repeated id names its first node
    for i, node_id in enumerate(ids):
        first.setdefault(node_id, i)
    children: dict[int, list[int]] = {}
    roots: list[int] = []
    for i, entry in enumerate(entries):
        parent = entry.get("parent")
        p = first.get(str(parent)) if parent is not None else None
        if p is None or p == i:
            roots.append(i)
        else:
            children.setdefault(p, []).append(i)

    lines: list[str] = []
    drawn: set[int] = set()
    # Nodes in a parent loop hang from no root; the loop is drawn from its first listed node.
    for start in [*roots, *range(len(entries))]:
        if start in drawn:
            continue
        stack: list[tuple[int, str, str]] = [(start, "", "")]  # node, its lead, its children's
        while stack:
            i, lead, indent = stack.pop()
            if i in drawn:
                continue
            if len(lines) == max_lines:
                lines.append(f"… {len(entries) - len(drawn)} more nodes")
                return lines
            drawn.add(i)
            lines.append(lead + _label(ids[i], entries[i], step_chars))
            kids = [k for k in children.get(i, []) if k not in drawn]
            for n, k in reversed(list(enumerate(kids))):
                last = n == len(kids) - 1
                stack.append((k, indent + ("└─ " if last else "├─ "),
                              indent + ("   " if last else "│  ")))
    return lines


def _label(node_id: str, entry: Mapping[str, Any], step_chars: int) -> str:
    visits, value = entry.get("visits"), entry.get("value")
    label = (f"{clean(node_id, 40)}  visits={visits if _is_count(visits) else '–'}"
             f" value={f'{value:.2f}' if _is_number(value) else '–'}")
    if entry.get("final") is True:
        label += " final"
    step = entry.get("step")
    if isinstance(step, str) and step.strip():
        label += f'  "{clean(step, step_chars)}"'
    return label


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**15


def _is_number(value: Any) -> bool:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


def clean(text: str, limit: int) -> str:
    """`text` on one line, without control or format characters (escape sequences, bidi
    overrides), cut to `limit` characters."""
    flat = " ".join(text.split())
    flat = "".join(ch for ch in flat if unicodedata.category(ch) not in ("Cc", "Cf"))
    return flat if len(flat) <= limit else flat[: max(limit - 1, 0)] + "…"
