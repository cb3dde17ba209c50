"""Web tools in task files: each bad option gets its own fix from ``agent validate`` (never a Python
snippet, never a fix meant for another case)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from thrifty.cli import app

cli = CliRunner()


def _validate(tmp_path: Path, tools: str) -> str:
    task = tmp_path / "task.yaml"
    task.write_text(f"question: Who?\nmodel: openai/gpt-4o-mini\ntools:\n{tools}")
    res = cli.invoke(app, ["validate", str(task)])
    assert res.exit_code == 2, res.output
    assert "task.yaml:" in res.output and "Traceback" not in res.output
    assert "set the key in the environment, or choose another provider" not in res.output
    assert "os.environ" not in res.output
    return " ".join(res.output.split())


def test_an_empty_allowed_host_says_to_remove_it(tmp_path: Path) -> None:
    shown = _validate(tmp_path, "  - name: read_url\n    allow_hosts: ['']\n")
    assert "field 'tools.0.allow_hosts'" in shown and "fix: remove it, or write a host name" in shown


def test_searxng_without_a_base_says_to_give_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SEARXNG_API_BASE", raising=False)
    shown = _validate(tmp_path, "  - {name: web_search, provider: searxng}\n")
    assert "fix: add api_bases: {searxng: http://" in shown


def test_a_keyed_provider_with_a_base(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TAVILY_API_KEY", raising=False)
    monkeypatch.delenv("TAVILY_API_BASE", raising=False)
    tools = "  - {name: web_search, provider: tavily, api_bases: {tavily: 'http://127.0.0.1:9/t'}}\n"
    shown = _validate(tmp_path, tools)
    assert "TAVILY_API_KEY is not set" in shown and "export TAVILY_API_KEY=" in shown
    assert "also export TAVILY_API_BASE=http://127.0.0.1:9/t" in shown
    monkeypatch.setenv("TAVILY_API_KEY", "tvly-test-key-123")  # the key is there, the base is not named
    shown = _validate(tmp_path, tools)
    assert "is not sent to api_bases.tavily" in shown
    assert (
        "fix: also export TAVILY_API_BASE=http://127.0.0.1:9/t" in shown and "drop api_bases.tavily" in shown
    )
    assert "tvly-test-key-123" not in shown
