"""Training the learned router (needs torch: the optional ``memory-train`` extra; inference does not).

Input: grid records (:mod:`thrifty.bench.router_grid`), one per (question, configuration), each with the
question text, its ``config`` (``retrieve/condense``), its score and its ``memory_usd``. Per question the
targets are the 9 configurations' scores ``s_c`` and normalised costs
``c_c = clip((sqrt(usd_c) - P5) / (P95 - P5), 0, 1)`` (percentiles over the training pool; BudgetMem's
normaliser); ``beta = std(s) / std(c)`` aligns the scales so ``lam`` in [0, 1] spans the trade-off.
The model (features -> hidden -> hidden -> 18 sigmoid outputs) is fitted by full-batch Adam on the mean squared
error of both; then exported to plain JSON for :class:`thrifty.memory.learned.LearnedRouter` (numpy).

Why predict quality and cost rather than train a policy on the expected utility: with ``lam`` applied at
decision time, one model serves every ``lam`` exactly, and a larger ``lam`` provably never picks a
configuration of higher predicted cost (the argmax of ``q - lam * beta * c`` moves only to lower ``c``).
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from thrifty.extras import pip_install
from thrifty.memory.learned import (
    CONFIGS,
    FEATURE_VERSION,
    FEATURES,
    FORMAT,
    RouterWeights,
    config_name,
    features,
)

__all__ = ["GridTable", "evaluate", "fit_router", "grid_table", "train_router"]

SCORES = ("evidence", "f1")


@dataclass(frozen=True)
class GridTable:
    """Per question (rows): features, the 9 scores and the 9 raw costs (USD)."""

    keys: list[tuple[str, int]]
    questions: list[str]
    x: np.ndarray  # (n, F)
    score: np.ndarray  # (n, 9)
    usd: np.ndarray  # (n, 9)


def grid_table(records: Sequence[dict[str, Any]], score: str = "evidence") -> GridTable:
    """Group grid records by question; keep questions with all 9 configurations (and, for the ``evidence``
    score, gold evidence: abstention / adversarial questions have none)."""
    if score not in SCORES:
        raise ValueError(f"unknown router score {score!r}: use evidence or f1")
    names = [config_name(c) for c in CONFIGS]
    by_q: dict[tuple[str, int], dict[str, dict[str, Any]]] = defaultdict(dict)
    text: dict[tuple[str, int], str] = {}
    for r in records:
        key = (str(r["conversation"]), int(r["question_index"]))
        by_q[key][str(r["config"])] = r
        text[key] = str(r["question"])
    keys: list[tuple[str, int]] = []
    rows_s: list[list[float]] = []
    rows_c: list[list[float]] = []
    for key, configs in by_q.items():
        if any(n not in configs for n in names):
            continue
        rs = [configs[n] for n in names]
        if score == "evidence":
            if any(r.get("evidence_recall") is None for r in rs):
                continue
            rows_s.append([float(r["evidence_recall"]) for r in rs])
        else:
            rows_s.append([float(r["f1"]) for r in rs])
        rows_c.append([float(r["memory_usd"]) for r in rs])
        keys.append(key)
    if not keys:
        raise ValueError(
            "the router grid has no question with all 9 configurations scored: run the grid first "
            "(agent memory train-router --data FILE --grid FILE)"
        )
    questions = [text[k] for k in keys]
    return GridTable(
        keys=keys,
        questions=questions,
        x=np.stack([features(q) for q in questions]),
        score=np.asarray(rows_s, dtype=np.float64),
        usd=np.asarray(rows_c, dtype=np.float64),
    )


def _cost_norm(usd: np.ndarray) -> tuple[np.ndarray, float, float]:
    root = np.sqrt(np.maximum(usd, 0.0))
    p5, p95 = float(np.percentile(root, 5)), float(np.percentile(root, 95))
    if p95 - p5 <= 1e-12:
        p95 = p5 + 1e-12
    return np.clip((root - p5) / (p95 - p5), 0.0, 1.0), p5, p95


def train_router(
    table: GridTable,
    *,
    hidden: int = 32,
    epochs: int = 400,
    lr: float = 3e-3,
    weight_decay: float = 1e-3,
    seed: int = 0,
    card: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Fit the router on ``table`` with torch and return the weights file's content (JSON-ready)."""
    return fit_router(
        table, hidden=hidden, epochs=epochs, lr=lr, weight_decay=weight_decay, seed=seed, card=card
    )[1]


