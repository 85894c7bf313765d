"""Exceptions ponder raises. Each message names the failing value, so one line is enough."""

from __future__ import annotations


class PonderError(Exception):
    """Base class for every error ponder raises on purpose."""


class ConfigError(PonderError, ValueError):
    """A strategy, verifier or backend was configured with something invalid."""


class OutputError(PonderError, OSError):
    """A results, trace or lock file could not be written: a full disk, a quota, an I/O
    error. An `OSError` too, with the OS's `errno`, for code that catches those; its message
    is one line naming the file."""

    def __init__(self, message: str, errno: int | None = None) -> None:
        super().__init__(message)
        # Set after, not passed: `OSError(errno, message)` would print as "[Errno 28] ...".
        self.errno = errno


class BudgetExhausted(PonderError):
    """Too little budget remains for a useful call. Strategies return their best so far."""


# 4xx statuses that say the server is busy, not that the request is wrong: a request refused
# with one (or with a 5xx) may succeed later, or on another server.
RETRYABLE_STATUS = frozenset({408, 409, 425, 429})


class BackendError(PonderError):
    """A backend call failed for good (after retries, or on a non-retryable status)."""

    def __init__(self, message: str, *, status: int | None = None, retries: int = 0) -> None:
        super().__init__(message)
        self.status = status
        self.retries = retries

    @property
    def server_fault(self) -> bool:
        """Whether the server failed rather than the request: it could not be reached, timed
        out or sent nonsense (no status), failed (5xx) or was too busy (429, ...). The same
        request may then succeed on another server; a 400 would fail on any."""
        return self.status is None or self.status >= 500 or self.status in RETRYABLE_STATUS


class MissingDependency(PonderError, ImportError):
    """An optional extra is not installed; the message says what to pip install."""


class SandboxUnavailable(PonderError):
    """The sandbox cannot give the isolation this machine was found to allow, so it runs
    nothing rather than run model-written code with less; the message says what is missing."""


class TemplateError(PonderError):
    """A prompt template could not be found or rendered."""


class ProblemFileError(PonderError):
    """A problem file has bad rows; `errors` holds one line per problem found."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors
