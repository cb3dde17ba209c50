"""thrifty's in-process LiteLLM providers: ``local/...`` (llama.cpp), ``hf/...`` (transformers),
``scripted/...`` (tests), ``sim/...``
(benchmarks only).

Registering them as LiteLLM custom providers means the Gateway has one call path for every model:
remote APIs, local models and the test model all go through ``litellm.completion``.
"""

from __future__ import annotations

import asyncio
import dataclasses
from types import ModuleType
from typing import Any

IN_PROCESS = ("local", "hf", "scripted", "sim")


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


class _LazyLocal:
    """Defers importing llama.cpp until a ``local/`` model is first used."""

    def __init__(self) -> None:
        self._handler: Any = None

    def get(self) -> Any:
        if self._handler is None:
            from thrifty.agents.local import LocalProvider

            self._handler = LocalProvider()
        return self._handler


def register_providers(litellm: ModuleType) -> None:
    """Add the in-process providers to LiteLLM's custom provider map (idempotent)."""
    existing = {item.get("provider") for item in litellm.custom_provider_map}
    if "scripted" not in existing:
        litellm.custom_provider_map.append(
            {"provider": "scripted", "custom_handler": _scripted_handler(litellm)}
        )
    if "local" not in existing:
        lazy = _LazyLocal()

        class LocalProxy(litellm.CustomLLM):  # type: ignore[name-defined,misc]
            def completion(self, *args: Any, **kwargs: Any) -> Any:
                return lazy.get().completion(*args, **kwargs)

            async def acompletion(self, *args: Any, **kwargs: Any) -> Any:
                return await lazy.get().acompletion(*args, **kwargs)

        litellm.custom_provider_map.append({"provider": "local", "custom_handler": LocalProxy()})
    if "hf" not in existing:
        hf_box: dict[str, Any] = {}

        def hf_handler() -> Any:
            if "h" not in hf_box:
                from thrifty.agents.hf import HFProvider  # torch/transformers load on the first call only

                hf_box["h"] = HFProvider()
            return hf_box["h"]

        class HFProxy(litellm.CustomLLM):  # type: ignore[name-defined,misc]
            def completion(self, *args: Any, **kwargs: Any) -> Any:
                return hf_handler().completion(*args, **kwargs)

            async def acompletion(self, *args: Any, **kwargs: Any) -> Any:
                return await hf_handler().acompletion(*args, **kwargs)

        litellm.custom_provider_map.append({"provider": "hf", "custom_handler": HFProxy()})
    if "sim" not in existing:
        sim: dict[str, Any] = {}

        def sim_handler() -> Any:
            if "h" not in sim:
                from thrifty.bench.sim import SimProvider  # benchmark-only simulated model

                sim["h"] = SimProvider()
            return sim["h"]

        class SimProxy(litellm.CustomLLM):  # type: ignore[name-defined,misc]
            def completion(self, *args: Any, **kwargs: Any) -> Any:
                return sim_handler().completion(*args, **kwargs)

            async def acompletion(self, *args: Any, **kwargs: Any) -> Any:
                return await sim_handler().acompletion(*args, **kwargs)

        litellm.custom_provider_map.append({"provider": "sim", "custom_handler": SimProxy()})
    # LiteLLM reads the map into its provider list at import; refresh it for providers added later.
    from litellm.utils import custom_llm_setup

    custom_llm_setup()
