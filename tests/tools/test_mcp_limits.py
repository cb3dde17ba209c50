"""What an MCP server may list is bounded (tests/tools/mcp_hostile_server.py): the number of tools, the
size, depth and regular expressions of each input schema; a schema's patterns are matched in linear time,
a schema that cannot be checked is an observation, not a crash; a tool named like another tool says which."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from thrifty.budget import Budget, Ledger
from thrifty.tools import ToolRunner
from thrifty.tools.calculator import calculator
from thrifty.tools.mcp import MCPServerConfig, MCPStartupError, _checked_schema, connect_mcp

SERVER = str(Path(__file__).with_name("mcp_hostile_server.py"))
ROOT = Path(__file__).parents[2]
SLOW = 60.0


def config(*args: str, **options: Any) -> MCPServerConfig:
    return MCPServerConfig(
        "hostile", command=[sys.executable, SERVER, *args], startup_timeout=SLOW, timeout=SLOW, **options
    )


def schema_server(schema: dict[str, Any], **options: Any) -> MCPServerConfig:
    return config("schema", json.dumps(schema), **options)


def test_more_tools_than_max_tools_is_a_startup_error_unless_tools_picks_fewer() -> None:
    with pytest.raises(
        MCPStartupError,
        match=r"MCP server 'hostile' offers 200 tools, more than max_tools \(128\) \(fix: expose only the "
        r"ones you need with `tools: \[\.\.\.\]`.*or raise max_tools\)",
    ):
        connect_mcp(config("many", "200"))
    with connect_mcp(config("many", "200", tools=["t1", "t7", "t199"])) as connection:
        assert [t.name for t in connection.tools] == ["t1", "t7", "t199"]
    with connect_mcp(config("many", "200", max_tools=200)) as connection:
        assert len(connection.tools) == 200
    with pytest.raises(MCPStartupError, match=r"offers 3 tools, more than max_tools \(2\)"):
        connect_mcp(config("many", "200", tools=["t1", "t2", "t3"], max_tools=2))
    with pytest.raises(ValueError, match="max_tools must be >= 1"):
        MCPServerConfig("x", command=["x"], max_tools=0)


def test_a_listing_past_the_ceiling_is_refused_and_messages_stay_short() -> None:
    with pytest.raises(MCPStartupError, match=r"lists more than 10,000 tools, the most read from one server"):
        connect_mcp(config("many", "10001", tools=["t1"]))
    with pytest.raises(MCPStartupError) as caught:  # the names it lists: the first 20, and how many
        connect_mcp(config("many", "200", tools=["nope"]))
    assert "has no tool 'nope' (it lists: t0, t1, t10," in str(caught.value)
    assert "... (200 in all)" in str(caught.value) and "t99" not in str(caught.value)


def _deep(levels: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(levels):
        schema = {"type": "object", "properties": {"x": schema}}
    return schema


@pytest.mark.parametrize(
    ("schema", "problem"),
    [
        (_deep(20), "nested more than 32 levels deep"),
        ({"type": "object", "description": "x" * 70_000}, r"of 70,03\d characters of JSON, more than 65,536"),
        (
            {
                "type": "object",
                "properties": {f"p{i}": {"type": "string", "pattern": f"^{i}$"} for i in range(33)},
            },
            r"with 33 regular expressions \(pattern, patternProperties\), more than 32",
        ),
        (
            {"type": "object", "properties": {"w": {"type": "string", "pattern": "^(?=a)a$"}}},
            r"with a pattern '\^\(\?=a\)a\$' that cannot be matched in linear time \(look-around",
        ),
        (
            {"type": "object", "patternProperties": {r"^(a)\1$": {}}},
            r"with a pattern .* that cannot be matched in linear time \(backreferences are not supported\)",
        ),
        (
            {"type": "object", "unevaluatedProperties": False, "patternProperties": {"^a": {}}},
            "that uses unevaluatedProperties with patternProperties, which is not checked in linear time",
        ),
        ({"type": "object", "allOf": [{"$ref": "#"}]}, "that refers to itself without end"),
    ],
)
def test_schemas_past_the_limits_are_refused(schema: dict[str, Any], problem: str) -> None:
    with pytest.raises(
        MCPStartupError,
        match=rf"^MCP server 's': tool 't' has an input schema {problem}.*; fix the server, or leave the "
        r"tool out with `tools: \[\.\.\.\]`$",
    ):
        _checked_schema("s", "t", schema)


def test_schemas_within_the_limits_pass() -> None:
    _checked_schema("s", "t", _deep(15))  # 31 levels
    _checked_schema("s", "t", {"type": "object", "description": "x" * 60_000})
    regexes = {f"p{i}": {"type": "string", "pattern": f"^{i}$"} for i in range(32)}
    _checked_schema("s", "t", {"type": "object", "properties": regexes})
    # A property called "default", and data that looks like a pattern, are not regular expressions.
    data = {"pattern": "(?=not a schema)"}
    schema = {
        "type": "object",
        "properties": {"default": {"pattern": "^q$"}},
        "default": data,
        "examples": [data],
    }
    _checked_schema("s", "t", schema)


def test_a_server_refused_for_its_regular_expressions_in_all() -> None:
    from thrifty.tools.mcp import _SERVER_REGEXES

    compiled = {f"^seen{i}$" for i in range(_SERVER_REGEXES - 1)}
    schema = {"type": "object", "properties": {"a": {"pattern": "^a$"}, "b": {"pattern": "^b$"}}}
    with pytest.raises(
        MCPStartupError, match=r"its tools' input schemas hold more than 256 regular expressions"
    ):
        _checked_schema("s", "t", schema, compiled)
    _checked_schema("s", "t", schema, {"^a$", *list(compiled)[:-1]})  # one new: 256 in all


def test_patterns_keep_json_schema_semantics() -> None:
    schema = {
        "type": "object",
        "properties": {"code": {"type": "string", "pattern": "[0-9]{3}"}},
        "patternProperties": {"^n_": {"type": "integer"}},
        "additionalProperties": False,
    }
    _, validator = _checked_schema("s", "t", schema)

    def problems(data: dict[str, Any]) -> list[str]:
        return sorted(error.message for error in validator.iter_errors(data))

    assert problems({"code": "ab123cd", "n_x": 1}) == []  # a pattern matches anywhere, as in JSON Schema
    assert problems({"code": "12"}) == ["'12' does not match '[0-9]{3}'"]
    assert problems({"n_x": "one"}) == ["'one' is not of type 'integer'"]
    assert problems({"other": 1}) == ["'other' does not match any of the regexes: '^n_'"]
    plain = {"type": "object", "properties": {"a": {}}, "additionalProperties": False}
    assert [e.message for e in _checked_schema("s", "t", plain)[1].iter_errors({"a": 1, "b": 2})] == [
        "Additional properties are not allowed ('b' was unexpected)"
    ]


_CATASTROPHIC = """
    import json, sys
    from thrifty.budget import Budget, Ledger
    from thrifty.tools import ToolRunner
    from thrifty.tools.mcp import MCPServerConfig, connect_mcp

    schema = {
        "type": "object",
        "properties": {"word": {"type": "string", "pattern": "^(a+)+$"}},
        "patternProperties": {"^(b+)+$": {"type": "integer"}},
        "additionalProperties": False,
    }
    server = [sys.executable, sys.argv[1], "schema", json.dumps(schema)]
    config = MCPServerConfig("redos", command=server, startup_timeout=60, timeout=60)
    with connect_mcp(config) as connection, ToolRunner(connection.tools, Ledger(Budget())) as runner:
        for arguments in ({"word": "a" * 5000 + "!"}, {"b" * 5000 + "!": 1}, {"word": "aaa", "bb": 2}):
            obs = runner.run("bad", arguments)
            print(json.dumps([obs.ok, obs.content]))
