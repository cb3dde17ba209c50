"""Lazy, offline LiteLLM import (the import costs ~2 s; nothing here may fetch from the network).

LiteLLM reads ``LITELLM_LOCAL_MODEL_COST_MAP`` once, while it is imported, to decide whether to fetch its
price map. thrifty sets it only for the duration of that import (unless the host already chose a value)
and puts the host's environment back afterwards: importing or using thrifty changes no process-wide
environment variable of an embedding application.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from types import ModuleType

_lock = threading.RLock()
_module: ModuleType | None = None
_ready = False  # set once the hooks (provider registration) have run too
_hooks: list[Callable[[], None]] = []

# What the `agent` command sets for its own process (never applied on import).
OFFLINE_ENV: Mapping[str, str] = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "LITELLM_TELEMETRY": "False",
}


# What LiteLLM reads while it is imported (held only for the import, then the host's environment is back).
_LITELLM_IMPORT_ENV = ("LITELLM_LOCAL_MODEL_COST_MAP", "LITELLM_TELEMETRY")


def apply_offline_env() -> None:
    """Make this whole process offline (for the ``agent`` command, which owns its process)."""
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)


@contextlib.contextmanager
def _temporary_env(values: Mapping[str, str]) -> Iterator[None]:
    """Set the variables the host has not set, for the duration of the block only."""
    added = [key for key in values if key not in os.environ]
    for key in added:
        os.environ[key] = values[key]
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)


def litellm_loaded() -> bool:
    return _module is not None


def on_litellm_loaded(hook: Callable[[], None]) -> None:
    """Run ``hook`` once LiteLLM is imported (at once if it already is): how providers register."""
    with _lock:
        if _module is None:
            _hooks.append(hook)
            return
    hook()


def get_litellm() -> ModuleType:
    """Import LiteLLM once, offline and quiet, with thrifty's registered providers installed."""
    global _module, _ready
    if _ready and _module is not None:
        return _module
    with _lock:
        if _module is None:
            with _temporary_env({k: OFFLINE_ENV[k] for k in _LITELLM_IMPORT_ENV}):
                import litellm

            litellm.suppress_debug_info = True
            # A flag older LiteLLM releases read (and newer ones ignore): kept so that no release phones home.
            litellm.telemetry = False  # pyright: ignore[reportAttributeAccessIssue]
            litellm.drop_params = True
            _module = litellm
            hooks, _hooks[:] = list(_hooks), []
            for hook in hooks:
                hook()  # may call get_litellm(): the lock is reentrant and _module is set
            _ready = True
    return _module
