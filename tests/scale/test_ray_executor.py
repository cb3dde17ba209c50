"""The Ray executor on a local Ray: the same results as the local executor, resumable, a killed worker loses
no finished run, and a global budget held by one actor is never crossed across workers."""

from __future__ import annotations

import os
import signal
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from thrifty.bench.datasets import load_dataset
from thrifty.bench.runner import (
    BenchConfig,
    GlobalBudgetReached,
    load_results,
    parse_budgets,
    parse_strategies,
    run_grid,
)
from thrifty.budget import Budget
from thrifty.scale import ScaleError

Key = tuple[str, int, str, int]


def key(record: dict[str, Any]) -> Key:
    return (record["strategy"], record["budget"], record["question_id"], record["seed"])


def comparable(record: dict[str, Any]) -> dict[str, Any]:
    """A record without what differs between two executions of the same run: its id, when, how long."""
    out = {k: v for k, v in record.items() if k not in ("run_id", "finished")}
    out["usage"] = {k: v for k, v in record["usage"].items() if k != "seconds"}
    return out


def by_key(records: list[dict[str, Any]]) -> dict[Key, dict[str, Any]]:
    keyed = {key(r): comparable(r) for r in records}
    assert len(keyed) == len(records), "a run recorded twice"
    return keyed


def config() -> BenchConfig:
    # 3 questions x 2 strategies x 2 budgets x 2 seeds = 24 runs of the simulated model.
    return BenchConfig(
        dataset=load_dataset("hotpotqa").head(3),
        strategies=parse_strategies("react,react_tracker"),
        budgets=parse_budgets("3,5"),
        model="sim/default",
        seeds=[0, 1],
    )


@pytest.fixture(scope="module")
def local_results(tmp_path_factory: pytest.TempPathFactory) -> dict[Key, dict[str, Any]]:
    records = run_grid(config(), tmp_path_factory.mktemp("local") / "results.jsonl", progress=False)
    assert len(records) == 24
    return by_key(records)


def test_ray_grid_gives_the_local_results(
    ray_cluster: Any, local_results: dict[Key, dict[str, Any]], tmp_path: Path
) -> None:
    path = tmp_path / "results.jsonl"
    pids: list[list[int]] = []
    records = run_grid(
        config(), path, progress=False, executor="ray", workers=2, keep_workers=True, on_workers=pids.append
    )
    assert len(pids) == 1 and len(set(pids[0])) == 2 and os.getpid() not in pids[0]  # two worker processes
    assert by_key(records) == local_results
    assert by_key(load_results(path)) == local_results  # streamed to the same file, same format


def test_ray_grid_resumes_after_an_interruption(
    ray_cluster: Any, local_results: dict[Key, dict[str, Any]], tmp_path: Path
) -> None:
    path = tmp_path / "results.jsonl"
    seen: list[dict[str, Any]] = []

    def stop_after_five(record: dict[str, Any]) -> None:
        seen.append(record)
        if len(seen) == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_grid(
            config(),
            path,
            progress=False,
            executor="ray",
            workers=2,
            keep_workers=True,
            on_result=stop_after_five,
        )
    assert len(load_results(path)) == 5
    again: list[dict[str, Any]] = []
    records = run_grid(
        config(), path, progress=False, executor="ray", workers=2, keep_workers=True, on_result=again.append
    )
    assert len(again) == 19  # only the missing runs ran
    assert by_key(records) == by_key(load_results(path)) == local_results


def test_a_killed_worker_loses_no_finished_run(
    ray_cluster: Any, local_results: dict[Key, dict[str, Any]], tmp_path: Path
) -> None:
    path = tmp_path / "results.jsonl"
    pids: list[int] = []
    seen: list[dict[str, Any]] = []

    def kill_one_after_four(record: dict[str, Any]) -> None:
        seen.append(record)
        if len(seen) == 4:
            os.kill(pids[0], signal.SIGKILL)
            assert len(load_results(path)) == 4

    records = run_grid(
        config(),
        path,
        progress=False,
        executor="ray",
        workers=2,
        keep_workers=True,
        on_workers=pids.extend,
        on_result=kill_one_after_four,
    )
    assert by_key(records) == by_key(load_results(path)) == local_results


