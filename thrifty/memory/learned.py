"""The learned router (``router: learned``): per query, the tier configuration with the best predicted
quality for its predicted cost, for any trade-off ``lam`` given at run time. Inference is numpy only.

A small MLP (trained with torch by :mod:`thrifty.memory.train` on a grid where every training question ran
under all 9 (retrieve, condense) configurations) predicts, from cheap features of the question text, each
configuration's quality ``q_c`` (the grid's score: evidence recall or F1) and its normalised memory cost
``c_c`` (``clip((sqrt(usd) - P5) / (P95 - P5), 0, 1)`` over the training pool). The decision is

    argmax_c  q_c - lam_eff * beta * c_c          (beta = std(score) / std(cost): BudgetMem's scale alignment)

so one set of weights serves every ``lam`` (0 = quality only, 1 = cost only) and, for a fixed question, a
larger ``lam`` never picks a configuration of higher predicted cost. ``lam_eff`` rises towards 1 as the memory
budget runs low (below half of it left). Configurations with a HIGH tier are not chosen when memory has no
model. The decision reads the question only (no retrieval before it), so it takes microseconds.

Weights are a JSON file (format ``thrifty-memory-router``); the package ships ``router_weights.json``, trained
on LongMemEval only (MIT). ``learned:PATH`` loads another file.
"""

from __future__ import annotations

import functools
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from thrifty.memory.records import Level
from thrifty.memory.router import LEVELS, Decision, RouteView

__all__ = [
    "CONFIGS",
    "DEFAULT_WEIGHTS",
    "FEATURES",
    "FEATURE_VERSION",
    "LearnedRouter",
    "LearnedRouterError",
    "RouterWeights",
    "config_name",
    "features",
    "load_weights",
]

FORMAT = "thrifty-memory-router"
FEATURE_VERSION = 1
DEFAULT_WEIGHTS = Path(__file__).with_name("router_weights.json")
# (retrieve, condense), cheapest-looking first so that a tie goes to the cheaper configuration.
CONFIGS: tuple[dict[str, Level], ...] = tuple({"retrieve": r, "condense": c} for r in LEVELS for c in LEVELS)


def config_name(tiers: dict[str, Level]) -> str:
    return f"{tiers['retrieve']}/{tiers['condense']}"


class LearnedRouterError(ValueError):
    """A router weights file that cannot be used (missing, not JSON, wrong shape); names file and field."""


# --------------------------------------------------------------------------------------------- features
_WORD = re.compile(r"[A-Za-z0-9']+")
_WH = {
    "when": re.compile(r"\bwhen\b|\bwhat (year|month|date|day|time)\b|\bwhich (year|month|day)\b", re.I),
    "how_many": re.compile(r"\bhow (many|much)\b", re.I),
    "how_long": re.compile(r"\bhow (long|old|often|far)\b", re.I),
    "who": re.compile(r"\bwho(m|se)?\b", re.I),
    "where": re.compile(r"\bwhere\b", re.I),
    "which": re.compile(r"\bwhich\b", re.I),
    "what": re.compile(r"\bwhat\b", re.I),
    "why_how": re.compile(r"\b(why|how)\b", re.I),
    "would": re.compile(r"\b(would|could|likely|might|probably)\b", re.I),
}
_YESNO = re.compile(r"^\s*(is|are|was|were|do|does|did|can|could|has|have|had|will|should)\b", re.I)
_CUES = {
    "temporal": re.compile(
        r"\b(january|february|march|april|may|june|july|august|september|october|november|december|"
        r"monday|tuesday|wednesday|thursday|friday|saturday|sunday|ago|before|after|first|last|since|"
        r"recent(ly)?|earlier|later|date|year|month|week|day|days|weeks|months|years|time)\b",
        re.I,
    ),
    "aggregate": re.compile(r"\b(how many|how much|all|list|total|both|every|times|each|different)\b", re.I),
    "date_math": re.compile(
        r"\b(how long|how many (days|weeks|months|years)|before or after|since when|how old|between)\b", re.I
    ),
    "order": re.compile(
        r"\b(first|last|latest|earliest|most recent|order|previous(ly)?|current(ly)?)\b", re.I
    ),
    "preference": re.compile(r"\b(recommend|suggest|tips?|advice|ideas?|favou?rite|prefer)\b", re.I),
    "change": re.compile(r"\b(now|still|anymore|changed?|new|updated?|switch(ed)?)\b", re.I),
}
_YEAR = re.compile(r"\b(19|20)\d\d\b")
_NUMBER = re.compile(r"\b\d+\b")
_QUOTED = re.compile(r"[\"“”'‘’][^\"“”]{2,}[\"“”'‘’]")

