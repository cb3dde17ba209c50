"""Prices: every model and every tool has one, so that a run's unified cost is always computable.

Unified cost (BATS): ``C = tokens at the provider's input / output / cached-input rates + sum_i calls_i * p_i``.

* Configured model prices live here; a model with none gets its provider's default (``thrifty.models``:
  LiteLLM's bundled price map for remote models, free for in-process ones). This package knows no model
  code.
* Tools: $0.001 per call for ``search`` and ``read`` (the BATS setting for search and browse), free otherwise,
  unless configured.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

#: A price in dollars: zero or more, and finite (no call has an infinite price; ``inf`` would only make
#: every reservation fail or its arithmetic overflow).
Price = Annotated[float, Field(ge=0, allow_inf_nan=False)]

DEFAULT_TOOL_PRICES: dict[str, float] = {"search": 0.001, "read": 0.001}


class ModelPrice(BaseModel):
    """Dollars per token (and optionally per second of compute, for local models)."""

    model_config = ConfigDict(extra="forbid")

    input_per_token: Price = 0.0
    output_per_token: Price = 0.0
    cached_input_per_token: Price | None = None
    per_second: Price = 0.0

    def cost(
        self, prompt_tokens: float, completion_tokens: float, cached_tokens: float = 0, seconds: float = 0
    ) -> float:
        """Dollars for one call. Cached prompt tokens (at most all of them) go at the cached rate, which
        defaults to the input rate.

        >>> price = ModelPrice(input_per_token=1e-6, output_per_token=4e-6, cached_input_per_token=2.5e-7)
        >>> round(price.cost(prompt_tokens=1000, completion_tokens=200), 9)
        0.0018
        >>> round(price.cost(prompt_tokens=1000, completion_tokens=200, cached_tokens=800), 9)
        0.0012
        >>> ModelPrice(per_second=0.01).cost(0, 0, seconds=3)
        0.03
        """
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


class Pricing(BaseModel):
    """Model and tool prices for a run. Configured prices override the defaults."""

    model_config = ConfigDict(extra="forbid")

    models: dict[str, ModelPrice] = Field(default_factory=dict, description="Per-model price overrides.")
    tools: dict[str, Price] = Field(default_factory=dict, description="Dollars per tool call.")

    def model_price(self, model: str) -> ModelPrice | None:
        """The price configured for ``model``, or None (the model's provider then gives its default:
        free for in-process models, LiteLLM's bundled map for remote ones; see ``thrifty.models``)."""
        return self.models.get(model)

    def tool_price(self, tool: str, declared: float | None = None) -> float:
        """Per-call price: configured, else the tool's own declared price, else the default.

        >>> pricing = Pricing(tools={"search": 0.002})
        >>> pricing.tool_price("search", declared=0.005), pricing.tool_price("read"), pricing.tool_price("calc")
        (0.002, 0.001, 0.0)
        >>> pricing.tool_price("calc", declared=0.01)
        0.01
        """
        if tool in self.tools:
            return self.tools[tool]
        if declared is not None:
            return declared
        return DEFAULT_TOOL_PRICES.get(tool, 0.0)


class UnpricedModelError(ValueError):
    """A USD budget was set for a model with no known price."""

    def __init__(self, model: str) -> None:
        self.model = model
        #: What is wrong and how to fix it, apart (a task-file check reports them as message and fix).
        self.problem = f"model '{model}' has no known price, so a USD budget cannot be enforced"
        self.fix = f"set its price under pricing.models.{model} (input_per_token, output_per_token), or drop the usd limit"
        super().__init__(f"{self.problem}; fix: {self.fix}")
