"""Every built-in strategy once with the real embedded model. Checks what the framework does
(an answer extracted, usage counted, every call traced, a stop reason), never whether the
0.5B model got the problem right."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

import ponder
from ponder import LocalBackend, Problem

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

PROBLEM = Problem(id="apples", problem="Tom has 3 apples and buys 5 more. How many apples "
                                      "does Tom have now?")

RUNS: dict[str, tuple[dict[str, Any], set[str]]] = {
    "self_refine": ({"max_iters": 1}, {"no_improvement", "max_iters"}),
    "best_of_n": ({"n": 3, "adaptive": True, "min_samples": 2}, {"done", "consensus", "majority"}),
    "ice": ({"agents": 2, "max_rounds": 1}, {"consensus", "max_rounds"}),
    "tree_search": ({"beam_width": 1, "branching": 2, "max_depth": 3, "max_tokens": 96},
                    {"done", "max_depth"}),
}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def backend() -> AsyncIterator[LocalBackend]:
    pytest.importorskip("xllamacpp")
    async with LocalBackend(parallel=4) as local:
        yield local


@pytest.mark.parametrize("strategy", sorted(RUNS))
async def test_a_strategy_runs_end_to_end_on_the_embedded_model(backend: LocalBackend,
                                                                  strategy: str) -> None:
    params, stop_reasons = RUNS[strategy]
    result = await ponder.asolve(PROBLEM, strategy=strategy, backend=backend, seed=0,
                                 **{"max_tokens": 256, **params})
    assert result.error is None
    assert result.answer  # something was extracted, right or wrong
    assert result.stop_reason in stop_reasons
    calls = [e for e in result.trace if e.kind == "generate"]
    assert calls and all(e.completions for e in calls)
    assert result.usage.calls == len(calls) >= 1
    assert result.usage.completion_tokens > 0 and not result.usage.estimated
    assert result.usage.total_tokens == sum(e.usage.total_tokens for e in calls)


# A HumanEval-shaped problem, its gold stripped as `ponder bench` strips it: the coding paths
# (examples read from the prompt, candidates run in the sandbox, clusters, debugging) with the
# real model's replies, whatever they are.
CODING = Problem(id="inc_all", entry_point="inc_all", tests_public=[], problem=(
    "from typing import List\n\n\ndef inc_all(xs: List[int]) -> List[int]:\n"
    '    """Return the list with every element increased by one.\n'
    "    >>> inc_all([1, 2, 3])\n    [2, 3, 4]\n    >>> inc_all([])\n    []\n"
    '    """\n'))
CODING_RUNS: dict[str, dict[str, Any]] = {
    "best_of_n": {"n": 2, "write_tests": 2},
    "self_refine": {"max_iters": 1, "write_tests": 0},
    "auto": {"batch_size": 2, "max_samples": 2, "debug_rounds": 1, "write_tests": 2},
}


@pytest.mark.parametrize("strategy", sorted(CODING_RUNS))
async def test_a_coding_strategy_runs_end_to_end_on_the_embedded_model(backend: LocalBackend,
                                                                         strategy: str) -> None:
    result = await ponder.asolve(CODING, strategy=strategy, backend=backend, seed=0,
                                 **{"max_tokens": 192, **CODING_RUNS[strategy]})
    assert result.error is None
    assert result.answer is not None and "Final answer" not in result.answer
    calls = [e for e in result.trace if e.kind == "generate"]
    assert result.usage.calls == len(calls) >= 1
    assert "```python" in calls[0].messages[-1].content  # asked for code
    runs = [e for e in result.trace if e.kind == "execute"]
    if strategy == "best_of_n":
        assert runs and result.info["behaviour"]["examples"]["stated"] == 2
        assert len(result.info["pool"]) == 2
    assert all(e.data["calls"] >= 2 for e in runs)  # the prompt's two examples, at least
