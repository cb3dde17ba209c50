"""web_search and read_url named in a task file: the agent runs them over HTTP against a local server, the
Ledger charges the search's price, and a bad option or a missing key is an exit-2 error naming the line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.scripts import load_script
from tests.tools.webserver import Request, WebServer, html
from thrifty.cli import app
from thrifty.testing import ScriptedModel, call, reply
from thrifty.workflows.result import RunResult

cli = CliRunner()

PAGE = """<html><head><title>Sinister (film)</title></head><body><nav>Home | Films</nav>
<article><p>Sinister is a 2012 supernatural horror film directed by Scott Derrickson and written by
Derrickson and C. Robert Cargill.</p><p>It stars Ethan Hawke as a true-crime writer.</p></article>
<footer>All rights reserved</footer></body></html>"""


@pytest.fixture(scope="module")
def server() -> Iterator[WebServer]:
    routes: dict[str, object] = {}
    with WebServer(routes) as srv:  # type: ignore[arg-type]

        def search(request: Request):
            results = [
                {"title": "Sinister (film)", "url": srv.url("/wiki/Sinister"), "content": "2012 horror film"}
            ]
            return 200, {"Content-Type": "application/json"}, json.dumps({"results": results}).encode()

        routes.update({"/search": search, "/wiki/Sinister": lambda _r: html(PAGE)})
        yield srv


def _task(tmp_path: Path, model: str, tools: str, budget: str = "  tool_calls: 4\n") -> Path:
    task = tmp_path / "task.yaml"
    task.write_text(
        f"question: Who directed Sinister?\nmodel: {model}\ntools:\n{tools}budget:\n{budget}"
        f"output:\n  store: null\n"
    )
    return task


def test_search_then_read_a_page(tmp_path: Path, server: WebServer) -> None:
    url = server.url("/wiki/Sinister")
    script = ScriptedModel(
        [
            call("web_search", query="Sinister film director"),
            call("read_url", url=url),
            reply("Scott Derrickson"),
        ]
    )
    tools = (
        f"  - {{name: web_search, provider: searxng, k: 3, price: 0.004, api_bases: {{searxng: '{server.base}'}}}}\n"
        "  - {name: read_url, allow_hosts: ['127.0.0.1'], max_bytes: 200000, timeout: 5}\n"
    )
    res = cli.invoke(app, ["run", str(_task(tmp_path, script.model, tools)), "--json"])
    assert res.exit_code == 0, res.output
    result = RunResult.model_validate_json(res.stdout)
    assert result.answer == "Scott Derrickson"
    assert result.usage.tool_calls == 2
    assert result.cost.tools_usd == pytest.approx(0.004)  # the search's price; read_url is free
    tool_messages = [m for m in script.requests[-1].messages if m.get("role") == "tool"]
    assert "[web search results: searxng results for 'Sinister film director'" in tool_messages[0]["content"]
    assert f"URL: {url}" in tool_messages[0]["content"]
    assert "directed by Scott Derrickson" in tool_messages[1]["content"]
    assert "All rights reserved" not in tool_messages[1]["content"]
    assert "untrusted content" in tool_messages[1]["content"]


def test_private_page_is_an_observation_not_a_crash(tmp_path: Path, server: WebServer) -> None:
    script = ScriptedModel([call("read_url", url=server.url("/wiki/Sinister")), reply("unknown")])
    res = cli.invoke(app, ["run", str(_task(tmp_path, script.model, "  - read_url\n")), "--json"])
    assert res.exit_code == 0, res.output
    observation = next(m for m in script.requests[-1].messages if m.get("role") == "tool")["content"]
    assert observation.startswith("error: refused: 127.0.0.1 resolves to the private")


@pytest.mark.parametrize(
    ("tools", "expected"),
    [
        ("  - {name: read_url, provider: tavily}\n", "'provider' is not an option of tool 'read_url'"),
        ("  - {name: web_search, provider: nosuch}\n", "unknown web search provider 'nosuch'"),
        ("  - {name: web_search, provider: tavily}\n", "TAVILY_API_KEY"),
        ("  - {name: web_search, timeout: 0}\n", "tools.0.timeout"),
    ],
)
def test_bad_web_tool_options_exit_2(
    tmp_path: Path, tools: str, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TAVILY_API_KEY", raising=False)
    res = cli.invoke(app, ["validate", str(_task(tmp_path, "openai/gpt-4o-mini", tools))])
    assert res.exit_code == 2
    assert expected in res.output and "task.yaml:4" in res.output
    assert "Traceback" not in res.output


EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.usefixtures("fake_openai_key")
def test_example_task_file_validates(monkeypatch: pytest.MonkeyPatch) -> None:
    # validate calls no model; it checks the remote one as a run would (the suite blocks remote calls,
    # and a run without OPENAI_API_KEY could not start)
    monkeypatch.delenv("THRIFTY_BLOCK_REMOTE")
    res = cli.invoke(app, ["validate", str(EXAMPLES / "webqa.yaml")])
    assert res.exit_code == 0, res.output
    assert "tools [web_search, read_url]" in res.output


def test_example_webqa_runs_offline(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    module = load_script("examples/webqa.py", "webqa_example")
    script = ScriptedModel([call("web_search", query="Morgan Llywelyn"), reply("Morgan Llywelyn")])
    monkeypatch.setattr("sys.argv", ["webqa.py", "--model", script.model, "--tool-calls", "3"])
    assert module.main() == 0
    out = capsys.readouterr().out
    assert "answer:   Morgan Llywelyn" in out
    assert "cost:     $0.0010 (tools $0.0010)" in out
    assert "/wiki/Morgan%20Llywelyn" in out  # a source: the local web's page for the paragraph found
