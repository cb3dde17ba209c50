"""A task file's memory scope that the store would refuse (an empty or over-long id) is refused when the file
is read, by `agent validate` as by `agent run`, naming memory.scope and its fix; nothing is opened or called."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from thrifty.cli import app
from thrifty.testing import ScriptedModel, reply


@pytest.mark.parametrize(
    ("scope", "problem"),
    [
        ('{user_id: ""}', "user_id: String should have at least 1"),
        ("{agent_id: " + "a" * 201 + "}", "agent_id: String should have at most 200"),
        ('{run_id: "   "}', "run_id: String should match pattern"),  # blank
    ],
)
@pytest.mark.parametrize("command", ["validate", "run"])
def test_an_empty_or_too_long_scope_id_is_refused_naming_memory_scope(
    tmp_path: Path, scope: str, problem: str, command: str
) -> None:
    """Before the fix `agent validate` said ok and the run failed with pydantic's raw 'validation error for
    Scope' (no field, no fix)."""
    answer = ScriptedModel([reply("7 May 2023")])
    path = tmp_path / "task.yaml"
    path.write_text(
        f"question: q?\nmodel: {answer.model}\noutput: {{store: null}}\nmemory:\n  store: mem.db\n"
        f"  scope: {scope}\n",
        encoding="utf-8",
    )
    res = CliRunner().invoke(app, [command, str(path)])
    message = " ".join(res.stderr.split())
    assert res.exit_code == 2, res.output
    assert "field 'memory.scope'" in message and problem in message and "fix:" in message, message
    assert "validation error for Scope" not in message and "Traceback" not in res.output
    assert answer.requests == [] and not (tmp_path / "mem.db").exists()


def test_a_scope_given_as_a_bare_string_is_told_the_mapping_it_should_be() -> None:
    from thrifty.memory import Scope

    with pytest.raises(TypeError, match=r"a memory scope is a mapping such as \{'user_id': 'caroline'\}"):
        Scope.of("caroline")  # type: ignore[arg-type]
