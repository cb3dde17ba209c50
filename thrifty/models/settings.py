"""How a run calls its model: the default model name and :class:`ModelSettings`, each default defined here
once and referenced everywhere else (the task file's ``model_settings``, ``Agent``, the runner, the
RunContext, ``agent bench``).

It lives in the models layer so that both the agents' nodes and the workflows can import it.
(:data:`thrifty.models.gateway.DEFAULT_MAX_TOKENS` is another number: what the Gateway asks for when a
caller names no ``max_tokens`` at all.)
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, PositiveInt

__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_REPLY_TOKENS",
    "DEFAULT_RETRIES",
    "DEFAULT_TEMPERATURE",
    "ModelSettings",
]

DEFAULT_MODEL = "local/smollm2"
DEFAULT_TEMPERATURE = 0.7
DEFAULT_REPLY_TOKENS = 256  # completion tokens per call, before the budget caps them further
DEFAULT_RETRIES = 2


class ModelSettings(BaseModel):
    """Sampling and retry settings for every model call of a run (``model_settings:`` in a task file)."""

    model_config = ConfigDict(extra="forbid")

    temperature: float | None = Field(
        DEFAULT_TEMPERATURE, ge=0, le=2, description="Sampling temperature; null for the provider's default."
    )
    max_tokens: PositiveInt = Field(
        DEFAULT_REPLY_TOKENS, description="Completion tokens per call (the budget may cap it lower)."
    )
    seed: int | None = Field(None, description="Sampling seed (branches and samples add their index to it).")
    grounded: bool | None = Field(
        None,
        description="Keep tool arguments and answers grounded in the question and the observations "
        "(thrifty.agents.grounding); null: on when the provider constrains output with a grammar.",
    )
    retries: int = Field(
        DEFAULT_RETRIES,
        ge=0,
        le=10,
        description="Extra attempts on transient provider errors (each charged).",
    )
