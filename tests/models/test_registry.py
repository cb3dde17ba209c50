"""The provider registry: a provider is one class plus one registration, and the Gateway asks it instead of
branching on names (prices, token counts, context windows, name checks, retries, grammar)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from thrifty import Agent, Budget, Provider, register_provider
from thrifty.budget import Ledger, ModelPrice, Pricing, UnpricedModelError
from thrifty.models import REMOTE, Gateway, ModelError, provider_for, registered_providers
from thrifty.models._litellm import get_litellm
from thrifty.models.inprocess import Generation, InProcessProvider
from thrifty.models.registry import litellm_price
from thrifty.testing import ScriptedModel, reply
from thrifty.tools import tool

MSG = [{"role": "user", "content": "hello"}]


# ------------------------------------------------------------------------------------ a toy provider
class EchoError(ValueError):
    pass


class EchoLLM(InProcessProvider):
    """Answers "YOU SAID: " and the last user message, upper-cased; one token per word. Never a real model.
    (The bare message said back would be the question, which is never accepted as an answer.)"""

    prefix = "echo"
    model_errors = (EchoError,)
    request_error = get_litellm().BadRequestError

    def generate(self, model: str, messages: Sequence[Any], params: Mapping[str, Any]) -> Generation:
        text = "YOU SAID: " + str(messages[-1]["content"]).upper()
        words = len(text.split())
        cap = int(params.get("max_tokens") or words)
        return {
            "message": text,  # plain text: the provider needs no LiteLLM import
            "finish_reason": "stop",
            "prompt_tokens": self.count(messages),
            "completion_tokens": min(words, cap),
        }

    @staticmethod
    def count(messages: Sequence[Any]) -> int:
        return sum(len(str(m.get("content") or "").split()) for m in messages) + 1


def _check(name: str) -> None:
    if name != "loud":
        raise ValueError(f"echo has one model, 'loud' (got {name!r})")


ECHO = Provider(
    "echo",
    handler=EchoLLM,
    in_process=True,
    free=True,
    check=_check,
    count_tokens=lambda name, messages, tools: EchoLLM.count(messages),
    context_window=lambda name: 64,
)


@pytest.fixture(scope="module", autouse=True)
def echo_registered() -> None:
    register_provider(ECHO)


def test_a_provider_registered_from_a_test_file_runs_an_agent() -> None:
    result = Agent("echo/loud", budget=Budget(total_tokens=500), max_tokens=32).run("say it louder")
    assert result.answer and "SAY IT LOUDER" in result.answer
    assert result.stop_reason == "completed"
    assert result.usage.model_requests >= 1
    assert result.cost.total_usd == 0  # free: in-process compute, no price configured


def test_the_gateway_asks_the_provider() -> None:
    gw = Gateway(Ledger(Budget(total_tokens=1000)))
    assert gw.count_prompt_tokens("echo/loud", MSG, None) == 2
    assert gw.context_window("echo/loud") == 64
    assert gw.provider("echo/loud") is ECHO
    out = gw.complete("echo/loud", MSG, max_tokens=1000)
    assert out.max_tokens == 64 - 2  # the provider's context window caps the completion
    with pytest.raises(ModelError, match="echo has one model"):
        gw.check_model("echo/quiet")


def test_registering_a_prefix_twice_is_refused_unless_replaced() -> None:
    assert register_provider(ECHO) is ECHO  # the same provider again: a no-op
    other = Provider("echo", handler=EchoLLM, in_process=True)
    with pytest.raises(ValueError, match="already registered"):
        register_provider(other)
    try:
        assert register_provider(other, replace=True) is other
        assert provider_for("echo/loud") is other
    finally:
        register_provider(ECHO, replace=True)
    with pytest.raises(ValueError, match="prefix"):
        register_provider(Provider("a/b"))


def test_builtin_providers_are_registered_and_free() -> None:
    providers = registered_providers()
    assert {"local", "hf", "scripted"} <= set(providers)
    assert providers["local"].grammar and not providers["hf"].grammar
    for model in ["local/smollm2", "hf/HuggingFaceTB/SmolLM2-135M-Instruct", "scripted/x"]:
        assert provider_for(model).default_price(model) == ModelPrice()


def test_the_core_does_not_know_the_simulator() -> None:
    # `sim/` registers itself from the bench package (see tests/bench); the registry alone has no `sim`.
    assert "sim" not in {"local", "hf", "scripted"}
    import thrifty.bench.sim  # noqa: F401

    assert provider_for("sim/default").in_process


def test_remote_models_are_priced_from_litellms_bundled_map() -> None:
    info = get_litellm().model_cost["gpt-4o-mini"]
    price = provider_for("gpt-4o-mini").default_price("gpt-4o-mini")
    assert provider_for("openai/gpt-4o-mini") is REMOTE
    assert price is not None
    assert price.input_per_token == info["input_cost_per_token"] > 0
    assert price.output_per_token == info["output_cost_per_token"] > price.input_per_token
    assert price.cached_input_per_token == info.get("cache_read_input_token_cost")
    assert litellm_price("openai/gpt-4o-mini") == price  # a provider prefix falls back to the bare name


@pytest.mark.parametrize("model", ["no-such-model-xyz-123", "acme/no-such-model-xyz-123"])
def test_unknown_model_has_no_price(model: str) -> None:
    assert litellm_price(model) is None


def test_a_usd_budget_needs_a_price_configured_or_known() -> None:
    register_provider(Provider("paid", handler=EchoLLM, in_process=True, free=False), replace=True)
    gw = Gateway(Ledger(Budget(usd=1.0)), Pricing())
    with pytest.raises(UnpricedModelError):
        gw.price("paid/loud")  # not free, and LiteLLM's map does not know it
    assert Gateway(Ledger(Budget()), Pricing()).price("paid/loud") == ModelPrice()  # no USD limit: fine
    priced = Pricing(models={"echo/loud": ModelPrice(input_per_token=1e-3)})
    assert Gateway(Ledger(Budget(usd=1.0)), priced).price("echo/loud").input_per_token == 1e-3


def test_unknown_prefix_and_blocked_remote_models_are_refused() -> None:
    gw = Gateway(Ledger(Budget()))
    with pytest.raises(ModelError, match="unknown provider 'nope'"):
        gw.check_model("nope/model")
    assert os.environ.get("THRIFTY_BLOCK_REMOTE") == "1"  # tests/conftest.py
    with pytest.raises(ModelError, match="blocked"):
        gw.check_model("openai/gpt-4o-mini")


@pytest.mark.usefixtures("fake_openai_key")
def test_the_remote_guard_reads_the_providers_own_address_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without an api_base LiteLLM sends an openai/ call to OPENAI_API_BASE: loopback there is local."""
    gw = Gateway(Ledger(Budget()))
    monkeypatch.setenv("OPENAI_API_BASE", "https://api.example.com/v1")
    with pytest.raises(ModelError, match="blocked"):
        gw.check_model("openai/gpt-4o-mini")
    monkeypatch.setenv("OPENAI_API_BASE", "http://127.0.0.1:8080/v1")
    gw.check_model("openai/gpt-4o-mini")  # a server on this machine
    with pytest.raises(ModelError, match="blocked"):
        gw.check_model("anthropic/claude-3-haiku")  # another provider's calls still go out


