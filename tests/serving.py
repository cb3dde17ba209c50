"""What the `agent serve` tests share: a scripted model that counts to 3 with the calculator, and waiting for
a run over HTTP to end."""

from __future__ import annotations

import time
from typing import Any

from thrifty.testing import ScriptedReply, ScriptedRequest, call, reply


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
