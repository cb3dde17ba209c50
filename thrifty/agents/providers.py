"""thrifty's in-process LiteLLM providers: ``local/...`` (llama.cpp), ``hf/...`` (transformers),
``scripted/...`` (tests), ``sim/...``
(benchmarks only).

Registering them as LiteLLM custom providers means the Gateway has one call path for every model:
remote APIs, local models and the test model all go through ``litellm.completion``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
from types import ModuleType
from typing import Any


def _scripted_handler(litellm: ModuleType) -> Any:
    from thrifty.agents.scripted import ScriptedRequest, build_response, get_script

    class ScriptedProvider(litellm.CustomLLM):  # type: ignore[name-defined,misc]
        """Serves ``scripted/<name>`` from the registered ScriptedModel of that name."""

        def completion(self, model: str, messages: list, *args: Any, **kwargs: Any) -> Any:
            params = dict(kwargs.get("optional_params") or (args[7] if len(args) > 7 else {}))
            model_response = kwargs.get("model_response") or args[2]
            script = get_script(model)
            reply = script.next_reply(ScriptedRequest(messages=list(messages), params=params))
            cap = params.get("max_tokens")
            if cap is not None and reply.completion_tokens > cap:
                # A real model stops at max_tokens: report what it could have produced.
                reply = dataclasses.replace(reply, completion_tokens=int(cap))
            return build_response(reply, model_response, model)

        async def acompletion(self, model: str, messages: list, *args: Any, **kwargs: Any) -> Any:
            await asyncio.sleep(0)
            return self.completion(model, messages, *args, **kwargs)

    return ScriptedProvider()


def _lazy_provider(litellm: ModuleType, module: str, cls: str) -> Any:
    """A provider that imports its real handler (llama.cpp, torch, the simulator) on first use only."""
    box: dict[str, Any] = {}

    def handler() -> Any:
        if "h" not in box:
            box["h"] = getattr(importlib.import_module(module), cls)()
        return box["h"]

    class LazyProvider(litellm.CustomLLM):  # type: ignore[name-defined,misc]
        def completion(self, *args: Any, **kwargs: Any) -> Any:
            return handler().completion(*args, **kwargs)

        async def acompletion(self, *args: Any, **kwargs: Any) -> Any:
            return await handler().acompletion(*args, **kwargs)

    return LazyProvider()


LAZY_PROVIDERS = {
    "local": ("thrifty.agents.local", "LocalProvider"),
    "hf": ("thrifty.agents.hf", "HFProvider"),
    "sim": ("thrifty.bench.sim", "SimProvider"),  # benchmark-only simulated model
}


def register_providers(litellm: ModuleType) -> None:
    """Add the in-process providers to LiteLLM's custom provider map (idempotent)."""
    existing = {item.get("provider") for item in litellm.custom_provider_map}
    if "scripted" not in existing:
        litellm.custom_provider_map.append(
            {"provider": "scripted", "custom_handler": _scripted_handler(litellm)}
        )
    for provider, (module, cls) in LAZY_PROVIDERS.items():
        if provider not in existing:
            litellm.custom_provider_map.append(
                {"provider": provider, "custom_handler": _lazy_provider(litellm, module, cls)}
            )
    # LiteLLM reads the map into its provider list at import; refresh it for providers added later.
    from litellm.utils import custom_llm_setup

    custom_llm_setup()
