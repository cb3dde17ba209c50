"""MCP servers named in a task file: their tools run under the budget; a server that cannot start, or a
bad entry, is an exit-2 error naming the field."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from thrifty.cli import app
from thrifty.testing import ScriptedModel, call, reply
from thrifty.workflows.result import RunResult

SERVER = str(Path(__file__).parents[1] / "tools" / "mcp_server.py")
cli = CliRunner()


def _task(tmp_path: Path, model: str, servers: str, budget: str = "  tool_calls: 5\n") -> Path:
    task = tmp_path / "task.yaml"
    task.write_text(
        f"question: What is 2 + 40?\nmodel: {model}\nmcp_servers:\n{servers}budget:\n{budget}"
        "output:\n  store: null\n"
    )
    return task


def _server(mode: str = "stdio", extra: str = "") -> str:
    return (
        f"  - name: calc\n    command: ['{sys.executable}', '{SERVER}', {mode}]\n"
        f"    startup_timeout: 60\n    prefix: calc_\n{extra}"
    )


def test_mcp_tools_run_under_the_budget(tmp_path: Path) -> None:
    script = ScriptedModel(
        [call("calc_add", a=2, b=40), call("calc_echo", text="x"), call("calc_echo", text="y"), reply("42")]
    )
    servers = _server(extra="    tools: [add, echo]\n    price: 0.003\n")
    budget = "  tool_calls: 5\n  per_tool: {calc_echo: 1}\n"
    res = cli.invoke(app, ["run", str(_task(tmp_path, script.model, servers, budget)), "--json"])
    assert res.exit_code == 0, res.output
    result = RunResult.model_validate_json(res.stdout)
    assert result.answer == "42"
    assert result.usage.tool_calls == 2  # the second echo was refused by its per-tool limit
    assert result.cost.tools_usd == pytest.approx(0.006)
    assert script.requests[0].tool_names == ["calc_add", "calc_echo"]
    first = next(m for m in script.requests[1].messages if m.get("role") == "tool")["content"]
    assert "[tool output: MCP calc/add" in first and "\n42\n" in first


def test_server_that_cannot_start_exits_2(tmp_path: Path) -> None:
    script = ScriptedModel([reply("x")])
    res = cli.invoke(app, ["run", str(_task(tmp_path, script.model, _server("crash")))])
    assert res.exit_code == 2
    assert "mcp_servers: MCP server 'calc' could not start" in res.output
    assert "missing configuration file" in res.output and "Traceback" not in res.output


@pytest.mark.parametrize(
    ("servers", "expected"),
    [
        ("  - name: x\n    command: [/nonexistent/server]\n", "program '/nonexistent/server' not found"),
        ("  - name: x\n", "needs exactly one of command or url"),
        (
            "  - name: x\n    command: [python]\n    url: http://127.0.0.1:1/mcp\n",
            "exactly one of command or url",
        ),
        ("  - name: x\n    url: ftp://host/mcp\n", "url must be http(s)"),
        ("  - name: x\n    command: [python]\n    bogus: 1\n", "mcp_servers.0.bogus"),
    ],
)
def test_bad_server_entries_exit_2(tmp_path: Path, servers: str, expected: str) -> None:
    res = cli.invoke(app, ["validate", str(_task(tmp_path, "openai/gpt-4o-mini", servers))])
    assert res.exit_code == 2, res.output
    assert expected in res.output and "task.yaml:" in res.output
