"""How long the command line takes to start: `ponder --help`, `ponder strategies`,
`ponder show RESULTS` and a bare `import ponder`, each in a fresh process, beside bare Python
(`python -c pass`), which the target is counted from.

    .venv/bin/python benchmarks/startup.py [--runs 9] [--write]
    # before/after, measured side by side (an old tree from `git archive REV ponder | tar -x`):
    .venv/bin/python benchmarks/startup.py --tree before=/tmp/ponder_before --tree after=. --write

Method: each command runs as a new subprocess, `python -m ponder ...` (what the `ponder`
script runs) or `python -c "import ponder"`, in the tree's folder so that its `ponder` package
is the one imported; output is thrown away and the time is taken from spawn to exit with
`time.perf_counter`, with the child's CPU time (user + system) beside it. One untimed run of
each first warms the OS file cache and writes any missing `.pyc`, so what is measured is a cold
*process* on a warm disk, as a user meets it the second time they type a command. Then
`--runs` timed runs, interleaved across commands and trees so that background load falls on
all of them alike; the median is reported, and the minimum (the least disturbed run). On a
busy machine compare trees measured in the same session, and CPU times, more than walls.
`ponder show` reads a 20-row results file written into a temporary folder. `--write` stores
the figures under each tree's label in benchmarks/results/startup.json, keeping other labels,
and rewrites benchmarks/results/startup.md, a table of every label, from it.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "startup.json"
TARGET_S = 0.3  # each command within this of bare Python's start, cold process
REMAINS = ("What the commands still load: typer and rich (about 0.15 s, all `--help` costs), "
           "and of `ponder.cli` only the module of the command run (`--help` lists them all, "
           "so it loads them all); for `strategies` and `show` also pydantic, which typer "
           "itself uses to convert option values (its own `--help` flag's among them), and "
           "ponder's models; for `strategies` every built-in strategy module, since its "
           "config class and docstring live there. None loads the openai SDK, tenacity, "
           "httpx, jinja2, sympy or math_verify (tests/test_imports.py).")


def write_results_file(folder: Path, rows: int = 20) -> Path:
    """A results JSONL as `ponder solve` writes it, made without importing ponder, so that it
    does not depend on the tree under test."""
    path = folder / "run.jsonl"
    with path.open("w", encoding="utf-8") as file:
        for i in range(rows):
            row = {"id": f"gsm8k-test-{i}", "answer": str(i * 7), "text": f"The answer is {i * 7}.",
                   "verdict": {"passed": i % 3 != 0, "score": float(i % 3 != 0),
                               "feedback": ""},
                   "usage": {"prompt_tokens": 120, "completion_tokens": 60 + i,
                             "total_tokens": 180 + i, "calls": 1},
                   "elapsed_s": 1.5, "strategy": "single", "params": {},
                   "stop_reason": "done", "budget_exhausted": False, "info": {}, "error": None}
            file.write(json.dumps(row) + "\n")
    return path


def commands(results: Path) -> dict[str, list[str]]:
    cli = [sys.executable, "-m", "ponder"]
    return {
        "python -c pass": [sys.executable, "-c", "pass"],
        "import ponder": [sys.executable, "-c", "import ponder"],
        "ponder --help": [*cli, "--help"],
        "ponder strategies": [*cli, "strategies"],
        "ponder show RESULTS": [*cli, "show", str(results)],
    }


def run_once(argv: list[str], tree: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one run of `argv` in `tree`."""
    # A wide terminal so that rich lays tables out as it would for a person, not at 80 columns.
    env = {**os.environ, "COLUMNS": "120"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=tree, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          env=env, check=False)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} in {tree} failed ({done.returncode}): "
                         f"{done.stderr.decode()}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


Figures = dict[str, dict[str, float]]


