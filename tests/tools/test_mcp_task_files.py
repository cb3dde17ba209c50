"""MCP servers named in task files: startup errors name the file, line, field and fix; ``pass_env`` hands
variables through by name (never shown); tool names in ``budget.per_tool`` / ``pricing.tools`` are checked
against the task's tools."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.tools.test_mcp_tools import http_url  # noqa: F401  (a fixture)
from thrifty.cli import app
from thrifty.testing import ScriptedModel, call, reply
from thrifty.workflows.result import RunResult
from thrifty.workflows.spec import load_task

SERVER = str(Path(__file__).with_name("mcp_server.py"))
cli = CliRunner()


def _task(tmp_path: Path, model: str, servers: str, extra: str = "") -> Path:
    task = tmp_path / "task.yaml"
    task.write_text(
        f"question: What is 2 + 40?\nmodel: {model}\nmcp_servers:\n{servers}budget:\n  tool_calls: 5\n"
        f"{extra}output:\n  store: null\n"
    )
    return task


def _stdio(mode: str, extra: str = "") -> str:
    return (
        f"  - name: calc\n    command: ['{sys.executable}', '{SERVER}', {mode}]\n    prefix: calc_\n{extra}"
    )


def test_a_server_that_never_answers_names_startup_timeout(tmp_path: Path) -> None:
    script = ScriptedModel([reply("x")])
    task = _task(tmp_path, script.model, _stdio("silent", "    startup_timeout: 2\n"))
    res = cli.invoke(app, ["run", str(task)])
    assert res.exit_code == 2, res.output
    shown = " ".join(res.output.split())
    assert "MCP server 'calc' did not answer within 2s" in shown
    assert f"at {task}:7, field 'mcp_servers.0.startup_timeout'" in shown
    assert "raise startup_timeout (now 2s)" in shown and "Traceback" not in shown
    assert script.requests == []  # nothing reached the model


def test_a_wrong_url_path_names_the_url_field(tmp_path: Path, http_url: str) -> None:  # noqa: F811
    script = ScriptedModel([reply("x")])
    wrong = http_url.replace("/mcp", "/nope")
    task = _task(tmp_path, script.model, f"  - name: web\n    url: {wrong}\n    startup_timeout: 30\n")
    res = cli.invoke(app, ["run", str(task)])
    assert res.exit_code == 2, res.output
    shown = " ".join(res.output.split())
    assert "MCP server 'web' could not start" in shown and f"at {task}:5, field 'mcp_servers.0.url'" in shown
    assert "fix: check the path in url" in shown


def test_pass_env_hands_variables_through_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THRIFTY_TEST_PASSED", "passed-value-7f3a")
    monkeypatch.setenv("THRIFTY_TEST_KEPT", "kept-value-1b2c")
    script = ScriptedModel(
        [
            call("calc_getenv", name="THRIFTY_TEST_PASSED"),
            call("calc_getenv", name="THRIFTY_TEST_KEPT"),
            reply("ok"),
        ]
    )
    servers = _stdio(
        "env", "    startup_timeout: 60\n    pass_env: [THRIFTY_TEST_PASSED]\n    env: {MODE: test}\n"
    )
    task = _task(tmp_path, script.model, servers)
    res = cli.invoke(app, ["run", str(task), "--json"])
    assert res.exit_code == 0, res.output
    outputs = [m["content"] for m in script.requests[-1].messages if m.get("role") == "tool"]
    assert "passed-value-7f3a" in outputs[0]
    assert "(unset)" in outputs[1]  # a variable not named in pass_env stays out of the server
    config = load_task(task).mcp_servers[0].config(tmp_path)
    assert config.env == {"THRIFTY_TEST_PASSED": "passed-value-7f3a", "MODE": "test"}
    assert "passed-value-7f3a" not in repr(config)
    assert RunResult.model_validate_json(res.stdout).answer == "ok"
    checked = cli.invoke(app, ["validate", str(task)])
    assert checked.exit_code == 0 and "MCP servers [calc]" in checked.output  # its tools come when it starts
    monkeypatch.delenv("THRIFTY_TEST_PASSED")
    res = cli.invoke(app, ["validate", str(task)])
    assert res.exit_code == 2
    assert "field 'mcp_servers.0.pass_env.0'" in res.output and "THRIFTY_TEST_PASSED is not set" in res.output


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ("  per_tool: {serch: 2}\n", "budget.per_tool.serch"),
        ("pricing:\n  tools: {calculater: 0.01}\n", "pricing.tools.calculater"),
        ("  per_tool: {web_lookup: 1}\n", "budget.per_tool.web_lookup"),  # not in the server's tool list
    ],
)
def test_a_misspelt_tool_name_is_refused(tmp_path: Path, extra: str, field: str) -> None:
    task = tmp_path / "task.yaml"
    servers = "mcp_servers:\n  - {name: web, url: 'http://127.0.0.1:9/mcp', prefix: web_, tools: [add]}\n"
    budget_extra = extra if extra.startswith("  ") else ""
    tail = "" if budget_extra else extra
    task.write_text(
        "question: Who?\nmodel: openai/gpt-4o-mini\ntools: [search, calculator]\ncorpus: builtin:hotpotqa\n"
        f"{servers}budget:\n  tool_calls: 4\n{budget_extra}{tail}"
    )
    res = cli.invoke(app, ["validate", str(task)])
    assert res.exit_code == 2, res.output
    shown = " ".join(res.output.split())
    assert f"field '{field}'" in shown and "is not a tool of this task" in shown
    assert "use one of the task's tools: calculator, search, web_add" in shown


def test_names_of_tools_known_only_at_run_time_pass(tmp_path: Path) -> None:
    task = tmp_path / "task.yaml"
    task.write_text(
        "question: Who?\nmodel: openai/gpt-4o-mini\ntools: [calculator]\n"
        "mcp_servers:\n  - {name: web, url: 'http://127.0.0.1:9/mcp', prefix: web_}\n"
        "budget:\n  tool_calls: 4\n  per_tool: {web_lookup: 1, calculator: 2}\npricing:\n  tools: {web_add: 0.01}\n"
    )
    spec = load_task(task)  # the server's tools are listed once it starts: a name with its prefix passes
    assert spec.budget.per_tool == {"web_lookup": 1, "calculator": 2}


def test_max_tools_in_a_task_file_names_its_line(tmp_path: Path) -> None:
    hostile = str(Path(__file__).with_name("mcp_hostile_server.py"))
    script = ScriptedModel([reply("x")])
    servers = f"  - name: many\n    command: ['{sys.executable}', '{hostile}', many, '5']\n    max_tools: 3\n"
    task = _task(tmp_path, script.model, servers)
    res = cli.invoke(app, ["run", str(task)])
    assert res.exit_code == 2, res.output
    shown = " ".join(res.output.split())
    assert "MCP server 'many' offers 5 tools, more than max_tools (3)" in shown, shown
    assert f"at {task}:6, field 'mcp_servers.0.max_tools'" in shown and "Traceback" not in shown
    assert script.requests == []
    bad = _task(tmp_path, script.model, servers.replace("max_tools: 3", "max_tools: 0"))
    res = cli.invoke(app, ["validate", str(bad)])
    assert res.exit_code == 2 and "mcp_servers.0.max_tools" in res.output, res.output


@pytest.mark.parametrize("option", ["pass_env: [HOME]", "env: {MODE: test}"])
def test_env_options_on_a_url_server_are_refused(tmp_path: Path, option: str) -> None:
    """They did nothing (a running server is given no environment), silently; on `agent serve` `pass_env`
    told a client which of the server's variables were set."""
    servers = f"  - name: calc\n    url: http://127.0.0.1:9/mcp\n    {option}\n"
    res = cli.invoke(app, ["validate", str(_task(tmp_path, "local/smollm2", servers))])
    assert res.exit_code == 2, res.output
    text = " ".join(res.output.split())
    assert "field 'mcp_servers.0'" in text and "env and pass_env are for a stdio server" in text
    assert "fix: drop env and pass_env" in text
