"""`BackendSpec`: which backend to make and how, as plain data. Every front door (the API, the
CLI, `ponder serve`, Ray workers, bench) describes its backend with one, so the rules about
which options go together are written here once; a spec crosses to a Ray worker, a live
backend cannot.

>>> BackendSpec.of("http://gpu1:8000/v1", model="qwen", request_timeout=120).build()
>>> BackendSpec.of(None, local_model="1.5b").build()          # the embedded 1.5B model
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from ponder.backends.base import Backend
from ponder.core.errors import ConfigError
from ponder.core.redact import redact_secrets, redact_url

# What a target may be: one base URL, several (a `BackendPool`), "vllm:<model>", or None /
# "local" for the embedded model.
Target = str | tuple[str, ...] | None


@dataclass(frozen=True)
class BackendSpec:
    """A backend to make. `model_path`, `local_model` (which embedded model: "0.5b", "1.5b",
    …) and `parallel` (its slots) are the embedded model's; `model`, `api_key`, `max_retries`
    and `backoff_max` a server's; `request_timeout` (seconds one request may take) either's.
    An option left None keeps that backend's own default."""

    target: Target = None
    model: str | None = None
    model_path: str | None = None
    local_model: str | None = None
    api_key: str | None = None
    request_timeout: float | None = None
    max_retries: int | None = None
    backoff_max: float | None = None
    parallel: int | None = None

    @classmethod
    def of(cls, backend: BackendSpec | str | Sequence[str] | None, *,
           api_key_env: str | None = None, labels: Mapping[str, str] | None = None,
           **options: Any) -> BackendSpec:
        """`backend` as a checked spec: a spec as it is, else a target with `options`.
        `api_key_env` names the environment variable that holds the key. `labels` name the
        options as the caller's user knows them (the CLI's `--base-url`), for the errors."""
        if isinstance(backend, BackendSpec):
            given = [name for name, value in options.items() if value is not None]
            if given or api_key_env is not None:
                raise ConfigError(f"backend is a BackendSpec; give {', '.join(given)} in it")
            spec = backend
        else:
            if isinstance(backend, Backend):  # e.g. for Ray workers, in other processes
                raise ConfigError(f"backend {type(backend).__name__} is a live client, which "
                                  "cannot be sent to another process; pass its base URL(s) or "
                                  "a ponder.BackendSpec")
            if backend is not None and not isinstance(backend, str | list | tuple):
                hint = ("; a backend of your own subclasses ponder.Backend (its defaults "
                        "supply start, aclose and the rest)" if hasattr(backend, "generate")
                        else "")
                raise ConfigError(f"backend {backend!r} is not a Backend, a base URL, a list "
                                  f"of base URLs, or None{hint}")
            target: Target = (tuple(backend) if isinstance(backend, list | tuple)
                              else backend)
            if isinstance(target, tuple) and len(target) == 1:
                target = target[0]  # one URL: the plain server backend
            if options.get("model_path") is not None:
                options["model_path"] = str(Path(options["model_path"]).resolve())
            spec = cls(target, **options)
        if api_key_env is not None:
            if spec.embedded:
                raise ConfigError(f"{_label('api_key_env', labels)} needs "
                                  f"{_label('target', labels)}; the embedded model takes "
                                  f"{_label('model_path', labels)}")
            key = os.environ.get(api_key_env)
            if not key:
                raise ConfigError(f"{_label('api_key_env', labels)} {api_key_env}: that "
                                  "environment variable is not set")
            spec = replace(spec, api_key=key)
        spec.check(labels)
        return spec

    @property
    def embedded(self) -> bool:
        return self.target is None or self.target == "local"

    def check(self, labels: Mapping[str, str] | None = None) -> None:
        """Raise the `ConfigError` `build` would, without making anything: no connection, no
        model load."""
        def name(option: str) -> str:
            return _label(option, labels)

        target = "a server" if labels else redact_secrets(repr(self.target))
        if self.embedded:
            for option in ("model", "api_key"):
                if getattr(self, option) is not None:
                    raise ConfigError(f"{name(option)} needs {name('target')}; the embedded "
                                      f"model takes {name('model_path')}")
        else:
            if self.model_path is not None:
                raise ConfigError(f"{name('model_path')} runs the embedded model; it cannot "
                                  f"go with {target}")
            if self.local_model is not None:
                raise ConfigError(f"{name('local_model')} picks the embedded model; it "
                                  f"cannot go with {target}")
        if self.local_model is not None:
            from ponder.backends.local import embedded_model

            embedded_model(self.local_model)  # an unknown name fails here, not on first use
        if isinstance(self.target, tuple):
            _check_urls(self.target)

    def build(self) -> Backend:
        """A new backend of this spec; the caller closes it (`aclose`)."""
        self.check()
        if self.embedded:
            from ponder.backends.local import LocalBackend

            return LocalBackend(model_path=self.model_path, model=self.local_model,
                                **_given(parallel=self.parallel,
                                         timeout=self.request_timeout))
        server = _given(model=self.model, api_key=self.api_key, timeout=self.request_timeout,
                        backoff_max=self.backoff_max)
        if isinstance(self.target, tuple):
            from ponder.backends.openai import OpenAIBackend
            from ponder.backends.pool import BackendPool

            # A server that fails is better retried on another than again and again: one retry.
            retries = 1 if self.max_retries is None else self.max_retries
            return BackendPool([OpenAIBackend(base_url=url, max_retries=retries, **server)
                                for url in self.target])
        assert self.target is not None
        if self.target.startswith("vllm:"):
            from ponder.backends.vllm import VLLMBackend

            return VLLMBackend(self.target.removeprefix("vllm:"))
        from ponder.backends.openai import OpenAIBackend

        return OpenAIBackend(base_url=self.target,
                             **server, **_given(max_retries=self.max_retries))

    def __repr__(self) -> str:
        shown = ", ".join(f"{f.name}={'***' if f.name == 'api_key' else repr(value)}"
                          for f in fields(self) if (value := getattr(self, f.name)) is not None)
        return redact_secrets(f"BackendSpec({shown})")



def make_backend(backend: Backend | BackendSpec | str | Sequence[str] | None,
                 **options: Any) -> tuple[Backend, bool]:
    """The backend to use, and whether it was made here (and so must be closed by the maker).
    A live `Backend` is used as it is; anything else goes through `BackendSpec.of`."""
    if isinstance(backend, Backend):
        given = [name for name, value in options.items() if value is not None]
        if given:
            raise ConfigError(f"{', '.join(given)} shape a backend ponder makes; backend= is "
                              f"a live {type(backend).__name__}, made already")
        return backend, False
    return BackendSpec.of(backend, **options).build(), True


def _check_urls(urls: Sequence[object]) -> None:
    if not urls:
        raise ConfigError("backend=[]: a list of backends needs at least one base URL")
    seen: set[str] = set()
    for url in urls:
        if not isinstance(url, str) or not url or url == "local" or url.startswith("vllm:"):
            shown = redact_url(url) if isinstance(url, str) else url
            raise ConfigError(f"backend list item {shown!r} is not a base URL: a list of "
                              "backends pools OpenAI-compatible servers")
        if url.rstrip("/") in seen:
            raise ConfigError(f"base URL {redact_url(url)!r} is listed twice")
        seen.add(url.rstrip("/"))


def _label(option: str, labels: Mapping[str, str] | None) -> str:
    return (labels or {}).get(option, "backend" if option == "target" else option)


def _given(**options: Any) -> dict[str, Any]:
    """The options that were set, so that the rest keep the backend's own defaults."""
    return {name: value for name, value in options.items() if value is not None}
