"""`agent serve` (issue 16): runs over HTTP inside a per-request cap and a server-wide budget, with a token."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from tests.serving import counting, served, wait_run
from thrifty.budget import Budget
from thrifty.cli import app as cli_app
from thrifty.serve import ServeError, ServeSettings, check_start, create_app
from thrifty.testing import ScriptedModel, ScriptedReply, ScriptedRequest, call, reply

TOKEN = "s3rve-t0ken-abcdef123456"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _task(model: str, **extra: Any) -> dict[str, Any]:
    return {"question": "count to 3", "model": model, "tools": ["calculator"], **extra}


def _client(**settings: Any) -> TestClient:
    return TestClient(create_app(ServeSettings(token=TOKEN, **settings)))


def _wait(client: TestClient, run_id: str) -> dict[str, Any]:
    return wait_run(client, run_id, AUTH)


def test_submit_read_and_stream_a_run() -> None:
    script = ScriptedModel([], default=counting)
    client = _client()
    res = client.post("/runs", json=_task(script.model, budget={"tool_calls": 5}), headers=AUTH)
    assert res.status_code == 202, res.text
    run_id = res.json()["run_id"]
    assert res.json()["budget"]["tool_calls"] == 5 and res.json()["budget"]["usd"] == 1.0  # the cap's usd
    data = _wait(client, run_id)
    assert data["status"] == "finished" and data["result"]["answer"] == "3"
    assert data["result"]["usage"]["tool_calls"] == 3
    with client.stream("GET", f"/runs/{run_id}/events", headers=AUTH) as stream:
        kinds = [json.loads(line[6:])["kind"] for line in stream.iter_lines() if line.startswith("data: ")]
    assert kinds[0] == "start" and kinds[-1] == "result" and kinds.count("charge") == 7
    listed = client.get("/runs", headers=AUTH).json()
    assert [r["run_id"] for r in listed["runs"]] == [run_id]
    assert listed["server"]["limits"] == {"usd": 20.0}


def test_a_key_in_a_submitted_question_is_in_no_response() -> None:
    """The run's summary showed the question as submitted while the run went on (the run store and the
    result already had it masked)."""
    pasted = "sk-proj-Zq81bcdEFGH2345ijklMNOP"
    script = ScriptedModel([], default=counting)
    client = _client()
    task = {**_task(script.model), "question": f"count to 3 (my key {pasted})"}
    res = client.post("/runs", json=task, headers=AUTH)
    assert res.status_code == 202, res.text
    run_id = res.json()["run_id"]
    while_running = client.get(f"/runs/{run_id}", headers=AUTH).text
    data = _wait(client, run_id)
    assert data["question"] == "count to 3 (my key sk-proj-***)"
    texts = [res.text, while_running, json.dumps(data), client.get("/runs", headers=AUTH).text]
    texts += [json.dumps(event) for _, event in _sse(client, run_id)]
    assert all(pasted not in text for text in texts)
    assert all(pasted not in str(request.messages) for request in script.requests)


def _sse(client: TestClient, run_id: str, **headers: str) -> list[tuple[str, dict[str, Any]]]:
    """The (id, data) of each event of the run's stream."""
    out: list[tuple[str, dict[str, Any]]] = []
    event_id = ""
    with client.stream("GET", f"/runs/{run_id}/events", headers={**AUTH, **headers}) as stream:
        assert stream.status_code == 200
        for line in stream.iter_lines():
            if line.startswith("id: "):
                event_id = line[4:]
            elif line.startswith("data: "):
                out.append((event_id, json.loads(line[6:])))
    return out


