"""``web_search``: one tool over the web search providers LiteLLM supports, with fallbacks and a price.

Why a backend object rather than calling LiteLLM here: the tools layer sits below the models layer, which
owns the (offline, lazy) LiteLLM import. :class:`thrifty.models.search.LiteLLMSearch` is the backend a
task file gets; a test or an application may pass any object with the same two methods.

What the model sees: the results normalised to title, URL, date (when given) and snippet, framed by
:func:`thrifty.tools.web.as_data` as untrusted content. What the budget sees: one call at the tool's
price, which is the configured price, else the highest per-query price LiteLLM knows for the providers in
the chain (a failed request is not billed by these providers, so one call pays at most one successful
search). A provider that fails (rate limit, error, malformed reply) is followed by the next one in the
chain; when all fail the call fails, and the runner retries it within the budget (each attempt charged),
then gives the model the error as an observation. A configured base (``api_bases``) that refuses the
connection or whose host name does not resolve is not retried: it names ``api_bases.<provider>`` at once.
"""

from __future__ import annotations

import math
import re
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from thrifty.redact import redact
from thrifty.tools.base import Tool, ToolError, TransientToolError, tool
from thrifty.tools.web import WEB_TIMEOUT, as_data

__all__ = [
    "SearchBackend",
    "SearchHit",
    "SearchUnavailable",
    "make_web_search",
]

DEFAULT_PROVIDER = "duckduckgo"  # needs no key
WEB_SEARCH_K = 5


@dataclass(frozen=True)
class SearchHit:
    """One normalised search result."""

    title: str
    url: str
    snippet: str = ""
    date: str | None = None

    @classmethod
    def of(cls, item: Mapping[str, Any]) -> SearchHit:
        def text(key: str) -> str:
            value = item.get(key)
            return value if isinstance(value, str) else ""

        return cls(text("title"), text("url"), text("snippet"), text("date") or None)


class SearchUnavailable(TransientToolError):
    """Every provider of the chain failed, at least one of them transiently (the runner retries, after
    ``retry_after`` seconds when the providers asked for a wait: the shortest wait any of them asked)."""


class SearchBackend(Protocol):
    def search(
        self, provider: str, query: str, *, k: int, api_base: str | None, timeout: float
    ) -> Sequence[Mapping[str, Any]]:
        """The provider's results (at most ``k``) as ``{title, url, snippet, date}`` mappings. A failure
        raises; an exception whose ``transient`` attribute is false is not worth another attempt."""
        ...

    def price(self, provider: str, k: int) -> float | None:
        """Dollars per query, when known."""
        ...

    def check(self, provider: str, api_base: str | None) -> None:
        """ValueError (with its fix) when the provider cannot be used: unknown, or its key is missing."""
        ...


def _line(text: str, limit: int) -> str:
    """A provider's field on one line (a newline in it could start a line that poses as the frame's end or
    as an instruction), cut at ``limit`` characters."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[:limit].rsplit(" ", 1)[0] + " ..."


def _render(provider: str, query: str, hits: Sequence[SearchHit], snippet_chars: int) -> str:
    blocks: list[str] = []
    for hit in hits:
        lines = [f"Title: {_line(hit.title, 200) or '(untitled)'}", f"URL: {_line(hit.url, 500)}"]
        if hit.date:
            lines.append(f"Date: {_line(hit.date, 40)}")
        snippet = _line(hit.snippet, snippet_chars)
        if snippet:
            lines.append(snippet)
        blocks.append("\n".join(lines))
    return as_data(f"{provider} results for {query!r}", "\n\n".join(blocks), kind="web search results")


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and the exceptions it was raised from or during (a few levels)."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and len(seen) < 8 and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _unreachable(exc: BaseException) -> str | None:
    """Why a server is not there at all (a connection refused, a host name that does not resolve), or None
    (a slow or busy server, worth another attempt)."""
    for cause in _chain(exc):
        if isinstance(cause, socket.gaierror):
            return "the host name does not resolve"
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
    return None


_ENV_NAME = re.compile(r"\b[A-Z][A-Z0-9_]*_API_(?:KEY|BASE)\b")


def _with_fix(provider: str, message: str, base: str | None) -> str:
    """A provider check's message with the fix for its case (a message that has one keeps it)."""
    if message.endswith(")") and " (fix: " in message:
        return message
    env = _ENV_NAME.findall(message)
    key = next((e for e in env if e.endswith("_KEY")), f"{provider.upper()}_API_KEY")
    if base is not None and ("api_base" in message or "Refusing" in message):
        # LiteLLM sends the key from the environment only to a base the environment names too.
        problem = f"web_search provider '{provider}': the {key} from the environment is not sent to api_bases.{provider}"
        fix = (
            f"also export {key.removesuffix('_KEY')}_BASE={base} (the key goes only to a base named there), "
            f"or drop api_bases.{provider} to use the provider's own server"
        )
    elif any(e.endswith("_BASE") for e in env) and base is None:
        problem = f"web_search provider '{provider}' has no public server: it needs the URL of yours"
        variable = next(e for e in env if e.endswith("_BASE"))
        fix = f"add api_bases: {{{provider}: http://your-{provider}-host:8080}} to the tool, or export {variable}=..."
    elif any(e.endswith("_KEY") for e in env):
        problem = f"web_search provider '{provider}' needs an API key: {key} is not set"
        fix = f"export {key}=... before the run, or choose a provider without a key, such as duckduckgo"
        if base is not None:
            fix += f"; with api_bases.{provider}, also export {key.removesuffix('_KEY')}_BASE={base}"
    else:
        return f"{message} (fix: choose another provider, or check its name and options)"
    return f"{problem} (fix: {fix})"


