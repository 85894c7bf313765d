"""A Ray Dataset of problems in, a Ray Dataset of results out (`solve_dataset`): Ray Data
streams and stores the rows; there is no results file."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ponder.backends.spec import BackendSpec
from ponder.core.budget import Budget
from ponder.core.errors import ProblemFileError
from ponder.core.types import Problem, Result
from ponder.ray.cluster import cluster_cpus, import_ray
from ponder.ray.job import SolveJob, SolverWorker
from ponder.runs.problem_rows import MAX_FIELD_BYTES, problem_from_row
from ponder.runs.results import problem_hash, result_line
from ponder.strategies.effort import strategy_for
from ponder.verifiers import VerifierChoice

if TYPE_CHECKING:
    import pyarrow
    import ray.data

    from ponder.verifiers.registry import VerifierLike

# Ray Data hands a worker this many problems per batch, per problem it keeps in flight: a
# batch ends with its slowest problem, so several rounds of the slots keep them busy between.
BATCHES_PER_SLOT = 4

# The columns of `solve_dataset`'s rows; `result` is the row a results file would hold (JSON,
# trace left out): `Result.model_validate_json(row["result"])` gives the whole `Result`.
RESULT_COLUMNS = ("id", "answer", "correct", "stop_reason", "error", "total_tokens", "calls",
                  "elapsed_s", "result")


def solve_dataset(
    dataset: ray.data.Dataset,
    *,
    strategy: str = "single",
    backend: BackendSpec | str | Sequence[str] | None = None,
    model: str | None = None,
    verifier: VerifierLike | None = None,
    budget: Budget | None = None,
    templates_dir: str | Path | None = None,
    seed: int | None = None,
    concurrency: int = 16,
    workers: int | None = None,
    batch_size: int | None = None,
    allow_code_verifiers: bool = False,
    max_field_bytes: int = MAX_FIELD_BYTES,
    **params: Any,
) -> ray.data.Dataset:
    """A Ray Dataset of results, one row per problem row of `dataset` (lazy, as Ray Data is:
    nothing runs until it is read). Each row of `dataset` is a problem as in a problem file
    (`problem` or `prompt`, `id`, `answer`, `test` + `entry_point`, `tests`, ...), under the
    same rules: no code verifier unless `allow_code_verifiers`; a row that breaks them gives
    an error row. Rows come back in no set order, with the columns `RESULT_COLUMNS`; `result`
    holds the whole row as a results file would.

    `backend` is a base URL, a list of them, a `BackendSpec`, or None for an embedded model in
    each worker (memory times `workers`). Up to `workers` Ray Data actors (default: one per
    CPU of the cluster), each with `concurrency` problems in flight on its own event loop.

    >>> ds = ray.data.read_json("problems.jsonl")
    >>> out = solve_dataset(ds, backend="http://gpu1:8000/v1", strategy="best_of_n", n=5)
    >>> out.write_json("results/")    # or: for row in out.iter_rows(): ...
    """
    ray = import_ray()
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    # What a worker would refuse is refused here, once, before any worker starts: a bad
    # strategy parameter, a verifier that does not load, backend options that do not go
    # together.
    spec, config = strategy_for(None, strategy, params)
    VerifierChoice(verifier)
    job = SolveJob(spec, config, BackendSpec.of(backend, model=model), verifier=verifier,
                   budget=budget or Budget(),
                   templates_dir=None if templates_dir is None else str(Path(templates_dir)
                                                                         .resolve()),
                   seed=seed)
    pool = ray.data.ActorPoolStrategy(size=workers) if workers is not None else \
        ray.data.ActorPoolStrategy(min_size=1, max_size=cluster_cpus())
    return dataset.map_batches(
        BatchSolver, batch_size=batch_size or BATCHES_PER_SLOT * concurrency,
        batch_format="pyarrow", compute=pool, num_cpus=1,
        fn_constructor_kwargs={"job": job, "concurrency": concurrency,
                               "allow_code_verifiers": allow_code_verifiers,
                               "max_field_bytes": max_field_bytes})


class BatchSolver:
    """Ray Data's worker for `solve_dataset`: each batch of problem rows solved by the local
    runner, `concurrency` at a time, on an event loop the worker keeps for its life (the
    backend's connections live on it)."""

    def __init__(self, job: SolveJob, concurrency: int, allow_code_verifiers: bool,
                 max_field_bytes: int) -> None:
        from ponder.portal import SyncPortal

        self.worker = SolverWorker(job)
        self.concurrency = concurrency
        self.allow_code_verifiers = allow_code_verifiers
        self.max_field_bytes = max_field_bytes
        self.portal = SyncPortal()

    def __call__(self, batch: pyarrow.Table) -> pyarrow.Table:
        problems: list[Problem] = []
        refused: list[Result] = []
        for row in batch.to_pylist():
            try:
                problems.append(self.problem(row))
            except ProblemFileError as exc:  # a bad row is a failed result; the rest go on
                refused.append(Result(id=str(row.get("id") or "row"), answer=None,
                                      stop_reason="error",
                                      error=f"ProblemFileError: {'; '.join(exc.errors)}"))
        solved = self.portal.run(lambda: self.worker.solve_all(problems, self.concurrency))
        return results_table([*solved, *refused])

    def problem(self, row: dict[str, Any]) -> Problem:
        """A row as a problem, as a problem file's row would be; one without an id is named
        by its content (`row-<hash>`), the same in every run."""
        given = {key: value for key, value in row.items() if value is not None}
        problem = problem_from_row(given, "", where=f"row {given.get('id', '')}".rstrip(),
                                   allow_code_verifiers=self.allow_code_verifiers,
                                   max_field_bytes=self.max_field_bytes)
        if not problem.id:
            problem = problem.model_copy(update={"id": f"row-{problem_hash(problem)[:12]}"})
        return problem


def results_table(results: Sequence[Result]) -> pyarrow.Table:
    """`results` as an Arrow table of `RESULT_COLUMNS`, with one schema whatever they hold
    (Ray Data joins the blocks of a Dataset, and a column that is all nulls in one block
    would otherwise clash with another)."""
    import pyarrow as pa

    schema = pa.schema([("id", pa.string()), ("answer", pa.string()), ("correct", pa.bool_()),
                        ("stop_reason", pa.string()), ("error", pa.string()),
                        ("total_tokens", pa.int64()), ("calls", pa.int64()),
                        ("elapsed_s", pa.float64()), ("result", pa.string())])
    rows = [{"id": r.id, "answer": r.answer, "correct": r.correct, "stop_reason": r.stop_reason,
             "error": r.error, "total_tokens": r.usage.total_tokens, "calls": r.usage.calls,
             "elapsed_s": r.elapsed_s, "result": result_line(r).rstrip("\n")}
            for r in results]
    return pa.Table.from_pylist(rows, schema=schema)
