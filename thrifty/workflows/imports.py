"""``module:function`` references in task files (custom strategies and tools).

A reference is resolved against the installed packages first, then against the task file's folder. The
folder is on ``sys.path`` only while the module is imported: the host process's import path is left as
it was.
"""

from __future__ import annotations

import importlib
import sys
import threading
from pathlib import Path
from typing import Any

_path_lock = threading.Lock()


def import_object(ref: str, search_path: Path | None = None) -> Any:
    """Import ``package.module:attribute``; ``search_path`` (a task file's folder) is tried too."""
    module_name, _, attr = ref.partition(":")
    if not module_name or not attr:
        raise ValueError(f"'{ref}' is not of the form package.module:function")
    try:
        module = _import(module_name, search_path)
    except ImportError as exc:
        raise ImportError(f"cannot import module '{module_name}': {exc}") from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise AttributeError(f"module '{module_name}' has no '{attr}'") from None


def _import(module_name: str, search_path: Path | None) -> Any:
    folder = str(search_path) if search_path is not None else None
    if folder is None or folder in sys.path:
        return importlib.import_module(module_name)
    with _path_lock:
        sys.path.append(folder)
        try:
            return importlib.import_module(module_name)
        finally:
            if folder in sys.path:
                sys.path.remove(folder)
