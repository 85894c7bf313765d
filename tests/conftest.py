"""Shared fixtures: paths to the shared data sets, and a scripted context for strategy tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def load_jsonl(name: str) -> list[dict[str, Any]]:
    path = DATA / name
    if not path.is_file():
        pytest.skip(f"shared data {path} not present")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture
def data_dir() -> Path:
    return DATA
