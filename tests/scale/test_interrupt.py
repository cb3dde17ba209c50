"""Ctrl-C during a grid or a batch run on several threads: nothing new starts, and the runs in flight stop
at their next call (the call already in flight ends; nothing is spent after it), before the interruption
reaches the caller."""

from __future__ import annotations

import _thread
import json
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.bench.conftest import RECORDS
from thrifty.bench.datasets import load_dataset
from thrifty.bench.runner import BenchConfig, load_results, make_pricing, parse_strategies, run_grid
from thrifty.models.scripted import ScriptedReply, ScriptedRequest
from thrifty.scale.batch import load_batch, load_lines, run_batch
from thrifty.testing import ScriptedModel, call, reply


class Gate:
    """A model whose calls block until the test opens the gate; ``interrupt_when(n)`` presses Ctrl-C (in the
    main thread, as a terminal would) once ``n`` calls are waiting, and opens the gate shortly after."""

    def __init__(self, tool: str, args: dict[str, Any], answer: str) -> None:
        self.open = threading.Event()
        self.waiting = threading.Semaphore(0)
        self.interrupted_at: int | None = None  # the number of calls made when Ctrl-C was pressed
        self.tool, self.args, self.answer = tool, args, answer
        self.script = ScriptedModel(default=self.step)

    def step(self, request: ScriptedRequest) -> ScriptedReply:
        self.waiting.release()
        assert self.open.wait(10)
        if any(m.get("role") == "tool" for m in request.messages):
            return reply(self.answer, prompt_tokens=30, completion_tokens=5)
        return call(self.tool, prompt_tokens=30, completion_tokens=5, **self.args)

    def interrupt_when(self, calls: int) -> threading.Thread:
        def press() -> None:
            for _ in range(calls):
                assert self.waiting.acquire(timeout=10)
            self.interrupted_at = len(self.script.requests)
            _thread.interrupt_main()
            time.sleep(0.5)
            self.open.set()

        thread = threading.Thread(target=press, daemon=True)
        thread.start()
        return thread


@pytest.fixture(autouse=True)
def _python_handles_ctrl_c() -> Any:
    """Ctrl-C as a terminal gives it: Python's own SIGINT handler raising KeyboardInterrupt in the main thread.
    ``_thread.interrupt_main`` does nothing when SIGINT is ignored, and an earlier test in the same process
    (Ray's, a server's) may have replaced the handler."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def _run_threads_alive() -> list[threading.Thread]:
    """The executor's run threads still alive, given a moment to exit: a worker whose run has ended may still
    be returning from its last work item (its run is over; the thread is on its way out)."""
    for _ in range(40):
        alive = [t for t in threading.enumerate() if t.name.startswith("run_") and t.is_alive()]
        if not alive:
            return []
        time.sleep(0.05)
    return alive


def test_ctrl_c_stops_a_grid_s_runs_in_flight(tmp_path: Path) -> None:
    hotpot_file = tmp_path / "mini.jsonl"
    hotpot_file.write_text("\n".join(json.dumps(r) for r in RECORDS) + "\n", encoding="utf-8")
    gate = Gate("search", {"query": "Mara Quell"}, "Lyonsford")
    model = gate.script.model
    config = BenchConfig(
        dataset=load_dataset(hotpot_file),
        strategies=parse_strategies("react"),
        budgets=[3],
        model=model,
        pricing=make_pricing(model),
        concurrency=2,
    )
    path = tmp_path / "results.jsonl"
    presser = gate.interrupt_when(2)  # two runs in flight, each waiting for its first model call
    with pytest.raises(KeyboardInterrupt):
        run_grid(config, path, progress=False)
    assert gate.open.is_set()  # returned only after its runs in flight could end (they wait on the gate)
    presser.join(10)
    assert not _run_threads_alive()  # the grid waited for its runs in flight to stop
    # Only the two calls in flight when Ctrl-C was pressed: no search, no second call, no third run.
    assert gate.interrupted_at == 2 and len(gate.script.requests) == 2
    assert load_results(path) == []  # cancelled runs are not results: a rerun runs them
    gate.open.set()
    assert len(run_grid(config, path, progress=False)) == 3


MODEL = "scripted/batch-interrupt"


def test_ctrl_c_stops_a_batch_s_runs_in_flight(tmp_path: Path) -> None:
    gate = Gate("calculator", {"expression": "2+2"}, "4")
    gate.script = ScriptedModel(name="batch-interrupt", default=gate.step)
    paths = []
    for n in range(3):
        path = tmp_path / f"task{n}.yaml"
        path.write_text(
            f"name: sum-{n}\nquestion: What is 2+2 (case {n})?\nmodel: {MODEL}\n"
            "tools: [calculator]\nbudget: {tool_calls: 2}\n"
        )
        paths.append(path)
    jobs = load_batch(paths)
    out = tmp_path / "results.jsonl"
    presser = gate.interrupt_when(2)
    with pytest.raises(KeyboardInterrupt):
        run_batch(jobs, out, concurrency=2, store=False)
    assert gate.open.is_set()  # returned only after its runs in flight could end (they wait on the gate)
    presser.join(10)
    assert not _run_threads_alive()
    assert gate.interrupted_at == 2 and len(gate.script.requests) == 2
    assert load_lines(out) == []
    assert run_batch(jobs, out, concurrency=2, store=False).ran == 3
