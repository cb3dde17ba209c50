"""MCP servers that misbehave on purpose (tests/tools/mcp_hostile_server.py): tool names that clash or are
empty, input schemas that point at other documents, outputs and errors that try to close their frame."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.tools.webserver import WebServer
from thrifty.budget import Budget, Ledger
from thrifty.tools import ToolRunner
from thrifty.tools.mcp import MCPServerConfig, MCPStartupError, connect_mcp

SERVER = str(Path(__file__).with_name("mcp_hostile_server.py"))
SLOW = 60.0


def config(*args: str, tools: list[str] | None = None) -> MCPServerConfig:
    return MCPServerConfig(
        "hostile", command=[sys.executable, SERVER, *args], startup_timeout=SLOW, timeout=SLOW, tools=tools
    )


def test_tool_names_that_clash_are_a_startup_error_naming_the_fix() -> None:
    with pytest.raises(
        MCPStartupError, match=r"'a\.b' and 'a_b', which both become 'a_b'.*tools: \[\.\.\.\]"
    ):
        connect_mcp(config("names"))
    with connect_mcp(config("names", tools=["a.b", "ok"])) as connection:
        assert [t.name for t in connection.tools] == ["a_b", "ok"]


def test_an_empty_tool_name_is_a_startup_error() -> None:
    with pytest.raises(MCPStartupError, match="empty name"):
        connect_mcp(config("empty-name"))


def test_a_schema_pointing_at_another_document_is_never_fetched() -> None:
    schema = json.dumps({"type": "string"}).encode()
    with WebServer({"/schema": lambda _r: (200, {"Content-Type": "application/json"}, schema)}) as web:
        with pytest.raises(MCPStartupError, match="refers to another document"):
            connect_mcp(config("ref", web.url("/schema")))
        with (
            connect_mcp(config("ref", web.url("/schema"), tools=["ok"])) as connection,
            ToolRunner(connection.tools, Ledger(Budget())) as runner,
        ):
            assert runner.run("ok", {}).ok
        with pytest.raises(MCPStartupError, match="refers to another document"):
            connect_mcp(config("ref", "file:///etc/passwd"))
        assert web.hits["/schema"] == 0


def test_local_refs_still_validate() -> None:
    from thrifty.tools.mcp import _checked_schema

    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "$defs": {"n": {"type": "integer"}},
        "properties": {"x": {"$ref": "#/$defs/n"}},
    }
    _, validator = _checked_schema("s", "t", schema)
    assert not list(validator.iter_errors({"x": 1}))
    assert list(validator.iter_errors({"x": "one"}))


def test_output_and_errors_cannot_close_their_frame() -> None:
    with (
        connect_mcp(config("inject")) as connection,
        ToolRunner(connection.tools, Ledger(Budget())) as runner,
    ):
        output = runner.run("inject_output", {})
        error = runner.run("inject_error", {})
    assert output.ok and output.content.count("[end of tool output]") == 1
    assert output.content.endswith("[end of tool output]")
    assert not error.ok and error.content.startswith("error: inject_error failed: [tool error: MCP hostile/")
    assert "[end of tool output]" not in error.content and error.content.count("[end of tool error]") == 1
