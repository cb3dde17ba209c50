"""One scrubber for every text that leaves a provider, a tool or a memory tier.

Error messages are where keys leak: a provider echoes the key it rejected, a tool's HTTP client puts the
URL with ``?key=...`` in its exception. Every such text passes :func:`redact` before it reaches a result,
a trace, the run store, a log line or the next prompt (which goes to a third party).

Two nets:

* **the exact values** of the secrets in this process's environment (any variable whose name says it holds
  a key, token, secret or password), wherever they appear and whatever their shape;
* **the shapes** of the common key formats (OpenAI / Anthropic ``sk-``, Gemini ``AIza``, Hugging Face
  ``hf_``, GitHub ``ghp_`` and ``github_pat_``, AWS ``AKIA`` / ``ASIA``, xAI ``xai-``, Groq ``gsk_``,
  Replicate ``r8_``, Slack ``xox.-``, JWTs, ``Bearer`` tokens) and of secrets in URLs and key=value text
  (``?key=``, ``api_key=``, ``token=``, ``password=``...).

>>> redact("401: invalid api key sk-proj-abcDEF1234567890+/xyz for https://x.test/v1?key=AIzaSyA1234567890")
'401: invalid api key sk-proj-*** for https://x.test/v1?key=***'

A redacted key keeps its recognisable prefix (``sk-***``) so an error still says *which* key was wrong.
The module imports nothing of thrifty: every layer may use it.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Mapping
from typing import cast

__all__ = ["MASK", "SECRET_NAME", "environment_secrets", "redact", "redact_value"]

MASK = "***"

# Environment variables whose values are secrets: OPENAI_API_KEY, HF_TOKEN, AWS_SECRET_ACCESS_KEY, ...
SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|AUTH)", re.IGNORECASE)
_MIN_SECRET_LEN = 8  # shorter values ("1", "true") would mask ordinary words

_KEY_CHARS = r"[A-Za-z0-9_\-+/=.]"
_PROVIDER_PREFIXES = (
    "sk-", "xai-", "gsk_", "r8_", "hf_", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "glpat-",
    "xox", "AIza", "_live_", "tvly-", "pplx-",
)  # fmt: skip


def _has(*needles: str) -> Callable[[str, str], bool]:
    """A cheap necessary condition for a shape: one of ``needles`` occurs in the text."""

    def check(text: str, _folded: str) -> bool:
        for needle in needles:  # noqa: SIM110 - a plain loop: any() over a generator costs more
            if needle in text:
                return True
        return False

    return check


def _has_lower(*needles: str) -> Callable[[str, str], bool]:
    """The same, case-insensitive (``needles`` in lower case, looked up in the case-folded text)."""

    def check(_text: str, folded: str) -> bool:
        for needle in needles:  # noqa: SIM110 - as above
            if needle in folded:
                return True
        return False

    return check


# Each shape: (pattern, replacement, a necessary condition checked first). The conditions are plain
# substring tests, so ordinary text (a 4,000-character search result) costs a few microseconds, not the
# milliseconds the regexes would take scanning it.
_SHAPES: list[tuple[re.Pattern[str], str, Callable[[str, str], bool]]] = [
    # JWT: three base64url parts, the first two starting with eyJ ('{"').
    (
        re.compile(r"\beyJ[A-Za-z0-9_\-]{6,}\.eyJ[A-Za-z0-9_\-]{6,}\.[A-Za-z0-9_\-+/=]{6,}"),
        "eyJ" + MASK,
        _has("eyJ"),
    ),
    # Authorization headers.
    (
        re.compile(r"\b(Bearer|Basic|Token)\s+[A-Za-z0-9_\-+/=.~]{8,}", re.IGNORECASE),
        r"\1 " + MASK,
        _has_lower("bearer", "basic", "token"),
    ),
    # Prefixed provider keys: keep the prefix, mask the rest (including + / = of base64-ish keys).
    (
        re.compile(
            r"\b(sk-ant-|sk-proj-|sk-or-|sk-|xai-|gsk_|r8_|hf_|ghp_|gho_|ghu_|ghs_|ghr_|github_pat_|glpat-"
            rf"|xox[abposr]-|AIza|pk_live_|sk_live_|rk_live_|tvly-|pplx-){_KEY_CHARS}{{8,}}"
        ),
        r"\1" + MASK,
        _has(*_PROVIDER_PREFIXES),
    ),
    # AWS access key ids.
    (re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"), r"\1" + MASK, _has("AKIA", "ASIA")),
    # Secrets in URL query strings: ?key=..., &access_token=..., &api_token=..., &X-Amz-Signature=...,
    # ;jsessionid=... (a parameter named so, or ending in _key, -token, ... after a prefix); the value ends
    # before a bracket or comma, so "(...?token=x): refused" keeps its "):".
    (
        re.compile(
            r"(?i)([?&;])((?:[a-z0-9]+[_-])*(?:key|apikey|token|auth|sig|signature|secret|password|credential)"
            r"|j?session[_-]?id)=([^&;?\s#\"'<>()\[\],]+)"
        ),
        r"\1\2=" + MASK,
        _has("="),
    ),
    # key=value / "key": "value" text naming a secret (headers, JSON, config dumps).
    (
        re.compile(
            r"(?i)\b((?:x-)?api[_-]?key|apikey|api[_-]?token|access[_-]?(?:token|key)|auth[_-]?token"
            r"|refresh[_-]?token|private[_-]?(?:token|key)|client[_-]?secret|secret[_-]?(?:access[_-]?)?key"
            r"|password|passwd)(\"?\s*[=:]\s*\"?)"
            r"([^\s\"',;}&()\[\]]{4,})"
        ),
        r"\1\2" + MASK,
        _has_lower("key", "token", "secret", "passw"),
    ),
    # A bare token= / secret= (or a JSON "token": "..."), not prose such as "the token: x".
    (
        re.compile(r"(?i)\b(token|secret)(=|\"\s*:\s*\")([^\s\"',;}&()\[\]]{4,})"),
        r"\1\2" + MASK,
        _has_lower("token", "secret"),
    ),
    # user:password@host in URLs (a password holding an unescaped @ is masked up to the last @ before the
    # path: it is the host that follows the last one).
    (
        re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://[^\s/:@]+):[^\s/]+@"),
        r"\1:" + MASK + "@",
        _has("://"),
    ),
]

_env_lock = threading.Lock()
# (the environment it was read from, its secret values longest first, a regex of them or None)
_env_cache: tuple[object, tuple[str, ...], re.Pattern[str] | None] | None = None


def environment_secrets(environ: Mapping[str, str] | None = None) -> list[str]:
    """The values of this process's secret-looking environment variables (longest first)."""
    env = os.environ if environ is None else environ
    values = {
        value.strip()
        for name, value in env.items()
        if SECRET_NAME.search(name) and len(value.strip()) >= _MIN_SECRET_LEN
    }
    return sorted(values, key=len, reverse=True)


