"""Examples no other test runs: each task file validates as the README says, and examples/webqa.py's sources
are whole URLs (tests elsewhere: test_cli, test_transcripts, test_durable_demo, workflows/test_graph,
workflows/test_web_task_file, tools/test_webqa_example, memory/test_examples)."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest
from typer.testing import CliRunner

from tests.scripts import load_script
from thrifty.cli import app
from thrifty.testing import ScriptedModel, call, reply
from thrifty.tools import bundled_dataset_path, load_corpus

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name", ["hotpotqa_bats.yaml", "hotpotqa_tree.yaml", "memory.yaml"])
def test_example_task_file_validates(name: str) -> None:
    res = CliRunner().invoke(app, ["validate", f"examples/{name}"])
    assert res.exit_code == 0, res.output
    assert f"examples/{name}: ok" in res.output


def test_memory_yaml_validates_as_the_readme_shows() -> None:
    res = CliRunner().invoke(app, ["validate", "examples/memory.yaml"])
    line = res.output.strip()
    assert f"$ agent validate examples/memory.yaml\n{line}\n" in (ROOT / "README.md").read_text("utf-8")


def test_webqa_sources_are_whole_urls(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """This search's result is cut inside a URL line in the trace (which keeps 600 characters): that
    line is not a source."""
    module = load_script("examples/webqa.py", "webqa_example_sources")
    script = ScriptedModel([call("web_search", query="First for Women"), reply("First for Women")])
    monkeypatch.setattr("sys.argv", ["webqa.py", "--model", script.model, "--tool-calls", "3"])
    assert module.main() == 0
    out = capsys.readouterr().out
    shown = out.split("sources:\n", 1)[1].split()
    titles = set(load_corpus(bundled_dataset_path("hotpotqa")).titles)
    assert shown
    for url in shown:
        page = re.fullmatch(r"http://127\.0\.0\.1:\d+/wiki/(\S+)", url)
        assert page and unquote(page.group(1)) in titles, url
