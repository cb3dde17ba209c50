"""``agent batch``: many task files, local threads or Ray workers, results to a JSONL and the run store, one
global budget; bad input exits 2 before anything runs."""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from thrifty.budget import Budget
from thrifty.cli import app
from thrifty.models.scripted import ScriptedReply, ScriptedRequest
from thrifty.scale.batch import BatchError, load_batch, load_lines, run_batch
from thrifty.store import RunStore
from thrifty.testing import ScriptedModel, call, reply

MODEL = "scripted/batch-test"
cli = CliRunner()


def calculate_then_answer(request: ScriptedRequest) -> ScriptedReply:
    """One calculator call, then its result as the answer."""
    if any(m.get("role") == "tool" for m in request.messages):
        return reply("4", prompt_tokens=40, completion_tokens=5)
    return call("calculator", expression="2+2", prompt_tokens=40, completion_tokens=5)


def register_model() -> None:
    """Runs in every worker process (and here): the scripted model the task files name."""
    ScriptedModel(name="batch-test", default=calculate_then_answer)


def write_tasks(folder: Path, count: int = 3, budget: str = "tool_calls: 2") -> list[Path]:
    store = folder / "runs.db"
    paths = []
    for n in range(count):
        path = folder / f"task{n}.yaml"
        path.write_text(
            f"name: sum-{n}\nquestion: What is 2+2 (case {n})?\nexpected_answer: '4'\nmodel: {MODEL}\n"
            f"tools: [calculator]\nbudget: {{{budget}}}\noutput:\n  store: {store}\n"
        )
        paths.append(path)
    return paths


def test_local_batch_writes_results_and_the_store_and_resumes(tmp_path: Path) -> None:
    register_model()
    jobs = load_batch(write_tasks(tmp_path))
    out = tmp_path / "out" / "results.jsonl"
    outcome = run_batch(jobs, out, concurrency=2)
    assert outcome.ran == 3 and outcome.not_run == []
    lines = load_lines(out)
    assert sorted(line["task"] for line in lines) == ["sum-0", "sum-1", "sum-2"]
    assert {line["answer"] for line in lines} == {"4"} and {line["exit_code"] for line in lines} == {0}
    stored = RunStore(tmp_path / "runs.db").recent()
    assert sorted(r["run_id"] for r in stored) == sorted(line["run_id"] for line in lines)
    again = run_batch(jobs, out)  # everything is done: nothing runs
    assert again.ran == 0 and len(again.records) == 3


def test_local_batch_under_a_global_budget_stops_cleanly(tmp_path: Path) -> None:
    register_model()
    jobs = load_batch(write_tasks(tmp_path))
    out = tmp_path / "results.jsonl"
    # Each task leases its worst case (2 tool calls) and spends 1: the third cannot be held.
    outcome = run_batch(jobs, out, global_budget=Budget(tool_calls=3))
    assert outcome.ran == 2 and len(outcome.not_run) == 1
    assert outcome.snapshot["spent"]["tool_calls"] == 2.0
    assert len(load_lines(out)) == 2
    # A rerun with more room runs only the missing one, counting what the finished ones spent.
    outcome = run_batch(jobs, out, global_budget=Budget(tool_calls=4))
    assert outcome.ran == 1 and outcome.not_run == [] and len(load_lines(out)) == 3


def test_a_global_budget_too_small_for_one_task_is_refused(tmp_path: Path) -> None:
    jobs = load_batch(write_tasks(tmp_path, budget="tool_calls: 5"))
    with pytest.raises(BatchError, match="smaller than this task's reservation"):
        run_batch(jobs, tmp_path / "results.jsonl", global_budget=Budget(tool_calls=4))
    jobs = load_batch(write_tasks(tmp_path, budget="tool_calls: 2"))
    with pytest.raises(BatchError, match=r"field 'budget'.*total_tokens"):
        run_batch(jobs, tmp_path / "results.jsonl", global_budget=Budget(total_tokens=1000))
    assert not (tmp_path / "results.jsonl").exists()


def test_ray_batch_gives_the_local_answers(ray_cluster: Any, tmp_path: Path) -> None:
    import ray

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    register_model()
    jobs = load_batch(write_tasks(tmp_path))
    out = tmp_path / "results.jsonl"
    outcome = run_batch(
        jobs, out, executor="ray", workers=2, worker_setup=register_model, global_budget=Budget(tool_calls=10)
    )
    assert outcome.ran == 3 and outcome.not_run == []
    lines = load_lines(out)
    assert {line["answer"] for line in lines} == {"4"}
    assert outcome.snapshot["spent"]["tool_calls"] == 3.0 and outcome.snapshot["open"] == 0
    assert len(RunStore(tmp_path / "runs.db").recent()) == 3  # saved here, whatever ran them


# ------------------------------------------------------------------------------------ bad input, exit 2
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_batch_cli_bad_input_exits_2_before_anything_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    register_model()
    tasks = [str(p) for p in write_tasks(tmp_path, budget="tool_calls: 5")]
    out = tmp_path / "results.jsonl"
    res = cli.invoke(app, ["batch", *tasks, "--out", str(out), "--global-tool-calls", "3"])
    assert res.exit_code == 2 and "smaller than this task's reservation" in res.output
    port = _free_port()
    res = cli.invoke(
        app, ["batch", *tasks, "--out", str(out), "--executor", "ray", "--ray-address", f"127.0.0.1:{port}"]
    )
    assert res.exit_code == 2 and "no Ray cluster answers there" in res.output
    monkeypatch.setitem(sys.modules, "ray", None)  # Ray not installed
    res = cli.invoke(app, ["batch", *tasks, "--out", str(out), "--executor", "ray"])
    assert res.exit_code == 2 and "pip install 'thrifty[ray]'" in res.output
    res = cli.invoke(app, ["batch", str(tmp_path / "missing.yaml"), "--out", str(out)])
    assert res.exit_code == 2 and "missing.yaml" in res.output
    assert not out.exists()
    assert not (tmp_path / "runs.db").exists()


def test_batch_cli_runs_and_a_binding_global_budget_exits_4(tmp_path: Path) -> None:
    register_model()
    tasks = [str(p) for p in write_tasks(tmp_path)]
    out = tmp_path / "results.jsonl"
    res = cli.invoke(app, ["batch", *tasks, "--out", str(out), "--global-tool-calls", "3"])
    assert res.exit_code == 4, res.output
    assert "1 tasks not started" in res.output
    res = cli.invoke(app, ["batch", *tasks, "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert [json.loads(line)["answer"] for line in out.read_text().splitlines()] == ["4", "4", "4"]


def test_bench_cli_bad_executor_input_exits_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = [
        "bench",
        "hotpotqa",
        "--model",
        "sim/default",
        "--limit",
        "2",
        "--budgets",
        "3",
        "--out",
        str(tmp_path),
    ]
    res = cli.invoke(app, [*base, "--global-usd", "0.001"])  # one budget-3 run may cost $0.003
    assert res.exit_code == 2 and "smaller than one run's reservation" in res.output
    res = cli.invoke(app, [*base, "--executor", "ray", "--ray-address", f"127.0.0.1:{_free_port()}"])
    assert res.exit_code == 2 and "no Ray cluster answers there" in res.output
    res = cli.invoke(app, [*base, "--executor", "cluster"])
    assert res.exit_code == 2 and "use local or ray" in res.output
    monkeypatch.setitem(sys.modules, "ray", None)
    res = cli.invoke(app, [*base, "--executor", "ray"])
    assert res.exit_code == 2 and "pip install 'thrifty[ray]'" in res.output
    assert not (tmp_path / "results.jsonl").exists()