def test_a_binding_global_budget_stops_the_grid_keeping_finished_runs(
    ray_cluster: Any, local_results: dict[Key, dict[str, Any]], tmp_path: Path
) -> None:
    path = tmp_path / "results.jsonl"
    cap = 0.03  # the simulated model is free: $0.001 per search/read, at most $0.005 for a budget-5 run
    with pytest.raises(GlobalBudgetReached) as stopped:
        run_grid(
            replace(config(), global_budget=Budget(usd=cap)),
            path,
            progress=False,
            executor="ray",
            workers=2,
            keep_workers=True,
        )
    kept = load_results(path)
    assert 0 < len(kept) < 24 and stopped.value.not_run == 24 - len(kept)
    assert by_key(stopped.value.records) == by_key(kept)
    assert sum(r["usage"]["usd"] for r in kept) <= cap + 1e-9
    assert stopped.value.snapshot["spent"]["usd"] <= cap + 1e-9
    for k, record in by_key(kept).items():
        assert record == local_results[k]  # a run under the global budget is the run itself, whole
    # A larger global budget resumes the grid, counting what the finished runs spent.
    records = run_grid(
        replace(config(), global_budget=Budget(usd=1.0)),
        path,
        progress=False,
        executor="ray",
        workers=2,
        keep_workers=True,
    )
    assert by_key(records) == local_results


@settings(
    max_examples=4,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    cap=st.floats(min_value=0.005, max_value=0.09),
    calls=st.one_of(st.none(), st.integers(min_value=5, max_value=80)),
    kill_after=st.one_of(st.none(), st.integers(min_value=1, max_value=12)),
)
def test_the_global_budget_is_never_crossed_with_random_worker_failures(
    ray_cluster: Any,
    local_results: dict[Key, dict[str, Any]],
    tmp_path_factory: pytest.TempPathFactory,
    cap: float,
    calls: int | None,
    kill_after: int | None,
) -> None:
    path = tmp_path_factory.mktemp("prop") / "results.jsonl"
    budget = Budget(usd=cap, tool_calls=calls)
    pids: list[int] = []
    seen: list[dict[str, Any]] = []

    def maybe_kill(record: dict[str, Any]) -> None:
        seen.append(record)
        if len(seen) == kill_after:
            os.kill(pids[-1], signal.SIGKILL)

    try:
        records = run_grid(
            replace(config(), global_budget=budget),
            path,
            progress=False,
            executor="ray",
            workers=2,
            keep_workers=True,
            on_workers=pids.extend,
            on_result=maybe_kill,
        )
        snapshot = None
    except GlobalBudgetReached as exc:
        records, snapshot = exc.records, exc.snapshot
        assert exc.not_run == 24 - len(records)
        assert snapshot["spent"].get("usd", 0.0) <= cap + 1e-9
        if calls is not None:
            assert snapshot["spent"].get("tool_calls", 0.0) <= calls + 1e-9
        assert snapshot["overruns"] == [] and snapshot["open"] == 0
    kept = load_results(path)
    assert by_key(records) == by_key(kept)
    assert sum(r["usage"]["usd"] for r in kept) <= cap + 1e-9
    if calls is not None:
        assert sum(r["usage"]["tool_calls"] for r in kept) <= calls
    for k, record in by_key(kept).items():
        assert record == local_results[k]
    if snapshot is None:
        assert len(kept) == 24


def test_gpus_the_cluster_lacks_are_refused_before_any_worker_starts(
    ray_cluster: Any, tmp_path: Path
) -> None:
    path = tmp_path / "results.jsonl"
    with pytest.raises(ScaleError, match="the Ray cluster has 0 GPUs"):
        run_grid(config(), path, progress=False, executor="ray", workers=2, gpus_per_worker=1)
    assert load_results(path) == []
