"""Model access: the Gateway (the only way a model is called), the provider registry and the providers.

Models are named the LiteLLM way, ``<provider>/<name>``. thrifty registers ``local/`` (llama.cpp),
``hf/`` (transformers) and ``scripted/`` (tests); any other prefix is one of LiteLLM's own providers.
Add your own with :func:`register_provider`.
"""

from thrifty.models import builtin as _builtin  # noqa: F401  (registers local/, hf/, scripted/)
from thrifty.models.gateway import Gateway, ModelError, ModelReply, TokenUsage, ToolCall
from thrifty.models.registry import (
    REMOTE,
    NamedModel,
    Provider,
    model_name,
    provider_for,
    provider_of,
    register_provider,
    registered_providers,
)
from thrifty.models.settings import DEFAULT_MODEL, ModelSettings

__all__ = [
    "DEFAULT_MODEL",
    "REMOTE",
    "Gateway",
    "ModelError",
    "ModelReply",
    "ModelSettings",
    "NamedModel",
    "Provider",
    "TokenUsage",
    "ToolCall",
    "model_name",
    "provider_for",
    "provider_of",
    "register_provider",
    "registered_providers",
]
