"""`agent serve` with clients that misbehave: watchers that disconnect or read slowly, 50 requests at once, a
chunked body with no end, and a server shut down (SIGTERM) with runs in flight."""

from __future__ import annotations

import concurrent.futures
import gc
import json
import signal
import socket
import sqlite3
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from tests.serving import counting, served, server_process, wait_run
from thrifty.cli import app as cli_app
from thrifty.serve import Server, ServeSettings, create_app
from thrifty.store.durable import INFLIGHT_DETAIL
from thrifty.testing import ScriptedModel, ScriptedReply, ScriptedRequest

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "cl1ents-t0ken-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _task(model: str, **extra: Any) -> dict[str, Any]:
    return {"question": "count to 3", "model": model, "tools": ["calculator"], **extra}


def _gated(gate: threading.Event, entered: threading.Event | None = None) -> str:
    """A model counting to 3 whose second and later calls wait for ``gate`` (``entered`` set on the second)."""

    def step(request: ScriptedRequest) -> ScriptedReply:
        if any(m.get("role") == "tool" for m in request.messages):
            if entered is not None:
                entered.set()
            assert gate.wait(30)
        return counting(request)

    return ScriptedModel([], default=step).model


def _feeds() -> int:
    """Live ``_feed`` generators (one per event stream being served)."""
    gc.collect()
    return sum(
        1
        for o in gc.get_objects()
        if type(o).__name__ == "async_generator" and o.__name__ == "_feed" and o.ag_frame is not None
    )


def _events(lines: Any) -> list[dict[str, Any]]:
    return [json.loads(line[6:]) for line in lines if line.startswith("data: ")]


def test_a_watcher_that_disconnects_stops_nothing_and_is_let_go() -> None:
    gate = threading.Event()
    app = create_app(ServeSettings(token=TOKEN))
    with served(app) as (base, _), httpx.Client(base_url=base, headers=AUTH, timeout=30) as http:
        run_id = http.post("/runs", json=_task(_gated(gate))).json()["run_id"]
        for _ in range(5):  # watchers that read the first event, then go away mid-run
            with http.stream("GET", f"/runs/{run_id}/events") as stream:
                lines = stream.iter_lines()
                assert _events(next(lines) for _ in range(3))[0]["kind"] == "start"
        for _ in range(100):
            if _feeds() == 0:
                break
            time.sleep(0.05)
        assert _feeds() == 0  # the server let go of each stream
        assert http.get(f"/runs/{run_id}").json()["status"] == "running"  # the run is the server's
        gate.set()
        data = wait_run(http, run_id, AUTH)
        assert data["status"] == "finished" and data["result"]["answer"] == "3"


def test_a_slow_reader_does_not_hold_the_run_back() -> None:
    app = create_app(ServeSettings(token=TOKEN))
    model = ScriptedModel([], default=counting).model
    with served(app) as (base, _), httpx.Client(base_url=base, headers=AUTH, timeout=30) as http:
        run_id = http.post("/runs", json=_task(model)).json()["run_id"]
        with http.stream("GET", f"/runs/{run_id}/events") as stream:
            lines = stream.iter_lines()
            first = _events(next(lines) for _ in range(3))
            # the reader stalls: the run ends all the same, then the reader gets every event, in order
            assert wait_run(http, run_id, AUTH)["status"] == "finished"
            events = first + _events(lines)
    assert [e["index"] for e in events] == list(range(len(events)))
    assert events[-1]["kind"] == "result" and events[-1]["result"]["answer"] == "3"


