"""Importing and using thrifty leaves the host application's process as it was: no environment variable
(LiteLLM's offline switch is set only while LiteLLM is imported), no ``sys.path`` entry (task-local
``module:function`` references are imported with the task's folder on the path only for the import)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

PROBE = textwrap.dedent(
    """
    import json, os, sys
    env, path = dict(os.environ), list(sys.path)
    import thrifty
    from thrifty import Agent, Budget
    from thrifty.testing import ScriptedModel, reply
    from thrifty.workflows import load_task, run_task
    after_import = dict(os.environ) == env and sys.path == path
    Agent(ScriptedModel([reply("Paris")]), budget=Budget(total_tokens=500)).run("Capital of France?")
    import litellm  # loaded by the run, offline
    spec = load_task(sys.argv[1])
    result = run_task(spec, store=False)
    print(json.dumps({
        "after_import": after_import,
        "env_added": sorted(set(os.environ) - set(env)),
        "env_changed": sorted(k for k in env if os.environ.get(k) != env[k]),
        "path_added": [p for p in sys.path if p not in path],
        "answer": result.answer,
        "local_cost_map": litellm.model_cost.get("gpt-4o-mini") is not None,
    }))
    """
)


def test_import_and_runs_change_no_environment_variable_or_sys_path(tmp_path: Path) -> None:
    task_dir = tmp_path / "task"  # not the probe's folder, which is on its sys.path
    task_dir.mkdir()
    (task_dir / "my_strategy_mod.py").write_text(
        textwrap.dedent(
            """
            from thrifty.agents.solver import solve
            from thrifty.workflows.graph import END, Workflow

            def build(options):
                wf = Workflow("just-solve")
                wf.node("solve", solve).edge("solve", END)
                return wf(options)
            """
        )
    )
    (task_dir / "task.yaml").write_text(
        "question: What is 2 + 2?\nmodel: scripted/probe\ntools: [calculator]\n"
        "strategy: {name: 'my_strategy_mod:build'}\nbudget: {tool_calls: 2}\n"
    )
    script = tmp_path / "probe.py"
    script.write_text(
        "from thrifty.testing import ScriptedModel, reply\n"
        "ScriptedModel([reply('4')], name='probe')\n" + PROBE
    )
    env = {k: v for k, v in os.environ.items() if "OFFLINE" not in k and "LITELLM" not in k}
    env["THRIFTY_BLOCK_REMOTE"] = "1"
    out = subprocess.run(
        [sys.executable, str(script), str(task_dir / "task.yaml")],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=240,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["after_import"] is True
    # LiteLLM's own import points tiktoken at the tokenizer files it bundles (so counting never downloads);
    # that one is LiteLLM's doing, made by any application that imports LiteLLM, and it is what keeps
    # token counting offline. thrifty adds nothing.
    assert set(report["env_added"]) <= {"TIKTOKEN_CACHE_DIR"}
    assert report["env_changed"] == []
    assert report["path_added"] == []
    assert report["answer"] == "4"
    assert report["local_cost_map"] is True  # the bundled price map was loaded, never fetched
