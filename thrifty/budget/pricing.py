"""Prices: every model and every tool has one, so that a run's unified cost is always computable.

Unified cost (BATS): ``C = tokens at the provider's input / output / cached-input rates + sum_i calls_i * p_i``.

* Remote models are priced from LiteLLM's price map (loaded from the copy bundled with LiteLLM:
  ``LITELLM_LOCAL_MODEL_COST_MAP=True`` is set before LiteLLM is imported, so it never fetches it).
* In-process models (``local/...``, ``hf/...``) cost nothing unless configured, per token or per second.
* The scripted test model is free unless the test sets a price.
* Tools: $0.001 per call for ``search`` and ``read`` (the BATS setting for search and browse), free otherwise,
  unless configured.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat

DEFAULT_TOOL_PRICES: dict[str, float] = {"search": 0.001, "read": 0.001}
IN_PROCESS_PROVIDERS = ("local", "hf", "scripted", "sim")


class ModelPrice(BaseModel):
    """Dollars per token (and optionally per second of compute, for local models)."""

    model_config = ConfigDict(extra="forbid")

    input_per_token: NonNegativeFloat = 0.0
    output_per_token: NonNegativeFloat = 0.0
    cached_input_per_token: NonNegativeFloat | None = None
    per_second: NonNegativeFloat = 0.0

    def cost(
        self, prompt_tokens: float, completion_tokens: float, cached_tokens: float = 0, seconds: float = 0
    ) -> float:
        cached = min(cached_tokens, prompt_tokens)
        cached_rate = (
            self.input_per_token if self.cached_input_per_token is None else self.cached_input_per_token
        )
        return (
            (prompt_tokens - cached) * self.input_per_token
            + cached * cached_rate
            + completion_tokens * self.output_per_token
            + seconds * self.per_second
        )


def provider_of(model: str) -> str:
    return model.split("/", 1)[0] if "/" in model else ""


def litellm_price(model: str) -> ModelPrice | None:
    """The price LiteLLM's bundled map gives for ``model``, or None if it does not know it."""
    from thrifty.agents._litellm import get_litellm

    litellm = get_litellm()
    candidates = [model]
    if "/" in model:
        candidates.append(model.split("/", 1)[1])
    for name in candidates:
        info = litellm.model_cost.get(name)
        if info and ("input_cost_per_token" in info or "output_cost_per_token" in info):
            return ModelPrice(
                input_per_token=info.get("input_cost_per_token") or 0.0,
                output_per_token=info.get("output_cost_per_token") or 0.0,
                cached_input_per_token=info.get("cache_read_input_token_cost"),
            )
    return None


class Pricing(BaseModel):
    """Model and tool prices for a run. Configured prices override the defaults."""

    model_config = ConfigDict(extra="forbid")

    models: dict[str, ModelPrice] = Field(default_factory=dict, description="Per-model price overrides.")
    tools: dict[str, NonNegativeFloat] = Field(default_factory=dict, description="Dollars per tool call.")

    def model_price(self, model: str) -> ModelPrice | None:
        """The model's price, or None when it is unknown (a USD budget then refuses to start)."""
        if model in self.models:
            return self.models[model]
        if provider_of(model) in IN_PROCESS_PROVIDERS:
            return ModelPrice()
        return litellm_price(model)

    def tool_price(self, tool: str, declared: float | None = None) -> float:
        """Per-call price: configured, else the tool's own declared price, else the default."""
        if tool in self.tools:
            return self.tools[tool]
        if declared is not None:
            return declared
        return DEFAULT_TOOL_PRICES.get(tool, 0.0)


class UnpricedModelError(ValueError):
    """A USD budget was set for a model with no known price."""

    def __init__(self, model: str) -> None:
        self.model = model
        super().__init__(
            f"model '{model}' has no known price, so a USD budget cannot be enforced. "
            f"Set its price under `pricing.models.{model}` (input_per_token / output_per_token), "
            "or drop the `usd` limit."
        )
