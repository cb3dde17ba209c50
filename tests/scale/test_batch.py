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
from thrifty.extras import pip_install
from thrifty.models.scripted import ScriptedReply, ScriptedRequest
from thrifty.scale.batch import BatchError, load_batch, load_lines, run_batch, task_reservation
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
    register_model()
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
    assert res.exit_code == 2 and pip_install("ray") in res.output
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
    assert res.exit_code == 2 and pip_install("ray") in res.output
    assert not (tmp_path / "results.jsonl").exists()


# ------------------------------------------------------------------------------------ MCP servers in a batch
MCP_SERVER = str(Path(__file__).parents[1] / "tools" / "mcp_server.py")


def _mcp_task(path: Path, mode: str = "stdio", price: str = "0.05", budget: str = "tool_calls: 4") -> Path:
    path.write_text(
        f"question: What is 2+2?\nmodel: {MODEL}\nbudget: {{{budget}}}\noutput:\n  store: null\n"
        f"mcp_servers:\n  - name: calc\n    command: ['{sys.executable}', '{MCP_SERVER}', {mode}]\n"
        f"    startup_timeout: 60\n    price: {price}\n"
    )
    return path


def test_a_priced_mcp_tool_counts_in_the_lease(tmp_path: Path) -> None:
    register_model()
    jobs = load_batch([_mcp_task(tmp_path / "mcp.yaml")])
    # Four calls of a $0.05 tool may cost $0.20: a $0.10 global budget cannot hold the task.
    assert task_reservation(jobs[0], Budget(usd=1.0))["usd"] == pytest.approx(0.2)
    with pytest.raises(BatchError, match="smaller than this task's reservation"):
        run_batch(jobs, tmp_path / "results.jsonl", global_budget=Budget(usd=0.1))
    priced = tmp_path / "priced.yaml"  # a configured price for a tool of the server counts too
    priced.write_text(_mcp_task(priced).read_text() + "pricing:\n  tools: {add: 0.25}\n")
    assert task_reservation(load_batch([priced])[0], Budget(usd=1.0))["usd"] == pytest.approx(1.0)


def test_every_bad_file_is_reported_before_anything_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    register_model()
    good = write_tasks(tmp_path, count=1)[0]
    no_key = tmp_path / "no_key.yaml"
    no_key.write_text("question: Who?\nmodel: openai/gpt-4o-mini\noutput:\n  store: null\n")
    down = _mcp_task(tmp_path / "down.yaml", mode="crash")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    out = tmp_path / "results.jsonl"
    res = cli.invoke(app, ["batch", str(good), str(no_key), str(down), "--out", str(out)])
    assert res.exit_code == 2, res.output
    shown = " ".join(res.output.split())
    assert f"{no_key}:2: field 'model'" in shown
    assert (
        f"{down}: mcp_servers: MCP server 'calc' could not start" in shown
        and "field 'mcp_servers.0.command'" in shown
    )
    assert "2 of 3 task files cannot run: nothing ran" in shown and "Traceback" not in shown
    assert not out.exists() and not (tmp_path / "runs.db").exists()  # the good file did not run


def test_a_setup_error_while_running_names_the_file(tmp_path: Path) -> None:
    from thrifty.workflows.runner import SetupError

    register_model()
    down = _mcp_task(tmp_path / "down.yaml", mode="crash")
    jobs = load_batch([down], start_servers=False)
    with pytest.raises(SetupError, match=rf"^{down}: mcp_servers: MCP server 'calc' could not start"):
        run_batch(jobs, tmp_path / "results.jsonl")


def test_a_misspelt_tool_name_is_found_once_the_servers_started(tmp_path: Path) -> None:
    register_model()
    task = _mcp_task(tmp_path / "mcp.yaml", budget="tool_calls: 4, per_tool: {ad: 1}")
    with pytest.raises(BatchError, match=r"field 'budget.per_tool.ad'.*use one of its tools: add, die, echo"):
        load_batch([task])


