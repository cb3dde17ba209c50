"""What a request to `agent serve` may not do though a task file may (run a program, read or write the
server's files, price a model below its cost), a paused run resumed without a raised limit, and the
resume endpoint's bad bodies: each a 4xx JSON error naming the field and the fix, nothing run or stored."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.serving import counting, wait_run
from thrifty import Agent
from thrifty.budget import Budget
from thrifty.serve import ServeSettings, create_app
from thrifty.store.durable import DurableStore
from thrifty.testing import ScriptedModel
from thrifty.tools import calculator
from thrifty.workflows.runner import SetupError

TOKEN = "r3fuse-t0ken-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _client(tmp_path: Path | None = None) -> TestClient:
    db = None if tmp_path is None else tmp_path / "checkpoints.db"
    return TestClient(create_app(ServeSettings(token=TOKEN, checkpoint=db)))


def _wait(client: TestClient, run_id: str) -> dict[str, Any]:
    return wait_run(client, run_id, AUTH)


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"mcp_servers": [{"name": "p", "command": ["touch", "{marker}"]}]}, "mcp_servers.0.command"),
        ({"memory": {"store": "{marker}", "scope": {"user_id": "a"}}}, "memory.store"),
        ({"memory": {"scope": {"user_id": "a"}, "ingest": ["{marker}"]}}, "memory.ingest"),
        ({"memory": {"scope": {"user_id": "a"}, "router": "learned:{marker}"}}, "memory.router"),
        ({"pricing": {"tools": {"search": 0}}}, "pricing.tools.search"),
        ({"tools": [{"name": "web_search", "price": 0}]}, "tools.0.price"),
        ({"tools": [{"name": "read_url", "allow_private": True}]}, "tools.0.allow_private"),
        (
            {"tools": [{"name": "web_search", "provider": "tavily", "api_bases": {"tavily": "http://x"}}]},
            "tools.0.api_bases",
        ),
        ({"model": "local/{gguf}"}, "model"),
        ({"model": "hf/{hfdir}"}, "model"),
        ({"models": ["{model}", "hf/{hfdir}"]}, "models"),
        ({"memory": {"scope": {"user_id": "a"}, "model": "local/{gguf}"}}, "memory.model"),
        (
            {"model": "openai/gpt-4o-mini", "pricing": {"models": {"openai/gpt-4o-mini": {}}}},
            "pricing.models.openai/gpt-4o-mini.input_per_token",
        ),
        # the server's own network: loopback, a cloud's metadata address
        ({"mcp_servers": [{"name": "x", "url": "http://127.0.0.1:1/mcp"}]}, "mcp_servers.0.url"),
        ({"mcp_servers": [{"name": "x", "url": "http://169.254.169.254/latest"}]}, "mcp_servers.0.url"),
        # probed the server's environment (400 when unset, 202 when set); does nothing for a url server
        (
            {"mcp_servers": [{"name": "x", "url": "http://8.8.8.8/mcp", "pass_env": ["HOME"]}]},
            "mcp_servers.0",
        ),
        ({"output": {"store": "{marker}"}}, "output.store"),
        # a price the server cannot check: its dollar caps would count what the request says
        (
            {
                "model": "openai/thrifty-private-model",
                "pricing": {"models": {"openai/thrifty-private-model": {"input_per_token": 0}}},
            },
            "pricing.models.openai/thrifty-private-model",
        ),
    ],
)
def test_a_request_cannot_run_a_program_touch_a_file_or_underprice_a_model(
    tmp_path: Path, extra: dict[str, Any], field: str
) -> None:
    script = ScriptedModel([], default=counting)
    marker = tmp_path / "marker"
    body: dict[str, Any] = {"question": "count to 3", "model": script.model, "tools": ["calculator"]}
    gguf, hfdir = tmp_path / "server-owned.gguf", tmp_path / "server-owned-model"  # the server's files
    gguf.write_bytes(b"GGUF")
    hfdir.mkdir()
    (hfdir / "config.json").write_text("{}")
    text = json.dumps(extra).replace("{marker}", str(marker)).replace("{model}", script.model)
    text = text.replace("{gguf}", str(gguf)).replace("{hfdir}", str(hfdir))
    body.update(json.loads(text))
    if "models" in body:  # a task names model or models, not both
        body.pop("model")
    client = _client()
    res = client.post("/runs", json=body, headers=AUTH)
    assert res.status_code == 400, res.text
    error = res.json()["error"]
    assert error["code"] == 2 and f"field '{field}'" in error["message"] and "fix:" in error["message"]
    time.sleep(0.3)
    assert not marker.exists() and client.get("/runs", headers=AUTH).json()["runs"] == []


def test_a_request_may_price_a_free_model_and_raise_a_tool_price() -> None:
    script = ScriptedModel([], default=counting)
    body = {
        "question": "count to 3",
        "model": script.model,
        "tools": ["calculator"],
        "pricing": {
            "models": {script.model: {"input_per_token": 1e-6, "output_per_token": 2e-6}},
            "tools": {"calculator": 0.25},
        },
    }
    client = _client()
    res = client.post("/runs", json=body, headers=AUTH)
    assert res.status_code == 202, res.text
    data = _wait(client, res.json()["run_id"])
    assert data["status"] == "finished" and data["spent"]["usd"] > 0.75


def test_a_paused_run_resumed_without_a_raised_limit_stays_paused(tmp_path: Path) -> None:
    script = ScriptedModel([], default=counting)
    client = _client(tmp_path)
    res = client.post(
        "/runs",
        json={
            "question": "count to 3",
            "model": script.model,
            "tools": ["calculator"],
            "budget": {"tool_calls": 2},
            "on_limit": "pause",
        },
        headers=AUTH,
    )
    run_id = res.json()["run_id"]
    assert _wait(client, run_id)["status"] == "paused"
    calls = len(script.requests)
    for body in (None, {"budget": {"tool_calls": 2}}):
        res = client.post(f"/runs/{run_id}/resume", json=body, headers=AUTH)
        assert res.status_code == 409, res.text
        message = res.json()["error"]["message"]
        assert (
            "is paused at its tool_calls limit" in message
            and "fix: resume with a tool_calls limit above 2" in message
        )
    assert len(script.requests) == calls  # no model call was made
    row = DurableStore(tmp_path / "checkpoints.db").get(run_id)
    assert row is not None and row["status"] == "paused"
    res = client.post(f"/runs/{run_id}/resume", json={"budget": {"tool_calls": 5}}, headers=AUTH)
    assert res.status_code == 202, res.text
    data = _wait(client, run_id)
    assert data["status"] == "finished" and data["result"]["answer"] == "3"


def test_a_paused_run_resumed_from_python_with_the_same_budget_is_refused(tmp_path: Path) -> None:
    script = ScriptedModel([], default=counting)
    agent = Agent(script.model, tools=[calculator], budget=Budget(tool_calls=2))
    db = tmp_path / "c.db"
    paused = agent.run("count", on_limit="pause", checkpoint=db)
    assert paused.paused
    with pytest.raises(SetupError, match="paused at its tool_calls limit"):
        agent.run("count", run_id=paused.run_id, checkpoint=db, on_limit="pause")
    row = DurableStore(db).get(paused.run_id)
    assert row is not None and row["status"] == "paused"
    done = agent.run("count", run_id=paused.run_id, checkpoint=db, budget=Budget(tool_calls=5))
    assert done.stop_reason == "completed" and done.answer == "3"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"budget": 5}, "field 'budget': Input should be a valid dictionary"),
        (
            {"budget": {"bogus": 1}},
            "field 'budget.bogus': Extra inputs are not permitted (fix: use the fields",
        ),
    ],
)
def test_bad_resume_bodies_name_the_field_and_the_fix(tmp_path: Path, body: Any, message: str) -> None:
    res = _client(tmp_path).post("/runs/nope/resume", json=body, headers=AUTH)
    assert res.status_code == 400 and message in res.json()["error"]["message"], res.text


def test_a_resume_body_over_the_limit_is_refused(tmp_path: Path) -> None:
    def chunks() -> Any:
        for _ in range(300):
            yield b"x" * 1024

    res = _client(tmp_path).post("/runs/nope/resume", content=chunks(), headers=AUTH)
    assert res.status_code == 413, res.text


def test_a_model_without_a_price_is_refused_at_submit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Accepted (202), then the run failed: the model check ran before the server's dollar cap was set."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-0123456789abcdef")
    monkeypatch.delenv("THRIFTY_BLOCK_REMOTE")  # only the model check runs: nothing is sent
    res = _client().post(
        "/runs", json={"question": "q", "model": "openai/thrifty-private-model"}, headers=AUTH
    )
    assert res.status_code == 400, res.text
    assert "no known price" in res.json()["error"]["message"]


def test_per_tool_limits_are_kept_within_the_cap() -> None:
    """A per_tool budget was a 500 (its ``tool:NAME`` limits were handed back to Budget as fields)."""
    script = ScriptedModel([], default=counting)
    client = _client()
    body = {"question": "count to 3", "model": script.model, "tools": ["calculator"]}
    res = client.post("/runs", json={**body, "budget": {"per_tool": {"calculator": 2}}}, headers=AUTH)
    assert res.status_code == 202, res.text
    assert res.json()["budget"]["tool:calculator"] == 2 and res.json()["budget"]["tool_calls"] == 50
    data = _wait(client, res.json()["run_id"])
    assert data["result"]["usage"]["tool_calls"] == 2


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            '{"question": "q", "budget": {"tool_calls": 1' + "0" * 400 + "}}",
            "a whole-number limit is at most",
        ),
        ('{"question": "q", "x": ' + "[" * 100_000 + "]" * 100_000 + "}", "nests too deep"),
        ('{"question": "count \\ud800 to 3"}', "not valid Unicode"),
    ],
)
def test_bodies_that_broke_the_server_are_a_400(body: str, message: str) -> None:
    """A huge whole number (OverflowError), deep nesting (RecursionError) and a lone surrogate (accepted,
    then every GET /runs was a 500 until the run was forgotten) are each a 400 now."""
    client = _client()
    res = client.post("/runs", content=body.encode(), headers={**AUTH, "Content-Type": "application/json"})
    assert res.status_code == 400, res.text[:300]
    assert message in res.json()["error"]["message"]
    assert client.get("/runs", headers=AUTH).status_code == 200


def test_a_bad_content_length_is_a_400_and_resume_names_extra_fields(tmp_path: Path) -> None:
    from thrifty.serve import _refused  # pyright: ignore[reportPrivateUsage]

    settings = ServeSettings(token=TOKEN)
    answer = _refused({"authorization": f"Bearer {TOKEN}", "content-length": "-1"}, settings)
    assert answer is not None and answer.status_code == 400 and b"Content-Length" in answer.body
    res = _client(tmp_path).post("/runs/r1/resume", json={"budget": {}, "x": 1}, headers=AUTH)
    assert res.status_code == 400 and "(unknown field 'x')" in res.json()["error"]["message"]


def test_the_run_list_shows_a_long_question_shortened() -> None:
    script = ScriptedModel([], default=counting)
    client = _client()
    question = "count to 3 " + "x" * 5000
    body = {"question": question, "model": script.model, "tools": ["calculator"]}
    run_id = client.post("/runs", json=body, headers=AUTH).json()["run_id"]
    _wait(client, run_id)
    listed = client.get("/runs", headers=AUTH).json()["runs"][0]["question"]
    assert len(listed) == 500 and listed.endswith("…")
    assert client.get(f"/runs/{run_id}", headers=AUTH).json()["question"] == question


def test_a_request_cannot_send_the_servers_key_to_its_own_host(monkeypatch: pytest.MonkeyPatch) -> None:
    """`model_settings.api_base` was accepted: the server sent `Authorization: Bearer <its key>` there."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-0123456789abcdef")
    body = {
        "question": "q",
        "model": "openai/gpt-4o-mini",
        "model_settings": {"api_base": "http://127.0.0.1:9/v1"},
    }
    res = _client().post("/runs", json=body, headers=AUTH)
    assert res.status_code == 400, res.text
    assert "field 'model_settings.api_base'" in res.json()["error"]["message"]


