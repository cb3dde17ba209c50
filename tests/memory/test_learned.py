"""The learned router: numpy inference = the torch model, lambda monotone in cost, weights checked on load,
training on a tiny synthetic grid (never on LoCoMo), the shipped weights offline."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.memory.conversations import SESSIONS
from thrifty.memory import Memory
from thrifty.memory.learned import (
    CONFIGS,
    DEFAULT_WEIGHTS,
    FEATURES,
    LearnedRouter,
    LearnedRouterError,
    config_name,
    effective_lam,
    features,
    load_weights,
)
from thrifty.memory.router import RouteView, make_router
from thrifty.memory.train import evaluate, fit_router, grid_table

QUESTIONS = [
    "When did Caroline go to the support group?",
    "What is the name of Caroline's cat?",
    "How many times did Melanie go camping?",
    "Would Caroline likely pursue writing as a career?",
    "Where did Melanie paint the sunrise?",
    "How long ago did I start playing the violin?",
    "Which city did my sister move to last year?",
    "What did I buy for my brother's birthday?",
    "Who gave me the book about the ocean?",
    "How many different bikes do I own now?",
    "What was the first thing I cooked after the move?",
    "Can you recommend a hobby given what I like?",
]
_USD = {"low": 2e-4, "mid": 1e-4, "high": 4e-4}  # condense tier -> memory USD (retrieve adds a little)


def synthetic_grid() -> list[dict[str, Any]]:
    """A made-up grid: temporal / counting questions need LOW condense (MID loses their evidence), the
    others lose nothing at MID; HIGH retrieval costs more and adds nothing."""
    records: list[dict[str, Any]] = []
    for i, question in enumerate(QUESTIONS):
        needs_all = any(w in question.lower() for w in ("when", "how many", "how long", "first"))
        for tiers in CONFIGS:
            condense, retrieve = tiers["condense"], tiers["retrieve"]
            score = 0.9 if condense != "mid" or not needs_all else 0.2
            usd = _USD[condense] + (5e-5 if retrieve == "high" else 0.0)
            records.append(
                {
                    "conversation": f"c{i}",
                    "question_index": 0,
                    "config": config_name(tiers),
                    "question": question,
                    "memory_usd": usd,
                    "f1": score,
                    "evidence_recall": score,
                }
            )
    return records


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    table = grid_table(synthetic_grid())
    model, weights = fit_router(table, hidden=16, epochs=300, seed=1, card={"data": "synthetic"})
    path = tmp_path_factory.mktemp("router") / "router.json"
    path.write_text(json.dumps(weights), encoding="utf-8")
    return model, path


def test_features_are_cheap_text_features() -> None:
    x = features("When did Caroline go to the LGBTQ support group in May 2023?")
    assert x.shape == (len(FEATURES),) and np.all(np.isfinite(x))
    named = dict(zip(FEATURES, x, strict=True))
    assert named["wh_when"] == 1.0 and named["year"] == 1.0 and named["named"] > 0
    assert features("")[0] == 0.0  # an empty query is valid input


def test_numpy_inference_matches_the_torch_model(trained: tuple[Any, Path]) -> None:
    model, path = trained
    weights = load_weights(path)
    x = np.stack([features(q) for q in [*QUESTIONS, "", "x" * 500, "What? " * 40]])
    quality, cost = weights.predict(x)
    with torch.no_grad():
        expected = torch.sigmoid(model(torch.tensor((x - weights.mean) / weights.std, dtype=torch.float32)))
    k = len(CONFIGS)
    assert np.allclose(quality, expected[:, :k].numpy(), atol=1e-5)
    assert np.allclose(cost, expected[:, k:].numpy(), atol=1e-5)


def test_the_router_learns_the_grid_and_lambda_trades_quality_for_cost(trained: tuple[Any, Path]) -> None:
    router = LearnedRouter(trained[1])
    quality_first = router.decide("How many times did Melanie go camping?", RouteView(lam=0.0))
    assert quality_first.tiers["condense"] != "mid"  # MID loses this question's evidence in the grid
    cheap = router.decide("Where did Melanie paint the sunrise?", RouteView(lam=1.0))
    assert cheap.tiers == {"retrieve": cheap.tiers["retrieve"], "condense": "mid"}
    assert cheap.tiers["retrieve"] != "high"
    rows = evaluate(load_weights(trained[1]), grid_table(synthetic_grid()), [0.0, 1.0])
    assert rows[0]["score"] >= rows[1]["score"] and rows[0]["usd"] >= rows[1]["usd"]
    assert rows[1]["usd"] < 2e-4  # at lam = 1 it buys MID where the grid says it is enough


@settings(max_examples=60, deadline=None)
@given(
    query=st.text(min_size=0, max_size=120),
    lams=st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=2, max_size=6),
    remaining=st.floats(min_value=0.0, max_value=1.0),
)
def test_a_larger_lambda_never_picks_a_configuration_of_higher_predicted_cost(
    trained: tuple[Any, Path], query: str, lams: list[float], remaining: float
) -> None:
    router = LearnedRouter(load_weights(trained[1]))
    costs = []
    for lam in sorted(lams):
        utility, _, cost = router.utilities(query, RouteView(lam=lam, remaining=remaining))
        costs.append(cost[int(np.argmax(utility))])
    assert all(b <= a + 1e-12 for a, b in itertools.pairwise(costs))


def test_less_budget_left_acts_as_a_larger_lambda() -> None:
    assert effective_lam(0.2, 1.0) == 0.2 and effective_lam(0.2, 0.5) == 0.2
    assert effective_lam(0.2, 0.0) == 1.0 and 0.2 < effective_lam(0.2, 0.25) < 1.0


def test_no_model_means_no_high_tier(trained: tuple[Any, Path]) -> None:
    router = LearnedRouter(trained[1])
    for q in QUESTIONS:
        tiers = router.decide(q, RouteView(lam=0.0, has_model=False, has_embedder=False)).tiers
        assert "high" not in tiers.values() and tiers["retrieve"] == "low"


def test_the_shipped_weights_load_offline_and_serve_memory() -> None:
    weights = load_weights()
    assert weights.path == str(DEFAULT_WEIGHTS.resolve())
    card = weights.card
    assert "longmemeval" in card["data"].lower() and "locomo" not in json.dumps(card).lower()
    with Memory(router="learned", lam=0.3, embedder="none") as mem:
        mem.ingest(SESSIONS, scope={"user_id": "c"})
        got = mem.recall("What is the name of Caroline's cat?", scope={"user_id": "c"})
        assert "Pixel" in got.block and got.report.router == "learned"
        assert got.report.reason.startswith("learned:")


def test_learned_path_loads_another_file(trained: tuple[Any, Path]) -> None:
    router = make_router(f"learned:{trained[1]}")
    assert isinstance(router, LearnedRouter) and router.name == f"learned:{trained[1]}"


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ('{"format": "thrifty-memory-router", "feat', "not valid JSON"),
        ("[1, 2]", "'format'"),
        (None, "'layers[1].w'"),
        (None, "'beta'"),
        (None, "'layers[0].b'"),
    ],
)
def test_a_bad_weights_file_is_a_clear_error(
    trained: tuple[Any, Path], tmp_path: Path, content: str | None, needle: str
) -> None:
    bad = tmp_path / "bad.json"
    if content is None:
        data = json.loads(trained[1].read_text())
        if needle == "'beta'":
            data["beta"] = "big"
        elif needle == "'layers[0].b'":
            data["layers"][0]["b"] = [[1.0, 2.0], [3.0]]
        else:
            data["layers"][1]["w"] = data["layers"][1]["w"][:-1]
        content = json.dumps(data)
    bad.write_text(content, encoding="utf-8")
    with pytest.raises(LearnedRouterError) as err:
        load_weights(bad)
    assert str(bad.resolve()) in str(err.value) and needle in str(err.value)
    with pytest.raises(LearnedRouterError, match="no such file"):
        make_router(f"learned:{tmp_path / 'missing.json'}")


def test_inference_never_imports_torch() -> None:
    code = (
        "import sys\n"
        "from thrifty.memory import Memory\n"
        "from thrifty.memory.router import RouteView\n"
        "from thrifty.memory.learned import LearnedRouter\n"
        "LearnedRouter().decide('When did I move?', RouteView(lam=0.1))\n"
        "Memory(router='learned', embedder='none').close()\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
