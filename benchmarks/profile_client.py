"""`ponder solve`'s own cost per problem against a slow server: wall time next to the ideal,
CPU per problem, and where that CPU goes.

The fake server runs in a process of its own (so its CPU is not ponder's) and answers each
chat request after `--latency` seconds, on a thread per connection. `--problems` problems
(GSM8K's public rows, repeated under new ids) are solved with strategy `single` at
`--concurrency`; the ideal is problems × latency / concurrency, what the server's latency
alone costs with perfect overlap (6.25 s for 1,000 problems at 200 ms and 32).

Wall time is the run's own `wall_s` (`ponder solve --json`): from when the run starts solving,
after interpreter start-up, imports, reading the problem file and making the backend, until
the last row is written and the backend closed. So start-up is left out, and everything a
problem costs (the HTTP client, the strategy, the verifier, the trace, the row and its fsync,
the progress bar) is in. The whole command is the process's wall less its start-up: the
interpreter and every module the command imports, timed as one `python -c "import ..."` of
them (`startup_s`); so reading the problems, locking and writing the files, the summary and
making the backend (but not loading its SDK) are in. CPU is the ponder process's user +
system seconds (start-up included), per problem. Each tree is run `--repeat` times,
interleaved across trees so that load from elsewhere on the machine falls on each alike;
medians are reported.

    .venv/bin/python benchmarks/profile_client.py                       # this tree, 3 runs
    # before/after side by side (an old tree from `git archive REV ponder | tar -x -C DIR`):
    .venv/bin/python benchmarks/profile_client.py --tree before=/tmp/ponder_before --tree after=.
    # where the time goes: cProfile (the event loop's thread) or py-spy (every thread, a
    # sample counting while a thread runs or waits for a core; `.venv/bin/pip install py-spy`,
    # kept out of ponder's dependencies)
    .venv/bin/python benchmarks/profile_client.py --repeat 0 --profile /tmp/solve.prof
    .venv/bin/python benchmarks/profile_client.py --repeat 0 --py-spy /tmp/solve.pyspy

`--tty` runs ponder on a pseudo-terminal, so that the progress bar draws as it would for a
person (otherwise stderr is a pipe and rich draws it once, at the end).

`--backend-only` also times the same number of requests straight through `OpenAIBackend`
(this checkout, in this process, no strategy, verifier, trace or rows) at the same concurrency,
once through ponder's lean HTTP client and once through the openai SDK's (`lean_http=False`):
the floor each client leaves, with ponder's own work at nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pstats
import pty
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
GSM8K = REPO.parent / "shared" / "data" / "gsm8k_test_public.jsonl"


@contextlib.contextmanager
def fake_server(latency: float) -> Iterator[str]:
    """The fake server's base URL, served from a process of its own for as long as this
    lasts (and never longer than this process)."""
    server = subprocess.Popen(
        [sys.executable, "-m", "ponder.testing.fake_server", "--port", "0",
         "--latency", str(latency), "--exit-with-parent"],
        cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None
    url = server.stdout.readline().strip()
    try:
        if not url.startswith("http"):
            raise SystemExit(f"the fake server did not start (printed {url!r})")
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)


def write_problems(source: Path, count: int, path: Path) -> None:
    """`count` problems from `source`, repeated under new ids where it has fewer."""
    rows = [json.loads(line) for line in source.read_text().splitlines() if line.strip()]
    with path.open("w") as file:
        for i in range(count):
            row = dict(rows[i % len(rows)])
            row["id"] = f"{row.get('id', 'p')}-{i // len(rows)}"
            file.write(json.dumps(row) + "\n")


def solve_argv(problems: Path, out: Path, url: str, concurrency: int, trace: bool) -> list[str]:
    argv = ["-m", "ponder", "solve", str(problems), "--base-url", url, "--model", "fake-model",
            "--concurrency", str(concurrency), "--strategy", "single", "-o", str(out), "--json"]
    return argv if trace else [*argv, "--no-trace"]


def run_ponder(prefix: list[str], argv: list[str], tree: Path, tty: bool) -> dict[str, Any]:
    """One `ponder solve` in `tree`: its summary, process wall and CPU seconds."""
    # COLUMNS: a terminal as wide as a person's, so the progress bar lays out as it would.
    env = {**os.environ, "COLUMNS": "120", "TERM": os.environ.get("TERM", "xterm")}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    if tty:
        leader, follower = pty.openpty()
        drained = threading.Thread(target=_drain, args=(leader,), daemon=True)
        drained.start()
        done = subprocess.run([*prefix, *argv], cwd=tree, stdout=subprocess.PIPE,
                              stderr=follower, env=env, text=True, check=False)
        os.close(follower)
        drained.join(timeout=5)
        os.close(leader)
        stderr = ""
    else:
        done = subprocess.run([*prefix, *argv], cwd=tree, capture_output=True, env=env,
                              text=True, check=False)
        stderr = done.stderr
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"ponder solve in {tree} failed ({done.returncode}):\n{stderr}")
    # py-spy prints lines of its own around the summary.
    start = 0 if done.stdout.startswith("{") else done.stdout.index("\n{") + 1
    summary, _ = json.JSONDecoder().raw_decode(done.stdout, start)
    if summary["errors"]:
        raise SystemExit(f"{summary['errors']} problems failed in {tree}: {summary['failures']}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"run_wall_s": summary["wall_s"], "process_wall_s": wall, "cpu_s": cpu,
            "done": summary["done"], "calls": summary["calls"]}


def startup_s(argv: list[str], tree: Path) -> float:
    """What starting the command costs: the interpreter and every module the command imports
    (whenever it imports them), timed as one `python -c "import ..."` of those modules, best
    of 3. The rest of a run's process wall is the command's own work."""
    env = {**os.environ, "COLUMNS": "120"}
    with tempfile.TemporaryDirectory() as tmp:  # a run of its own: the timed one's file is full
        argv = [*argv[:argv.index("-o") + 1], str(Path(tmp) / "run.jsonl"),
                *argv[argv.index("-o") + 2:]]
        traced = subprocess.run([sys.executable, "-X", "importtime", *argv], cwd=tree,
                                capture_output=True, env=env, text=True, check=False)
    if traced.returncode != 0:
        raise SystemExit(f"ponder solve in {tree} failed ({traced.returncode})")
    # A module imported at the top of the tree is named one space after the last bar; a
    # nested one is indented further. The header line names no module.
    fields = [line.rsplit("|", 1)[1] for line in traced.stderr.splitlines()
              if line.startswith("import time:") and "imported package" not in line]
    top = [field.strip() for field in fields if not field.startswith("  ")]
    code = "import " + ", ".join(dict.fromkeys(top))
    best = float("inf")
    for _ in range(3):
        began = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], cwd=tree, env=env, check=True)
        best = min(best, time.perf_counter() - began)
    return best


def _drain(fd: int) -> None:
    with contextlib.suppress(OSError):
        while os.read(fd, 65536):
            pass


def measure(trees: dict[str, Path], url: str, problems: Path, args: argparse.Namespace,
            tmp: Path) -> dict[str, list[dict[str, Any]]]:
    runs: dict[str, list[dict[str, Any]]] = {label: [] for label in trees}
    for i in range(args.repeat):
        for label, tree in trees.items():
            out = tmp / f"{label}-{i}.jsonl"
            argv = solve_argv(problems, out, url, args.concurrency, not args.no_trace)
            run = run_ponder([sys.executable], argv, tree, args.tty)
            if i == 0:
                run["startup_s"] = startup_s(argv, tree)
            else:
                run["startup_s"] = runs[label][0]["startup_s"]
            print(f"  {label} run {i + 1}: {run['run_wall_s']:.2f}s run wall, "
                  f"{run['cpu_s']:.2f}s CPU", file=sys.stderr)
            runs[label].append(run)
    return runs


def report(runs: dict[str, list[dict[str, Any]]], trees: dict[str, Path],
           args: argparse.Namespace) -> dict[str, Any]:
    ideal = args.problems * args.latency / args.concurrency
    figures: dict[str, Any] = {}
    for label, rows in runs.items():
        if not rows:
            continue
        wall = statistics.median(r["run_wall_s"] for r in rows)
        cpu = statistics.median(r["cpu_s"] for r in rows)
        startup = rows[0]["startup_s"]
        whole = statistics.median(r["process_wall_s"] for r in rows) - startup
        figures[label] = {
            "tree": str(trees[label]),
            "run_wall_s_median": round(wall, 2),
            "over_ideal": round(wall / ideal, 3),
            "process_wall_s_median": round(statistics.median(r["process_wall_s"]
                                                             for r in rows), 2),
            "startup_s": round(startup, 3),
            "whole_command_s": round(whole, 2),
            "whole_over_ideal": round(whole / ideal, 3),
            "cpu_s_median": round(cpu, 2),
            "cpu_ms_per_problem": round(1000 * cpu / args.problems, 2),
            "runs": [{k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()}
                     for r in rows],
        }
        print(f"{label}: {wall:.2f}s vs ideal {ideal:.2f}s = {wall / ideal:.2f}× ideal; "
              f"whole command {whole:.2f}s = {whole / ideal:.2f}× (start-up {startup:.2f}s "
              f"excluded); CPU {cpu:.2f}s ({1000 * cpu / args.problems:.2f} ms per problem)")
    return {
        "problems": args.problems, "latency_s": args.latency, "concurrency": args.concurrency,
        "trace": not args.no_trace, "tty": args.tty, "ideal_s": round(ideal, 3),
        "cores": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2),
        "trees": figures,
    }


def backend_only(url: str, args: argparse.Namespace) -> dict[str, Any]:
    """Wall and CPU of `--problems` requests straight through `OpenAIBackend`, `--concurrency`
    at a time, through each HTTP client in turn (`--repeat` rounds); medians."""
    import asyncio

    sys.path.insert(0, str(REPO))
    from ponder.backends.openai import OpenAIBackend
    from ponder.core.types import Message

    messages = [Message(role="user", content="Tom has 3 apples and buys 5 more. How many?")]

    async def run(lean: bool) -> tuple[float, float]:
        gate = asyncio.Semaphore(args.concurrency)
        async with OpenAIBackend(url, model="fake-model", lean_http=lean) as backend:
            async def one() -> None:
                async with gate:
                    await backend.generate(messages, max_tokens=512)

            await asyncio.gather(*(one() for _ in range(args.concurrency)))  # connections
            cpu = time.process_time()
            began = time.perf_counter()
            await asyncio.gather(*(one() for _ in range(args.problems)))
            return time.perf_counter() - began, time.process_time() - cpu

    ideal = args.problems * args.latency / args.concurrency
    runs: dict[str, list[tuple[float, float]]] = {"lean_http": [], "openai_sdk": []}
    for _ in range(max(args.repeat, 1)):
        for label, lean in (("lean_http", True), ("openai_sdk", False)):
            runs[label].append(asyncio.run(run(lean)))
    figures = {}
    for label, rows in runs.items():
        wall = statistics.median(w for w, _ in rows)
        cpu_ms = 1000 * statistics.median(c for _, c in rows) / args.problems
        figures[label] = {"wall_s_median": round(wall, 2), "over_ideal": round(wall / ideal, 3),
                          "cpu_ms_per_call": round(cpu_ms, 2)}
        print(f"backend only, {label}: {wall:.2f}s = {wall / ideal:.2f}× ideal; "
              f"CPU {cpu_ms:.2f} ms per call")
    return figures


def profile(url: str, problems: Path, args: argparse.Namespace, tmp: Path) -> None:
    """One run of the first tree under cProfile and/or py-spy, with its top costs printed."""
    tree = next(iter(args.trees.values()))
    argv = solve_argv(problems, tmp / "profiled.jsonl", url, args.concurrency, not args.no_trace)
    if args.profile:
        run = run_ponder([sys.executable, "-m", "cProfile", "-o", str(args.profile)], argv,
                         tree, args.tty)
        print(f"cProfile run (slowed by the profiler): {run['run_wall_s']:.2f}s run wall; "
              f"{args.profile}")
        stats = pstats.Stats(str(args.profile))
        stats.sort_stats("tottime").print_stats(args.top)
        stats.sort_stats("cumulative").print_stats(args.top)
    if args.py_spy:
        spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        run = run_ponder([spy, "record", "--format", "raw", "--rate", "250", "--threads",
                          "--nonblocking", "-o", str(args.py_spy), "--", sys.executable],
                         argv, tree, args.tty)
        print(f"py-spy run: {run['run_wall_s']:.2f}s run wall; {args.py_spy}")
        print_collapsed(args.py_spy, args.top)


def print_collapsed(path: Path, top: int) -> None:
    """Self and inclusive sample counts per function from py-spy's collapsed stacks."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    for title, counter in (("self", own), ("inclusive", inclusive)):
        print(f"\npy-spy, {title} samples of {total}:")
        for frame, n in counter.most_common(top):
            print(f"{100 * n / total:6.1f}%  {frame}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.2, help="seconds per request")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--problems", type=int, default=1000)
    parser.add_argument("--source", type=Path, default=GSM8K, help="problem rows to repeat")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per tree")
    parser.add_argument("--tree", action="append", default=[], metavar="LABEL=DIR",
                        help="a folder holding a `ponder` package to run (repeatable); "
                             "default: after=. (this checkout)")
    parser.add_argument("--no-trace", action="store_true", help="run without the trace file")
    parser.add_argument("--tty", action="store_true", help="ponder's stderr on a terminal")
    parser.add_argument("--profile", type=Path, help="also one run under cProfile, to here")
    parser.add_argument("--py-spy", type=Path, help="also one run under py-spy, to here")
    parser.add_argument("--top", type=int, default=30, help="functions listed per profile")
    parser.add_argument("--backend-only", action="store_true",
                        help="also time OpenAIBackend alone, through each HTTP client")
    parser.add_argument("--json", type=Path, help="write the figures here as JSON")
    args = parser.parse_args()
    args.trees = {label: Path(folder).resolve()
                  for label, _, folder in (t.partition("=") for t in args.tree or ["after=."])}

    with tempfile.TemporaryDirectory() as folder, fake_server(args.latency) as url:
        tmp = Path(folder)
        problems = tmp / "problems.jsonl"
        write_problems(args.source, args.problems, problems)
        # One short untimed run, so that the page cache and the server are warm.
        warm = tmp / "warm.jsonl"
        write_problems(args.source, 2 * args.concurrency, warm)
        run_ponder([sys.executable], solve_argv(warm, tmp / "warm.results.jsonl", url,
                                                args.concurrency, False),
                   next(iter(args.trees.values())), tty=False)
        runs = measure(args.trees, url, problems, args, tmp)
        figures = report(runs, args.trees, args)
        if args.backend_only:
            figures["backend_only"] = backend_only(url, args)
        if args.json:
            args.json.write_text(json.dumps(figures, indent=2) + "\n")
        if args.profile or args.py_spy:
            profile(url, problems, args, tmp)


if __name__ == "__main__":
    main()
