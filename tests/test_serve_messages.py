"""A request's messages suggest only what a server accepts: never a `module:function` tool or strategy, which
the server refuses."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from thrifty.serve import ServeSettings, create_app
from thrifty.testing import ScriptedModel

TOKEN = "s3rve-t0ken-abcdef123456"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"strategy": "nosuch"}, "field 'strategy': unknown strategy 'nosuch' (fix: use one of react, bats"),
        ({"tools": ["teleport"]}, "unknown tool 'teleport' (fix: use one of search, read, calculator"),
        ({"tools": [{"name": "teleport"}]}, "unknown tool 'teleport' (fix: use one of search, read"),
        ({"tools": ["my tools:lookup"]}, "unknown tool 'my tools:lookup' (fix: use one of search"),
        ({"strategy": "mine:"}, "field 'strategy': unknown strategy 'mine:' (fix: use one of react"),
    ],
)
def test_an_unknown_tool_or_strategy_is_told_the_built_ins_only(extra: dict[str, Any], expected: str) -> None:
    body = {"question": "count to 3", "model": ScriptedModel([]).model, "tools": ["calculator"], **extra}
    res = TestClient(create_app(ServeSettings(token=TOKEN))).post("/runs", json=body, headers=AUTH)
    assert res.status_code == 400, res.text
    message = res.json()["error"]["message"]
    assert expected in message and "a server runs only built-in tools and strategies" in message, message
    assert "module:function" not in message and "package.module" not in message, message
