"""Resuming a run of `agent serve` over HTTP (issue 16): server runs are checkpointed as `agent run`'s are,
so a run paused at its budget or cut off by a server restart continues with ``POST /runs/{id}/resume``,
paying nothing twice; a resume that cannot be done gets the CLI's message as JSON, the stored run intact."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from tests.serving import counting, server_process, wait_run
from thrifty import Agent
from thrifty.budget import Budget
from thrifty.cli import app as cli_app
from thrifty.serve import ServeSettings, create_app
from thrifty.store.durable import INFLIGHT_DETAIL
from thrifty.testing import ScriptedModel, ScriptedReply, ScriptedRequest, reply
from thrifty.tools import calculator

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "r3sume-t0ken-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _task(model: str, **extra: Any) -> dict[str, Any]:
    return {"question": "count to 3", "model": model, "tools": ["calculator"], **extra}


def _client(db: Path | None, **settings: Any) -> TestClient:
    return TestClient(create_app(ServeSettings(token=TOKEN, checkpoint=db, **settings)))


def _wait(client: Any, run_id: str) -> dict[str, Any]:
    return wait_run(client, run_id, AUTH)


def _stored(db: Path) -> tuple[list[Any], ...]:
    with sqlite3.connect(db) as conn:
        return tuple(
            conn.execute(sql).fetchall()
            for sql in (
                "select * from thrifty_runs order by run_id",
                "select * from thrifty_charges order by run_id, seq",
                "select * from thrifty_inflight",
                "select thread_id, checkpoint_id, checkpoint from checkpoints order by checkpoint_id",
            )
        )


def _paused(client: TestClient, model: str) -> str:
    res = client.post("/runs", json=_task(model, budget={"tool_calls": 2}, on_limit="pause"), headers=AUTH)
    assert res.status_code == 202, res.text
    run_id = res.json()["run_id"]
    data = _wait(client, run_id)
    assert data["status"] == "paused" and data["result"]["stop_reason"] == "paused:tool_calls", data
    assert data["result"]["usage"]["tool_calls"] == 2 and data["result"]["answer"] is None
    return run_id


def test_a_paused_run_is_resumed_with_a_raised_budget_paying_nothing_twice(tmp_path: Path) -> None:
    script = ScriptedModel([], default=counting)
    db = tmp_path / "checkpoints.db"
    client = _client(db, server_budget=Budget(tool_calls=20))
    run_id = _paused(client, script.model)
    listed = client.get("/runs", headers=AUTH).json()
    assert [(r["run_id"], r["status"]) for r in listed["runs"]] == [(run_id, "paused")]

    res = client.post(f"/runs/{run_id}/resume", json={"budget": {"tool_calls": 5}}, headers=AUTH)
    assert res.status_code == 202, res.text
    assert res.json()["budget"]["tool_calls"] == 5 and res.json()["budget"]["usd"] == 1.0
    data = _wait(client, run_id)
    result = data["result"]
    assert data["status"] == "finished" and result["answer"] == "3" and result["stop_reason"] == "completed"
    assert result["usage"]["tool_calls"] == 3 and result["usage"]["model_requests"] == 4  # none paid twice
    # the server-wide budget counted each call once, across the pause
    assert client.get("/runs", headers=AUTH).json()["server"]["spent"]["tool_calls"] == 3

    with client.stream("GET", f"/runs/{run_id}/events", headers=AUTH) as stream:
        events = [json.loads(line[6:]) for line in stream.iter_lines() if line.startswith("data: ")]
    assert [e["index"] for e in events] == list(range(len(events)))  # one stream, both parts
    starts = [e for e in events if e["kind"] == "start"]
    assert [s["resumed"] for s in starts] == [False, True] and starts[1]["budget"]["tool_calls"] == 5
    results = [e["result"]["stop_reason"] for e in events if e["kind"] == "result"]
    assert results == ["paused:tool_calls", "completed"]

    # the run has finished: a second resume is refused as `agent resume` refuses it
    before = _stored(db)
    res = client.post(f"/runs/{run_id}/resume", headers=AUTH)
    assert res.status_code == 409 and res.json()["error"]["code"] == 2
    assert "has finished (completed); nothing to resume" in res.json()["error"]["message"]
    assert _stored(db) == before


def test_bad_resumes_get_the_cli_messages_and_leave_the_run_intact(tmp_path: Path) -> None:
    script = ScriptedModel([], default=counting)
    db = tmp_path / "checkpoints.db"
    client = _client(db)
    run_id = _paused(client, script.model)
    before = _stored(db)

    def refused(body: Any, status: int, message: str, target: str = run_id) -> None:
        res = client.post(f"/runs/{target}/resume", json=body, headers=AUTH)
        assert res.status_code == status, res.text
        assert res.json()["error"]["code"] == 2 and message in res.json()["error"]["message"], res.text
        assert TOKEN not in res.text
        assert _stored(db) == before

    refused(
        None, 404, "no run 'nope' on this server; fix: GET /runs lists the runs that can be resumed", "nope"
    )
    refused(
        {"budget": {"tool_calls": 1}},
        409,
        f"run '{run_id}' has already spent 2 tool_calls, more than the budget it is resumed with (1); "
        "fix: resume with a tool_calls limit above 2",
    )
    refused({"budget": {"usd": 50}}, 400, "over this server's per-request cap of 1")
    refused({"budget": {"tool_calls": -1}}, 400, "field 'budget.tool_calls'")
    refused({"budget": {"tool_cals": 4}}, 400, "field 'budget.tool_cals'")
    refused({"limits": {}}, 400, 'must be empty or {"budget"')
    res = client.post(f"/runs/{run_id}/resume", content=b"{oops", headers=AUTH)
    assert res.status_code == 400 and "not JSON" in res.json()["error"]["message"]
    assert client.post(f"/runs/{run_id}/resume").status_code == 401

    # a corrupt checkpoint, then a corrupt record: refused with the CLI's messages, nothing changed
    with sqlite3.connect(db) as conn:
        saved = conn.execute("select thread_id, checkpoint_id, checkpoint from checkpoints").fetchall()
        conn.execute("update checkpoints set checkpoint = x'00ff00'")
    before = _stored(db)
    refused({"budget": {"tool_calls": 5}}, 409, f"run '{run_id}' in {db}: its checkpoint cannot be read")
    with sqlite3.connect(db) as conn:
        conn.executemany(
            "update checkpoints set checkpoint = ? where thread_id = ? and checkpoint_id = ?",
            [(blob, thread, cid) for thread, cid, blob in saved],
        )
        meta = conn.execute("select meta from thrifty_runs where run_id = ?", (run_id,)).fetchone()[0]
        conn.execute("update thrifty_runs set meta = '{not json' where run_id = ?", (run_id,))
    before = _stored(db)
    refused({"budget": {"tool_calls": 5}}, 409, "its record is corrupt; fix: start the run again")
    with sqlite3.connect(db) as conn:
        conn.execute("update thrifty_runs set meta = ? where run_id = ?", (meta, run_id))
    res = client.post(f"/runs/{run_id}/resume", json={"budget": {"tool_calls": 5}}, headers=AUTH)
    assert res.status_code == 202, res.text  # once repaired, the same run resumes
    assert _wait(client, run_id)["result"]["answer"] == "3"


def test_a_running_run_and_a_run_of_the_cli_are_not_resumed(tmp_path: Path) -> None:
    gate = threading.Event()

    def slow(request: ScriptedRequest) -> ScriptedReply:
        gate.wait(30)
        return counting(request)

    db = tmp_path / "checkpoints.db"
    client = _client(db)
    run_id = client.post("/runs", json=_task(ScriptedModel([], default=slow).model), headers=AUTH).json()[
        "run_id"
    ]
    res = client.post(f"/runs/{run_id}/resume", headers=AUTH)
    assert res.status_code == 409 and f"run '{run_id}' is still running" in res.json()["error"]["message"]
    gate.set()
    assert _wait(client, run_id)["status"] == "finished"

    model = ScriptedModel([], default=counting).model
    paused = Agent(model, tools=[calculator], budget=Budget(tool_calls=1)).run(
        "count", on_limit="pause", checkpoint=db
    )
    assert paused.paused
    res = client.post(f"/runs/{paused.run_id}/resume", json={"budget": {"tool_calls": 5}}, headers=AUTH)
    assert res.status_code == 409 and "was not started by `agent serve`" in res.json()["error"]["message"]
    assert paused.run_id not in [r["run_id"] for r in client.get("/runs", headers=AUTH).json()["runs"]]


def test_without_a_checkpoint_file_nothing_pauses_or_resumes() -> None:
    script = ScriptedModel([reply("x")])
    client = _client(None)
    res = client.post("/runs", json=_task(script.model, on_limit="pause"), headers=AUTH)
    assert (
        res.status_code == 400
        and "needs a server that checkpoints its runs" in res.json()["error"]["message"]
    )
    res = client.post("/runs/abc/resume", headers=AUTH)
    assert res.status_code == 409 and "does not checkpoint its runs" in res.json()["error"]["message"]


DRIVER = """
import os, signal, sys
from pathlib import Path
from thrifty.serve import ServeSettings, serve
from thrifty.testing import ScriptedModel, call, reply

