"""An MCP server that died: its tools' later calls are refused before anything is charged, and they are no
longer offered (tests/tools/mcp_server.py's ``die`` tool ends the server's process)."""

from __future__ import annotations

import sys
from pathlib import Path

from thrifty.budget import Budget, Ledger
from thrifty.tools import ToolRunner
from thrifty.tools.mcp import MCPServerConfig, connect_mcp

SERVER = str(Path(__file__).with_name("mcp_server.py"))


def test_a_stopped_servers_tools_are_refused_free_and_hidden() -> None:
    config = MCPServerConfig(
        "calc", command=[sys.executable, SERVER, "stdio"], startup_timeout=60.0, timeout=60.0, price=0.01
    )
    ledger = Ledger(Budget(tool_calls=10))
    with connect_mcp(config) as connection, ToolRunner(connection.tools, ledger) as runner:
        assert "add" in [t.name for t in runner.available()]
        died = runner.run("die", {})
        assert not died.ok and died.attempts == 1  # the call that found it gone was made, and paid
        assert "MCP server 'calc' stopped" in died.content and "told to die" in died.content
        spent = dict(ledger.spent)
        for _ in range(3):
            after = runner.run("add", {"a": 1, "b": 2})
            assert not after.ok
            assert after.attempts == 0 and after.usd == 0.0 and after.units == 0
            assert after.content.startswith("error: MCP server 'calc' stopped:")
            assert "told to die" in after.content
        assert dict(ledger.spent) == spent  # nothing charged after the server died
        assert runner.counters["rejected"] == 3
        assert runner.available() == []  # its tools are no longer offered to the model
