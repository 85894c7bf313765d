"""Verifiers decide when a strategy may stop and which candidate wins."""

from ponder.verifiers.base import FunctionVerifier, ModelAccess, Verifier, as_verifier
from ponder.verifiers.combinators import all_of, any_of, weighted
from ponder.verifiers.registry import (
    REGISTRY,
    VerifierChoice,
    get_verifier,
    register_verifier,
    spec_for,
)

__all__ = [
    "REGISTRY",
    "FunctionVerifier",
    "ModelAccess",
    "Verifier",
    "VerifierChoice",
    "all_of",
    "any_of",
    "as_verifier",
    "get_verifier",
    "register_verifier",
    "spec_for",
    "weighted",
]
