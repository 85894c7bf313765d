"""ponder on a Ray cluster (`pip install 'ponder[ray]'`); see docs/ray.md for when it pays.

    import ponder.ray, ray

    with ponder.ray.cluster("local"):          # or "auto", "ray://head:10001"
        ds = ray.data.read_json("problems.jsonl")
        out = ponder.ray.solve_dataset(ds, backend="http://gpu1:8000/v1", strategy="best_of_n",
                                       n=5, concurrency=32)
        for row in out.iter_rows():             # id, answer, correct, ..., result (the JSON row)
            ...

`import ponder` never imports Ray, and neither does this module: Ray loads when one of these is
called. From the command line: `ponder solve problems.jsonl --ray local`.
"""

from ponder.backends.spec import BackendSpec
from ponder.ray.cluster import cluster
from ponder.ray.dataset import RESULT_COLUMNS, solve_dataset

__all__ = ["RESULT_COLUMNS", "BackendSpec", "cluster", "solve_dataset"]
