"""examples/durable/: the driver and job behind the README's durable-run and server demos run as shown."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "examples" / "durable"


def _agent(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "80", "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, str(DEMO / "agent_demo.py"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_job_runs_its_five_steps_with_the_demo_model(tmp_path: Path) -> None:
    done = _agent("run", str(DEMO / "job.yaml"), "--json", "--no-store", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["answer"] == "all 5 steps done" and result["stop_reason"] == "completed"
    assert result["usage"]["tool_calls"] == 5 and abs(result["usage"]["usd"] - 0.05) < 1e-9


def test_the_demo_model_counts_with_the_calculator(tmp_path: Path) -> None:
    task = tmp_path / "count.yaml"
    task.write_text(
        "question: Count to 3\nmodel: scripted/demo\ntools: [calculator]\nbudget: {tool_calls: 5}\n"
    )
    done = _agent("run", str(task), "--json", "--no-store", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["answer"] == "3" and result["usage"]["tool_calls"] == 3


def test_resuming_a_finished_run_is_refused_before_anything_is_shown(tmp_path: Path) -> None:
    done = _agent("run", str(DEMO / "job.yaml"), "--json", cwd=tmp_path)  # checkpointed in tmp/.thrifty
    assert done.returncode == 0, done.stderr
    run_id = json.loads(done.stdout)["run_id"]
    again = _agent("resume", run_id, cwd=tmp_path)
    assert again.returncode == 2 and "nothing to resume" in again.stderr
    assert "Question:" not in again.stderr  # it printed the question, then the refusal


def test_the_paused_job_exits_4_and_resumes_with_a_higher_limit(tmp_path: Path) -> None:
    paused = _agent("run", str(DEMO / "job-pause.yaml"), "--json", cwd=tmp_path)
    assert paused.returncode == 4, paused.stderr
    first = json.loads(paused.stdout)
    assert first["stop_reason"] == "paused:tool_calls" and first["usage"]["tool_calls"] == 3
    done = _agent("resume", first["run_id"], "--max-tool-calls", "6", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["answer"] == "all 5 steps done" and result["usage"]["tool_calls"] == 5
