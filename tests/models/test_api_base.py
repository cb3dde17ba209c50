"""Pointing a remote model at a server (``model_settings.api_base``), without a server: what is accepted,
what the test guard (THRIFTY_BLOCK_REMOTE=1) lets through, and how a lost reply or a server's
``Retry-After`` is read. The calls themselves are in test_remote_http.py (a real server on 127.0.0.1)."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest
from pydantic import ValidationError

from thrifty import Agent
from thrifty.budget import Budget, BudgetExceeded, Ledger, ModelPrice, Pricing, UnpricedModelError
from thrifty.models import Gateway, ModelError, ModelSettings
from thrifty.models._litellm import get_litellm
from thrifty.models.gateway import _answer_lost, _retry_after
from thrifty.models.registry import is_loopback_url
from thrifty.testing import ScriptedModel, reply
from thrifty.workflows.runner import SetupError
from thrifty.workflows.spec import TaskSpec

pytestmark = pytest.mark.usefixtures("fake_openai_key")  # openai/ models on loopback servers

MSG = [{"role": "user", "content": "hello"}]


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/v1",
        "https://api.example.com/v1",
        "http://localhost:11434",
        "http://[::1]:8000/v1",
    ],
)
def test_api_base_takes_an_http_url(url: str) -> None:
    assert ModelSettings(api_base=url).api_base == url
    spec = TaskSpec.model_validate(
        {"question": "q", "model": "openai/x", "model_settings": {"api_base": url}}
    )
    assert spec.model_settings.api_base == url


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("127.0.0.1:8080", "http:// or https://"),
        ("ftp://127.0.0.1/v1", "http:// or https://"),
        ("http:///v1", "with a host"),
        ("http://user:sk-secret-123456789@127.0.0.1/v1", "credentials"),
        ("http://127.0.0.1/v1?api_key=sk-secret-123456789", "query"),
        ("http://127.0.0.1:99999/v1", "not a valid URL"),
    ],
)
def test_api_base_refuses_what_is_not_a_plain_server_url(url: str, says: str) -> None:
    with pytest.raises(ValidationError, match=says) as info:
        ModelSettings(api_base=url)
    assert "sk-secret" not in str(info.value)  # not even as the input_value pydantic echoes


@pytest.mark.parametrize(
    ("url", "loopback"),
    [
        ("http://127.0.0.1:8080/v1", True),
        ("http://127.8.9.10/v1", True),
        ("http://localhost:8080", True),
        ("http://LOCALHOST./v1", True),
        ("http://[::1]:8080/v1", True),
        ("https://api.openai.com/v1", False),
        ("http://127.0.0.1.example.com/v1", False),
        ("http://localhost.example.com/v1", False),
        ("http://10.0.0.1/v1", False),
        ("http://[::ffff:8.8.8.8]/v1", False),
        ("not a url", False),
        ("http://[::1/v1", False),
    ],
)
def test_loopback_urls(url: str, loopback: bool) -> None:
    assert is_loopback_url(url) is loopback


def test_the_test_guard_allows_a_loopback_server_and_nothing_else() -> None:
    ledger = Ledger(Budget(model_requests=1))
    Gateway(ledger, api_base="http://127.0.0.1:1/v1").check_model("openai/smollm2")
    Gateway(ledger, api_base="http://localhost:1").check_model("hosted_vllm/smollm2")
    Gateway(ledger, api_base="http://[::1]:1").check_model("ollama/smollm2")
    for base in (None, "https://api.openai.com/v1", "http://127.0.0.1.example.com/v1"):
        with pytest.raises(ModelError, match="blocked"):
            Gateway(ledger, api_base=base).check_model("openai/gpt-4o-mini")


def test_a_loopback_server_is_still_priced() -> None:
    local = "http://127.0.0.1:1/v1"
    with pytest.raises(UnpricedModelError):
        Gateway(Ledger(Budget(usd=1)), api_base=local).check_model("openai/smollm2")
    price = ModelPrice(input_per_token=1e-6, output_per_token=2e-6)
    gw = Gateway(Ledger(Budget(usd=1)), Pricing(models={"openai/smollm2": price}), api_base=local)
    assert gw.check_model("openai/smollm2") == price


def test_api_base_is_refused_for_a_model_that_runs_in_process() -> None:
    script = ScriptedModel([reply("hi")])
    with pytest.raises(ModelError, match="api_base is for remote models"):
        Gateway(Ledger(), api_base="http://127.0.0.1:1/v1").check_model(script.model)
    with pytest.raises(SetupError, match="api_base is for remote models"):
        Agent(script, api_base="http://127.0.0.1:1/v1").run("q")
    assert not script.requests


def test_a_per_call_server_is_checked_before_anything_is_reserved() -> None:
    ledger = Ledger(Budget(model_requests=3))
    gw = Gateway(ledger, api_base="http://127.0.0.1:1/v1", retries=0)
    with pytest.raises(ModelError, match="blocked"):
        gw.complete("openai/smollm2", MSG, max_tokens=2, api_base="https://api.openai.com/v1")
    with pytest.raises(ModelError, match="blocked"):
        gw.complete("openai/smollm2", MSG, max_tokens=2, base_url="https://evil.example/v1")
    assert not ledger.events and ledger.spent["model_requests"] == 0
    assert all(v == 0 for v in ledger.reserved.values())


def test_the_agent_passes_api_base_to_every_gateway_of_the_run() -> None:
    agent = Agent("openai/smollm2", api_base="http://127.0.0.1:1/v1")
    assert agent.settings.api_base == "http://127.0.0.1:1/v1"
    with pytest.raises(ValidationError):
        Agent("openai/smollm2", api_base="http://user:pw@127.0.0.1/v1")


# ----------------------------------------------------------------------------------------------------
def _rate_limited(headers: dict[str, str]) -> Exception:
    litellm = get_litellm()
    response = httpx.Response(429, headers=headers, request=httpx.Request("POST", "http://127.0.0.1/v1"))
    return litellm.RateLimitError("slow down", llm_provider="openai", model="x", response=response)


def test_retry_after_is_read_in_seconds_milliseconds_or_as_a_date() -> None:
    assert _retry_after(_rate_limited({"retry-after": "2"})) == 2
    assert _retry_after(_rate_limited({"Retry-After": "0.5"})) == 0.5
    assert _retry_after(_rate_limited({"retry-after-ms": "1500", "retry-after": "9"})) == 1.5
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 25 <= (_retry_after(_rate_limited({"retry-after": later})) or 0) <= 31
    assert _retry_after(_rate_limited({"retry-after": "soon"})) is None
    assert _retry_after(_rate_limited({})) is None
    assert _retry_after(ValueError("no response")) is None


def test_a_lost_reply_is_told_from_an_error_the_server_answered() -> None:
    def chained(*excs: BaseException) -> BaseException:
        for outer, inner in itertools.pairwise(excs):
            outer.__cause__ = inner
        return excs[0]

    request = httpx.Request("POST", "http://127.0.0.1/v1")
    assert _answer_lost(chained(RuntimeError("wrapped"), httpx.ReadTimeout("slow", request=request)))
    assert _answer_lost(chained(RuntimeError("wrapped"), httpx.RemoteProtocolError("cut short")))
    assert _answer_lost(chained(RuntimeError("wrapped"), json.JSONDecodeError("bad", "{", 0)))
    assert not _answer_lost(chained(RuntimeError("wrapped"), httpx.ConnectError("refused")))
    assert not _answer_lost(_rate_limited({}))
    assert not _answer_lost(ValueError("bad request"))


def test_a_wait_the_time_budget_cannot_pay_for_is_refused() -> None:
    now = [0.0]
    ledger = Ledger(Budget(seconds=10), clock=lambda: now[0])
    gw = Gateway(ledger)
    gw._check_wait(5)
    now[0] = 6.0
    with pytest.raises(BudgetExceeded) as info:
        gw._check_wait(5)
    assert info.value.dimension == "seconds"
