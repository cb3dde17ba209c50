"""Resuming runs whose node is a whole attempt (bats' solve, self_consistency's samples): the node runs again
from its start, and every call it had made before the interruption is replayed from the record, free and as
it was (a tool result is not shown as a repeat of itself), with the budget checks deciding as they did then.
The resumed run answers as the uninterrupted one, with the same calls, and pays nothing twice."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from thrifty import Budget
from thrifty.agents.events import ExpandEvent, ObservationEvent, TreeEvent, VoteEvent
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
from thrifty.agents.events import ExpandEvent, ObservationEvent, TreeEvent, VoteEvent
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


@tool(price=0.5)
def hop(n: int) -> str:
    """Does hop n."""
    if os.environ.get("THRIFTY_TEST_KILL_AT") == str(n):
        # kill -9 in the middle of this call once the expansion's other calls (threads, with parallel) are
        # charged: then it is the one call in flight
        done = int(os.environ["THRIFTY_TEST_KILL_AFTER"])
        for _ in range(200):
            with sqlite3.connect(os.environ["THRIFTY_TEST_DB"]) as conn:
                (charged,) = conn.execute(
                    'select count(*) from thrifty_charges where event like \'%"kind": "tool"%\''
                ).fetchone()
            if charged >= done:
                break
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGKILL)
    return f"hopped {n}"


_HOP = re.compile(r'hop\(\{"n": (\d+)\}\)')
_HOP_PROGRESS = {1: 0.9, 2: 0.05, 3: 0.3, 4: 0.8, 5: 0.3}


def tree_worker(request: ScriptedRequest) -> ScriptedReply:
    """A value tree of three expansions: the root tries hops 1-3 (2 is pruned for no progress, 3 stays
    open), hop 1 is followed by hops 4 and 5 (as many as the width asks for), and hop 4's node answers with
    the hops on its line (verified)."""
    role = _role(request)
    text = str(request.messages[-1].get("content") or "")
    if role == "candidates":
        line = text.split("This line of search so far:\n", 1)[1]
        for other in ("Already tried", "Pages listed", "Found on other"):
            line = line.split(other, 1)[0]
        path = [int(n) for n in _HOP.findall(line)]
        if not path:
            actions = [{"tool": "hop", "arguments": {"n": n}} for n in (1, 2, 3)]
        elif path[-1] == 1:
            actions = [{"tool": "hop", "arguments": {"n": n}} for n in (4, 5)]
        else:
            actions = [{"tool": "answer", "arguments": {"answer": " + ".join(f"hopped {n}" for n in path)}}]
        return reply(json.dumps({"thought": "next", "actions": actions}))
    if role == "critic":
        found = _HOP.search(text.split("Last step:", 1)[1])
        n = int(found.group(1)) if found else 0
        return reply(json.dumps({"progress": _HOP_PROGRESS.get(n, 0.0), "reason": f"hop {n}"}))
    return worker(request)  # the verdict (SUCCESS), or a forced answer


def _tree_run(db: Path | str | None, parallel: bool, calls: int, **kw: Any) -> RunResult:
    spec = StrategySpec(name="value_tree", options={"k": 3, "parallel": parallel, "adaptive_width": False})
    return execute(
        QUESTION, model=ScriptedModel([], default=tree_worker, name="durable-tree").model, tools=[hop],
        budget=Budget(tool_calls=calls, usd=10), strategy=spec, checkpoint=db, **kw,
    )  # fmt: skip


def _expansions(result: RunResult) -> list[tuple[int, int, list[tuple[Any, ...]]]]:
    """Each expansion: the node expanded, how many actions it asked for, and its children."""
    return [
        (t.selected, t.width, [(c.id, c.tool, c.arguments, c.progress, c.pruned) for c in t.children])
        for t in result.trace
        if isinstance(t, ExpandEvent)
    ]


KILLED_TREE = """
import sys
from tests.workflows.test_durable_bats import _tree_run
_tree_run(sys.argv[1], sys.argv[2] == "1", int(sys.argv[3]), run_id="t-1")
"""


@pytest.mark.parametrize("parallel", [False, True], ids=["sequential", "parallel"])
@pytest.mark.parametrize(
    ("calls", "kill_at", "charged", "hops"),
    [(6, 3, 2, 4), (8, 5, 4, 5)],
    ids=["first-expansion", "second-expansion"],
)
def test_a_value_tree_run_killed_in_the_middle_of_an_expansion_resumes_as_it_ran(
    tmp_path: Path, parallel: bool, calls: int, kill_at: int, charged: int, hops: int
) -> None:
    """kill -9 during the root's third hop, or during the second hop of the second expansion: on resume the
    expansion runs again from its start and asks what it asked (its width, from the budget as it was when
    it started), so its model calls and its completed hops are replayed and the hop in flight is charged
    its worst case and made again. The width used to be read from the resumed Ledger, which held the
    expansion's own hops and the call in flight (a narrower prompt, its candidates call paid twice and a
    hop never made again); the first fix also credited the expansion before it (the run's saved step is
    kept one step behind), which widened the second expansion instead."""
    reference = _tree_run(None, parallel, calls)
    assert reference.answer == "hopped 1 + hopped 4" and reference.stop_reason == "completed"
    assert (reference.usage.tool_calls, reference.usage.model_requests) == (hops, hops + 4)

    db = tmp_path / "ck.db"
    env = {
        **os.environ,
        "THRIFTY_TEST_KILL_AT": str(kill_at),
        "THRIFTY_TEST_KILL_AFTER": str(charged),
        "THRIFTY_TEST_DB": str(db),
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.run(
        [sys.executable, "-c", KILLED_TREE, str(db), "1" if parallel else "0", str(calls)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == -9, proc.stderr[-2000:]

    resumed = _tree_run(db, parallel, calls, run_id="t-1", resume=True)
    assert resumed.answer == reference.answer and resumed.stop_reason == "completed"
    assert _expansions(resumed) == _expansions(reference)  # the same widths, children and scores
    assert _paid(resumed, "tool") == reference.usage.tool_calls  # each hop paid once
    assert _paid(resumed, "model") == reference.usage.model_requests  # each model call paid once
    inflight = [(e["kind"], e["detail"]) for e in resumed.events if not e["ok"]]
    assert inflight == [("tool", INFLIGHT_DETAIL)]  # the hop in flight, charged its worst case
    assert resumed.usage.tool_calls == reference.usage.tool_calls + 1
    assert _keys_once(db)
    tree = resumed.trace[-1]
    assert isinstance(tree, TreeEvent)
    reference_tree = reference.trace[-1]
    assert isinstance(reference_tree, TreeEvent)
    nodes = [(n.id, n.tool, n.arguments, n.observation, n.pruned, n.prune_reason) for n in tree.nodes]
    assert nodes == [
        (n.id, n.tool, n.arguments, n.observation, n.pruned, n.prune_reason) for n in reference_tree.nodes
    ]  # every hop's result as it was (none a repeat)