def test_fifty_requests_at_once_keep_to_max_concurrent_and_release_everything() -> None:
    gate = threading.Event()
    model = _gated(gate)
    app = create_app(ServeSettings(token=TOKEN, max_concurrent=8))
    server: Server = app.state.server
    with served(app) as (base, _), httpx.Client(base_url=base, headers=AUTH, timeout=60) as http:
        with concurrent.futures.ThreadPoolExecutor(50) as pool:
            answers = list(pool.map(lambda _: http.post("/runs", json=_task(model)), range(50)))
        accepted = [r.json()["run_id"] for r in answers if r.status_code == 202]
        refused = [r.json()["error"] for r in answers if r.status_code == 429]
        assert len(accepted) == 8 and len(set(accepted)) == 8 and len(refused) == 42
        assert refused[0] == {"code": 4, "message": "8 runs are going already; try again later"}
        gate.set()
        for run_id in accepted:
            data = wait_run(http, run_id, AUTH)
            assert data["status"] == "finished" and data["result"]["usage"]["tool_calls"] == 3
        listed = http.get("/runs").json()
        assert len(listed["runs"]) == 8 and listed["server"]["spent"]["tool_calls"] == 24
        assert all(abs(v) < 1e-9 for v in server.root().reserved.values())  # no reservation left held
        assert http.post("/runs", json=_task(model)).status_code == 202  # room again
    for _ in range(100):
        if not [t for t in threading.enumerate() if t.name.startswith(("serve-", "thrifty-run-"))]:
            break
        time.sleep(0.05)
    assert not [t.name for t in threading.enumerate() if t.name.startswith(("serve-", "thrifty-run-"))]


