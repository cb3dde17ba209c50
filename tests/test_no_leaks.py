"""No key leaks: a key planted in a tool's error, a tool's refusal, a tool's output, a provider's error or
the environment never reaches stdout, ``--json``, the trace, the run store, a prompt or a tree file.

The figure in the README (``0 leaks`` per channel and key format) is printed by
``python -m tests.test_no_leaks``; the tests below assert the same table in CI.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.test_redact import KEYS
from thrifty.cli import app
from thrifty.testing import ScriptedModel, call, reply

runner = CliRunner()

TOOLS = '''
import os

from thrifty.tools import ToolError, tool

def _key():
    return os.environ["THRIFTY_PLANTED"]

@tool
def fail(q: str) -> str:
    """Fails the way an HTTP client does."""
    raise PermissionError(f"401 Unauthorized: invalid api key {_key()} for https://api.test/v1?key={_key()}")

@tool
def refuse(q: str) -> str:
    """Refuses, quoting the credential."""
    raise ToolError(f"upstream refused the credential {_key()}")

@tool
def echo(q: str) -> str:
    """Echoes a request dump."""
    return f"sent Authorization: Bearer {_key()}; api_key={_key()}"
'''


def _task(tmp_path: Path, model: str, module: str, extra: str = "") -> Path:
    (tmp_path / f"{module}.py").write_text(TOOLS)
    task = tmp_path / "task.yaml"
    task.write_text(
        f"name: leak\nquestion: What is the capital of France?\nmodel: {model}\n"
        f"tools: ['{module}:fail', '{module}:refuse', '{module}:echo']\n"
        f"budget:\n  tool_calls: 10\noutput:\n  store: {tmp_path / 'runs.db'}\n{extra}"
    )
    return task


def _store_text(path: Path) -> str:
    """Every cell of every table of the run store, as text."""
    if not path.exists():
        return ""
    with sqlite3.connect(path) as conn:
        tables = [r[0] for r in conn.execute("select name from sqlite_master where type='table'")]
        return "\n".join(
            "\t".join(str(cell) for cell in row)
            for table in tables
            for row in conn.execute(f"select * from {table}")
        )


def test_a_key_in_a_tool_error_never_leaves_the_tool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = KEYS["openai"]
    monkeypatch.setenv("THRIFTY_PLANTED", key)
    script = ScriptedModel([call("fail", q="x"), reply("Paris")])
    module = f"leaky_{uuid.uuid4().hex[:8]}"
    res = runner.invoke(app, ["run", str(_task(tmp_path, script.model, module)), "--json"])
    assert res.exit_code == 0, res.output
    assert "PermissionError" in res.stdout  # the error is still reported, scrubbed
    assert key not in res.stdout
    assert key not in json.dumps([r.messages for r in script.requests])
    assert key not in _store_text(tmp_path / "runs.db")