def test_an_agent_takes_a_model_object() -> None:
    script = ScriptedModel([reply("Paris")])

    @tool
    def noop() -> str:
        """Does nothing."""
        return ""

    result = Agent(script, tools=[noop], budget=Budget(tool_calls=1)).run("Capital of France?")
    assert result.answer == "Paris"
    assert result.model == script.model
    with pytest.raises(TypeError, match="model must be a name"):
        Agent(object())  # type: ignore[arg-type]


def test_a_missing_api_key_is_refused_before_anything_is_spent(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without its key every call of a remote model fails (retried as a provider error, then exit 1): the
    model check says which variable to set instead, and a server's base address alone is not a key."""
    for var in ("OPENAI_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    local = "http://127.0.0.1:8080/v1"  # the test guard lets a loopback server through
    with pytest.raises(ModelError, match="needs OPENAI_API_KEY in the environment"):
        Gateway(Ledger(Budget()), api_base=local).check_model("openai/smollm2")
    with pytest.raises(ModelError, match="needs GOOGLE_API_KEY or GEMINI_API_KEY"):
        Gateway(Ledger(Budget()), api_base=local).check_model("gemini/gemini-1.5-flash")
    monkeypatch.setenv("OPENAI_API_KEY", "any-value")  # a server without auth accepts any value
    Gateway(Ledger(Budget()), api_base=local).check_model("openai/smollm2")
    Gateway(Ledger(Budget()), api_base=local).check_model("hosted_vllm/smollm2")  # LiteLLM needs no key
