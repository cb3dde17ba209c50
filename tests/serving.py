"""What the `agent serve` tests share: a scripted model that counts to 3 with the calculator, and waiting for
a run over HTTP to end."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from thrifty.testing import ScriptedReply, ScriptedRequest, call, reply
from thrifty.testing.serving import served

__all__ = ["counting", "served", "server_process", "wait_run"]


def counting(request: ScriptedRequest) -> ScriptedReply:
    """Counts to 3: one calculator call per tool result seen so far, then the answer "3"."""
    done = sum(1 for m in request.messages if m.get("role") == "tool")
    return call("calculator", expression=f"{done}+1") if done < 3 else reply("3")


def wait_run(client: Any, run_id: str, auth: dict[str, str], seconds: float = 60.0) -> dict[str, Any]:
    """``GET /runs/{run_id}`` until the run is no longer running (AssertionError after ``seconds``)."""
    for _ in range(int(seconds / 0.05)):
        data = client.get(f"/runs/{run_id}", headers=auth).json()
        if data["status"] != "running":
            return data
        time.sleep(0.05)
    raise AssertionError("the run did not end")


ROOT = Path(__file__).resolve().parents[1]


def server_process(
    driver: str, args: list[str], token: str, log: Path
) -> tuple[subprocess.Popen[bytes], str]:
    """``python -c driver PORT_ARGS...`` serving on a free port of 127.0.0.1 with ``token``, its output in
    ``log`` (a file, not a pipe: a full pipe would block the server); ``{port}`` in ``args`` is the port. The
    process and its base URL, once it answers (AssertionError if it never does)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {
        **os.environ,
        "THRIFTY_SERVE_TOKEN": token,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    argv = [a.replace("{port}", str(port)) for a in args]
    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-c", driver, *argv], env=env, stdout=out, stderr=out)
    base = f"http://127.0.0.1:{port}"
    for _ in range(1200):
        try:
            if httpx.get(base + "/", timeout=2).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"the server did not start: {log.read_text()[-2000:]}")