def fit_router(
    table: GridTable,
    *,
    hidden: int = 32,
    epochs: int = 400,
    lr: float = 3e-3,
    weight_decay: float = 1e-3,
    seed: int = 0,
    card: dict[str, Any] | None = None,
) -> tuple[Any, dict[str, Any]]:
    """:func:`train_router`, also returning the torch model (its input: standardised features; its output
    before the sigmoid): the tests check that the numpy inference matches it."""
    try:
        import torch
    except ImportError:
        raise ImportError(
            f"training the router needs torch: {pip_install('memory-train', 'torch==2.13.0')} (inference does not)"
        ) from None
    torch.manual_seed(seed)
    cost, p5, p95 = _cost_norm(table.usd)
    s_std, c_std = float(table.score.std()), float(cost.std())
    beta = s_std / c_std if c_std > 1e-9 else 0.0
    mean = table.x.mean(axis=0)
    std = table.x.std(axis=0)
    std = np.where(std < 1e-6, 1.0, std)
    x = torch.tensor((table.x - mean) / std, dtype=torch.float32)
    y = torch.tensor(np.concatenate([table.score, cost], axis=1), dtype=torch.float32)
    k = len(CONFIGS)
    model = torch.nn.Sequential(
        torch.nn.Linear(len(FEATURES), hidden),
        torch.nn.ReLU(),
        torch.nn.Linear(hidden, hidden),
        torch.nn.ReLU(),
        torch.nn.Linear(hidden, 2 * k),
    )
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    loss_value = math.nan
    for _ in range(epochs):
        opt.zero_grad()
        pred = torch.sigmoid(model(x))
        loss = torch.nn.functional.mse_loss(pred, y)
        loss.backward()
        opt.step()
        loss_value = float(loss.item())
    linears = [m for m in model if isinstance(m, torch.nn.Linear)]
    digest = hashlib.sha256("\n".join(sorted(table.questions)).encode()).hexdigest()[:16]
    return model, {
        "format": FORMAT,
        "feature_version": FEATURE_VERSION,
        "features": list(FEATURES),
        "configs": [config_name(c) for c in CONFIGS],
        "mean": mean.tolist(),
        "std": std.tolist(),
        "layers": [
            {"w": m.weight.detach().numpy().T.astype(float).tolist(), "b": m.bias.detach().numpy().tolist()}
            for m in linears
        ],
        "beta": beta,
        "cost_norm": {"sqrt_usd_p5": p5, "sqrt_usd_p95": p95},
        "card": {
            "trained": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "questions": len(table.keys),
            "questions_sha256": digest,
            "torch": str(torch.__version__),
            "hidden": hidden,
            "epochs": epochs,
            "seed": seed,
            "final_mse": loss_value,
            **(card or {}),
        },
    }


def evaluate(weights: RouterWeights, table: GridTable, lams: Sequence[float]) -> list[dict[str, float]]:
    """On a grid table (e.g. held-out questions): per ``lam``, the mean score and USD of the router's choices,
    next to each fixed configuration's (the grid knows every configuration's outcome: no rerun needed)."""
    from thrifty.memory.learned import LearnedRouter
    from thrifty.memory.router import RouteView

    router = LearnedRouter(weights)
    out: list[dict[str, float]] = []
    for lam in lams:
        picks = [int(np.argmax(router.utilities(q, RouteView(lam=lam))[0])) for q in table.questions]
        rows = np.arange(len(picks))
        out.append(
            {
                "lam": lam,
                "score": float(table.score[rows, picks].mean()),
                "usd": float(table.usd[rows, picks].mean()),
            }
        )
    return out