def measure(trees: dict[str, Path], runs: int) -> dict[str, Figures]:
    with tempfile.TemporaryDirectory() as tmp:
        cmds = commands(write_results_file(Path(tmp)))
        for tree in trees.values():
            for argv in cmds.values():
                run_once(argv, tree)  # warm-up, not counted
        walls: dict[tuple[str, str], list[float]] = {}
        cpus: dict[tuple[str, str], list[float]] = {}
        for _ in range(runs):
            for name, argv in cmds.items():
                for label, tree in trees.items():
                    wall, cpu = run_once(argv, tree)
                    walls.setdefault((label, name), []).append(wall)
                    cpus.setdefault((label, name), []).append(cpu)
    return {label: {name: {"median_s": round(statistics.median(walls[label, name]), 3),
                           "min_s": round(min(walls[label, name]), 3),
                           "cpu_median_s": round(statistics.median(cpus[label, name]), 3)}
                    for name in cmds}
            for label in trees}


def markdown(report: dict[str, Any]) -> str:
    """The report as a table: one row a command, one column a label."""
    labels = [k for k, v in report.items() if isinstance(v, dict) and "seconds" in v]
    names = list(report[labels[-1]]["seconds"])
    lines = [
        "# Start-up time of the command line",
        "",
        f"`{report['command']}`: {report['method']}. Seconds: wall median (wall min; CPU "
        f"median). Target: bare Python (`python -c pass`) + {TARGET_S} s wall per command.",
        "",
        "| command | " + " | ".join(labels) + " |",
        "|---" * (len(labels) + 1) + "|",
    ]
    for name in names:
        cells = []
        for label in labels:
            f = report[label]["seconds"].get(name)
            cpu = f"; {f['cpu_median_s']:.3f}" if f and "cpu_median_s" in f else ""
            cells.append(f"{f['median_s']:.3f} ({f['min_s']:.3f}{cpu})" if f else "–")
        lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
    lines += ["", REMAINS, ""]
    for label in labels:
        entry = report[label]
        note = f"; {entry['note']}" if entry.get("note") else ""
        lines.append(f"- {label}: {entry['tree']}, {entry['date']}, {entry['machine']}, "
                     f"{entry['runs']} runs, load average {entry['load_average_1m']}{note}")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--tree", action="append", default=[], metavar="LABEL=DIR",
                        help="a folder holding a `ponder` package, measured under LABEL "
                             "(repeat to compare); default: after=this checkout")
    parser.add_argument("--write", action="store_true", help=f"store the figures in {RESULTS}")
    parser.add_argument("--note", default="", help="what else the machine was doing")
    args = parser.parse_args()
    trees = {label: Path(folder).resolve()
             for label, _, folder in (t.partition("=") for t in args.tree or ["after=."])}

    load = round(os.getloadavg()[0], 2)
    figures = measure(trees, args.runs)
    width = max(len(name) for name in next(iter(figures.values())))
    for label, by_name in figures.items():
        for name, f in by_name.items():
            print(f"{label:<8} {name:<{width}}  median {f['median_s']:.3f}s  "
                  f"min {f['min_s']:.3f}s  cpu {f['cpu_median_s']:.3f}s")
    if args.write:
        report: dict[str, Any] = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
        report["command"] = ".venv/bin/python benchmarks/startup.py " + " ".join(
            f"--tree {label}=DIR" for label in trees) + " --write"
        report["method"] = ("median of N fresh `python -m ponder` processes per command after "
                            "one untimed warm-up, interleaved across commands and trees")
        for label, tree in trees.items():
            report[label] = {
                "tree": str(tree.relative_to(REPO)) if tree.is_relative_to(REPO) else str(tree),
                "date": datetime.date.today().isoformat(),
                "machine": f"{os.cpu_count()} cores, {platform.machine()}, Python "
                           f"{platform.python_version()}",
                "runs": args.runs,
                "load_average_1m": load,
                "note": args.note,
                "seconds": figures[label],
            }
        RESULTS.parent.mkdir(exist_ok=True)
        RESULTS.write_text(json.dumps(report, indent=2) + "\n")
        RESULTS.with_suffix(".md").write_text(markdown(report))
        print(f"wrote {RESULTS} and {RESULTS.with_suffix('.md').name}")


if __name__ == "__main__":
    main()
