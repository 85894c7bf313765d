"""Running code ponder does not trust: a model's program (`Context.execute`) or a candidate
against its tests (`unit_tests`), each in a run of its own with its own ids, namespaces and
limits (see docs/trust.md)."""

from pathlib import Path

# The judge that runs a candidate's tests; run by path inside the sandbox, never imported.
HARNESS = Path(__file__).with_name("harness.py")
