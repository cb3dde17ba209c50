"""Prices: ModelPrice.cost, tool prices, in-process models and LiteLLM's bundled price map."""

from __future__ import annotations

import importlib.util
import os

import pytest
from pydantic import ValidationError

from thrifty.budget import DEFAULT_TOOL_PRICES, ModelPrice, Pricing, UnpricedModelError

os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # never fetch the price map


def _providers_missing() -> bool:
    try:
        return importlib.util.find_spec("thrifty.agents.providers") is None
    except ImportError:
        return True


needs_litellm = pytest.mark.skipif(
    _providers_missing(),
    reason="thrifty.agents.providers (imported by thrifty.agents._litellm.get_litellm) does not exist yet",
)


# ----------------------------------------------------------------------------------------- ModelPrice
def test_cost_plain_tokens() -> None:
    price = ModelPrice(input_per_token=2e-6, output_per_token=8e-6)
    assert price.cost(1000, 500) == pytest.approx(1000 * 2e-6 + 500 * 8e-6)
    assert price.cost(0, 0) == 0


def test_cost_with_cached_tokens() -> None:
    price = ModelPrice(input_per_token=2e-6, output_per_token=8e-6, cached_input_per_token=5e-7)
    # 300 of the 1000 prompt tokens were cached
    assert price.cost(1000, 100, cached_tokens=300) == pytest.approx(700 * 2e-6 + 300 * 5e-7 + 100 * 8e-6)
    # more cached tokens than prompt tokens is clamped to the prompt
    assert price.cost(100, 0, cached_tokens=1000) == pytest.approx(100 * 5e-7)


def test_cached_tokens_without_a_cached_rate_cost_the_input_rate() -> None:
    price = ModelPrice(input_per_token=2e-6, output_per_token=8e-6)
    assert price.cost(1000, 100, cached_tokens=300) == pytest.approx(price.cost(1000, 100))


def test_cached_rate_of_zero_is_free() -> None:
    price = ModelPrice(input_per_token=1e-6, cached_input_per_token=0.0)
    assert price.cost(1000, 0, cached_tokens=1000) == 0


def test_cost_per_second() -> None:
    price = ModelPrice(per_second=0.01)
    assert price.cost(1000, 1000, seconds=2.5) == pytest.approx(0.025)
    both = ModelPrice(input_per_token=1e-6, per_second=0.01)
    assert both.cost(1000, 0, seconds=1) == pytest.approx(1e-3 + 0.01)


def test_model_price_rejects_negative_rates_and_unknown_fields() -> None:
    with pytest.raises(ValidationError):
        ModelPrice(input_per_token=-1e-6)
    with pytest.raises(ValidationError):
        ModelPrice(per_second=-1)
    with pytest.raises(ValidationError):
        ModelPrice(input_cost=1e-6)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        Pricing(tools={"search": -0.1})
    with pytest.raises(ValidationError):
        Pricing(bogus={})  # type: ignore[call-arg]


# -------------------------------------------------------------------------------------------- tools
def test_default_tool_prices() -> None:
    pricing = Pricing()
    assert pricing.tool_price("search") == 0.001
    assert pricing.tool_price("read") == 0.001
    assert pricing.tool_price("calc") == 0.0
    assert pricing.tool_price("anything_else") == 0.0
    assert DEFAULT_TOOL_PRICES == {"search": 0.001, "read": 0.001}


def test_configured_tool_price_wins() -> None:
    pricing = Pricing(tools={"search": 0.005, "calc": 0.0002, "read": 0.0})
    assert pricing.tool_price("search") == 0.005
    assert pricing.tool_price("calc") == 0.0002
    assert pricing.tool_price("read") == 0.0  # a configured zero is still configured
    assert pricing.tool_price("search", declared=0.1) == 0.005  # configuration beats the declared price


def test_declared_tool_price_beats_the_default() -> None:
    pricing = Pricing()
    assert pricing.tool_price("search", declared=0.01) == 0.01
    assert pricing.tool_price("calc", declared=0.002) == 0.002
    assert pricing.tool_price("search", declared=0.0) == 0.0


# ------------------------------------------------------------------------------------------- models
@pytest.mark.parametrize(
    "model", ["local/smollm2", "hf/HuggingFaceTB/SmolLM2-135M-Instruct", "scripted/x", "sim/m"]
)
def test_in_process_models_are_free(model: str) -> None:
    price = Pricing().model_price(model)
    assert price == ModelPrice()
    assert price is not None
    assert price.cost(10_000, 10_000, seconds=100) == 0


def test_configured_model_price_wins() -> None:
    mine = ModelPrice(input_per_token=1e-3, output_per_token=2e-3)
    local = ModelPrice(per_second=0.5)
    pricing = Pricing(models={"gpt-4o-mini": mine, "local/smollm2": local})
    assert pricing.model_price("gpt-4o-mini") is mine  # without ever importing LiteLLM
    assert pricing.model_price("local/smollm2") is local


def test_unpriced_model_error_message() -> None:
    err = UnpricedModelError("acme/brain-1")
    assert err.model == "acme/brain-1"
    assert isinstance(err, ValueError)
    assert "pricing.models.acme/brain-1" in str(err)


@needs_litellm
def test_model_price_from_litellm_bundled_map() -> None:
    from thrifty.agents._litellm import get_litellm

    info = get_litellm().model_cost["gpt-4o-mini"]
    price = Pricing().model_price("gpt-4o-mini")
    assert price is not None
    assert price.input_per_token == info["input_cost_per_token"] > 0
    assert price.output_per_token == info["output_cost_per_token"] > price.input_per_token
    assert price.cached_input_per_token == info.get("cache_read_input_token_cost")
    # a provider prefix falls back to the bare name
    assert Pricing().model_price("openai/gpt-4o-mini") == price


@needs_litellm
@pytest.mark.parametrize("model", ["no-such-model-xyz-123", "acme/no-such-model-xyz-123"])
def test_unknown_model_has_no_price(model: str) -> None:
    assert Pricing().model_price(model) is None
