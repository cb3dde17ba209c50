"""The provider registry: what the Gateway needs to know about each kind of model, declared once.

A model name is ``<prefix>/<name>`` (the LiteLLM way). A prefix registered here (``local``, ``hf``,
``scripted``, or one a user or the bench registers) is served in process by a LiteLLM custom handler and
described by its :class:`Provider`; any other prefix is one of LiteLLM's own providers, described by
:data:`REMOTE`. The Gateway asks the provider instead of branching on names, so adding a provider is one
module plus one :func:`register_provider` call::

    register_provider(Provider("echo", handler=EchoLLM, in_process=True, free=True))

Handlers are built lazily (a handler factory is only called on the first request that needs it), so
registering ``local`` or ``hf`` costs no llama.cpp or torch import.
"""

from __future__ import annotations

import importlib
import ipaddress
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlsplit

from thrifty.budget import ModelPrice
from thrifty.models._litellm import get_litellm, litellm_loaded, on_litellm_loaded

__all__ = [
    "BLOCK_REMOTE_ENV",
    "ENUM_CHOICE",
    "REMOTE",
    "NamedModel",
    "Provider",
    "is_loopback_url",
    "lazy",
    "litellm_price",
    "model_name",
    "provider_for",
    "provider_of",
    "register_provider",
    "registered_providers",
    "split_model",
]

BLOCK_REMOTE_ENV = "THRIFTY_BLOCK_REMOTE"

TokenCounter = Callable[[str, Sequence[dict[str, Any]], Sequence[dict[str, Any]] | None], "int | None"]


def lazy(module: str, attr: str) -> Callable[..., Any]:
    """A function that imports ``module.attr`` on its first call and forwards to it (keeps heavy
    providers such as llama.cpp and torch out of the import of thrifty)."""

    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(importlib.import_module(module), attr)(*args, **kwargs)

    call.__qualname__ = call.__name__ = f"lazy({module}.{attr})"
    return call


@runtime_checkable
class NamedModel(Protocol):
    """Anything that names a model (a ``ScriptedModel``, a user's model handle): its ``model`` string."""

    @property
    def model(self) -> str: ...


def model_name(model: str | NamedModel) -> str:
    """The model string of ``model`` (a name, or an object with a ``model`` attribute)."""
    if isinstance(model, str):
        return model
    name = getattr(model, "model", None)
    if not isinstance(name, str):
        raise TypeError(
            f"model must be a name such as 'local/smollm2' or an object with a `model` name, "
            f"got {type(model).__name__}"
        )
    return name


def provider_of(model: str) -> str:
    """The provider prefix of a model name (``""`` when it has none)."""
    return model.split("/", 1)[0] if "/" in model else ""


def split_model(model: str) -> tuple[str, str]:
    """``"local/smollm2"`` -> ``("local", "smollm2")``."""
    prefix, _, name = model.partition("/")
    return prefix, name


def is_loopback_url(url: str) -> bool:
    """Whether ``url`` names a host on this machine (``localhost``, 127.0.0.0/8, ``::1``).

    Only literal addresses and the name ``localhost`` count: a name that merely starts like one
    (``127.0.0.1.example.com``, ``localhost.example.com``) is a remote host.
    """
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return False
    if not host:
        return False
    if host.rstrip(".").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def litellm_price(model: str) -> ModelPrice | None:
    """The price LiteLLM's bundled map gives for ``model``, or None if it does not know it."""
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


#: The request field (``ENUM_CHOICE="likelihood"``) a provider with ``enum_likelihood`` takes.
ENUM_CHOICE = "enum_choice"


@dataclass(frozen=True)
class Provider:
    """What the Gateway needs to know about one provider prefix.

    ``check``, ``count_tokens`` and ``context_window`` receive the model name *without* the prefix.
    ``count_tokens`` may return None to fall back to LiteLLM's counter; ``context_window`` None means
    "no known window". ``check`` raises ValueError or ImportError (with a message for the user) when the
    name cannot be served.
    """

    prefix: str
    handler: Callable[[], Any] | None = None
    """Factory of the LiteLLM ``CustomLLM`` that serves the prefix; None for LiteLLM's own providers."""
    in_process: bool = False
    """Runs inside this process: an exception inside it is a bug or a bad model, never a transient
    network error worth a retry."""
    free: bool = False
    """Costs nothing unless priced under ``pricing.models`` (in-process compute); otherwise priced from
    LiteLLM's bundled map."""
    grammar: bool = False
    """Enforces ``response_format`` with a grammar, so a final answer can be constrained to a schema."""
    enum_likelihood: bool = False
    """Takes ``enum_choice="likelihood"``: a reply that must be one of a string enum is the option the model
    gives the highest probability as a whole (scored after the prompt), not the grammar's token-by-token pick."""
    check: Callable[[str], Any] | None = None
    count_tokens: TokenCounter | None = None
    context_window: Callable[[str], int | None] | None = None

    def default_price(self, model: str) -> ModelPrice | None:
        """The price when none is configured: free for in-process compute, else LiteLLM's map."""
        return ModelPrice() if self.free else litellm_price(model)

    def validate(self, model: str, api_base: str | None = None) -> None:
        """Raise ValueError / ImportError when ``model`` cannot be served (before anything is spent).

        ``api_base``: the server the call would go to, when one is configured (remote providers only).
        """
        if self.check is not None:
            self.check(split_model(model)[1])

    def tokens(
        self, model: str, messages: Sequence[dict[str, Any]], tools: Sequence[dict[str, Any]] | None
    ) -> int | None:
        if self.count_tokens is None:
            return None
        return self.count_tokens(split_model(model)[1], messages, tools)

    def window(self, model: str) -> int | None:
        if self.context_window is not None:
            return self.context_window(split_model(model)[1])
        if self.in_process:
            return None
        litellm = get_litellm()
        info = litellm.model_cost.get(model) or litellm.model_cost.get(split_model(model)[1]) or {}
        return info.get("max_input_tokens") or info.get("max_tokens")


