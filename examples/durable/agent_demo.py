"""The `agent` command line with one extra model, `scripted/demo`, for the durable-run and server demos
of the README (no model server, no key): it asks for steps 1 to 5 of the job, one at a time, then answers.

    python examples/durable/agent_demo.py run examples/durable/job.yaml
    python examples/durable/agent_demo.py resume RUN_ID
    THRIFTY_SERVE_TOKEN=... python examples/durable/agent_demo.py serve --port 8765

``DEMO_MODEL_SECONDS=1`` makes each model call take a second (time to kill the server mid-run).

Any `agent` command works; in real use the command is plain `agent` with a real model.
"""

from __future__ import annotations

import os
import re
import time
from typing import Any

from thrifty.cli import main
from thrifty.testing import ScriptedModel, call, reply

STEPS = 5


def next_move(request: Any) -> Any:
    """With the job's `step` tool: step n + 1 after n tool results, then the answer. With `calculator`
    (the server demo's "Count to N"): n + 1 computed after n results, then N."""
    time.sleep(float(os.environ.get("DEMO_MODEL_SECONDS") or 0))
    done = sum(1 for m in request.messages if m.get("role") == "tool")
    if "calculator" in request.tool_names and "step" not in request.tool_names:
        asked = re.search(r"Count to (\d+)", " ".join(str(m.get("content") or "") for m in request.messages))
        goal = int(asked.group(1)) if asked else 1
        return call("calculator", expression=f"{done}+1") if done < goal else reply(str(goal))
    return call("step", n=done + 1) if done < STEPS else reply(f"all {STEPS} steps done")


ScriptedModel([], name="demo", default=next_move)

if __name__ == "__main__":
    main()