def test_a_reconnecting_client_reads_on_after_its_last_event_id() -> None:
    script = ScriptedModel([], default=counting)
    client = _client()
    run_id = client.post("/runs", json=_task(script.model), headers=AUTH).json()["run_id"]
    _wait(client, run_id)
    every = _sse(client, run_id)
    epoch = every[0][0].split(".")[0]
    assert [i for i, _ in every] == [f"{epoch}.{n}" for n in range(len(every))]  # the server, the index
    # a client that read up to the event with id EPOCH.4 and reconnects gets the rest, none twice
    assert _sse(client, run_id, **{"Last-Event-ID": f"{epoch}.4"}) == every[5:]
    assert _sse(client, run_id, **{"Last-Event-ID": "4"}) == every[5:]  # a bare index too
    assert _sse(client, run_id, **{"Last-Event-ID": " "}) == every  # an empty id: from the start
    assert _sse(client, run_id, **{"Last-Event-ID": every[-1][0]}) == []  # read it all already
    # an id from another server (one that ran the run before a restart): none of these events were read
    assert _sse(client, run_id, **{"Last-Event-ID": "0a1b2c3d.4"}) == every
    for bad in ("abc", "-2", "1.5x", "a-b.3"):
        res = client.get(f"/runs/{run_id}/events", headers={**AUTH, "Last-Event-ID": bad})
        assert res.status_code == 400, res.text
        message = res.json()["error"]["message"]
        assert f"Last-Event-ID '{bad}' is not an event of run '{run_id}'" in message and "fix:" in message
    res = client.get("/runs/nope/events", headers={**AUTH, "Last-Event-ID": "abc"})
    assert res.status_code == 404 and "no run 'nope'" in res.text  # an unknown run says so first


def test_a_token_is_required_and_never_echoed() -> None:
    client = _client()
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        res = client.get("/runs", headers=headers)
        assert res.status_code == 401 and res.json()["error"]["code"] == 2
        assert TOKEN not in res.text


def test_bad_requests_get_the_cli_messages_as_json() -> None:
    script = ScriptedModel([reply("x")])
    client = _client(max_body=2000)
    cases = [
        ({"model": script.model}, 400, "question"),
        (_task(script.model, budget={"usd": 50}), 400, "over this server's per-request cap of 1"),
        (_task(script.model, tools=["mymod:tool"]), 400, "cannot be used on a server"),
        (_task(script.model, strategy="nosuch"), 400, "unknown strategy 'nosuch'"),
        # a model the run would refuse is refused here, not accepted as a run that then fails
        (_task("scripted/nobody-made-this"), 400, "no scripted model named 'nobody-made-this'"),
        (_task("nosuch/x"), 400, "unknown provider 'nosuch'"),
        ([1, 2], 400, "JSON object"),
        (_task(script.model, question="x" * 5000), 413, "request body over 2000 bytes"),
    ]
    for body, status, message in cases:
        res = client.post("/runs", json=body, headers=AUTH)
        assert res.status_code == status, (body, res.text)
        assert res.json()["error"]["code"] == 2 and message in res.json()["error"]["message"], res.text
    res = client.post("/runs", content=b"{not json", headers=AUTH)
    assert res.status_code == 400 and "not JSON" in res.json()["error"]["message"]
    res = client.get("/runs/nope", headers=AUTH)
    assert res.status_code == 404 and "no run 'nope'" in res.json()["error"]["message"]


def test_the_server_budget_is_shared_and_never_passed() -> None:
    script = ScriptedModel([], default=counting)
    # the calculator is free: dollars come from a priced model here
    client = _client(server_budget=Budget(tool_calls=7), request_cap=Budget(tool_calls=5))
    ids = [client.post("/runs", json=_task(script.model), headers=AUTH).json()["run_id"] for _ in range(2)]
    results = [_wait(client, i) for i in ids]
    spent = client.get("/runs", headers=AUTH).json()["server"]["spent"]
    assert spent["tool_calls"] == 6 and all(r["result"]["usage"]["tool_calls"] == 3 for r in results)
    third = client.post("/runs", json=_task(script.model), headers=AUTH).json()["run_id"]
    result = _wait(client, third)["result"]
    assert result["usage"]["tool_calls"] == 1 and result["stop_reason"].startswith("budget_exhausted")
    assert client.get("/runs", headers=AUTH).json()["server"]["spent"]["tool_calls"] == 7
    res = client.post("/runs", json=_task(script.model), headers=AUTH)
    assert res.status_code == 429 and "budget is spent" in res.json()["error"]["message"]
    # when to come back: the next UTC day, when the daily budget starts again (no header before)
    assert 0 < int(res.headers["retry-after"]) <= 86_400


