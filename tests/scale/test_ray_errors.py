"""What a Ray worker raises reaches the caller as the local executor gives it: its own message, no traceback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from thrifty.budget import Budget
from thrifty.scale.batch import load_batch, run_batch
from thrifty.workflows.runner import SetupError

from .test_batch import register_model, write_tasks


def test_a_setup_error_in_a_ray_worker_is_the_tasks_message_without_a_traceback(
    ray_cluster: Any, tmp_path: Path
) -> None:
    """The scripted model exists here but not in the worker (no worker_setup): the task cannot set up there.
    Before the fix the error was Ray's form of it, ``ray::_Host.run_many() (pid=..., ...)`` followed by the
    worker's traceback, and `agent batch` printed all of it as the error."""
    register_model()
    jobs = load_batch(write_tasks(tmp_path, count=2))
    out = tmp_path / "results.jsonl"
    with pytest.raises(SetupError) as caught:
        run_batch(jobs, out, executor="ray", workers=1, global_budget=Budget(tool_calls=10))
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / 'task0.yaml'}: ") or message.startswith("task"), message
    assert "no scripted model named 'batch-test'" in message
    assert "ray::" not in message and "Traceback" not in message and 'File "' not in message, message
    assert type(caught.value) is SetupError
    assert any("raised in a Ray worker" in note for note in getattr(caught.value, "__notes__", []))