"""


def test_a_catastrophic_pattern_cannot_hang_the_run() -> None:
    # Python's re would take forever on these (holding the GIL, so a thread could not even time out): the
    # check runs in a child process, and a hang fails the test when the generous timeout expires.
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_CATASTROPHIC), SERVER],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    word, key, fine = (json.loads(line) for line in done.stdout.splitlines())
    assert not word[0] and "does not match '^(a+)+$'" in word[1]
    assert not key[0] and "does not match any of the regexes: '^(b+)+$'" in key[1]
    assert fine[0] and 'bad got {"bb": 2, "word": "aaa"}' in fine[1]


def test_a_schema_that_cannot_be_checked_is_an_observation() -> None:
    node = {"type": "object", "properties": {"child": {"$ref": "#/$defs/node"}}}
    schema = {
        "type": "object",
        "$defs": {"node": node},
        "properties": {"tree": {"$ref": "#/$defs/node"}, "x": {"$ref": "#/$defs/nope"}},
    }
    deep: dict[str, Any] = {}
    for _ in range(400):
        deep = {"child": deep}
    ledger = Ledger(Budget())
    with connect_mcp(schema_server(schema)) as connection, ToolRunner(connection.tools, ledger) as runner:
        nowhere = runner.run("bad", {"x": 1})
        nested = runner.run("bad", {"tree": deep})
        fine = runner.run("bad", {"tree": {"child": {}}})
    assert not nowhere.ok and "the tool's input schema cannot be checked (PointerToNowhere" in nowhere.content
    assert (
        not nested.ok
        and "the arguments nest too deeply to check against the tool's input schema" in nested.content
    )
    assert fine.ok and ledger.spent["tool:bad"] == 1


def test_a_schema_past_the_limits_names_server_and_tool_at_startup() -> None:
    with pytest.raises(
        MCPStartupError, match="MCP server 'hostile': tool 'bad' has an input schema nested more"
    ):
        connect_mcp(schema_server(_deep(20)))
    with connect_mcp(schema_server(_deep(20), tools=["ok"])) as connection:  # the bad one left out
        assert [t.name for t in connection.tools] == ["ok"]


def test_an_mcp_tool_named_like_another_tool_says_which_and_the_prefix_fix() -> None:
    with connect_mcp(config("tools", "calculator", "add")) as connection:
        with pytest.raises(ValueError) as caught:
            ToolRunner([calculator, *connection.tools], Ledger(Budget()))
        prefixed = config("tools", "calculator", "add", prefix="hostile_")
        with (
            connect_mcp(prefixed) as other,
            ToolRunner([calculator, *other.tools], Ledger(Budget())) as runner,
        ):
            assert sorted(runner.tools) == ["calculator", "hostile_add", "hostile_calculator"]
    assert str(caught.value) == (
        "duplicate tool names: calculator ('calculator' is the name of MCP server 'hostile' (its tool "
        "'calculator') and of another tool of the task; fix: give MCP server 'hostile' a prefix, e.g. "
        "`prefix: hostile_` (its tools then become hostile_<name>), or leave the tool out with the server's "
        "`tools: [...]`)"
    )
    with pytest.raises(ValueError, match=r"^duplicate tool names: calculator$"):  # no MCP tool: as before
        ToolRunner([calculator, calculator], Ledger(Budget()))


def test_an_output_schema_the_client_would_match_with_re_is_refused_at_startup() -> None:
    # The mcp client checks each structured result against the output schema with Python's backtracking
    # re: with this pattern and a result of 5,000 a's and "!" the run froze. Refused before any call.
    catastrophic = {"type": "object", "properties": {"x": {"type": "string", "pattern": "^(a+)+$"}}}
    with pytest.raises(
        MCPStartupError,
        match=r"MCP server 'hostile': tool 'bad' has an output schema with regular expressions \(pattern, "
        r"patternProperties\), which the MCP client matches .* fix the server, or leave the tool out",
    ):
        connect_mcp(config("output", json.dumps(catastrophic), "a" * 5000 + "!"))
    with pytest.raises(MCPStartupError, match="has an output schema nested more than 32 levels deep"):
        connect_mcp(config("output", json.dumps(_deep(40))))
    plain = {"type": "object", "properties": {"x": {"type": "string", "maxLength": 10}}}
    with connect_mcp(config("output", json.dumps(plain), "fine")) as connection:
        with ToolRunner(connection.tools, Ledger(Budget())) as runner:
            seen = runner.run("bad", {})
        assert seen.ok and "fine" in seen.content, seen.content
