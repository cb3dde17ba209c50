"""The web search backend over ``litellm.search``: what :func:`thrifty.tools.web_search.make_web_search`
calls to reach Tavily, Brave, SearXNG, DuckDuckGo, Exa, Serper and the rest of LiteLLM's search providers.

Keys come from the environment, the way LiteLLM reads them (``TAVILY_API_KEY``, ``BRAVE_API_KEY``, ...);
a base URL other than the provider's own gets the key only when ``<PROVIDER>_API_BASE`` names that host
(LiteLLM's rule: a key is never sent to a host nobody configured). Prices are LiteLLM's per-query prices
(``<provider>/search`` in its price map, tiered by the number of results where it has tiers).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from thrifty.budget.retry import final_failure, retry_after
from thrifty.models._litellm import get_litellm
from thrifty.models.gateway import is_transient
from thrifty.redact import redact

__all__ = ["LiteLLMSearch", "SearchError", "search_providers"]


class SearchError(Exception):
    """A provider's failure. ``transient``: a rate limit, a timeout, a 5xx (worth another attempt)."""

    def __init__(
        self, provider: str, message: str, *, transient: bool, retry_after: float | None = None
    ) -> None:
        super().__init__(f"{provider}: {message}")
        self.provider = provider
        self.transient = transient
        self.retry_after = retry_after  # the provider's Retry-After (seconds), if it sent one


def search_providers() -> list[str]:
    """The search providers the installed LiteLLM supports."""
    get_litellm()
    from litellm.types.utils import SearchProviders

    return sorted(p.value for p in SearchProviders)


def _config(provider: str) -> Any:
    get_litellm()
    from litellm.types.utils import SearchProviders
    from litellm.utils import ProviderConfigManager

    known = search_providers()
    if provider not in known:
        raise ValueError(f"unknown web search provider '{provider}' (fix: use one of {', '.join(known)})")
    return ProviderConfigManager.get_provider_search_config(provider=SearchProviders(provider))


def _malformed(exc: BaseException) -> bool:
    """A reply LiteLLM could not parse (it wraps the JSON or schema error as a connection error)."""
    from pydantic import ValidationError

    seen: BaseException | None = exc
    for _ in range(6):
        if seen is None:
            return False
        if isinstance(seen, json.JSONDecodeError | ValidationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _transient(exc: BaseException) -> bool:
    """A rate limit, a timeout, a 5xx or a dropped connection, as for model calls; never a malformed reply
    (the same request would get the same reply)."""
    return not _malformed(exc) and is_transient(exc)


def _check_base(provider: str, api_base: object) -> None:
    """A provider's base URL: None, or an http(s) URL with a host (anything else would fail every call)."""
    if api_base is None:
        return
    if not isinstance(api_base, str):
        raise TypeError(
            f"web_search: api_bases.{provider} is the {type(api_base).__name__} {api_base!r}, not a URL "
            f"(fix: write the server's URL as a string, e.g. api_bases={{'{provider}': 'http://localhost:8080'}})"
        )
    parts = urlsplit(api_base.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(
            f"web_search: api_bases.{provider} is {redact(api_base)!r}, not an http:// or https:// URL "
            "(fix: write the server's full URL, e.g. http://localhost:8080)"
        )


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


class LiteLLMSearch:
    """Runs one provider's search through ``litellm.search``; results are ``{title, url, snippet, date}``
    dicts (a :class:`thrifty.tools.web_search.SearchBackend`)."""

    def check(self, provider: str, api_base: str | None) -> None:
        _check_base(provider, api_base)
        config = _config(provider)
        if config is None:
            raise ValueError(
                f"LiteLLM has no search for provider '{provider}' (fix: choose another provider)"
            )
        try:
            config.validate_environment(headers={}, api_key=None, api_base=api_base)
            if provider == "searxng":  # the one keyless provider with no public default host
                config.get_complete_url(api_base=api_base, optional_params={})
        except ValueError as exc:
            raise ValueError(f"web_search provider '{provider}': {redact(str(exc))}") from None

    def price(self, provider: str, k: int) -> float | None:
        get_litellm()
        from litellm.search.cost_calculator import search_provider_cost_per_query

        try:
            cost, _ = search_provider_cost_per_query(
                model=f"{provider}/search", custom_llm_provider=provider, optional_params={"max_results": k}
            )
        except Exception:  # not in LiteLLM's price map
            return None
        return float(cost)

    def search(
        self, provider: str, query: str, *, k: int, api_base: str | None, timeout: float
    ) -> list[dict[str, str | None]]:
        litellm = get_litellm()
        try:
            response = litellm.search(
                query=query,
                search_provider=provider,
                max_results=k,
                api_base=api_base,
                timeout=timeout,
            )
        except Exception as exc:
            text = str(exc).split("Traceback (most recent call last)")[0]
            message = redact(" ".join(text.split()))[:300] or type(exc).__name__
            if _malformed(exc):
                message = f"malformed reply ({message})"
            final = final_failure(exc)
            if final is not None:  # the same request would fail the same way: not retried
                raise SearchError(provider, redact(final), transient=False) from None
            raise SearchError(
                provider, message, transient=_transient(exc), retry_after=retry_after(exc)
            ) from None
        hits: list[dict[str, str | None]] = []
        for result in getattr(response, "results", None) or []:
            url, title = _text(getattr(result, "url", "")), _text(getattr(result, "title", ""))
            date = getattr(result, "date", None) or getattr(result, "last_updated", None)
            snippet = _text(getattr(result, "snippet", ""))
            hits.append({"title": title, "url": url, "snippet": snippet, "date": _text(date) or None})
        return hits[:k]
