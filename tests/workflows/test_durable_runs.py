"""Checkpointed runs (issue 16): a run killed at any moment resumes where it was, pays nothing twice, and
keeps its limits; a resume that cannot be done is refused with a clear message and the stored run intact.

Every test runs twice: on SQLite files, and on a real PostgreSQL server (LangGraph's PostgreSQL checkpointer,
the run store on the same database; see tests/postgres.py, skipped where PostgreSQL is not installed)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.postgres import Backend
from thrifty import Agent, Budget
from thrifty.cli import app
from thrifty.store.durable import INFLIGHT_DETAIL, DurableStore
from thrifty.testing import ScriptedModel, ScriptedReply, ScriptedRequest, call, reply
from thrifty.tools import calculator, tool
from thrifty.workflows.runner import SetupError, execute

ROOT = Path(__file__).resolve().parents[2]
cli = CliRunner()


def _counting(request: ScriptedRequest) -> ScriptedReply:
    done = sum(1 for m in request.messages if m.get("role") == "tool")
    return call("calculator", expression=f"{done}+1") if done < 3 else reply("3")


def _usd(backend: Backend, db: str | Path) -> tuple[int, float]:
    """How many charges the journal holds and what they add up to."""
    events = [json.loads(str(e)) for (e,) in backend.rows(db, "select event from thrifty_charges")]
    return len(events), sum(e["usd"] for e in events)


def test_sigkill_at_random_moments_resumes_exactly(tmp_path: Path, backend: Backend) -> None:
    """The benchmark script's trials, a few of them: each run is killed (during a model call, a tool call or
    between steps), resumed until it finishes, and checked (ledger == persisted charges, no limit crossed,
    every completed call paid once, calls in flight charged at their worst case and marked)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "durable_kill.py"),
            "--runs",
            "6",
            "--json",
            "--dir",
            str(tmp_path),
            *(["--postgres", backend.server] if backend.server else []),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert proc.returncode == 0 and summary["failures"] == [], proc.stdout[-3000:] + proc.stderr[-3000:]
    assert summary["finished_and_exact"] == 6 and summary["kills"] >= 6


def test_a_durable_run_journals_each_call_with_its_result(tmp_path: Path, backend: Backend) -> None:
    script = ScriptedModel([], default=_counting)
    db = backend.new(tmp_path)
    _rows = backend.rows
    result = Agent(script.model, tools=[calculator], budget=Budget(tool_calls=5)).run(
        "count", run_id="r-1", checkpoint=db
    )
    assert result.answer == "3" and result.run_id == "r-1"
    rows = _rows(db, "select seq, call_key, result from thrifty_charges where run_id = 'r-1' order by seq")
    assert [r[0] for r in rows] == [e["seq"] for e in result.events]
    assert all(r[1] and r[2] for r in rows)  # every completed call: its key and its result
    assert _rows(db, "select status, stop_reason from thrifty_runs") == [("finished", "completed")]
    assert _rows(db, "select count(*) from thrifty_inflight") == [(0,)]
    (saved,) = _rows(db, "select count(*) from checkpoints where thread_id = 'r-1'")
    assert int(str(saved[0])) >= 4


KILLED_RUN = """
import os, signal, sys
from thrifty import Budget
from thrifty.testing import ScriptedModel, call, reply
from thrifty.tools import tool
from thrifty.workflows.runner import execute

@tool(price=0.5)
def work(n: int) -> str:
    \"\"\"Does step n; the third call kills the process (kill -9), mid-call.\"\"\"
    if n == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    return f"worked {n}"

def step(request):
    done = sum(1 for m in request.messages if m.get("role") == "tool")
    return call("work", n=done + 1) if done < 4 else reply("done")

ScriptedModel([], default=step, name="interrupted")
execute("work", model="scripted/interrupted", tools=[work], budget=Budget(tool_calls=6, usd=10),
        checkpoint=sys.argv[1], run_id="r-2")
"""


def _step(request: ScriptedRequest) -> ScriptedReply:
    done = sum(1 for m in request.messages if m.get("role") == "tool")
    return call("work", n=done + 1) if done < 4 else reply("done")


MODEL = ScriptedModel([], default=_step, name="interrupted").model


@tool(price=0.5)
def work(n: int) -> str:
    """Does step n."""
    return f"worked {n}"


