"""ponder against optillm 0.4.0's `self_consistency`, side by side on one simulated upstream.

100 GSM8K problems (`benchmarks/data/quiz_mixed.jsonl`: the first 100 of the public test set,
each with the chance `p_correct` that one reply is right) go through the fake OpenAI server in
quiz mode, answering each chat request after 50 ms. Three ways of running self-consistency
with 5 samples, each at client concurrency 32:

- `optillm`: optillm's proxy (`optillm --base-url FAKE`), 100 requests from the async `openai`
  client with model `self_consistency-fake-model` (optillm reads the approach from the model
  name's prefix).
- `ponder solve`: `ponder solve FILE -s best_of_n -p n=5 -p temperature=0.7 --base-url FAKE
  --model fake-model --concurrency 32 -o OUT --json`, as a user runs it (one process).
- `ponder serve`: `ponder serve --base-url FAKE --model fake-model`, 100 requests from the same
  async `openai` client with model `best_of_n:fake-model`, `temperature=0.7` and
  `extra_body={"ponder": {"params": {"n": 5}}}` (docs/serve.md).

Two supplementary rows, outside the issue's configuration, say where the figures come from:
`ponder solve` with `-p adaptive=true` (up to 5 samples, stopping once the vote is settled),
and optillm's `majority_voting` plugin (model `majority_voting-fake-model`, `k=5`,
temperature 0.7), which samples with one `n=k` request and votes over extracted answers, as
`best_of_n` does. The issue's targets are checked for the ponder rows against optillm's
`self_consistency` only.

optillm 0.4.0's `self_consistency` (optillm/self_consistency.py) draws its 5 samples as 5
sequential requests (temperature 1, no `n`), each carrying the prompt again, then clusters the
whole reply texts (difflib ratio ≥ 0.8) and answers with the first reply of the largest
cluster. Its proxy (Flask's threaded development server) builds a new upstream client, and a
new TLS context, for every request it serves.

Each system gets a fresh fake server of its own, all with the same seed, so they see the same
upstream. The fake runs in a process of its own (this file with `--fake-server`) and counts
what reached it: chat requests, and the prompt and completion tokens of its replies
(`FakeOpenAIServer.requests` and `usage_served`). Proxies are started before the clock and
warmed with one request the quiz does not know (so no quiz counter moves); the upstream figures
are the difference of the fake's counters across the timed run. Wall time for the proxies is
from the first request sent to the last reply; for `ponder solve` both the whole process
(interpreter start-up and imports included) and the run's own `wall_s` are kept.

Gold never reaches a system: they get the problem text only. Every reply is scored the same
way, `ponder.core.answers.extract_answer` on the text the system returns as its answer (optillm's
reply content; ponder's `answer`/`content`), compared as numbers (`canonical_number`) with the
gold answer. Accuracy comes with a 95% Wilson interval. The whole comparison is repeated over
`--seeds` (fake server seeds), the systems' order rotating from one repeat to the next.

optillm 0.4.0 goes in a virtual environment of its own, without its heavy dependencies (torch,
transformers, spacy, …: only plugins import them, and a plugin that fails to import is skipped
with a logged error; `self_consistency` needs none of them):

    python3 -m venv /tmp/optillm-venv
    /tmp/optillm-venv/bin/pip install --no-deps optillm==0.4.0
    /tmp/optillm-venv/bin/pip install numpy networkx openai "z3-solver<=4.15.4.0" aiohttp \\
        flask cerebras_cloud_sdk math-verify PyYAML requests
    nice -n 10 .venv/bin/python benchmarks/vs_optillm.py \\
        --json benchmarks/results/vs_optillm.json       # 3 repeats, seeds 1 2 3

Never set OPTILLM_API_KEY for optillm: 0.4.0 reads it both as the proxy's own key and as "use
the local inference engine" (torch). The proxy is given OPENAI_API_KEY and `--base-url`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
QUIZ = REPO / "benchmarks" / "data" / "quiz_mixed.jsonl"
MODEL = "fake-model"
WARM_UP = "Say hello to the benchmark."  # in no quiz item: the fake answers it outside the quiz
STARTUP_S: list[float] = []  # each proxy's seconds from its start to its first /health 200


# -- the fake server, in a process of its own -------------------------------------------------

def fake_server_main(args: argparse.Namespace) -> None:
    """`--fake-server`: serve, print the base URL, then answer each `stats` line on stdin with
    the counters as one JSON line; stop at end of input (the parent is gone or done)."""
    sys.path.insert(0, str(REPO))
    from ponder.testing import FakeOpenAIServer

    server = FakeOpenAIServer.from_quiz_file(args.quiz, latency_s=args.latency, seed=args.seed,
                                             model=MODEL)
    with server:
        print(server.base_url, flush=True)
        for line in sys.stdin:
            if line.strip() == "stats":
                assert server.quiz is not None
                print(json.dumps({"requests": server.requests, **server.usage_served,
                                  "quiz": server.quiz.stats}), flush=True)


class FakeServer:
    def __init__(self, quiz: Path, latency: float, seed: int) -> None:
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--fake-server", "--quiz", str(quiz),
             "--latency", str(latency), "--seed", str(seed)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO)
        assert self.process.stdout is not None
        self.url = self.process.stdout.readline().strip()
        if not self.url.startswith("http"):
            raise SystemExit(f"the fake server did not start (printed {self.url!r})")

    def stats(self) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write("stats\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

    def close(self) -> None:
        with contextlib.suppress(OSError):
            assert self.process.stdin is not None
            self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@contextlib.contextmanager
def fake_server(quiz: Path, latency: float, seed: int) -> Iterator[FakeServer]:
    server = FakeServer(quiz, latency, seed)
    try:
        yield server
    finally:
        server.close()


def delta(after: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
    out = {k: after[k] - before[k] for k in ("requests", "prompt_tokens", "completion_tokens",
                                               "replies")}
    out["total_tokens"] = out["prompt_tokens"] + out["completion_tokens"]
    out["quiz"] = {k: after["quiz"][k] - before["quiz"][k] for k in after["quiz"]}
    return out


# -- proxies ----------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_up(url: str, process: subprocess.Popen[bytes], log: Path,
                  timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{process.args!r} exited with {process.returncode}:\n"
                             f"{log.read_text()[-4000:]}")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as reply:
            if reply.status == 200:
                return
        time.sleep(0.2)
    raise SystemExit(f"{url} did not answer within {timeout:.0f}s:\n{log.read_text()[-4000:]}")


@contextlib.contextmanager
def proxy(argv: list[str], health: str, port: int, log: Path, env: dict[str, str],
          cwd: Path) -> Iterator[tuple[str, int]]:
    """A proxy server started from `argv`, waited for: its base URL and pid."""
    with log.open("wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd)
    try:
        began = time.perf_counter()
        wait_until_up(f"http://127.0.0.1:{port}{health}", process, log)
        STARTUP_S.append(time.perf_counter() - began)
        yield f"http://127.0.0.1:{port}/v1", process.pid
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process, all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def optillm_proxy(venv: Path, upstream: str, log: Path,
                  cwd: Path) -> contextlib.AbstractContextManager[tuple[str, int]]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPTILLM_")}
    env["OPENAI_API_KEY"] = "sk-fake-upstream-key"
    return proxy([str(venv / "bin" / "optillm"), "--base-url", upstream, "--port", str(port)],
                 "/health", port, log, env, cwd)


def ponder_proxy(upstream: str, log: Path,
                 cwd: Path) -> contextlib.AbstractContextManager[tuple[str, int]]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "PONDER_API_KEY"}
    return proxy([sys.executable, "-m", "ponder", "serve", "--base-url", upstream, "--model",
                  MODEL, "--port", str(port)], "/health", port, log, env, cwd)


async def openai_clients(base_url: str, problems: list[dict[str, Any]], concurrency: int,
                         request: dict[str, Any], after_warm_up: Callable[[], None],
                         ) -> tuple[float, list[str | None], list[float], list[str]]:
    """Each problem as one chat request, `concurrency` in flight, through the async openai
    client: wall seconds from the first request to the last reply, each reply's content,
    each request's own seconds, and the errors. One untimed warm-up request first (a prompt
    the quiz does not know), then `after_warm_up()` (nothing is in flight)."""
    import openai

    client = openai.AsyncOpenAI(base_url=base_url, api_key="bench-client", timeout=600)
    gate = asyncio.Semaphore(concurrency)
    errors: list[str] = []
    latencies: list[float] = []

    async def one(text: str) -> str | None:
        async with gate:
            began = time.perf_counter()
            try:
                reply = await client.chat.completions.create(
                    messages=[{"role": "user", "content": text}], **request)
            except openai.OpenAIError as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                return None
            latencies.append(time.perf_counter() - began)
            return reply.choices[0].message.content

    async with client:
        await one(WARM_UP)
        if errors:
            raise SystemExit(f"the warm-up request to {base_url} failed: {errors}")
        after_warm_up()
        latencies.clear()
        began = time.perf_counter()
        contents = await asyncio.gather(*(one(p["problem"]) for p in problems))
        wall = time.perf_counter() - began
    return wall, list(contents), latencies, errors


# -- the systems ------------------------------------------------------------------------------

def run_through_proxy(fake: FakeServer, server: contextlib.AbstractContextManager[tuple[str, int]],
                      problems: list[dict[str, Any]], concurrency: int,
                      request: dict[str, Any]) -> dict[str, Any]:
    """The problems through a proxy: wall, replies, upstream counters and the proxy's CPU
    across the timed run (the warm-up request left out)."""
    with server as (url, pid):
        before: dict[str, Any] = {}

        def mark() -> None:
            before.update(fake.stats(), cpu=cpu_seconds(pid))

        wall, contents, latencies, errors = asyncio.run(openai_clients(
            url, problems, concurrency, request, mark))
        cpu = cpu_seconds(pid) - before.pop("cpu")
        upstream = delta(fake.stats(), before)
    return {"wall_s": wall, "answers": contents, "errors": errors, "upstream": upstream,
            "cpu_s": cpu, "request_s_median": statistics.median(latencies) if latencies else None,
            "proxy_startup_s": STARTUP_S[-1]}


def run_optillm(fake: FakeServer, problems: list[dict[str, Any]], args: argparse.Namespace,
                tmp: Path) -> dict[str, Any]:
    log = tmp / "optillm.log"
    run = run_through_proxy(fake, optillm_proxy(args.optillm_venv, fake.url, log, tmp),
                            problems, args.concurrency, {"model": f"self_consistency-{MODEL}"})
    # How many clusters of similar replies each problem's 5 samples made (optillm logs it at
    # INFO); with 5, every cluster has one reply and the first sample is the answer.
    clusters = Counter(line.rsplit(":", 1)[1].strip() for line in log.read_text().splitlines()
                       if "Number of unique clusters:" in line)
    run["optillm_clusters_per_problem"] = dict(sorted(clusters.items()))
    return run


def run_optillm_majority(fake: FakeServer, problems: list[dict[str, Any]],
                         args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    return run_through_proxy(
        fake, optillm_proxy(args.optillm_venv, fake.url, tmp / "optillm.log", tmp), problems,
        args.concurrency, {"model": f"majority_voting-{MODEL}", "temperature": 0.7,
                           "extra_body": {"k": 5}})


def run_ponder_serve(fake: FakeServer, problems: list[dict[str, Any]],
                     args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    return run_through_proxy(
        fake, ponder_proxy(fake.url, tmp / "ponder_serve.log", tmp), problems, args.concurrency,
        {"model": f"best_of_n:{MODEL}", "temperature": 0.7,
         "extra_body": {"ponder": {"params": {"n": 5}}}})


def run_ponder_solve(fake: FakeServer, problems: list[dict[str, Any]],
                     args: argparse.Namespace, tmp: Path,
                     extra: tuple[str, ...] = ()) -> dict[str, Any]:
    problem_file = tmp / "problems.jsonl"  # no gold: id and problem only
    problem_file.write_text("".join(json.dumps({"id": p["id"], "problem": p["problem"]}) + "\n"
                                    for p in problems))
    out = Path(tempfile.mkdtemp(prefix="solve-", dir=tmp)) / "results.jsonl"  # trace beside it
    argv = [sys.executable, "-m", "ponder", "solve", str(problem_file), "-s", "best_of_n",
            "-p", "n=5", "-p", "temperature=0.7", *extra, "--base-url", fake.url, "--model", MODEL,
            "--concurrency", str(args.concurrency), "-o", str(out), "--json"]
    before = fake.stats()
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    done = subprocess.run(argv, cwd=tmp, capture_output=True, text=True, check=False)
    process_wall = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - usage.ru_utime) + (after.ru_stime - usage.ru_stime)
    upstream = delta(fake.stats(), before)
    if done.returncode != 0:
        raise SystemExit(f"ponder solve failed ({done.returncode}):\n{done.stderr[-4000:]}")
    summary, _ = json.JSONDecoder().raw_decode(done.stdout, done.stdout.index("{"))
    rows = {}
    for line in out.read_text().splitlines():
        row = json.loads(line)
        rows[row["id"]] = row
    answers = [rows[p["id"]].get("answer") if p["id"] in rows else None for p in problems]
    errors = [f"{i}: {r.get('error')}" for i, r in rows.items() if r.get("error")]
    elapsed = [rows[p["id"]]["elapsed_s"] for p in problems
               if isinstance(rows.get(p["id"], {}).get("elapsed_s"), int | float)]
    return {"wall_s": process_wall, "run_wall_s": summary.get("wall_s"), "answers": answers,
            "errors": errors, "upstream": upstream, "cpu_s": cpu,
            "request_s_median": statistics.median(elapsed) if elapsed else None}


def run_ponder_solve_adaptive(fake: FakeServer, problems: list[dict[str, Any]],
                              args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    return run_ponder_solve(fake, problems, args, tmp, ("-p", "adaptive=true"))


def run_ponder_solve_early(fake: FakeServer, problems: list[dict[str, Any]],
                           args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    # Fixed from the quiz's design before it was run (not tuned on its results): 3 samples in
    # one request, and 2 more in a second only when no answer holds 2 of the 3.
    return run_ponder_solve(fake, problems, args, tmp,
                            ("-p", "adaptive=true", "-p", "min_samples=3", "-p",
                             "batch_size=2", "-p", "agreement=0.6"))


SYSTEMS = {"optillm self_consistency (proxy)": run_optillm,
           "ponder solve best_of_n": run_ponder_solve,
           "ponder serve best_of_n (proxy)": run_ponder_serve,
           # Not the configuration: up to 5 samples, stopping once the vote is settled.
           "ponder solve best_of_n adaptive=true (supplementary)": run_ponder_solve_adaptive,
           # Adaptive consistency that stops on 2 of 3: at most two requests a problem.
           "ponder solve best_of_n adaptive, 2 of 3 stops (supplementary)":
               run_ponder_solve_early,
           # optillm's plugin that does what best_of_n does: one n=k request, a vote over the
           # extracted answers.
           "optillm majority_voting k=5 (proxy, supplementary)": run_optillm_majority}


# -- scoring ----------------------------------------------------------------------------------

def correct(text: str | None, gold: str) -> bool:
    from ponder.core.answers import canonical_number, extract_answer

    if not text:
        return False
    got, want = canonical_number(extract_answer(text)), canonical_number(gold)
    return got is not None and want is not None and Decimal(got) == Decimal(want)


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


# -- the benchmark ----------------------------------------------------------------------------

def versions(args: argparse.Namespace) -> dict[str, Any]:
    def pip_version(python: Path, package: str) -> str:
        done = subprocess.run([str(python), "-c", f"import importlib.metadata as m; "
                               f"print(m.version({package!r}))"], capture_output=True,
                              text=True, check=False)
        return done.stdout.strip() or f"? ({done.stderr.strip()[-200:]})"

    optillm_python = args.optillm_venv / "bin" / "python"
    freeze = subprocess.run([str(optillm_python), "-m", "pip", "freeze"], capture_output=True,
                            text=True, check=False).stdout.split()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                            capture_output=True, text=True, check=False).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "ponder"], cwd=REPO,
                           capture_output=True, text=True, check=False).stdout.split("\n")
    return {
        "ponder": pip_version(Path(sys.executable), "ponder"),
        "ponder_commit": commit,
        "ponder_tree_modified_files": [line[3:] for line in dirty if line.strip()],
        "openai_client": pip_version(Path(sys.executable), "openai"),
        "python": platform.python_version(),
        "optillm": pip_version(optillm_python, "optillm"),
        "optillm_venv_freeze": freeze,
        "machine": f"{os.cpu_count()} cores, {platform.machine()}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fake-server", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--quiz", type=Path, default=QUIZ)
    parser.add_argument("--latency", type=float, default=0.05, help="upstream seconds a request")
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3],
                        help="fake server seeds, one repeat each")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--problems", type=int, default=100)
    parser.add_argument("--optillm-venv", type=Path, default=Path("/tmp/optillm-venv"))
    parser.add_argument("--only", action="append", choices=list(SYSTEMS),
                        help="run only this system (repeatable)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    if args.fake_server:
        fake_server_main(args)
        return

    sys.path.insert(0, str(REPO))
    problems = [json.loads(line) for line in args.quiz.read_text().splitlines()
                if line.strip()][: args.problems]
    systems = [s for s in SYSTEMS if not args.only or s in args.only]
    load_before = os.getloadavg()[0]
    runs: dict[str, list[dict[str, Any]]] = {s: [] for s in systems}
    with tempfile.TemporaryDirectory(prefix="vs_optillm-") as folder:
        tmp = Path(folder)
        for r, seed in enumerate(args.seeds):
            order = systems[r % len(systems):] + systems[: r % len(systems)]
            for system in order:
                with fake_server(args.quiz, args.latency, seed) as fake:
                    run = SYSTEMS[system](fake, problems, args, tmp)
                right = [correct(a, p["answer"]) for a, p in zip(run["answers"], problems,
                                                                  strict=True)]
                run.update(seed=seed, correct=sum(right), scored=len(right),
                           answers=[a if a is None else a[-200:] for a in run["answers"]])
                runs[system].append(run)
                up = run["upstream"]
                print(f"seed {seed} {system}: {run['wall_s']:.2f}s, {up['requests']} upstream "
                      f"requests, {up['total_tokens']} tokens, {sum(right)}/{len(right)} right, "
                      f"{len(run['errors'])} errors", file=sys.stderr, flush=True)
    load_after = os.getloadavg()[0]

    figures = summarise(runs)
    report = {
        "command": " ".join(["nice -n 10 .venv/bin/python", "benchmarks/vs_optillm.py",
                             *sys.argv[1:]]),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "problems": len(problems), "quiz": str(args.quiz.relative_to(REPO)),
        "latency_s": args.latency, "concurrency": args.concurrency, "seeds": args.seeds,
        "load_avg_1m": [round(load_before, 2), round(load_after, 2)],
        "versions": versions(args),
        "systems": figures,
        "targets": targets(figures),
        "runs": runs,
    }
    print(json.dumps({k: report[k] for k in ("systems", "targets")}, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


def summarise(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    out = {}
    for system, rows in runs.items():
        if not rows:
            continue
        k, n = sum(r["correct"] for r in rows), sum(r["scored"] for r in rows)
        low, high = wilson(k, n)

        def mean(f: Callable[[dict[str, Any]], float], rows: list[dict[str, Any]] = rows) -> float:
            return statistics.fmean(f(r) for r in rows)

        entry = {
            "wall_s_mean": round(mean(lambda r: r["wall_s"]), 3),
            "wall_s_runs": [round(r["wall_s"], 3) for r in rows],
            "upstream_requests_mean": mean(lambda r: r["upstream"]["requests"]),
            "upstream_prompt_tokens_mean": mean(lambda r: r["upstream"]["prompt_tokens"]),
            "upstream_completion_tokens_mean": mean(lambda r: r["upstream"]["completion_tokens"]),
            "upstream_tokens_mean": mean(lambda r: r["upstream"]["total_tokens"]),
            "accuracy_mean": round(k / n, 4),
            "accuracy_pooled_wilson95": [round(low, 4), round(high, 4)],
            "accuracy_runs": [{"correct": r["correct"], "of": r["scored"],
                               "wilson95": [round(x, 4) for x in wilson(r["correct"],
                                                                        r["scored"])]}
                              for r in rows],
            "cpu_s_mean": round(mean(lambda r: r["cpu_s"]), 3),
            "per_problem_s_median_mean": round(mean(lambda r: r["request_s_median"] or 0), 3),
            "errors": sum(len(r["errors"]) for r in rows),
        }
        if rows[0].get("proxy_startup_s") is not None:
            entry["proxy_startup_s_mean"] = round(mean(lambda r: r["proxy_startup_s"]), 3)
        if rows[0].get("run_wall_s") is not None:
            entry["run_wall_s_mean"] = round(mean(lambda r: r["run_wall_s"]), 3)
            entry["run_wall_s_runs"] = [round(r["run_wall_s"], 3) for r in rows]
        out[system] = entry
    return out


def targets(figures: dict[str, Any]) -> dict[str, Any]:
    """Each ponder way against optillm: wall ≤ 1/3, upstream tokens ≤ 60%, accuracy ≥."""
    base = figures.get("optillm self_consistency (proxy)")
    if base is None:
        return {}
    out = {}
    for system, f in figures.items():
        if not system.startswith("ponder"):
            continue
        walls = {"wall": f["wall_s_mean"]}
        if "run_wall_s_mean" in f:
            walls["run_wall (solving only, start-up left out)"] = f["run_wall_s_mean"]
        entry: dict[str, Any] = {}
        for label, wall in walls.items():
            ratio = wall / base["wall_s_mean"]
            entry[f"{label} ratio"] = round(ratio, 3)
            entry[f"{label} <= 1/3"] = ratio <= 1 / 3
        tokens = f["upstream_tokens_mean"] / base["upstream_tokens_mean"]
        entry["upstream tokens ratio"] = round(tokens, 3)
        entry["upstream tokens <= 0.6"] = tokens <= 0.6
        entry["accuracy difference"] = round(f["accuracy_mean"] - base["accuracy_mean"], 4)
        entry["accuracy not lower"] = f["accuracy_mean"] >= base["accuracy_mean"]
        out[system] = entry
    return out


if __name__ == "__main__":
    main()
