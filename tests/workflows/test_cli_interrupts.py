"""`agent run` / `agent resume` of runs stopped part way: by Ctrl-C, by a crash (a kill -9), with a budget that
has per-tool limits, with a task file whose budget was edited since. A stopped run resumes where it was,
paying nothing twice, within the limits its task file says now."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from thrifty.cli import app
from thrifty.store.durable import DurableStore
from thrifty.testing import ScriptedModel, ScriptedReply, ScriptedRequest, call, reply

ROOT = Path(__file__).resolve().parents[2]
cli = CliRunner()


@pytest.fixture(autouse=True)
def _python_handles_ctrl_c() -> Iterator[None]:
    """Ctrl-C as a terminal gives it: Python's own SIGINT handler. A test process started in the background
    (`cmd &` in a script) inherits SIGINT ignored, and a raised SIGINT would then do nothing."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


class _Crash(BaseException):
    """Stands for a kill -9 in the middle of a run: its process stops without ending the run (neither an
    Exception nor a KeyboardInterrupt, so nothing in the run catches it)."""


def _crashing_counter(crash_after: int) -> ScriptedModel:
    """A model that counts with the calculator to 3, and crashes once after ``crash_after`` tool results."""
    crashed: list[bool] = []

    def step(request: ScriptedRequest) -> ScriptedReply:
        done = sum(1 for m in request.messages if m.get("role") == "tool")
        if done == crash_after and not crashed:
            crashed.append(True)
            raise _Crash
        return call("calculator", expression=f"{done}+1") if done < 3 else reply("3")

    return ScriptedModel([], default=step)


def _crashed_run(tmp_path: Path, budget: str, *args: str, crash_after: int = 1) -> tuple[Path, Path, str]:
    """A task file, its checkpoint file and the id of its run, left unfinished by a crash."""
    script = _crashing_counter(crash_after)
    task = tmp_path / "task.yaml"
    task.write_text(
        f"name: count\nquestion: count\nmodel: {script.model}\ntools: [calculator]\nbudget:\n{budget}"
        f"output:\n  store: {tmp_path / 'runs.db'}\n"
    )
    with pytest.raises(_Crash):
        cli.invoke(app, ["run", str(task), "--quiet", *args], catch_exceptions=False)
    db = tmp_path / "checkpoints.db"
    [row] = DurableStore(db).runs(unfinished=True)
    return task, db, str(row["run_id"])


def test_a_crashed_run_with_per_tool_limits_resumes(tmp_path: Path) -> None:
    """The stored budget holds per-tool limits as ledger dimensions (tool:calculator): `agent resume` read
    it back with Budget.model_validate and failed with "internal error ... Extra inputs are not permitted"
    (exit 1) for every such run, the quick start's examples/hotpotqa.yaml among them."""
    budget = "  tool_calls: 6\n  per_tool: {calculator: 5}\n"
    _task, db, run_id = _crashed_run(tmp_path, budget)
    res = cli.invoke(app, ["resume", run_id, "--checkpoint", str(db), "--json"])
    assert res.exit_code == 0, res.output
    result = json.loads(res.stdout)
    assert result["answer"] == "3" and result["run_id"] == run_id
    assert result["budget"] == {"tool_calls": 6.0, "tool:calculator": 5.0}  # the limits it started with
    assert result["usage"]["tool_calls"] == 3  # nothing paid twice

    (tmp_path / "again").mkdir()
    task2, db2, run2 = _crashed_run(tmp_path / "again", budget)
    res = cli.invoke(app, ["run", str(task2), "--resume", run2, "--checkpoint", str(db2), "--json"])
    assert res.exit_code == 0, res.output  # the same through `agent run FILE --resume RUN_ID`


def test_agent_runs_says_none_for_a_run_without_an_answer(tmp_path: Path) -> None:
    """An unfinished run has no answer yet: `agent runs` printed the Python word None."""
    _crashed_run(tmp_path, "  tool_calls: 6\n")
    listed = cli.invoke(app, ["runs", "--store", str(tmp_path / "runs.db")])
    assert listed.exit_code == 0, listed.output
    assert "(none)" in listed.stdout and "None" not in listed.stdout


def test_an_edited_budget_applies_on_resume(tmp_path: Path) -> None:
    """A resume used the budget the run was started with whatever the task file said now: a limit lowered
    in the file was ignored, and the run spent past it."""
    task, db, run_id = _crashed_run(tmp_path, "  tool_calls: 6\n")
    task.write_text(task.read_text().replace("tool_calls: 6", "tool_calls: 2"))
    res = cli.invoke(app, ["resume", run_id, "--checkpoint", str(db), "--json"])
    assert res.exit_code == 4, res.output
    result = json.loads(res.stdout)
    assert result["budget"] == {"tool_calls": 2.0} and result["usage"]["tool_calls"] == 2
    assert result["stop_reason"] == "budget_exhausted:tool_calls"


