"""web_search through the real ``litellm.search`` against a local server playing SearXNG, Tavily and
DuckDuckGo: normalised results, prices on the Ledger, retries within the budget, fallbacks."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from tests.tools.webserver import Request, WebServer
from thrifty.budget import Budget, BudgetExceeded, Ledger, Pricing
from thrifty.models.search import LiteLLMSearch, search_providers
from thrifty.tools import ToolRunner
from thrifty.tools.web_search import make_web_search

SEARX = {
    "results": [
        {
            "title": "Scott Derrickson",
            "url": "https://en.example.org/Scott_Derrickson",
            "content": "Scott Derrickson is an American director.",
            "publishedDate": "2024-05-01",
        },
        {"title": "Ed Wood", "url": "https://en.example.org/Ed_Wood", "content": "Edward Davis Wood Jr."},
        {"title": "Sinister", "url": "https://en.example.org/Sinister", "content": "A 2012 horror film."},
    ]
}


def _searx(request: Request):
    if request.query.get("q") == "nothing":
        return 200, {"Content-Type": "application/json"}, b'{"results": []}'
    return 200, {"Content-Type": "application/json"}, json.dumps(SEARX).encode()


def _tavily(request: Request):
    if request.headers.get("authorization") != "Bearer tvly-test-key-123":
        return 401, {"Content-Type": "application/json"}, b'{"detail": "bad key"}'
    query = json.loads(request.body)["query"]
    body = {
        "results": [{"title": f"Tavily on {query}", "url": "https://t.example/1", "content": "tavily says"}]
    }
    return 200, {"Content-Type": "application/json"}, json.dumps(body).encode()


ROUTES = {
    "/searx/search": _searx,
    "/tavily/search": _tavily,
    "/limited/search": lambda _r: (
        429,
        {"Content-Type": "application/json", "Retry-After": "0"},
        b'{"error": "slow down"}',
    ),
    "/slow-down/search": lambda _r: (
        429,
        {"Content-Type": "application/json", "Retry-After": "0.4"},
        b'{"error": "slow down"}',
    ),
    "/later/search": lambda _r: (
        429,
        {"Content-Type": "application/json", "Retry-After": "5"},
        b'{"error": "come back later"}',
    ),
    "/hour/search": lambda _r: (
        429,
        {"Content-Type": "application/json", "Retry-After": "3600"},
        b'{"error": "come back in an hour"}',
    ),
    "/broken/search": lambda _r: (200, {"Content-Type": "application/json"}, b"{not json"),
    "/down/search": lambda _r: (503, {"Content-Type": "text/plain"}, b"down"),
}


@pytest.fixture(scope="module")
def server() -> Iterator[WebServer]:
    with WebServer(ROUTES) as srv:  # type: ignore[arg-type]
        yield srv


@pytest.fixture
def tavily_env(server: WebServer, monkeypatch: pytest.MonkeyPatch) -> str:
    base = server.url("/tavily")
    monkeypatch.setenv("TAVILY_API_KEY", "tvly-test-key-123")
    monkeypatch.setenv("TAVILY_API_BASE", base)
    return base


def _runner(tool, budget: Budget | None = None, pricing: Pricing | None = None) -> ToolRunner:
    return ToolRunner([tool], Ledger(budget or Budget()), pricing)


def test_providers_listed() -> None:
    names = search_providers()
    assert {"tavily", "searxng", "duckduckgo", "brave", "exa_ai", "serper"} <= set(names)


def test_searxng_results_normalised_and_framed(server: WebServer) -> None:
    tool = make_web_search(LiteLLMSearch(), "searxng", k=2, api_bases={"searxng": server.url("/searx")})
    with _runner(tool) as runner:
        obs = runner.run("web_search", {"query": "Scott Derrickson"})
    assert obs.ok, obs.content
    assert obs.content.startswith("[web search results: searxng results for 'Scott Derrickson'")
    assert (
        "Title: Scott Derrickson\nURL: https://en.example.org/Scott_Derrickson\nDate: 2024-05-01"
        in obs.content
    )
    assert "Ed Wood" in obs.content and "Sinister" not in obs.content  # k=2
    assert server.requests[-1].query["q"] == "Scott Derrickson"
    assert obs.usd == 0.0  # LiteLLM prices searxng at $0


def test_empty_results_are_an_observation(server: WebServer) -> None:
    tool = make_web_search(LiteLLMSearch(), "searxng", api_bases={"searxng": server.url("/searx")})
    with _runner(tool) as runner:
        obs = runner.run("web_search", {"query": "nothing"})
        assert obs.ok and obs.content.startswith("no results for 'nothing'")
        assert not runner.run("web_search", {"query": "  "}).ok


def test_keyed_provider_price_from_litellm(server: WebServer, tavily_env: str) -> None:
    tool = make_web_search(LiteLLMSearch(), "tavily", k=3)
    assert tool.price == pytest.approx(0.008)  # LiteLLM's price of tavily/search
    ledger = Ledger(Budget())
    with ToolRunner([tool], ledger) as runner:
        obs = runner.run("web_search", {"query": "Ed Wood"})
    assert obs.ok and "Tavily on Ed Wood" in obs.content
    assert ledger.spent["usd"] == pytest.approx(0.008)
    assert ledger.spent["tool:web_search"] == 1
    assert json.loads(server.requests[-1].body)["max_results"] == 3


def test_configured_price_wins(server: WebServer, tavily_env: str) -> None:
    tool = make_web_search(LiteLLMSearch(), "tavily", price=0.05)
    ledger = Ledger(Budget())
    with ToolRunner([tool], ledger, Pricing(tools={"web_search": 0.02})) as runner:
        runner.run("web_search", {"query": "x"})
    assert ledger.spent["usd"] == pytest.approx(0.02)


def test_missing_key_is_a_startup_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TAVILY_API_KEY", raising=False)
    with pytest.raises(ValueError, match="TAVILY_API_KEY"):
        make_web_search(LiteLLMSearch(), "tavily")
    with pytest.raises(ValueError, match="unknown web search provider 'nosuch'"):
        make_web_search(LiteLLMSearch(), "nosuch")
    monkeypatch.delenv("SEARXNG_API_BASE", raising=False)
    with pytest.raises(ValueError, match="SEARXNG_API_BASE"):
        make_web_search(LiteLLMSearch(), "searxng")


def test_key_never_reaches_the_observation(server: WebServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAVILY_API_KEY", "tvly-wrong-key-9f8e7d6c5b4a")
    monkeypatch.setenv("TAVILY_API_BASE", server.url("/tavily"))
    tool = make_web_search(LiteLLMSearch(), "tavily", retries=0)
    with _runner(tool) as runner:
        obs = runner.run("web_search", {"query": "x"})
    assert not obs.ok and "tavily" in obs.content
    assert "tvly-wrong-key-9f8e7d6c5b4a" not in obs.content


def test_rate_limit_retried_within_the_budget(server: WebServer) -> None:
    tool = make_web_search(
        LiteLLMSearch(), "searxng", api_bases={"searxng": server.url("/limited")}, price=0.01, retries=4
    )
    before = server.hits["/limited/search"]
    ledger = Ledger(Budget(usd=0.035))
    with ToolRunner([tool], ledger) as runner:
        obs = runner.run("web_search", {"query": "x"})
    assert not obs.ok and "search failed" in obs.content and "searxng" in obs.content
    assert "SearchUnavailable" not in obs.content  # the message is for the model, not our class name
    assert obs.attempts == 3  # the fourth attempt would pass the $0.035 limit
    assert ledger.spent["usd"] == pytest.approx(0.03) and ledger.spent["usd"] <= 0.035
    assert server.hits["/limited/search"] - before >= 3
    with ToolRunner([tool], Ledger(Budget(usd=0.005))) as poor, pytest.raises(BudgetExceeded):
        poor.run("web_search", {"query": "y"})  # the first attempt cannot be paid: nothing is sent


def _limited(server: WebServer, route: str, retries: int = 2):
    return make_web_search(
        LiteLLMSearch(), "searxng", api_bases={"searxng": server.url(route)}, retries=retries
    )


def test_retry_after_is_waited_before_the_next_attempt(server: WebServer) -> None:
    ledger = Ledger(Budget(seconds=30))
    started = time.monotonic()
    with ToolRunner([_limited(server, "/slow-down")], ledger) as runner:
        obs = runner.run("web_search", {"query": "x"})
    assert not obs.ok and obs.attempts == 3
    assert time.monotonic() - started >= 0.8  # two waits of the provider's 0.4 s, not zero backoff


def test_a_retry_after_past_the_time_budget_is_not_slept_through(server: WebServer) -> None:
    ledger = Ledger(Budget(seconds=2))
    started = time.monotonic()
    with ToolRunner([_limited(server, "/later")], ledger) as runner:
        obs = runner.run("web_search", {"query": "x"})  # an observation: the agent may still answer
    assert not obs.ok and obs.attempts == 1
    assert "come back later" in obs.content and "5.0s wait" in obs.content
    assert time.monotonic() - started < 1.5  # refused at once, not after sleeping
    assert ledger.spent["seconds"] <= 2


def test_a_retry_after_of_an_hour_is_not_retried(server: WebServer) -> None:
    before = server.hits["/hour/search"]
    with _runner(_limited(server, "/hour")) as runner:  # no time limit: the wait itself is the problem
        obs = runner.run("web_search", {"query": "x"})
    assert not obs.ok and obs.attempts == 1 and server.hits["/hour/search"] - before == 1


def test_malformed_reply_falls_back(server: WebServer) -> None:
    tool = make_web_search(
        LiteLLMSearch(),
        "searxng",
        fallbacks=["duckduckgo"],
        api_bases={"searxng": server.url("/broken"), "duckduckgo": server.url("/down")},
        retries=0,
    )
    with _runner(tool) as runner:
        obs = runner.run("web_search", {"query": "x"})
    assert not obs.ok and "searxng: malformed reply" in obs.content and "duckduckgo:" in obs.content
    assert "Traceback" not in obs.content
    assert obs.attempts == 1  # nothing transient: not retried


def test_fallback_provider_answers(server: WebServer) -> None:
    tool = make_web_search(
        LiteLLMSearch(),
        "searxng",
        fallbacks=["duckduckgo", "searxng"],
        api_bases={"searxng": server.url("/down"), "duckduckgo": server.url("/down")},
        retries=0,
    )
    with _runner(tool) as runner:
        assert not runner.run("web_search", {"query": "x"}).ok
    good = make_web_search(
        LiteLLMSearch(),
        "duckduckgo",
        fallbacks=["searxng"],
        api_bases={"duckduckgo": server.url("/down"), "searxng": server.url("/searx")},
        retries=0,
    )
    with _runner(good) as runner:
        obs = runner.run("web_search", {"query": "Ed Wood"})
    assert obs.ok and "searxng results" in obs.content and obs.attempts == 1


def test_an_unreachable_configured_base_is_charged_once_and_named(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.delenv("SEARXNG_API_BASE", raising=False)
    tool = make_web_search(LiteLLMSearch(), "searxng", api_bases={"searxng": f"http://127.0.0.1:{port}"})
    ledger = Ledger(Budget())
    with ToolRunner([tool], ledger) as runner:
        obs = runner.run("web_search", {"query": "x"})
    assert not obs.ok and obs.attempts == 1 and ledger.spent["tool_calls"] == 1  # not retried
    assert "api_bases.searxng" in obs.content and "connection refused" in obs.content
    real = socket.getaddrinfo

    def no_such_host(host: object, *args: object, **kwargs: object) -> object:
        if host == "no-such-host.invalid":  # answered here: the test asks no DNS server
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", no_such_host)
    bad_name = make_web_search(
        LiteLLMSearch(), "searxng", api_bases={"searxng": "http://no-such-host.invalid"}
    )
    with ToolRunner([bad_name], Ledger(Budget())) as runner:
        obs = runner.run("web_search", {"query": "x"})
    assert not obs.ok and obs.attempts == 1 and "does not resolve" in obs.content
