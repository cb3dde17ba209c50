"""Benchmarks with several models: the simulated pair (prices and confidence in the sim name), a cascade as
``agent bench``'s model, and bad input."""

from __future__ import annotations

import statistics
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.bench.test_sim import BLUE, MARA, Q1, TOOLS, ask
from thrifty.bench import sim
from thrifty.bench.cli import bench_app
from thrifty.bench.datasets import load_dataset
from thrifty.bench.runner import BenchConfig, BenchError, make_pricing, parse_strategies, run_grid
from thrifty.bench.sim import SimModelError, SimParams, SimProvider
from thrifty.models.registry import provider_for
from thrifty.models.routing import EscalationPolicy

CHEAP = "sim/p=0.5,q=0.5,pin=0.5,pout=1"
STRONG = "sim/p=1,q=1,pin=10,pout=30"


@pytest.fixture()
def items(hotpot_file: Path) -> Iterator[None]:
    ds = load_dataset(hotpot_file)
    sim.clear_items()
    sim.register_items(ds.items, ds.corpus())
    yield
    sim.clear_items()


def test_price_and_confidence_parameters() -> None:
    params = SimParams.parse("sim/p=0.5,pin=2,pout=8,cnoise=0")
    assert params.model == "sim/p=0.5,q=0.8,noise=0.1,bias=0.1,seed=0,cnoise=0,pin=2,pout=8"
    assert SimParams().model == "sim/p=0.7,q=0.8,noise=0.1,bias=0.1,seed=0"  # unchanged for old names
    assert params.price().input_per_token == pytest.approx(2e-6)
    assert provider_for("sim/x").default_price("sim/pin=3") is not None
    assert provider_for("sim/x").default_price("sim/pin=3").input_per_token == pytest.approx(3e-6)  # type: ignore[union-attr]
    with pytest.raises(SimModelError, match="pin must be >= 0"):
        SimParams.parse("sim/pin=-1")


def test_a_right_answer_reports_more_confidence_than_a_wrong_one(items: None) -> None:
    right, wrong = [], []
    for seed in range(60):
        # both gold paragraphs seen: right with probability q
        out = SimProvider().respond(f"sim/q=0.5,seed={seed}", ask(Q1, observations=[BLUE, MARA]), {})[0]
        (right if out.content == "Lyonsford" else wrong).append(out.confidence)
    assert right and wrong
    assert statistics.fmean(right) > statistics.fmean(wrong) + 0.3
    # a move toward a gold paragraph is surer than one toward a distractor
    gold = [SimProvider().respond(f"sim/p=1,seed={i}", ask(Q1), {"tools": TOOLS})[0] for i in range(30)]
    off = [SimProvider().respond(f"sim/p=0,seed={i}", ask(Q1), {"tools": TOOLS})[0] for i in range(30)]
    assert all(o.calls for o in gold + off)
    assert statistics.fmean(o.confidence for o in gold) > statistics.fmean(o.confidence for o in off) + 0.3


def _grid(hotpot_file: Path, model: str, **kw: Any) -> BenchConfig:
    return BenchConfig(
        dataset=load_dataset(hotpot_file),
        strategies=parse_strategies("react_tracker"),
        budgets=[3, 5],
        model=model,
        pricing=make_pricing(model),
        **kw,
    )


def test_a_cascade_grid_records_what_each_model_cost(hotpot_file: Path, tmp_path: Path) -> None:
    config = _grid(hotpot_file, f"{CHEAP}>{STRONG}", escalation=EscalationPolicy(scope="run"))
    assert config.simulated and config.models == [CHEAP, STRONG]
    records = run_grid(config, tmp_path / "results.jsonl", progress=False)
    assert len(records) == 6
    for r in records:
        assert r["model"] == f"{CHEAP}>{STRONG}"
        assert set(r["models_usd"]) <= {CHEAP, STRONG}
        assert sum(r["models_usd"].values()) == pytest.approx(r["usage"]["tokens_usd"])
        if r["escalations"]:
            assert r["models_usd"].get(STRONG, 0) > 0
    assert any(r["escalations"] for r in records)  # the weak model's doubts reached the strong one


def test_a_bad_role_in_the_model_is_a_bench_error(hotpot_file: Path) -> None:
    with pytest.raises(BenchError, match="unknown role 'boss'"):
        _ = _grid(hotpot_file, f"boss={CHEAP}").routing


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", f"{CHEAP}>nosuch/model"], "nosuch"),
        (["--model", f"boss={CHEAP}"], "unknown role 'boss'"),
        (["--model", f"{CHEAP}>{STRONG}", "--price-in", "1"], "--price-in"),
        (["--model", f"{CHEAP}>{STRONG}", "--escalate", "forever"], "--escalate"),
        (["--model", f"{CHEAP}>sim/p=7"], "p must be in"),
    ],
)
def test_bench_refuses_bad_cascades_with_exit_2(
    hotpot_file: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    res = CliRunner().invoke(
        bench_app, ["hotpotqa", "--data", str(hotpot_file), "--out", str(tmp_path), "-q", "--no-plot", *args]
    )
    assert res.exit_code == 2, res.output
    assert message in res.output and "Traceback" not in res.output
    assert not (tmp_path / "results.jsonl").exists()


def test_the_bench_escalation_is_the_default_policy() -> None:
    """`agent bench --model cheap>strong` without --escalate / --min-confidence runs the default policy."""
    import inspect

    from thrifty.bench.cli import _escalation, hotpotqa

    defaults = inspect.signature(hotpotqa).parameters
    policy = _escalation(
        "sim/p=0.5>sim/p=0.9",
        defaults["escalate"].default,
        defaults["min_confidence"].default,
        None,
        None,
    )
    assert policy == EscalationPolicy()
