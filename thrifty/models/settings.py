"""How a run calls its model: the default model name and :class:`ModelSettings`, each default defined here
once and referenced everywhere else (the task file's ``model_settings``, ``Agent``, the runner, the
RunContext, ``agent bench``).

It lives in the models layer so that both the agents' nodes and the workflows can import it.
(:data:`thrifty.models.gateway.DEFAULT_MAX_TOKENS` is another number: what the Gateway asks for when a
caller names no ``max_tokens`` at all.)
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, field_validator

__all__ = [
    "DEFAULT_ANSWER_CHOICE",
    "DEFAULT_ANSWER_CONTEXT",
    "DEFAULT_MODEL",
    "DEFAULT_REPLY_TOKENS",
    "DEFAULT_RETRIES",
    "DEFAULT_TEMPERATURE",
    "AnswerChoice",
    "AnswerContext",
    "ModelSettings",
    "ResponseFormatMode",
]

DEFAULT_MODEL = "local/smollm2"
DEFAULT_TEMPERATURE = 0.7
DEFAULT_REPLY_TOKENS = 256  # completion tokens per call, before the budget caps them further
DEFAULT_RETRIES = 2

#: How structured calls (plans, verdicts, judge picks, value-tree candidates and critic scores) ask for JSON:
#: ``json_schema`` (OpenAI structured output; local models turn it into a grammar), ``json_object`` with the
#: schema alongside (llama.cpp's and llama-cpp-python's servers turn that into a grammar, others give plain
#: JSON), ``none`` (the prompt alone), or ``auto`` (see :func:`thrifty.agents.structured.structured_format`).
ResponseFormatMode = Literal["auto", "json_schema", "json_object", "none"]

#: How a grounded answer is chosen among the observed spans it may be, on a provider that can score them
#: (``Provider.enum_likelihood``: llama.cpp's): ``likelihood`` or ``grammar`` (see ``ModelSettings``).
AnswerChoice = Literal["likelihood", "grammar"]
#: What a grounded answer is asked from once no tool is left: ``focused`` or ``conversation``.
AnswerContext = Literal["focused", "conversation"]
DEFAULT_ANSWER_CHOICE: AnswerChoice = "likelihood"
DEFAULT_ANSWER_CONTEXT: AnswerContext = "focused"


class ModelSettings(BaseModel):
    """Sampling and retry settings for every model call of a run (``model_settings:`` in a task file)."""

    # hide_input_in_errors: an api_base may hold a key (http://user:KEY@host/v1); an error names the field only
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    # Defaults go in as ``default=``: pyright reads a pydantic field's default only from that keyword.

    temperature: float | None = Field(
        default=DEFAULT_TEMPERATURE,
        ge=0,
        le=2,
        description="Sampling temperature; null for the provider's default.",
    )
    max_tokens: PositiveInt = Field(
        default=DEFAULT_REPLY_TOKENS, description="Completion tokens per call (the budget may cap it lower)."
    )
    seed: int | None = Field(
        default=None, description="Sampling seed (branches and samples add their index to it)."
    )
    grounded: bool | None = Field(
        default=None,
        description="Keep tool arguments and answers grounded in the question and the observations "
        "(thrifty.agents.grounding); null: on when the provider constrains output with a grammar.",
    )
    answer_choice: AnswerChoice = Field(
        default=DEFAULT_ANSWER_CHOICE,
        description="How a grounded answer is chosen among the observed spans it may be, on a provider that "
        "can score them (llama.cpp): likelihood (every span scored whole by the model's probability of "
        "writing it; the likeliest, or one sampled by it at temperature > 0) or grammar (the grammar's "
        "token-by-token pick, which favours spans whose first word is likely).",
    )
    answer_context: AnswerContext = Field(
        default=DEFAULT_ANSWER_CONTEXT,
        description="What a grounded answer is asked from once no tool is left to call, on a "
        "grammar-constrained provider (llama.cpp): focused (the observed sentences closest to the question, "
        "and the question) or conversation (the whole run).",
    )
    retries: int = Field(
        default=DEFAULT_RETRIES,
        ge=0,
        le=10,
        description="Extra attempts on transient provider errors (each charged).",
    )
    response_format: ResponseFormatMode = Field(
        default="auto",
        description="How structured calls ask for JSON: auto (json_schema for in-process models and for "
        "models LiteLLM knows support it, else json_object with the schema; a server that rejects one falls "
        "back to the next), json_schema, json_object or none. Replies are parsed leniently either way.",
    )
    api_base: str | None = Field(
        default=None,
        description="Base URL of an OpenAI-compatible server for a remote model, e.g. "
        "http://127.0.0.1:8080/v1 (the key comes from the provider's environment variable, never from here).",
    )

    @field_validator("api_base")
    @classmethod
    def _api_base_url(cls, value: str | None) -> str | None:
        """An http(s) URL with a host and no secret in it: keys come only from the environment."""
        if value is None:
            return None
        value = value.strip()
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError as exc:
            raise ValueError(
                f"api_base is not a valid URL: {exc} (fix: e.g. http://127.0.0.1:8080/v1)"
            ) from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                "api_base must be an http:// or https:// URL with a host (fix: e.g. http://127.0.0.1:8080/v1)"
            )
        if parts.username or parts.password or parts.query or parts.fragment:
            raise ValueError(
                "api_base must not hold credentials, a query or a fragment (fix: put the key in the "
                "provider's environment variable, e.g. OPENAI_API_KEY, and give only scheme://host:port/path)"
            )
        return value
