"""Embedded model start-up and speed: cold start (join + hash + load), warm start (load from
cache), decode tokens/s for one stream and for parallel streams.

    .venv/bin/python benchmarks/local_model.py [--parallel 8] [--tokens 200]

Cold start uses a fresh cache folder, so it really joins and hashes the six chunks.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path

from ponder.backends.local import MODEL_FILE, LocalBackend, ensure_model_file
from ponder.core.types import Message

PROMPT = [Message(role="user", content="Write a long story about a robot who learns to paint.")]


async def start(backend: LocalBackend) -> float:
    began = time.perf_counter()
    await backend.start()
    return time.perf_counter() - began


async def decode_rate(backend: LocalBackend, streams: int, tokens: int) -> dict[str, float]:
    # Warm the prompt cache first so the figure is decode speed, not prompt processing.
    await backend.generate(PROMPT, n=1, max_tokens=1)
    began = time.perf_counter()
    batches = await asyncio.gather(*(
        backend.generate(PROMPT, n=1, max_tokens=tokens, temperature=0.8, seed=i)
        for i in range(streams)
    ))
    elapsed = time.perf_counter() - began
    produced = sum(c.usage.completion_tokens for batch in batches for c in batch)
    return {"streams": streams, "completion_tokens": produced, "seconds": round(elapsed, 2),
            "tokens_per_s": round(produced / elapsed, 1)}


async def main(parallel: int, tokens: int) -> dict[str, object]:
    report: dict[str, object] = {"cores": os.cpu_count(), "load_avg": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory() as cache:
        os.environ["PONDER_CACHE_DIR"] = cache
        began = time.perf_counter()
        ensure_model_file()
        report["join_and_hash_s"] = round(time.perf_counter() - began, 2)
        cold = LocalBackend(model_path=Path(cache) / "models" / MODEL_FILE, parallel=parallel)
        report["cold_start_s"] = round(report["join_and_hash_s"] + await start(cold), 2)  # type: ignore[operator]
        await cold.aclose()
    os.environ.pop("PONDER_CACHE_DIR")
    ensure_model_file()  # the user's cache, as a warm start finds it
    warm = LocalBackend(parallel=parallel)
    report["warm_start_s"] = round(await start(warm), 2)
    report["decode_1_stream"] = await decode_rate(warm, 1, tokens)
    report[f"decode_{parallel}_streams"] = await decode_rate(warm, parallel, tokens)
    await warm.aclose()
    return report


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parallel", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=200)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main(args.parallel, args.tokens)), indent=2))
