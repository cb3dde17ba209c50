"""Lazy, offline LiteLLM import (the import costs ~2 s; nothing here may fetch from the network)."""

from __future__ import annotations

import os
import threading
from types import ModuleType

_lock = threading.Lock()
_module: ModuleType | None = None


def offline_env() -> None:
    """Environment that keeps LiteLLM and Hugging Face from reaching the network."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("LITELLM_TELEMETRY", "False")


def get_litellm() -> ModuleType:
    """Import LiteLLM once, offline, quiet, with thrifty's in-process providers registered."""
    global _module
    if _module is not None:
        return _module
    with _lock:
        if _module is None:
            offline_env()
            import litellm

            litellm.suppress_debug_info = True
            litellm.telemetry = False
            litellm.drop_params = True
            from thrifty.agents.providers import register_providers

            register_providers(litellm)
            _module = litellm
    return _module