def test_concurrent_runs_are_limited_and_a_run_can_be_cancelled() -> None:
    gate = threading.Event()

    def slow(request: ScriptedRequest) -> ScriptedReply:
        gate.wait(30)
        return call("calculator", expression="1+1")

    script = ScriptedModel([], default=slow)
    client = _client(max_concurrent=1)
    first = client.post("/runs", json=_task(script.model), headers=AUTH).json()["run_id"]
    res = client.post("/runs", json=_task(script.model), headers=AUTH)
    assert res.status_code == 429 and res.json()["error"]["code"] == 4
    assert res.headers["retry-after"] == "5"  # busy: try again in a few seconds
    assert client.post(f"/runs/{first}/cancel", headers=AUTH).json()["status"] == "cancelling"
    gate.set()
    data = _wait(client, first)
    assert data["status"] == "cancelled" and data["result"]["stop_reason"] == "cancelled"
    res = client.post(f"/runs/{first}/cancel", headers=AUTH)
    assert res.status_code == 409 and "has ended" in res.json()["error"]["message"]


def test_the_token_is_not_echoed_from_a_request_body() -> None:
    res = _client().post(
        "/runs", json={"question": "q", "model": "local/smollm2", "tools": [TOKEN]}, headers=AUTH
    )
    assert res.status_code == 400 and "unknown tool '***'" in res.text and TOKEN not in res.text


def test_the_server_refuses_to_start_without_a_token() -> None:
    with pytest.raises(ServeError, match="THRIFTY_SERVE_TOKEN"):
        check_start("0.0.0.0", None, allow_no_token=False)
    with pytest.raises(ServeError, match="only allowed on a loopback"):
        check_start("0.0.0.0", None, allow_no_token=True)
    check_start("127.0.0.1", None, allow_no_token=True)
    check_start("0.0.0.0", TOKEN, allow_no_token=False)
    res = CliRunner().invoke(cli_app, ["serve", "--host", "0.0.0.0"], env={"THRIFTY_SERVE_TOKEN": ""})
    assert res.exit_code == 2 and "THRIFTY_SERVE_TOKEN" in res.stderr


@pytest.mark.parametrize(
    ("args", "token", "message"),
    [
        (["--host", "0.0.0.0"], "   ", "THRIFTY_SERVE_TOKEN is blank"),
        (
            ["--host", "0.0.0.0"],
            "x",
            "THRIFTY_SERVE_TOKEN is 1 characters; a server on 0.0.0.0 needs at least 16",
        ),
        (["--port", "99999"], TOKEN, "--port"),
        (["--max-concurrent", "0"], TOKEN, "--max-concurrent"),
        (["--request-usd", "nan"], TOKEN, "--request-usd nan: Input should be a finite number"),
        (["--daily-usd", "-1"], TOKEN, "--daily-usd -1.0: Input should be greater than 0"),
    ],
)
def test_agent_serve_refuses_bad_options_before_it_starts(args: list[str], token: str, message: str) -> None:
    """A blank token (no request could send it), a one-character one on a public address, a port out of
    range (was a traceback), no concurrent runs (every request a 429) and a cap that names no option."""
    res = CliRunner().invoke(cli_app, ["serve", *args], env={"THRIFTY_SERVE_TOKEN": token})
    assert res.exit_code == 2, res.output
    assert message in " ".join(res.output.split()), res.output


@pytest.fixture
def live_server() -> Iterator[str]:
    with served(create_app(ServeSettings(token=TOKEN))) as (base, _):
        yield base


def test_a_real_server_on_loopback(live_server: str) -> None:
    script = ScriptedModel([], default=counting)
    with httpx.Client(base_url=live_server, headers=AUTH, timeout=30) as http:
        run_id = http.post("/runs", json=_task(script.model)).json()["run_id"]
        events = []
        with http.stream("GET", f"/runs/{run_id}/events") as stream:
            for line in stream.iter_lines():
                if line.startswith("data: "):
                    events.append(json.loads(line[6:]))
        assert events[0]["kind"] == "start" and events[-1]["kind"] == "result"
        assert events[-1]["result"]["answer"] == "3"
        assert http.get("/runs", headers={"Authorization": "Bearer no"}).status_code == 401
