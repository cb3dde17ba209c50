"""`agent serve` with a watcher that connects to a run's event stream and then never reads: the server gives
up on it after its send timeout (``--event-send-timeout``), and the run and the other watchers go on."""

from __future__ import annotations

import gc
import json
import socket
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from tests.serving import served, wait_run
from thrifty.serve import ServeSettings, create_app
from thrifty.testing import ScriptedModel, ScriptedReply, ScriptedRequest, reply

TOKEN = "st4lled-t0ken-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _send_buffer_max() -> int:
    """The most a TCP socket here may buffer for sending (Linux; 4 MiB elsewhere)."""
    try:
        return int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2])
    except (OSError, ValueError, IndexError):
        return 4 << 20


#: The answer of the run: it is in several of its events, which come to at least 5 times its size, more than
#: the socket buffers between the server and a client that does not read can hold.
ANSWER = "x" * max(2_000_000, _send_buffer_max() // 2)


def _feeds() -> int:
    """Live ``_feed`` generators (one per event stream being served)."""
    gc.collect()
    return sum(
        1
        for o in gc.get_objects()
        if type(o).__name__ == "async_generator" and o.__name__ == "_feed" and o.ag_frame is not None
    )


def _until(check: Any, seconds: float = 30.0) -> bool:
    """Whether ``check()`` came true within ``seconds`` (polled)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


def _stalled(port: int, run_id: str) -> socket.socket:
    """A client that asks for the run's events with a small receive buffer and never reads them."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: the window stays small
    sock.connect(("127.0.0.1", port))
    sock.sendall(
        f"GET /runs/{run_id}/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n"
        "Accept: text/event-stream\r\n\r\n".encode()
    )
    return sock


def _rest(sock: socket.socket) -> bytes | None:
    """What the server had sent, read until it closes the connection (None: still open after 30 seconds)."""
    sock.settimeout(30)
    received = bytearray()
    try:
        while chunk := sock.recv(1 << 20):
            received += chunk
    except ConnectionResetError:
        pass
    except TimeoutError:
        return None
    return bytes(received)


def test_a_watcher_that_stops_reading_is_let_go_and_the_run_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    gate = threading.Event()

    def step(request: ScriptedRequest) -> ScriptedReply:
        assert gate.wait(30)  # the answer comes once the stalled watcher is connected
        return reply(ANSWER)

    model = ScriptedModel([], default=step).model
    app = create_app(ServeSettings(token=TOKEN, event_send_timeout=0.5))
    with served(app) as (base, uvicorn_server), httpx.Client(base_url=base, headers=AUTH, timeout=60) as http:
        run_id = http.post("/runs", json={"question": "q", "model": model}).json()["run_id"]
        before = _feeds()  # (none but what other tests left)
        stalled = _stalled(int(base.rsplit(":", 1)[1]), run_id)
        try:
            assert _until(lambda: _feeds() == before + 1)  # its stream is being served
            gate.set()
            with http.stream("GET", f"/runs/{run_id}/events") as stream:  # a watcher that reads
                events = [json.loads(line[6:]) for line in stream.iter_lines() if line.startswith("data: ")]
            assert [e["index"] for e in events] == list(range(len(events)))
            assert events[-1]["kind"] == "result" and events[-1]["result"]["answer"] == ANSWER
            # the stalled watcher, still connected and reading nothing, is let go: its stream's generator
            # is closed and the server's task for its request ends (no request is in flight any more)
            assert _until(lambda: _feeds() == before)
            assert _until(lambda: not uvicorn_server.server_state.tasks)
            # the server closed the connection mid-stream (the buffers had filled: no end of the chunked body)
            rest = _rest(stalled)
            assert rest is not None and rest.startswith(b"HTTP/1.1 200") and not rest.endswith(b"0\r\n\r\n")
        finally:
            stalled.close()
        data = wait_run(http, run_id, AUTH)  # the run is the server's: untouched
        assert data["status"] == "finished" and data["result"]["answer"] == ANSWER
    assert (
        f"GET /runs/{run_id}/events: the client has stopped reading (a write waited 0.5s); its event stream "
        "is closed (the run goes on)" in caplog.messages
    )


def test_no_send_timeout_at_all_is_refused() -> None:
    with pytest.raises(ValidationError, match="event_send_timeout"):  # 0 would fail every write at once
        ServeSettings(event_send_timeout=0)
