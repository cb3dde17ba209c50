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
from collections.abc import Mapping

__all__ = ["MASK", "SECRET_NAME", "environment_secrets", "redact", "redact_value"]

MASK = "***"

# Environment variables whose values are secrets: OPENAI_API_KEY, HF_TOKEN, AWS_SECRET_ACCESS_KEY, ...
SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|AUTH)", re.IGNORECASE)
_MIN_SECRET_LEN = 8  # shorter values ("1", "true") would mask ordinary words

_KEY_CHARS = r"[A-Za-z0-9_\-+/=.]"
_SHAPES: list[tuple[re.Pattern[str], str]] = [
    # JWT: three base64url parts, the first two starting with eyJ ('{"').
    (re.compile(r"\beyJ[A-Za-z0-9_\-]{6,}\.eyJ[A-Za-z0-9_\-]{6,}\.[A-Za-z0-9_\-+/=]{6,}"), "eyJ" + MASK),
    # Authorization headers.
    (re.compile(r"\b(Bearer|Basic|Token)\s+[A-Za-z0-9_\-+/=.~]{8,}", re.IGNORECASE), r"\1 " + MASK),
    # Prefixed provider keys: keep the prefix, mask the rest (including + / = of base64-ish keys).
    (
        re.compile(
            r"\b(sk-ant-|sk-proj-|sk-or-|sk-|xai-|gsk_|r8_|hf_|ghp_|gho_|ghu_|ghs_|ghr_|github_pat_|glpat-"
            rf"|xox[abposr]-|AIza|pk_live_|sk_live_|rk_live_){_KEY_CHARS}{{8,}}"
        ),
        r"\1" + MASK,
    ),
    # AWS access key ids.
    (re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"), r"\1" + MASK),
    # Secrets in URL query strings: ?key=..., &access_token=..., &sig=...
    (
        re.compile(
            r"(?i)([?&;])(key|api[_-]?key|apikey|token|access[_-]?token|auth|sig|signature|secret|password)"
            r"=([^&\s#\"'<>]+)"
        ),
        r"\1\2=" + MASK,
    ),
    # key=value / "key": "value" text naming a secret (headers, JSON, config dumps).
    (
        re.compile(
            r"(?i)\b((?:x-)?api[_-]?key|apikey|access[_-]?token|auth[_-]?token|refresh[_-]?token"
            r"|client[_-]?secret|secret[_-]?(?:access[_-]?)?key|password|passwd)(\"?\s*[=:]\s*\"?)"
            r"([^\s\"',;}&]{4,})"
        ),
        r"\1\2" + MASK,
    ),
    # user:password@host in URLs.
    (re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://[^\s/:@]+):[^\s/@]+@"), r"\1:" + MASK + "@"),
]

_env_lock = threading.Lock()
_env_cache: tuple[tuple[tuple[str, str], ...], re.Pattern[str] | None] | None = None


def environment_secrets(environ: Mapping[str, str] | None = None) -> list[str]:
    """The values of this process's secret-looking environment variables (longest first)."""
    env = os.environ if environ is None else environ
    values = {
        value.strip()
        for name, value in env.items()
        if SECRET_NAME.search(name) and len(value.strip()) >= _MIN_SECRET_LEN
    }
    return sorted(values, key=len, reverse=True)


def _environment_pattern() -> re.Pattern[str] | None:
    """A regex of the environment's secret values, rebuilt only when the environment changes."""
    global _env_cache
    snapshot = tuple(sorted((k, v) for k, v in os.environ.items() if SECRET_NAME.search(k)))
    cached = _env_cache
    if cached is not None and cached[0] == snapshot:
        return cached[1]
    with _env_lock:
        values = environment_secrets()
        pattern = re.compile("|".join(re.escape(v) for v in values)) if values else None
        _env_cache = (snapshot, pattern)
    return pattern


def redact(text: str) -> str:
    """``text`` with every secret it holds masked (exact environment values, then known key shapes)."""
    if not text:
        return text
    pattern = _environment_pattern()
    if pattern is not None:
        text = pattern.sub(MASK, text)
    for shape, replacement in _SHAPES:
        text = shape.sub(replacement, text)
    return text


def redact_value(value: object) -> object:
    """:func:`redact` applied to every string inside ``value`` (dicts, lists and tuples are walked)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {k: redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact_value(v) for v in value)
    return value
