"""Shared fixtures: paths to the shared data sets, and a scripted context for strategy tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ponder.types import Candidate, Problem, Verdict

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


class PartialChecker:
    """A verifier that scores partial work (a step holding `6 * 4` is on the right track) and
    passes the answer 24: tree searches value nodes with it instead of the value prompt."""

    name = "partial"

    def score_partial(self, problem: Problem, partial: str) -> float:
        return 1.0 if "6 * 4" in partial else 0.0

    async def verify(self, problem: Problem, candidate: Candidate) -> Verdict:
        return Verdict.from_bool(candidate.answer == "24")
