"""`ponder serve`: strategies behind an OpenAI-compatible chat endpoint (see `app`)."""

from typing import TYPE_CHECKING

from ponder.core.lazy import lazy_names

if TYPE_CHECKING:
    from ponder.serve.app import create_app, server_config

# The names docs/serve.md gives, loaded on first use: the CLI's `--help` must not pay for
# Starlette.
_LAZY = dict.fromkeys(["create_app", "server_config"], "ponder.serve.app")
__getattr__, __dir__ = lazy_names(__name__, _LAZY, globals())
__all__ = ["create_app", "server_config"]
