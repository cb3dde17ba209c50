"""Resuming runs whose node is a whole attempt (bats' solve, self_consistency's samples): the node runs again
from its start, and every call it had made before the interruption is replayed from the record, free and as
it was (a tool result is not shown as a repeat of itself), with the budget checks deciding as they did then.
The resumed run answers as the uninterrupted one, with the same calls, and pays nothing twice."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from thrifty import Budget
from thrifty.agents.events import ObservationEvent, VoteEvent
from thrifty.agents.solver import REPEATED_CALL_NOTE
from thrifty.store.durable import INFLIGHT_DETAIL, RunJournal
from thrifty.testing import ScriptedModel, ScriptedReply, ScriptedRequest, call, reply
from thrifty.tools import tool
from thrifty.workflows.result import RunResult
from thrifty.workflows.runner import execute
from thrifty.workflows.spec import StrategySpec

ROOT = Path(__file__).resolve().parents[2]
QUESTION = "Carry out the three steps."


class _Crash(BaseException):
    """Stands for a kill -9 in the middle of a model call (nothing in the run catches it)."""


@tool(price=0.5)
def work(n: int) -> str:
    """Does step n."""
    if os.environ.get("THRIFTY_TEST_KILL_AT") == str(n):
        os.kill(os.getpid(), signal.SIGKILL)  # in the child process only: kill -9 in the middle of the call
    return f"worked {n}"


def _role(request: ScriptedRequest) -> str:
    fmt = request.params.get("response_format")
    return str(fmt["json_schema"]["name"]) if fmt else ("act" if request.tool_names else "answer")


def _results(request: ScriptedRequest) -> list[str]:
    return [str(m.get("content") or "") for m in request.messages if m.get("role") == "tool"]


def worker(request: ScriptedRequest) -> ScriptedReply:
    """A model that does the three steps and answers with what it saw; a result shown as a repeat of an
    earlier call (or no result at all) leaves it nothing to answer with."""
    role = _role(request)
    if role == "plan":
        return reply(json.dumps({"exploration": ["step 1", "step 2", "step 3"], "verification": []}))
    if role == "verdict":
        return reply(
            json.dumps(
                {
                    "verification": [],
                    "decision": "SUCCESS",
                    "justification": "ok",
                    "trajectory_summary": "done",
                }
            )
        )
    if role == "judge":
        return reply(json.dumps({"answer": "judged"}))
    seen = _results(request)
    if any(r.startswith(REPEATED_CALL_NOTE) for r in seen):
        return reply("unknown")
    if request.tool_names and len(seen) < 3:
        return call("work", n=len(seen) + 1)
    return reply(" + ".join(r.split("\n")[0] for r in seen) or "unknown")


def _model(crash: Any = None) -> str:
    """The worker as ``scripted/durable-attempts`` (the same name in every process: a model call's record
    is found by its model, its messages and its tools); ``crash(request)`` True: raise _Crash, once."""
    crashed: list[bool] = []

    def step(request: ScriptedRequest) -> ScriptedReply:
        if crash is not None and not crashed and crash(request):
            crashed.append(True)
            raise _Crash
        return worker(request)

    return ScriptedModel([], default=step, name="durable-attempts").model


def _run(db: Path | None, budget: Budget, strategy: StrategySpec, **kw: Any) -> RunResult:
    return execute(
        QUESTION, model=kw.pop("model", None) or _model(), tools=[work], budget=budget, strategy=strategy,
        checkpoint=db, **kw,
    )  # fmt: skip


def _paid(result: RunResult, kind: str) -> int:
    """Calls of ``kind`` that completed and were paid (a call in flight at the crash is not one)."""
    return sum(1 for e in result.events if e["kind"] == kind and e["ok"])


def _keys_once(db: Path) -> bool:
    with sqlite3.connect(db) as conn:
        keys = [k for (k,) in conn.execute("select call_key from thrifty_charges where call_key is not null")]
    return len(keys) == len(set(keys))


BATS = StrategySpec(name="bats")
KILLED = """
import sys
from thrifty import Budget
from thrifty.agents.events import ObservationEvent, VoteEvent
from tests.workflows.test_durable_bats import BATS, _run
_run(sys.argv[1], Budget(tool_calls=6, usd=10), BATS, run_id="b-1")
"""


def test_a_bats_run_killed_in_the_middle_of_an_attempt_resumes_with_its_recorded_results(
    tmp_path: Path,
) -> None:
    """kill -9 during the attempt's third tool call: on resume the attempt runs again from its start; its
    model calls and its first two tool calls are replayed from the record (the results as they were, not
    "You already made this exact call"), the call in flight is charged its worst case and made again, and
    the run answers as the run that was not interrupted."""
    reference = _run(None, Budget(tool_calls=6, usd=10), BATS)
    assert reference.answer == "worked 1 + worked 2 + worked 3" and reference.stop_reason == "completed"
    assert reference.usage.tool_calls == 3

    db = tmp_path / "ck.db"
    env = {
        **os.environ,
        "THRIFTY_TEST_KILL_AT": "3",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.run(
        [sys.executable, "-c", KILLED, str(db)], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == -9, proc.stderr[-2000:]

    resumed = _run(db, Budget(tool_calls=6, usd=10), BATS, run_id="b-1", resume=True)
    assert resumed.answer == reference.answer and resumed.stop_reason == "completed"
    assert _paid(resumed, "tool") == reference.usage.tool_calls  # each tool call paid once
    assert _paid(resumed, "model") == reference.usage.model_requests  # each model call paid once
    inflight = [(e["kind"], e["detail"]) for e in resumed.events if not e["ok"]]
    assert inflight == [("tool", INFLIGHT_DETAIL)]  # the third call, charged its worst case
    assert resumed.usage.tool_calls == reference.usage.tool_calls + 1
    assert _keys_once(db)
    observed = [t for t in resumed.trace if isinstance(t, ObservationEvent)]
    assert [(t.observation.split("\n")[0], t.cached) for t in observed] == [
        ("worked 1", False),
        ("worked 2", False),
        ("worked 3", False),
    ]


def test_a_bats_attempt_that_spent_the_tool_budget_resumes_with_its_evidence(tmp_path: Path) -> None:
    """The attempt spent its three tool calls and was killed in its forced final answer. The resumed Ledger
    holds all three from the start, and the attempt, run again, used to see no tool left at its first step:
    it answered at once, without the results it had paid for. Replaying, it decides as it did then."""
    budget = Budget(tool_calls=3, usd=10)
    reference = _run(None, budget, BATS)
    assert reference.answer == "worked 1 + worked 2 + worked 3"
    assert reference.stop_reason == "budget_exhausted:tool_calls"

    db = tmp_path / "ck.db"
    with pytest.raises(_Crash):
        _run(db, budget, BATS, run_id="b-2", model=_model(lambda r: _role(r) == "answer"))
    resumed = _run(db, budget, BATS, run_id="b-2", resume=True)
    assert resumed.answer == reference.answer and resumed.stop_reason == reference.stop_reason
    assert _paid(resumed, "tool") == resumed.usage.tool_calls == 3  # no tool call paid twice
    assert _paid(resumed, "model") == reference.usage.model_requests
    assert _keys_once(db)


SC = StrategySpec(name="self_consistency", options={"samples": 3})


def test_a_self_consistency_run_interrupted_in_a_sample_resumes_with_the_same_samples(tmp_path: Path) -> None:
    """Interrupted in sample 2's answer: on resume the samples run again, each on the slice it had (the
    run's budget as it was when they started, less what that sample had spent), their calls replayed. The
    slices used to be cut from what was left after the charges taken back (sample 3 could make two tool
    calls, not three), and the replayed results were shown as repeats: fewer calls and other answers."""
    budget = Budget(tool_calls=12, usd=20)
    reference = _run(None, budget, SC)
    assert reference.answer == "worked 1 + worked 2 + worked 3"
    assert reference.usage.tool_calls == 9 and reference.usage.model_requests == 12

    def second_answer() -> Any:
        answers: list[int] = []

        def crash(request: ScriptedRequest) -> bool:
            if len(_results(request)) == 3:
                answers.append(1)
            return len(answers) == 2

        return crash

    db = tmp_path / "ck.db"
    with pytest.raises(_Crash):
        _run(db, budget, SC, run_id="s-1", model=_model(second_answer()))
    resumed = _run(db, budget, SC, run_id="s-1", resume=True)
    assert resumed.answer == reference.answer
    vote = [t for t in resumed.trace if isinstance(t, VoteEvent)][-1]
    assert vote.answers == [reference.answer] * 3
    assert _paid(resumed, "tool") == resumed.usage.tool_calls == reference.usage.tool_calls
    assert _paid(resumed, "model") == reference.usage.model_requests


def test_a_call_key_covers_the_whole_request_but_not_the_budget_blocks() -> None:
    """The system prompt mentions "a <budget> block": the key's pattern ran from there to the first tool
    result's block, so the plan, the question and the first result were left out of every later call's key
    (two attempts' second calls had one key, and one's reply was replayed to the other)."""

    def request(question: str, result: str, left: int) -> dict[str, Any]:
        budget = f"<budget>work used: {9 - left}, work remaining: {left}, regime: HIGH</budget>"
        return {
            "messages": [
                {"role": "system", "content": "You see a <budget> block after every tool result."},
                {"role": "user", "content": question},
                {"role": "assistant", "content": None, "tool_calls": [{"id": "c1"}]},
                {"role": "tool", "content": f"{result}\n{budget}"},
            ],
            "tools": None,
            "node": "act",
        }

    key = RunJournal.key
    assert key("model", "m", request("Q1", "worked 1", 8)) == key("model", "m", request("Q1", "worked 1", 3))
    assert key("model", "m", request("Q1", "worked 1", 8)) != key("model", "m", request("Q2", "worked 1", 8))
    assert key("model", "m", request("Q1", "worked 1", 8)) != key("model", "m", request("Q1", "worked 2", 8))
