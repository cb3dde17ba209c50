"""The first run in a process: its `seconds` limit counts the run, not the one-off LiteLLM import (2-3 s),
which used to stop a run with `Budget(seconds=1)` before its first model call."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import sys

    from thrifty import Agent, Budget
    from thrifty.testing import ScriptedModel, reply

    agent = Agent(ScriptedModel([reply("Paris")]).model, budget=Budget(seconds=1.5))
    if sys.argv[1] == "run":
        result = agent.run("Capital of France?")
    else:
        result = list(agent.stream("Capital of France?"))[-1].result
    print(result.stop_reason, result.answer, len(result.overruns))
    """
)


@pytest.mark.parametrize("how", ["run", "stream"])
def test_the_first_run_of_a_process_is_not_charged_the_litellm_import(how: str) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, how], env=env, capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["completed", "Paris", "0"], proc.stdout + proc.stderr[-2000:]