def make_web_search(
    backend: SearchBackend,
    provider: str = DEFAULT_PROVIDER,
    *,
    k: int = WEB_SEARCH_K,
    fallbacks: Sequence[str] = (),
    api_bases: dict[str, str] | None = None,
    price: float | None = None,
    timeout: float = WEB_TIMEOUT,
    retries: int = 2,
    snippet_chars: int = 400,
) -> Tool:
    """The ``web_search`` tool: ``provider`` first, then each of ``fallbacks`` when the one before fails.

    Args:
        backend: What runs the searches (:class:`thrifty.models.search.LiteLLMSearch` for LiteLLM's
            providers).
        provider: LiteLLM search provider (duckduckgo, searxng, tavily, brave, exa_ai, serper, ...).
        k: Results per query.
        fallbacks: Providers tried in order when the ones before fail.
        api_bases: Provider -> base URL (a self-hosted SearXNG, a proxy, a local test server).
        price: Dollars per call (default: the highest price LiteLLM knows among the chain, else 0).
        timeout: Seconds one provider request may take.
        retries: Extra attempts of the whole chain when a provider failed transiently (each charged).
        snippet_chars: Characters of each result's snippet shown.

    Raises ValueError (with its fix) when a provider is unknown or its key is not set.
    """
    if k < 1:
        raise ValueError("web_search: k must be >= 1")
    if isinstance(fallbacks, str):  # each letter was taken for a provider: "unknown web search provider 't'"
        raise TypeError(f"web_search: fallbacks must be a list of providers (fix: fallbacks=[{fallbacks!r}])")
    if not (math.isfinite(timeout) and timeout > 0):
        raise ValueError(f"web_search: timeout must be a positive number of seconds, got {timeout!r}")
    chain = list(dict.fromkeys([provider, *fallbacks]))
    bases = dict(api_bases or {})
    for name in chain:
        try:
            backend.check(name, bases.get(name))
        except ValueError as exc:
            raise ValueError(_with_fix(name, str(exc), bases.get(name))) from None
    if price is None:
        known = [p for p in (backend.price(name, k) for name in chain) if p is not None]
        price = max(known, default=0.0)

    @tool(name="web_search", price=price, timeout=timeout * len(chain) + 5.0, retries=retries)
    def web_search(query: str) -> str:
        """Search the web. Returns the best results: title, URL and a snippet of each. Use read_url(url) to
        read a page in full.

        Args:
            query: Keywords to search for (names, titles, dates, distinctive words).
        """
        wanted = query.strip()
        if not wanted:
            raise ToolError("the query is empty; send keywords")
        failures: list[str] = []
        transient = False
        waits: list[float] = []
        for name in chain:
            try:
                found = backend.search(name, wanted, k=k, api_base=bases.get(name), timeout=timeout)
            except Exception as exc:  # a provider's failure: the next one in the chain is tried
                text = str(exc) or type(exc).__name__
                missing = _unreachable(exc) if name in bases else None
                if missing is not None:  # a configured server that is not there
                    failures.append(
                        f"{name}: cannot reach api_bases.{name} ({redact(bases[name])}): {missing}; start that "
                        f"server or correct api_bases.{name}"
                    )
                    continue  # not worth another (charged) attempt: it would fail the same way
                failures.append(text if text.startswith(f"{name}:") else f"{name}: {text}")
                transient = transient or bool(getattr(exc, "transient", True))
                wait = getattr(exc, "retry_after", None)
                if isinstance(wait, int | float):
                    waits.append(float(wait))
                continue
            hits = [h for h in (SearchHit.of(item) for item in found) if h.url or h.title][:k]
            if not hits:
                return f"no results for {wanted!r} ({name}); try different keywords."
            return _render(name, wanted, hits, snippet_chars)
        detail = "; ".join(failures)
        if transient:
            raise SearchUnavailable(f"search failed: {detail}", min(waits) if waits else None)
        raise ToolError(f"search failed: {detail}")

    return web_search
