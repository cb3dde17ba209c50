"""Prices: ModelPrice.cost, tool prices, configured model prices (defaults per provider: tests/models)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from thrifty.budget import DEFAULT_TOOL_PRICES, ModelPrice, Pricing, UnpricedModelError


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
def test_configured_model_price_wins() -> None:
    mine = ModelPrice(input_per_token=1e-3, output_per_token=2e-3)
    local = ModelPrice(per_second=0.5)
    pricing = Pricing(models={"gpt-4o-mini": mine, "local/smollm2": local})
    assert pricing.model_price("gpt-4o-mini") is mine  # without ever importing LiteLLM
    assert pricing.model_price("local/smollm2") is local
    assert pricing.model_price("openai/gpt-4o") is None  # the provider's default applies (thrifty.models)


def test_unpriced_model_error_message() -> None:
    err = UnpricedModelError("acme/brain-1")
    assert err.model == "acme/brain-1"
    assert isinstance(err, ValueError)
    assert "pricing.models.acme/brain-1" in str(err)