def _environment_snapshot() -> object:
    """Something equal to itself exactly while the environment is unchanged, cheap to take and compare:
    a copy of ``os.environ``'s raw mapping (a plain dict copy; no decoding, no regex)."""
    raw = getattr(os.environ, "_data", None)
    if isinstance(raw, dict):
        return cast("dict[object, object]", raw).copy()
    return tuple(sorted((k, v) for k, v in os.environ.items() if SECRET_NAME.search(k)))


def _environment_secrets_cached() -> tuple[tuple[str, ...], re.Pattern[str] | None]:
    """The environment's secret values and a regex of them, rebuilt only when the environment changes."""
    global _env_cache
    snapshot = _environment_snapshot()
    cached = _env_cache
    if cached is not None and cached[0] == snapshot:
        return cached[1], cached[2]
    with _env_lock:
        values = tuple(environment_secrets())
        pattern = re.compile("|".join(re.escape(v) for v in values)) if values else None
        _env_cache = (snapshot, values, pattern)
    return values, pattern


def redact(text: str) -> str:
    """``text`` with every secret it holds masked (exact environment values, then known key shapes)."""
    if not text:
        return text
    values, pattern = _environment_secrets_cached()
    if pattern is not None:
        for value in values:
            if value in text:
                text = pattern.sub(MASK, text)
                break
    folded = text.casefold()
    for shape, replacement, may_match in _SHAPES:
        if may_match(text, folded):
            text = shape.sub(replacement, text)
    return text


def redact_value(value: object) -> object:
    """:func:`redact` applied to every string inside ``value`` (dicts, lists and tuples are walked; a dict's
    string keys too: a session id may be one)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {redact_value(k): redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact_value(v) for v in value)
    return value