FEATURES: tuple[str, ...] = (
    "log_words",
    "log_chars",
    *(f"wh_{k}" for k in _WH),
    "yes_no",
    *(f"cue_{k}" for k in _CUES),
    "year",
    "number",
    "quoted",
    "named",
    "content_share",
)


def features(query: str) -> np.ndarray:
    """The question's features (``FEATURES``, version ``FEATURE_VERSION``): length, wh-word, cue counts
    (temporal, aggregation, date arithmetic, order, preference, change), numbers, quoted titles, named
    things (capitalised words after the first), share of content words. Microseconds, no model."""
    words = _WORD.findall(query)
    n = max(1, len(words))
    values: list[float] = [math.log1p(len(words)) / 4.0, math.log1p(len(query)) / 6.0]
    values += [1.0 if rx.search(query) else 0.0 for rx in _WH.values()]
    values.append(1.0 if _YESNO.search(query) else 0.0)
    values += [min(3, len(rx.findall(query))) / 3.0 for rx in _CUES.values()]
    values.append(1.0 if _YEAR.search(query) else 0.0)
    values.append(1.0 if _NUMBER.search(query) else 0.0)
    values.append(1.0 if _QUOTED.search(query) else 0.0)
    values.append(min(4, sum(1 for w in words[1:] if w[:1].isupper() and w.lower() != "i")) / 4.0)
    values.append(sum(1 for w in words if len(w) > 3) / n)
    return np.asarray(values, dtype=np.float64)