@dataclass(frozen=True)
class _Remote(Provider):
    """Every prefix nobody registered: one of LiteLLM's own providers (priced from its bundled map)."""

    def validate(self, model: str, api_base: str | None = None) -> None:
        prefix = provider_of(model)
        if prefix not in get_litellm().provider_list:
            raise ValueError(
                f"unknown provider '{prefix}' in model '{model}'. Known providers include: openai, "
                f"anthropic, gemini, ollama, hosted_vllm, openrouter, {', '.join(sorted(_registry))}"
            )
        # Where LiteLLM sends the call without an api_base: the provider's own variable (OPENAI_API_BASE, ...).
        base = api_base or os.environ.get(f"{prefix.upper()}_API_BASE")
        if os.environ.get(BLOCK_REMOTE_ENV) == "1" and not (base and is_loopback_url(base)):
            # A server on this machine (a test's llama.cpp server behind a fault proxy) is not remote.
            raise ValueError(
                f"remote model '{model}' blocked: {BLOCK_REMOTE_ENV}=1 (tests call no remote model; "
                f"only an api_base on 127.0.0.1, ::1 or localhost is allowed)"
            )
        # A missing key fails every call (after retries, as a provider error); say so before anything is
        # spent. Only API-key variables are required here: other credentials (cloud accounts, a server's
        # base) have defaults or other sources LiteLLM knows and this check does not.
        missing = get_litellm().validate_environment(model, api_base=base).get("missing_keys") or []
        if missing and all(str(k).endswith("_API_KEY") for k in missing):
            either = " or ".join(missing)
            raise ValueError(
                f"model '{model}' needs {either} in the environment (LiteLLM reads the key from there; "
                "a server without auth accepts any value): export it, e.g. "
                f"export {missing[-1]}=..."
            )


REMOTE: Provider = _Remote(prefix="")

_lock = threading.Lock()
_registry: dict[str, Provider] = {}


def register_provider(provider: Provider, *, replace: bool = False) -> Provider:
    """Serve ``<provider.prefix>/...`` models with ``provider`` (in every Gateway of this process).

    Registering the same prefix again is refused unless ``replace=True`` (tests swap handlers this way).
    """
    prefix = provider.prefix
    if not prefix or "/" in prefix:
        raise ValueError(f"provider prefix must be a non-empty name without '/', got {prefix!r}")
    with _lock:
        old = _registry.get(prefix)
        if old is not None and not replace:
            if old == provider:
                return old
            raise ValueError(f"provider '{prefix}' is already registered (pass replace=True to swap it)")
        _registry[prefix] = provider
    if provider.handler is not None and litellm_loaded():
        _install([provider])
    return provider


def registered_providers() -> dict[str, Provider]:
    """The registered prefixes and their providers (a copy)."""
    with _lock:
        return dict(_registry)


def provider_for(model: str) -> Provider:
    """The provider that serves ``model`` (:data:`REMOTE` for LiteLLM's own providers)."""
    return _registry.get(provider_of(model), REMOTE)


def _lazy_handler(litellm: Any, factory: Callable[[], Any]) -> Any:
    """A LiteLLM custom handler that builds the real one (llama.cpp, torch, ...) on first use only."""
    box: dict[str, Any] = {}
    lock = threading.Lock()

    def handler() -> Any:
        if "h" not in box:
            with lock:
                if "h" not in box:
                    box["h"] = factory()
        return box["h"]

    class LazyProvider(litellm.CustomLLM):
        def completion(self, *args: Any, **kwargs: Any) -> Any:
            return handler().completion(*args, **kwargs)

        async def acompletion(self, *args: Any, **kwargs: Any) -> Any:
            return await handler().acompletion(*args, **kwargs)

    return LazyProvider()


def _install(providers: Sequence[Provider]) -> None:
    """Put the providers' handlers into LiteLLM's custom provider map (replacing an older entry)."""
    litellm = get_litellm()
    prefixes = {p.prefix for p in providers if p.handler is not None}
    if not prefixes:
        return
    litellm.custom_provider_map[:] = [
        item for item in litellm.custom_provider_map if item.get("provider") not in prefixes
    ]
    for p in providers:
        if p.handler is not None:
            litellm.custom_provider_map.append(
                {"provider": p.prefix, "custom_handler": _lazy_handler(litellm, p.handler)}
            )
    # LiteLLM reads the map into its provider list at import; refresh it for providers added later.
    from litellm.utils import custom_llm_setup

    custom_llm_setup()


on_litellm_loaded(lambda: _install(list(registered_providers().values())))
