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
then gives the model the error as an observation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from thrifty.tools.base import Tool, ToolError, tool
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


class SearchUnavailable(Exception):
    """Every provider of the chain failed, at least one of them transiently (the runner retries, after
    ``retry_after`` seconds when the providers asked for a wait: the shortest wait any of them asked)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


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


def _render(provider: str, query: str, hits: Sequence[SearchHit], snippet_chars: int) -> str:
    blocks: list[str] = []
    for hit in hits:
        lines = [f"Title: {' '.join(hit.title.split()) or '(untitled)'}", f"URL: {hit.url}"]
        if hit.date:
            lines.append(f"Date: {hit.date}")
        snippet = " ".join(hit.snippet.split())
        if len(snippet) > snippet_chars:
            snippet = snippet[:snippet_chars].rsplit(" ", 1)[0] + " ..."
        if snippet:
            lines.append(snippet)
        blocks.append("\n".join(lines))
    return as_data(f"{provider} results for {query!r}", "\n\n".join(blocks), kind="web search results")


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
    chain = list(dict.fromkeys([provider, *fallbacks]))
    bases = dict(api_bases or {})
    for name in chain:
        backend.check(name, bases.get(name))
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
