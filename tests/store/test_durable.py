"""Spend that survives a crash, and a store that fails without costing the run (issue 14 items 12, 14).

Each charge is committed as the Ledger settles it, on top of a row written when the run starts, so a run
killed with SIGKILL leaves what it spent; a store that cannot be opened or written is a warning, and the
run's result is printed all the same.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
from typer.testing import CliRunner

from thrifty.budget import Budget, Ledger
from thrifty.cli import app
from thrifty.store import RUNNING, RunStore, StoreError, StoreWarning, check_store
from thrifty.testing import ScriptedModel, call, reply
from thrifty.workflows.result import RunResult

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]


def _rows(db: Path, sql: str) -> list[tuple[object, ...]]:
    """Read with a connection of our own, as another process would."""
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


def test_each_charge_is_committed_as_it_settles(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    ledger = Ledger(Budget(tool_calls=5))
    recorder = RunStore(db).start("r1", question="Q?", strategy="react", model="m/x")
    ledger.listeners.append(recorder.on_charge)
    assert _rows(db, "select run_id, stop_reason from runs") == [("r1", RUNNING)]
    ledger.charge({"tool_calls": 1, "usd": 0.25}, kind="tool", name="search", detail="ok")
    assert _rows(db, "select seq, kind, usd from charges") == [(1, "tool", 0.25)]
    ledger.charge({"total_tokens": 30, "model_requests": 1}, kind="model", name="m/x")
    assert len(_rows(db, "select * from charges")) == 2
    assert _rows(db, "pragma journal_mode") == [("wal",)]
    recent = RunStore(db).recent()[0]
    assert recent["stop_reason"] == RUNNING and not recent["finished"]  # this process is alive
    assert (recent["usd"], recent["total_tokens"], recent["tool_calls"]) == (0.25, 30, 1)


def test_a_finished_run_completes_its_row_without_duplicating_charges(tmp_path: Path) -> None:
    script = ScriptedModel([call("calculator", expression="2+2"), reply("4")])
    from thrifty.tools import calculator
    from thrifty.workflows.runner import execute

    result = execute("2+2?", model=script.model, tools=[calculator], store=tmp_path / "runs.db")
    store = RunStore(tmp_path / "runs.db")
    assert [c["seq"] for c in store.charges(result.run_id)] == [e["seq"] for e in result.events]
    saved = store.get(result.run_id)
    assert saved is not None and saved["answer"] == "4" and saved["stop_reason"] == "completed"
    assert store.recent()[0]["finished"] and store.recent()[0]["tool_calls"] == 1


KILLED_RUN = textwrap.dedent(
    """
    import sys
    from thrifty.testing import ScriptedModel, call, reply
    ScriptedModel([call("work", n=1), call("work", n=2), call("work", n=3), reply("done")], name="killed")
    from thrifty.cli import main
    sys.argv = ["agent", "run", sys.argv[1], "--quiet"]
    main()
    """
)

KILLING_TOOL = textwrap.dedent(
    '''
    import os
    import signal

    from thrifty.tools import tool

    @tool(price=0.5)
    def work(n: int) -> str:
        """Does some work; the third call kills the process (as `kill -9` would, mid-run)."""
        if n == 3:
            os.kill(os.getpid(), signal.SIGKILL)
        return f"worked {n}"
    '''
)


def test_a_run_killed_with_sigkill_leaves_what_it_spent(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    (tmp_path / "killing_tool.py").write_text(KILLING_TOOL)
    task = tmp_path / "task.yaml"
    task.write_text(
        "name: killed\nquestion: Work three times.\nmodel: scripted/killed\ntools: ['killing_tool:work']\n"
        f"budget:\n  tool_calls: 10\noutput:\n  store: {db}\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [sys.executable, "-c", KILLED_RUN, str(task)], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    # model, tool, model, tool, model: the third tool call was reserved, never settled, so never charged
    kinds = [k for (k,) in _rows(db, "select kind from charges order by seq")]
    assert kinds == ["model", "tool", "model", "tool", "model"]
    assert _rows(db, "select sum(usd) from charges where kind = 'tool'") == [(1.0,)]
    recent = RunStore(db).recent()[0]
    assert recent["stop_reason"] == "unfinished" and not recent["finished"]
    assert recent["tool_calls"] == 2 and recent["usd"] == 1.0
    res = runner.invoke(app, ["runs", "--store", str(db)])
    assert res.exit_code == 0 and "unfinished" in res.stdout and "$1.0000" in res.stdout


def _task(tmp_path: Path, model: str, store: str) -> Path:
    task = tmp_path / "task.yaml"
    task.write_text(
        f"question: What is 2+2?\nmodel: {model}\ntools: [calculator]\nbudget:\n  tool_calls: 3\n"
        f"output:\n  store: {json.dumps(store)}\n"
    )
    return task


@pytest.mark.parametrize("kind", ["text file", "/dev/null", "a folder"])
def test_a_failing_store_is_a_warning_and_the_result_is_printed(tmp_path: Path, kind: str) -> None:
    text_file = tmp_path / "notes.txt"
    text_file.write_text("not a database\n")
    store = {
        "text file": str(text_file),
        "/dev/null": "/dev/null",
        "a folder": str(tmp_path),
    }[kind]
    script = ScriptedModel([call("calculator", expression="2+2"), reply("4")])
    res = runner.invoke(app, ["run", str(_task(tmp_path, script.model, store)), "--json"])
    assert res.exit_code == 0, res.output
    result = RunResult.model_validate_json(res.stdout)  # stdout is the RunResult, nothing else
    assert result.answer == "4" and result.usage.tool_calls == 1
    assert "warning" in res.stderr and "fix:" in res.stderr and "--no-store" in res.stderr
    assert "s3cr3t-pass" not in res.stderr
    assert text_file.read_text() == "not a database\n"  # nothing was written over it
    script = ScriptedModel([reply("4")])
    res = runner.invoke(app, ["run", str(_task(tmp_path, script.model, store)), "--quiet"])
    assert res.exit_code == 0 and "Answer: 4" in res.stdout and "warning" in res.stderr


def test_the_python_api_warns_and_returns_the_result(tmp_path: Path) -> None:
    from thrifty.workflows.runner import execute

    script = ScriptedModel([reply("4")])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = execute("2+2?", model=script.model, store="/dev/null")
    assert result.answer == "4"
    assert [w.category for w in caught] == [StoreWarning]
    assert "not a regular file" in str(caught[0].message)


def test_a_store_failing_mid_run_is_reported_once_and_the_run_goes_on(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    errors: list[Exception] = []
    recorder = RunStore(db).start("r1", question="Q?", strategy="react", model="m/x", on_error=errors.append)
    ledger = Ledger(Budget(tool_calls=5))
    ledger.listeners.append(recorder.on_charge)
    ledger.charge({"tool_calls": 1}, kind="tool", name="a")
    with sqlite3.connect(db) as conn:
        conn.execute("drop table charges")
    ledger.charge({"tool_calls": 1}, kind="tool", name="b")  # the write fails: the settle does not
    ledger.charge({"tool_calls": 1}, kind="tool", name="c")
    assert len(errors) == 1 and isinstance(errors[0], StoreError)
    assert ledger.spent["tool_calls"] == 3


def test_check_store_says_what_is_wrong_and_how_to_fix_it(tmp_path: Path) -> None:
    check_store(tmp_path / "new" / "runs.db")  # a new file in a folder that can be made
    check_store(":memory:")
    RunStore(tmp_path / "runs.db")
    check_store(tmp_path / "runs.db")  # an existing run store
    (tmp_path / "empty.db").touch()
    check_store(tmp_path / "empty.db")
    (tmp_path / "a-file").write_text("x")
    cases = {
        str(tmp_path): "is a folder",
        "/dev/null": "not a regular file",
        str(tmp_path / "a-file"): "not a SQLite database",
        str(tmp_path / "a-file" / "runs.db"): "is a file, not a folder",
        "nosuchdb://h/x": "unknown database type",
        "::not a url://": "not a database URL",
    }
    for target, problem in cases.items():
        with pytest.raises(StoreError, match="fix:") as info:
            check_store(target)
        assert problem in str(info.value), (target, str(info.value))
        with pytest.raises(StoreError, match=problem):
            RunStore(target)


def test_agent_runs_on_a_bad_store_is_bad_input(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello\n")
    res = runner.invoke(app, ["runs", "--store", str(tmp_path / "notes.txt")])
    assert res.exit_code == 2 and "not a SQLite database" in res.output