# ---------------------------------------------------------------------------------------------- weights
@dataclass(frozen=True)
class RouterWeights:
    """A loaded weights file: the MLP (input standardisation, layers) and the cost normalisation."""

    path: str
    mean: np.ndarray
    std: np.ndarray
    layers: tuple[tuple[np.ndarray, np.ndarray], ...]
    beta: float
    card: dict[str, Any]

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(quality, normalised cost) per configuration for feature rows ``x`` (n, F) -> (n, 9) each."""
        h = (x - self.mean) / self.std
        for i, (w, b) in enumerate(self.layers):
            h = h @ w + b
            if i < len(self.layers) - 1:
                h = np.maximum(h, 0.0)
        out = 1.0 / (1.0 + np.exp(-h))
        k = len(CONFIGS)
        return out[:, :k], out[:, k:]


def _bad(path: str, field: str, problem: str) -> LearnedRouterError:
    return LearnedRouterError(
        f"router weights {path}: field {field!r} {problem}; fix: retrain it with "
        "`agent memory train-router --data FILE --out router.json` (or use router: rules)"
    )


def _matrix(path: str, field: str, value: Any, shape: tuple[int, ...]) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise _bad(path, field, "is not a list of numbers") from None
    if arr.shape != shape:
        raise _bad(path, field, f"has shape {arr.shape}, expected {shape}")
    if not np.all(np.isfinite(arr)):
        raise _bad(path, field, "holds a value that is not finite")
    return arr


def _parse(path: str, data: Any) -> RouterWeights:
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise _bad(path, "format", f"is not {FORMAT!r} (not a thrifty router weights file)")
    if data.get("feature_version") != FEATURE_VERSION or data.get("features") != list(FEATURES):
        raise _bad(path, "features", f"does not match this thrifty's features (version {FEATURE_VERSION})")
    if data.get("configs") != [config_name(c) for c in CONFIGS]:
        raise _bad(path, "configs", "does not list the 9 retrieve/condense configurations in order")
    f = len(FEATURES)
    mean = _matrix(path, "mean", data.get("mean"), (f,))
    std = _matrix(path, "std", data.get("std"), (f,))
    if np.any(std <= 0):
        raise _bad(path, "std", "holds a value <= 0")
    raw_layers = data.get("layers")
    if not isinstance(raw_layers, list) or not raw_layers:
        raise _bad(path, "layers", "is not a non-empty list")
    layers: list[tuple[np.ndarray, np.ndarray]] = []
    width = f
    for i, layer in enumerate(raw_layers):
        if not isinstance(layer, dict) or "w" not in layer or "b" not in layer:
            raise _bad(path, f"layers[{i}]", "needs 'w' and 'b'")
        try:
            b = np.asarray(layer["b"], dtype=np.float64)
        except (TypeError, ValueError):
            raise _bad(path, f"layers[{i}].b", "is not a list of numbers") from None
        if b.ndim != 1:
            raise _bad(path, f"layers[{i}].b", "is not a flat list of numbers")
        out = b.shape[0]
        if i == len(raw_layers) - 1 and out != 2 * len(CONFIGS):
            raise _bad(path, f"layers[{i}].b", f"must have {2 * len(CONFIGS)} outputs (quality and cost)")
        w = _matrix(path, f"layers[{i}].w", layer["w"], (width, out))
        layers.append((w, _matrix(path, f"layers[{i}].b", layer["b"], (out,))))
        width = out
    beta = data.get("beta")
    if not isinstance(beta, int | float) or not math.isfinite(beta) or beta < 0:
        raise _bad(path, "beta", "is not a number >= 0")
    raw_card = data.get("card")
    card: dict[str, Any] = dict(raw_card) if isinstance(raw_card, dict) else {}
    return RouterWeights(path, mean, std, tuple(layers), float(beta), card)


@functools.lru_cache(maxsize=8)
def _load_cached(path: str, mtime_ns: int, size: int) -> RouterWeights:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise LearnedRouterError(f"router weights {path}: cannot read it ({exc})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LearnedRouterError(
            f"router weights {path}: not valid JSON ({exc.msg}, line {exc.lineno}), perhaps truncated; fix: "
            "retrain it with `agent memory train-router --data FILE --out router.json`"
        ) from None
    return _parse(path, data)


def load_weights(path: str | Path | None = None) -> RouterWeights:
    """Load (and cache, while the file is unchanged) a weights file; the shipped one by default.
    LearnedRouterError, naming the file and the field, when it cannot be used."""
    target = Path(path).expanduser() if path else DEFAULT_WEIGHTS
    try:
        stat = target.stat()
    except OSError:
        hint = " (the package ships none: train one)" if path is None else ""
        raise LearnedRouterError(
            f"router weights {target}: no such file{hint}; fix: give an existing file as learned:PATH, "
            "or train one with `agent memory train-router --data FILE --out router.json`"
        ) from None
    return _load_cached(str(target.resolve()), stat.st_mtime_ns, stat.st_size)


# ----------------------------------------------------------------------------------------------- router
def effective_lam(lam: float, remaining: float) -> float:
    """``lam`` while at least half the memory budget is left; then rising linearly to 1 at nothing left."""
    lam = min(1.0, max(0.0, lam))
    if remaining >= 0.5:
        return lam
    return 1.0 - (1.0 - lam) * max(0.0, remaining) / 0.5


class LearnedRouter:
    """``router: learned`` (or ``learned:PATH``): see the module docstring."""

    name = "learned"

    def __init__(self, weights: str | Path | RouterWeights | None = None) -> None:
        self.weights = weights if isinstance(weights, RouterWeights) else load_weights(weights)
        if weights is not None and not isinstance(weights, RouterWeights):
            self.name = f"learned:{weights}"
        self._high = np.array([("high" in c.values()) for c in CONFIGS])

    def utilities(self, query: str, view: RouteView) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(utility, predicted quality, predicted normalised cost) per configuration."""
        quality, cost = self.weights.predict(features(query)[None, :])
        lam = effective_lam(view.lam, view.remaining)
        utility = quality[0] - lam * self.weights.beta * cost[0]
        if not view.has_model:
            utility = np.where(self._high, -np.inf, utility)
        return utility, quality[0], cost[0]

    def decide(self, query: str, view: RouteView) -> Decision:
        utility, quality, cost = self.utilities(query, view)
        best = int(np.argmax(utility))
        tiers = dict(CONFIGS[best])
        if not view.has_embedder and tiers["retrieve"] == "mid":
            tiers["retrieve"] = "low"  # MID retrieval would run BM25 alone: the same items at LOW
        return Decision(
            tiers=tiers,
            reason=f"learned: predicted quality {quality[best]:.2f}, cost {cost[best]:.2f} "
            f"(lam {view.lam:g})",
        )