@pytest.fixture(scope="module")
def killed_db(tmp_path_factory: pytest.TempPathFactory, backend: Backend) -> str | Path:
    """Checkpoints left by a run killed with SIGKILL in the middle of its third tool call (a SQLite file, or
    a PostgreSQL database each test copies)."""
    db = backend.new(tmp_path_factory.mktemp("killed"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [sys.executable, "-c", KILLED_RUN, str(db)], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == -9, proc.stderr[-2000:]
    if backend.server is None:
        with sqlite3.connect(db) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return db


def test_a_call_in_flight_at_the_crash_is_charged_its_worst_case_and_completed_ones_are_not_paid_again(
    tmp_path: Path, killed_db: str | Path, backend: Backend
) -> None:
    db, model, _rows = backend.copy(tmp_path, killed_db), MODEL, backend.rows
    assert len(_rows(db, "select * from thrifty_inflight")) == 1
    assert _usd(backend, db) == (5, 1.0)  # model, tool, model, tool, model: two tools paid

    result = execute(
        "work",
        model=model,
        tools=[work],
        budget=Budget(tool_calls=6, usd=10),
        checkpoint=db,
        run_id="r-2",
        resume=True,
    )
    assert result.answer == "done" and result.stop_reason == "completed"
    inflight = [e for e in result.events if not e["ok"]]
    assert [(e["kind"], e["detail"], e["usd"]) for e in inflight] == [("tool", INFLIGHT_DETAIL, 0.5)]
    # four tools done once each, plus the one in flight at the crash; nothing paid twice
    assert [e["kind"] for e in result.events if e["ok"]].count("tool") == 4
    assert result.usage.tool_calls == 5 and result.usage.usd == 2.5
    keys = [k for (k,) in _rows(db, "select call_key from thrifty_charges where call_key is not null")]
    assert len(keys) == len(set(keys))
    assert _usd(backend, db)[1] == result.usage.usd
    assert _rows(db, "select count(*) from thrifty_inflight") == [(0,)]


def test_limits_hold_across_a_resume(tmp_path: Path, killed_db: str | Path, backend: Backend) -> None:
    db, model = backend.copy(tmp_path, killed_db), MODEL

    # 2 tools paid + 1 in flight = 3 of the 4 allowed: one more tool call fits, not the two the task wants
    result = execute(
        "work",
        model=model,
        tools=[work],
        budget=Budget(tool_calls=4),
        checkpoint=db,
        run_id="r-2",
        resume=True,
    )
    assert result.usage.tool_calls == 4 and result.exhausted


def test_bad_resumes_are_refused_and_leave_the_run_intact(
    tmp_path: Path, killed_db: str | Path, backend: Backend
) -> None:
    db, model, _rows = backend.copy(tmp_path, killed_db), MODEL, backend.rows
    snapshot = (
        _rows(db, "select * from thrifty_charges order by seq"),
        _rows(db, "select * from thrifty_inflight"),
    )
    with pytest.raises(SetupError, match=r"no run 'nope'.*agent runs"):
        execute("work", model=model, checkpoint=db, run_id="nope", resume=True)
    with pytest.raises(SetupError, match=r"already spent 3 tool_calls.*above 3"):
        execute("work", model=model, budget=Budget(tool_calls=2), checkpoint=db, run_id="r-2", resume=True)
    with pytest.raises(
        SetupError, match=r"started with tools \['work'\] and is resumed with \[\].*task file"
    ):
        execute("work", model=model, checkpoint=db, run_id="r-2", resume=True)  # its tool left out
    with pytest.raises(SetupError, match=r"started with question 'work' and is resumed with 'other'"):
        execute("other", model=model, tools=[work], checkpoint=db, run_id="r-2", resume=True)
    backend.corrupt_checkpoints(db)
    with pytest.raises(SetupError, match="checkpoint cannot be read"):
        execute("work", model=model, tools=[work], checkpoint=db, run_id="r-2", resume=True)
    assert (
        _rows(db, "select * from thrifty_charges order by seq"),
        _rows(db, "select * from thrifty_inflight"),
    ) == snapshot


def test_a_finished_run_is_not_resumed(tmp_path: Path, backend: Backend) -> None:
    script = ScriptedModel([reply("4")])
    db = backend.new(tmp_path)
    Agent(script.model).run("2+2?", run_id="done-1", checkpoint=db)
    with pytest.raises(SetupError, match="has finished \\(completed\\); nothing to resume"):
        Agent(script.model).run("2+2?", run_id="done-1", checkpoint=db)
    assert DurableStore(db).runs(unfinished=True) == []


def test_the_cli_resumes_and_refuses_clearly(tmp_path: Path, backend: Backend) -> None:
    script = ScriptedModel([], default=_counting)
    task = tmp_path / "task.yaml"
    store = backend.new(tmp_path, "runs.db")
    task.write_text(
        f"question: count\nmodel: {script.model}\ntools: [calculator]\nbudget:\n  tool_calls: 5\n"
        f"output:\n  store: {store}\n"
    )
    res = cli.invoke(app, ["run", str(task), "--quiet"])
    assert res.exit_code == 0, res.output
    run_id = res.stderr.split("run id: ")[1].split()[0]
    db = tmp_path / "checkpoints.db" if backend.server is None else store  # beside (or in) the run store
    _rows = backend.rows
    assert _rows(store, "select run_id, stop_reason from runs") == [(run_id, "completed")]
    assert _rows(db, "select run_id, status from thrifty_runs") == [(run_id, "finished")]
    res = cli.invoke(app, ["resume", run_id, "--checkpoint", str(db)])
    assert res.exit_code == 2 and "has finished" in res.stderr
    res = cli.invoke(app, ["resume", "nosuchrun", "--checkpoint", str(db)])
    assert res.exit_code == 2 and "no run 'nosuchrun'" in res.stderr
    res = cli.invoke(app, ["run", str(task), "--resume", "nosuchrun"])
    assert res.exit_code == 2 and "no run 'nosuchrun'" in res.stderr
    res = cli.invoke(app, ["resume", "x", "--checkpoint", str(tmp_path / "none.db")])
    assert res.exit_code == 2 and "no checkpoint file" in res.stderr


def test_a_run_pauses_at_its_budget_and_continues_with_a_raised_one(tmp_path: Path, backend: Backend) -> None:
    script = ScriptedModel([], default=_counting)
    agent = Agent(script.model, tools=[calculator], budget=Budget(tool_calls=2))
    db = backend.new(tmp_path)
    paused = agent.run("count", on_limit="pause", checkpoint=db)
    assert paused.paused and paused.stop_reason == "paused:tool_calls" and paused.exit_code == 4
    assert paused.usage.tool_calls == 2 and paused.answer is None
    assert DurableStore(db).runs(unfinished=True)[0]["status"] == "paused"
    with pytest.raises(SetupError, match="already spent 2 tool_calls"):
        agent.run("count", run_id=paused.run_id, checkpoint=db, budget=Budget(tool_calls=1))
    done = agent.run(
        "count", run_id=paused.run_id, checkpoint=db, budget=Budget(tool_calls=5), on_limit="pause"
    )
    assert done.stop_reason == "completed" and done.answer == "3" and done.run_id == paused.run_id
    assert done.usage.tool_calls == 3 and done.usage.model_requests == 4  # nothing paid twice
    assert [e["seq"] for e in done.events] == list(range(1, 8))


def test_without_pause_the_same_run_stops_as_before(tmp_path: Path, backend: Backend) -> None:
    script = ScriptedModel([], default=_counting)
    result = Agent(script.model, tools=[calculator], budget=Budget(tool_calls=2)).run(
        "count", checkpoint=backend.new(tmp_path)
    )
    assert result.stop_reason == "budget_exhausted:tool_calls" and not result.paused


def test_the_cli_pauses_and_agent_resume_continues_with_a_higher_limit(
    tmp_path: Path, backend: Backend
) -> None:
    script = ScriptedModel([], default=_counting)
    task = tmp_path / "task.yaml"
    store = backend.new(tmp_path, "runs.db")
    task.write_text(
        f"question: count\nmodel: {script.model}\ntools: [calculator]\nbudget:\n  tool_calls: 2\n"
        f"on_limit: pause\noutput:\n  store: {store}\n"
    )
    res = cli.invoke(app, ["run", str(task), "--quiet"])
    assert res.exit_code == 4, res.output
    assert "paused: the tool calls limit binds" in res.stderr and "--max-tool-calls N" in res.stderr
    run_id = res.stderr.split("run id: ")[1].split()[0]
    db = tmp_path / "checkpoints.db" if backend.server is None else store
    listed = cli.invoke(app, ["runs", "--unfinished", "--store", str(store)])
    assert listed.exit_code == 0 and run_id in listed.stdout and "paused" in listed.stdout
    res = cli.invoke(app, ["resume", run_id, "--checkpoint", str(db), "--max-tool-calls", "1", "--quiet"])
    assert res.exit_code == 2 and "already spent 2 tool_calls" in res.stderr
    res = cli.invoke(app, ["resume", run_id, "--checkpoint", str(db), "--max-tool-calls", "5", "--json"])
    assert res.exit_code == 0, res.output
    assert cli.invoke(app, ["runs", "--unfinished", "--checkpoint", str(db)]).stdout.count(run_id) == 0
    result = json.loads(res.stdout)
    assert result["run_id"] == run_id and result["answer"] == "3" and result["usage"]["tool_calls"] == 3