def test_a_raised_limit_on_resume_keeps_the_other_limits_of_the_start(tmp_path: Path) -> None:
    """An unedited task file keeps the limits the run was started with, those given on the command line
    included: a resume with --max-tool-calls started from the file's budget and dropped the --max-usd."""
    _task, db, run_id = _crashed_run(tmp_path, "  tool_calls: 6\n", "--max-usd", "0.5")
    res = cli.invoke(app, ["resume", run_id, "--checkpoint", str(db), "--max-tool-calls", "5", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["budget"] == {"usd": 0.5, "tool_calls": 5.0}


CTRL_C_TOOL = '''
import signal

from thrifty import tool

PRESSED = []


@tool
def work(n: int) -> str:
    """Does step n; Ctrl-C is pressed while step 2 runs."""
    if n == 2 and not PRESSED:
        PRESSED.append(n)
        signal.raise_signal(signal.SIGINT)
    return f"worked {n}"
'''


def _work(request: ScriptedRequest) -> ScriptedReply:
    done = sum(1 for m in request.messages if m.get("role") == "tool")
    return call("work", n=done + 1) if done < 3 else reply("done")


def test_ctrl_c_leaves_a_checkpointed_run_resumable(tmp_path: Path) -> None:
    """Ctrl-C ended the run `cancelled`, which is finished: `agent resume` then refused it ("has finished
    (cancelled); nothing to resume") and the steps paid for were lost. Now the run stops before its next
    call, exit 130, says how to continue, and the resume pays nothing twice."""
    (tmp_path / "ctrlc_tool.py").write_text(CTRL_C_TOOL)
    script = ScriptedModel([], default=_work)
    task = tmp_path / "task.yaml"
    task.write_text(
        f"question: work\nmodel: {script.model}\ntools: ['ctrlc_tool:work']\nbudget:\n  tool_calls: 6\n"
        f"output:\n  store: {tmp_path / 'runs.db'}\n"
    )
    res = cli.invoke(app, ["run", str(task), "--quiet"])
    assert res.exit_code == 130, res.output
    run_id = res.stderr.split("run id: ")[1].split()[0]
    db = tmp_path / "checkpoints.db"
    assert f"Continue it with: agent resume {run_id} --checkpoint {db}" in res.stderr, res.stderr
    assert "Traceback" not in res.output
    assert [r["run_id"] for r in DurableStore(db).runs(unfinished=True)] == [run_id]

    res = cli.invoke(app, ["resume", run_id, "--checkpoint", str(db), "--json"])
    assert res.exit_code == 0, res.output
    result = json.loads(res.stdout)
    assert result["answer"] == "done" and result["stop_reason"] == "completed"
    assert result["usage"]["tool_calls"] == 3  # step 2 finished before the stop: not made again
    assert result["usage"]["model_requests"] == 4


def test_ctrl_c_without_checkpoints_still_ends_cancelled(tmp_path: Path) -> None:
    """--no-store: nothing to resume, so Ctrl-C ends the run as before (its result printed, exit 1)."""
    (tmp_path / "ctrlc_tool2.py").write_text(CTRL_C_TOOL)
    script = ScriptedModel([], default=_work)
    task = tmp_path / "task.yaml"
    task.write_text(f"question: work\nmodel: {script.model}\ntools: ['ctrlc_tool2:work']\n")
    res = cli.invoke(app, ["run", str(task), "--no-store", "--json"])
    assert res.exit_code == 1, res.output
    assert json.loads(res.stdout)["stop_reason"] == "cancelled"


def test_a_second_ctrl_c_stops_at_once_and_the_run_still_resumes(tmp_path: Path) -> None:
    """The real command: Ctrl-C twice during a one-second tool call. The process ends at once (exit 130,
    the resume command printed); the resume charges the call that was in flight and finishes the job."""
    demo = ROOT / "examples" / "durable"
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    proc = subprocess.Popen(
        [sys.executable, str(demo / "agent_demo.py"), "run", str(demo / "job.yaml")],
        cwd=tmp_path,
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # as in a terminal
    )
    assert proc.stderr is not None
    lines: list[str] = []
    try:
        for line in proc.stderr:
            lines.append(line)
            if "[step 2] calls" in line:
                proc.send_signal(signal.SIGINT)
            # The second Ctrl-C once the first was handled: two sent 0.2 s apart could reach a busy main
            # thread as one (Python runs a signal's handler once for all that arrived before it ran), and
            # the run then stopped as after one Ctrl-C (a CI run on a loaded machine).
            if "Ctrl-C again to stop at once" in line:
                proc.send_signal(signal.SIGINT)
                break
        lines += proc.stderr.readlines()
        assert proc.wait(timeout=60) == 130, "".join(lines)
    finally:
        proc.kill()
    text = "".join(lines)
    run_id = text.split("run id: ")[1].split()[0]
    assert f"continue the run with: agent resume {run_id} --checkpoint .thrifty/checkpoints.db" in text, text
    done = subprocess.run(
        [sys.executable, str(demo / "agent_demo.py"), "resume", run_id, "--json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["answer"] == "all 5 steps done" and result["usage"]["tool_calls"] in (5, 6)