def test_a_chunked_body_is_refused_past_the_limit_without_reading_it_all() -> None:
    app = create_app(ServeSettings(token=TOKEN, max_body=1000))
    with served(app) as (base, _):
        port = int(base.rsplit(":", 1)[1])
        for path in ("/runs", "/runs/abc/resume"):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                head = (
                    f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
                    "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                )
                sock.sendall(head.encode())
                chunk = b"x" * 500
                for _ in range(3):  # 1500 bytes, and the body never ends (no last chunk)
                    sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                answer = ""
                while "request body over" not in answer:
                    got = sock.recv(65536).decode()
                    if not got:
                        break
                    answer += got
            assert answer.startswith("HTTP/1.1 413"), answer
            assert '"message":"request body over 1000 bytes"' in answer


def test_a_plain_run_is_cancelled_at_its_next_call_when_the_server_shuts_down() -> None:
    gate, entered = threading.Event(), threading.Event()
    app = create_app(ServeSettings(token=TOKEN))
    server: Server = app.state.server
    with served(app) as (base, uvicorn_server):
        run_id = httpx.post(base + "/runs", json=_task(_gated(gate, entered)), headers=AUTH).json()["run_id"]
        assert entered.wait(30)  # the run's second model call is under way
        uvicorn_server.should_exit = True  # what SIGTERM and Ctrl-C do
        time.sleep(0.5)
        gate.set()  # the call under way ends (and is charged); the run makes no other
    run = server.runs[run_id]
    assert run.done.wait(10)
    assert run.status == "cancelled" and run.result is not None and run.result.stop_reason == "cancelled"
    assert run.result.usage.model_requests == 2 and run.result.usage.tool_calls == 1
    assert server.root().used()["model_requests"] == 2  # its charges reached the server's budget
    assert all(abs(v) < 1e-9 for v in server.root().reserved.values())


def test_a_server_shutting_down_takes_no_new_run() -> None:
    model = ScriptedModel([], default=counting).model
    client = TestClient(create_app(ServeSettings(token=TOKEN)))
    with client:
        run_id = client.post("/runs", json=_task(model), headers=AUTH).json()["run_id"]
        assert wait_run(client, run_id, AUTH)["status"] == "finished"
    res = client.post("/runs", json=_task(model), headers=AUTH)  # the app has been shut down
    assert res.status_code == 503 and res.json()["error"] == {
        "code": 1,
        "message": "the server is shutting down; fix: try again once it is back",
    }
    assert res.headers["retry-after"] == "30"  # the shutdown's grace


DRIVER = """
import os, sys, time
from pathlib import Path
from thrifty.serve import ServeSettings, serve
from thrifty.testing import ScriptedModel, call, reply

def step(request):
    done = sum(1 for m in request.messages if m.get("role") == "tool")
    if done == 1 and sys.argv[3] == "slow":
        Path(sys.argv[4]).touch()  # the second model call is under way: time for a SIGTERM
        time.sleep(2)
    return call("calculator", expression=f"{done}+1") if done < 3 else reply("3")

ScriptedModel([], default=step, name="sigterm")
serve("127.0.0.1", int(sys.argv[2]), ServeSettings(token=os.environ["THRIFTY_SERVE_TOKEN"], checkpoint=Path(sys.argv[1])))
"""


def _server(db: Path, mode: str) -> tuple[subprocess.Popen[bytes], str, Path]:
    log = db.parent / f"server-{mode}.log"
    marker = db.parent / "in-call"
    proc, base = server_process(DRIVER, [str(db), "{port}", mode, str(marker)], TOKEN, log)
    return proc, base, log


def test_sigterm_leaves_a_checkpointed_run_resumable_with_nothing_in_flight(tmp_path: Path) -> None:
    db = tmp_path / "checkpoints.db"
    first, base, log = _server(db, "slow")
    try:
        task = {**_task("scripted/sigterm"), "budget": {"tool_calls": 5}}
        run_id = httpx.post(base + "/runs", json=task, headers=AUTH, timeout=30).json()["run_id"]
        for _ in range(300):
            if (tmp_path / "in-call").exists():
                break
            time.sleep(0.05)
        first.send_signal(signal.SIGTERM)  # in the run's second model call
        first.wait(60)
    finally:
        first.kill()
    with sqlite3.connect(db) as conn:
        status = conn.execute("select status from thrifty_runs where run_id = ?", (run_id,)).fetchone()
        inflight = conn.execute("select count(*) from thrifty_inflight").fetchone()
        kinds = conn.execute(
            "select json_extract(event, '$.kind') from thrifty_charges where run_id = ?", (run_id,)
        ).fetchall()
    # the call under way ended and was charged; the run stopped before the next one, nothing in flight
    assert status == ("running",) and inflight == (0,)
    assert sorted(k for (k,) in kinds) == ["model", "model", "tool"]
    assert "shutting down: stopping 1 running runs at their next call" in log.read_text()

    second, base, _ = _server(db, "ok")
    try:
        with httpx.Client(base_url=base, headers=AUTH, timeout=30) as http:
            assert http.get(f"/runs/{run_id}").json()["status"] == "interrupted"
            assert http.post(f"/runs/{run_id}/resume").status_code == 202
            data = wait_run(http, run_id, AUTH)
        result = data["result"]
        assert data["status"] == "finished" and result["answer"] == "3", data
        # nothing paid twice, nothing charged at its worst case
        assert result["usage"]["tool_calls"] == 3 and result["usage"]["model_requests"] == 4
        assert not [e for e in result["events"] if e.get("detail") == INFLIGHT_DETAIL]
    finally:
        second.terminate()
        second.wait(30)


@pytest.mark.parametrize(
    ("option", "field", "bad"),
    [("--shutdown-grace", "shutdown_grace", "-1"), ("--event-send-timeout", "event_send_timeout", "0")],
)
def test_agent_serve_takes_its_timing_options(
    monkeypatch: pytest.MonkeyPatch, option: str, field: str, bad: str
) -> None:
    import thrifty.serve

    seen: list[Any] = []
    monkeypatch.setattr(thrifty.serve, "serve", lambda host, port, settings, **kw: seen.append(settings))
    env = {"THRIFTY_SERVE_TOKEN": TOKEN}
    assert CliRunner().invoke(cli_app, ["serve", "--no-checkpoint"], env=env).exit_code == 0
    assert CliRunner().invoke(cli_app, ["serve", option, "5"], env=env).exit_code == 0
    assert [getattr(s, field) for s in seen] == [30.0, 5.0]
    res = CliRunner().invoke(cli_app, ["serve", option, bad], env=env)
    assert res.exit_code == 2 and option in res.output


def test_a_slow_submission_does_not_hold_up_the_other_requests() -> None:
    # POST /runs checked its task (models, tools, the checkpoint) on the event loop: the first request took
    # seconds here, and every other request of the server waited for it.
    app = create_app(ServeSettings(token=TOKEN))
    server: Server = app.state.server
    entered, release = threading.Event(), threading.Event()
    submit = server.submit

    def slow_submit(data: Any) -> Any:
        entered.set()
        release.wait(30)
        return submit(data)

    server.submit = slow_submit  # type: ignore[method-assign]
    model = ScriptedModel([], default=counting).model
    with (
        served(app) as (base, _),
        httpx.Client(base_url=base, headers=AUTH, timeout=60) as http,
        concurrent.futures.ThreadPoolExecutor(1) as pool,
    ):
        posted = pool.submit(http.post, "/runs", json=_task(model))
        try:
            assert entered.wait(30)
            listed = http.get("/runs", timeout=5)  # answered while the submission is still being checked
            assert listed.status_code == 200 and not posted.done()
        finally:
            release.set()
        assert posted.result().status_code == 202