# ------------------------------------------------------------------------------------------- --out
@pytest.mark.parametrize("where", ["folder", "under-a-file", "proc"])
def test_a_bad_out_exits_2_before_anything_runs(tmp_path: Path, where: str) -> None:
    register_model()
    tasks = [str(p) for p in write_tasks(tmp_path, count=1)]
    (tmp_path / "afile").write_text("")
    if where == "proc" and not Path("/proc/self").is_dir():
        pytest.skip("no /proc here")
    out = {"folder": tmp_path, "under-a-file": tmp_path / "afile" / "r.jsonl", "proc": Path("/proc/x.jsonl")}[
        where
    ]
    res = cli.invoke(app, ["batch", *tasks, "--out", str(out)])
    assert res.exit_code == 2, res.output
    shown = " ".join(res.output.split())
    assert shown.startswith(f"error: --out {out}: ") and "fix: " in shown and "Traceback" not in shown
    assert not (tmp_path / "runs.db").exists()  # nothing ran, nothing was paid


def test_global_usd_0_names_the_option(tmp_path: Path) -> None:
    res = cli.invoke(app, ["batch", str(write_tasks(tmp_path, count=1)[0]), "--global-usd", "0"])
    assert res.exit_code == 2 and "--global-usd" in res.output


def test_a_task_file_edited_since_its_result_is_skipped_with_a_note(tmp_path: Path) -> None:
    """A rerun skips the files already in the results file, as documented; one edited since its result was
    saved used to be skipped without a word."""
    register_model()
    tasks = write_tasks(tmp_path)
    out = tmp_path / "results.jsonl"
    assert cli.invoke(app, ["batch", *map(str, tasks), "--out", str(out)]).exit_code == 0
    res = cli.invoke(app, ["batch", *map(str, tasks), "--out", str(out)])
    assert res.exit_code == 0 and "changed since" not in res.output  # nothing edited: no note
    tasks[1].write_text(tasks[1].read_text().replace("case 1", "case one"))
    res = cli.invoke(app, ["batch", *map(str, tasks), "--out", str(out)])
    assert res.exit_code == 0 and "0 tasks run, 3 in" in res.stdout
    note = " ".join(res.stderr.split())
    assert "note: 1 task file(s) changed since their results were saved" in note and "task1.yaml" in note
    assert "task0.yaml" not in note and "another --out" in note
    assert run_batch(load_batch(tasks), tmp_path / "fresh.jsonl").changed == []


def test_a_task_that_failed_on_a_transient_model_error_runs_again_and_a_bad_request_is_kept(
    tmp_path: Path,
) -> None:
    from thrifty.models._litellm import get_litellm

    litellm = get_litellm()
    errors: dict[str, BaseException] = {
        "case 0": litellm.RateLimitError("slow down", llm_provider="scripted", model="m"),
        "case 1": litellm.BadRequestError("bad request", llm_provider="scripted", model="m"),
    }

    def flaky(request: ScriptedRequest) -> ScriptedReply:
        text = json.dumps(request.messages)
        for case, exc in errors.items():
            if case in text:
                raise exc
        return calculate_then_answer(request)

    ScriptedModel(name="batch-test", default=flaky)
    jobs = load_batch(write_tasks(tmp_path))
    out = tmp_path / "results.jsonl"
    first = run_batch(jobs, out)
    by_task = {line["task"]: line for line in first.records}
    assert by_task["sum-0"]["stop_reason"] == "error" and "RateLimitError" in by_task["sum-0"]["error"]
    assert by_task["sum-1"]["stop_reason"] == "error" and "BadRequestError" in by_task["sum-1"]["error"]
    assert by_task["sum-2"]["answer"] == "4"

    errors.clear()  # the outage is over: only the transient failure runs again
    again = run_batch(jobs, out)
    assert again.ran == 1 and len(again.records) == 3
    by_task = {line["task"]: line for line in again.records}
    assert by_task["sum-0"]["answer"] == "4" and by_task["sum-0"]["exit_code"] == 0
    assert by_task["sum-1"]["stop_reason"] == "error"  # a bad request is a result: kept, not run again
    assert {line["task"]: line["answer"] for line in load_lines(out)}["sum-0"] == "4"
    assert run_batch(jobs, out).ran == 0