@pytest.mark.parametrize("restarted", [False, True])
def test_a_paused_run_can_be_cancelled_for_good(tmp_path: Path, restarted: bool) -> None:
    """A paused run (or one a restart left) could not be cancelled: 409 "has ended (paused)", or 404 though
    GET /runs listed it, so a client had no way to abandon it."""
    script = ScriptedModel([], default=counting)
    client = _client(tmp_path)
    body = {"question": "count to 3", "model": script.model, "tools": ["calculator"], "on_limit": "pause"}
    run_id = client.post("/runs", json={**body, "budget": {"tool_calls": 2}}, headers=AUTH).json()["run_id"]
    assert _wait(client, run_id)["status"] == "paused"
    if restarted:  # a new server on the same checkpoints lists the run as one it can resume
        client = _client(tmp_path)
        assert [r["run_id"] for r in client.get("/runs", headers=AUTH).json()["runs"]] == [run_id]
    res = client.post(f"/runs/{run_id}/cancel", headers=AUTH)
    assert res.status_code == 200 and res.json() == {"run_id": run_id, "status": "cancelled"}, res.text
    row = DurableStore(tmp_path / "checkpoints.db").get(run_id)
    assert row is not None and (row["status"], row["stop_reason"]) == ("finished", "cancelled")
    res = client.post(f"/runs/{run_id}/resume", json={"budget": {"tool_calls": 5}}, headers=AUTH)
    assert res.status_code == 409 and "has finished (cancelled)" in res.json()["error"]["message"], res.text
    again = client.post(f"/runs/{run_id}/cancel", headers=AUTH)
    assert again.status_code == (404 if restarted else 409), again.text
