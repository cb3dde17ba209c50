"""The tool of the durable-run demos: one step of a job, which takes a second and costs $0.01."""

from __future__ import annotations

import time

from thrifty import tool


@tool(price=0.01)
def step(n: int) -> str:
    """Carry out step n of the job.

    Args:
        n: Which step (1-5).
    """
    time.sleep(1.0)
    return f"step {n} done"
