"""Secrets kept out of everything ponder stores or prints: the user and password in a URL
(`http://user:pass@host`), key-like query parameters (`?api_key=…`), `Bearer`/`Basic`
credentials a server quotes back, and any secret value named outright (the API key).

>>> redact_url("http://bob:hunter2@10.0.0.5:8000/v1?api_key=sk-1&x=2")
'http://***@10.0.0.5:8000/v1?api_key=***&x=2'
>>> redact_secrets("cannot reach http://bob:hunter2@host/v1: key sk-1 refused", ["sk-1"])
'cannot reach http://***@host/v1: key *** refused'
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, unquote, urlsplit

MASK = "***"

# Query parameters whose value is a credential, as servers and proxies name them.
SECRET_PARAMS = ("api_key", "api-key", "apikey", "key", "token", "access_token", "auth",
                 "password", "secret", "sig", "signature")

# `scheme://userinfo@`: the userinfo runs up to the first '@' before the host's '/'.
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)[^/\s@'\"<>]+@")
_PARAM = re.compile(
    r"(?P<name>[?&;](?:" + "|".join(re.escape(name) for name in SECRET_PARAMS) + r")=)"
    r"[^&;#\s'\"<>)\]]+",
    re.IGNORECASE,
)
_AUTH = re.compile(r"\b(?P<scheme>Bearer|Basic)\s+[A-Za-z0-9._~+/=\-]+", re.IGNORECASE)
# A secret this short would mask ordinary words; real keys are far longer.
MIN_SECRET_LEN = 4


def redact_url(url: str) -> str:
    """`url` with its userinfo and key-like query parameters masked."""
    return redact_secrets(url)


def redact_secrets(text: str, secrets: Iterable[str | None] = ()) -> str:
    """`text` with credentials in any URL it holds masked, and each of `secrets` too."""
    for secret in sorted({s for s in secrets if s and len(s) >= MIN_SECRET_LEN},
                         key=len, reverse=True):
        text = text.replace(secret, MASK)
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{MASK}@", text)
    text = _AUTH.sub(lambda m: f"{m['scheme']} {MASK}", text)
    return _PARAM.sub(lambda m: f"{m['name']}{MASK}", text)


def url_secrets(url: str) -> list[str]:
    """The credentials a URL carries (its password, as itself and as the `Basic` credential
    the HTTP client makes of it, and key-like parameter values), to be masked wherever they
    turn up on their own, such as in a server's error message."""
    parts = urlsplit(url)
    found = []
    if parts.password:
        user, password = unquote(parts.username or ""), unquote(parts.password)
        found += [password, base64.b64encode(f"{user}:{password}".encode()).decode()]
    found += [value for name, value in parse_qsl(parts.query)
              if name.lower() in SECRET_PARAMS and value]
    return found