def step(request):
    done = sum(1 for m in request.messages if m.get("role") == "tool")
    if done == 2 and sys.argv[3] == "kill":
        os.kill(os.getpid(), signal.SIGKILL)  # the server dies inside the run's third model call
    return call("calculator", expression=f"{done}+1") if done < 3 else reply("3")

ScriptedModel([], default=step, name="restart")
serve("127.0.0.1", int(sys.argv[2]), ServeSettings(token=os.environ["THRIFTY_SERVE_TOKEN"], checkpoint=Path(sys.argv[1])))
"""


def _server(db: Path, mode: str) -> tuple[subprocess.Popen[bytes], str]:
    return server_process(DRIVER, [str(db), "{port}", mode], TOKEN, db.parent / f"server-{mode}.log")


def test_a_run_cut_off_by_a_server_restart_is_resumed_over_http(tmp_path: Path) -> None:
    db = tmp_path / "checkpoints.db"
    first, base = _server(db, "kill")
    try:
        task = {**_task("scripted/restart"), "name": "restart", "budget": {"tool_calls": 5}}
        run_id = httpx.post(base + "/runs", json=task, headers=AUTH, timeout=30).json()["run_id"]
        assert first.wait(120) == -9  # killed with SIGKILL in the middle of the run
    finally:
        first.kill()
    second, base = _server(db, "ok")
    try:
        with httpx.Client(base_url=base, headers=AUTH, timeout=30) as http:
            listed = {r["run_id"]: r for r in http.get("/runs").json()["runs"]}
            assert listed[run_id]["status"] == "interrupted" and listed[run_id]["spent"]["tool_calls"] == 2
            assert http.get(f"/runs/{run_id}").json()["status"] == "interrupted"
            res = http.get(f"/runs/{run_id}/events")
            assert res.status_code == 409 and "cut off by a server restart" in res.json()["error"]["message"]
            res = http.post(f"/runs/{run_id}/resume")
            assert res.status_code == 202, res.text
            data = _wait(http, run_id)
            result = data["result"]
            assert data["status"] == "finished" and result["answer"] == "3", data
            assert result["usage"]["tool_calls"] == 3  # the two made before the restart were not made again
            inflight = [e for e in result["events"] if e.get("detail") == INFLIGHT_DETAIL]
            assert [(e["kind"], e["ok"]) for e in inflight] == [("model", False)]  # the call it died in
            # 2 model calls paid before the restart, the one in flight at its worst case, then 2 more
            assert result["usage"]["model_requests"] == 5
            with sqlite3.connect(db) as conn:
                persisted = conn.execute(
                    "select count(*), sum(json_extract(event, '$.usd')) from thrifty_charges where run_id = ?",
                    (run_id,),
                ).fetchone()
            assert (
                persisted[0] == len(result["events"]) and abs(persisted[1] - result["usage"]["usd"]) < 1e-12
            )
            assert run_id not in [
                r["run_id"] for r in http.get("/runs").json()["runs"] if r["status"] != "finished"
            ]
    finally:
        second.terminate()
        second.wait(30)


def test_an_unknown_path_or_method_gets_a_json_error() -> None:
    client = _client(None)
    res = client.get("/nothing/here", headers=AUTH)
    assert res.status_code == 404 and res.json()["error"] == {
        "code": 2,
        "message": "GET /nothing/here: Not Found",
    }
    res = client.delete("/runs", headers=AUTH)
    assert res.status_code == 405 and "Method Not Allowed" in res.json()["error"]["message"]


def test_agent_serve_checkpoints_by_default_and_not_with_no_checkpoint(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import thrifty.serve

    seen: list[ServeSettings] = []
    monkeypatch.setattr(thrifty.serve, "serve", lambda host, port, settings, **kw: seen.append(settings))
    env = {"THRIFTY_SERVE_TOKEN": TOKEN}
    assert CliRunner().invoke(cli_app, ["serve"], env=env).exit_code == 0
    assert (
        CliRunner().invoke(cli_app, ["serve", "--checkpoint", str(tmp_path / "c.db")], env=env).exit_code == 0
    )
    assert CliRunner().invoke(cli_app, ["serve", "--no-checkpoint"], env=env).exit_code == 0
    assert [s.checkpoint for s in seen] == [Path(".thrifty/checkpoints.db"), tmp_path / "c.db", None]
    assert not (tmp_path / "c.db").exists()  # nothing is written before a run is


def test_a_restarted_server_keepscounting_the_days_server_budget(tmp_path: Path) -> None:
    db = tmp_path / "ck.db"
    model = ScriptedModel([], default=counting).model
    tools_price = {"pricing": {"tools": {"calculator": 0.25}}}
    with _client(db, server_budget=Budget(usd=1.0)) as first:
        run_id = first.post("/runs", json=_task(model, **tools_price), headers=AUTH).json()["run_id"]
        assert _wait(first, run_id)["status"] == "finished"
        assert first.get("/runs", headers=AUTH).json()["server"]["spent"]["usd"] == pytest.approx(0.75)
    # A new server on the same checkpoints (a restart): the day's cap still holds what was spent.
    with _client(db, server_budget=Budget(usd=1.0)) as second:
        assert second.get("/runs", headers=AUTH).json()["server"]["spent"]["usd"] == pytest.approx(0.75)
        again = second.post("/runs", json=_task(model, **tools_price), headers=AUTH).json()["run_id"]
        data = _wait(second, again)
        assert data["result"]["usage"]["tool_calls"] == 1  # $0.25 was left of the day's $1.00
        assert second.get("/runs", headers=AUTH).json()["server"]["spent"]["usd"] <= 1.0
    # Without checkpoints there is nothing to read back: the cap counts from the start.
    with _client(None, server_budget=Budget(usd=1.0)) as bare:
        assert bare.get("/runs", headers=AUTH).json()["server"]["spent"].get("usd", 0.0) == 0.0
