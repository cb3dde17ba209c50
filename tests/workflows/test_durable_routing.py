"""A durable run with several models (issue 18): its escalations survive ``kill -9`` and a resume. An
escalation kept for the rest of the run still holds after the resume, each escalation is in the trace once
(a node that runs again makes its escalation again from the replayed replies, and it is not told twice),
and nothing is paid twice. The kill tests run on SQLite and on PostgreSQL (the ``backend`` fixture)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.postgres import Backend
from thrifty import Budget
from thrifty.agents.events import EscalationEvent
from thrifty.budget import ModelPrice, Pricing
from thrifty.models.routing import Escalation, EscalationPolicy, RoutedGateway, Routing, Scope
from thrifty.store.durable import INFLIGHT_DETAIL
from thrifty.testing import ScriptedModel, ScriptedReply, ScriptedRequest, reply
from thrifty.tools import tool
from thrifty.workflows.result import RunResult
from thrifty.workflows.runner import execute

ROOT = Path(__file__).resolve().parents[2]
CHEAP, STRONG = "scripted/durable-cheap", "scripted/durable-strong"
PRICING = Pricing(
    models={
        CHEAP: ModelPrice(input_per_token=1e-6, output_per_token=2e-6),
        STRONG: ModelPrice(input_per_token=20e-6, output_per_token=40e-6),
    }
)

# The run, shared by the killed child and the resume here: the cheap model's moves are unsure (confidence
# 0.2) and, with scope step, each one is escalated; with scope run, the cheap model says "unknown" once and
# the strong model serves the rest. The third tool call kills the child (kill -9), mid-call.
SCRIPT = """
import os, signal, sys
from tests.postgres import Backend
from thrifty import Budget
from thrifty.budget import ModelPrice, Pricing
from thrifty.models.routing import EscalationPolicy, Routing
from thrifty.testing import ScriptedModel, ScriptedReply, reply
from thrifty.tools import tool
from thrifty.workflows.result import RunResult
from thrifty.workflows.runner import execute

def done(request):
    return sum(1 for m in request.messages if m.get("role") == "tool")

def cheap(request):
    if sys.argv[2] == "run":
        return reply("unknown")
    n = done(request)
    return ScriptedReply(tool_calls=[("work", {"n": n + 1})], confidence=0.2) if n < 4 else reply("done")

def strong(request):
    n = done(request)
    return ScriptedReply(tool_calls=[("work", {"n": n + 1})], confidence=0.9) if n < 4 else reply("done")

@tool(price=0.5)
def work(n: int) -> str:
    \"\"\"Does step n.\"\"\"
    if n == 3:  # kills the process (kill -9), mid-call; the same description as the resume's tool below
        os.kill(os.getpid(), signal.SIGKILL)
    return f"worked {n}"

ScriptedModel([], default=cheap, name="durable-cheap")
ScriptedModel([], default=strong, name="durable-strong")
pricing = Pricing(models={
    "scripted/durable-cheap": ModelPrice(input_per_token=1e-6, output_per_token=2e-6),
    "scripted/durable-strong": ModelPrice(input_per_token=20e-6, output_per_token=40e-6),
})
routing = Routing(models=["scripted/durable-cheap", "scripted/durable-strong"],
                  escalation=EscalationPolicy(scope=sys.argv[2], resample=0))
execute("work", model="unused", tools=[work], budget=Budget(tool_calls=8, usd=10), pricing=pricing,
        routing=routing, checkpoint=sys.argv[1], run_id="cascade-1")
"""


def _done(request: ScriptedRequest) -> int:
    return sum(1 for m in request.messages if m.get("role") == "tool")


def _models(scope: str) -> None:
    """The same two scripted models as the killed child's, in this process."""

    def cheap(request: ScriptedRequest) -> ScriptedReply:
        if scope == "run":
            return reply("unknown")
        n = _done(request)
        return ScriptedReply(tool_calls=[("work", {"n": n + 1})], confidence=0.2) if n < 4 else reply("done")

    def strong(request: ScriptedRequest) -> ScriptedReply:
        n = _done(request)
        return ScriptedReply(tool_calls=[("work", {"n": n + 1})], confidence=0.9) if n < 4 else reply("done")

    ScriptedModel([], default=cheap, name="durable-cheap")
    ScriptedModel([], default=strong, name="durable-strong")


@tool(price=0.5)
def work(n: int) -> str:
    """Does step n."""  # as the killed child's: the model calls of the step that runs again are replayed
    return f"worked {n}"


def _killed(tmp_path: Path, scope: str, backend: Backend) -> str | Path:
    db = backend.new(tmp_path)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(db), scope], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == -9, proc.stderr[-2000:]
    return db


def _resume(db: str | Path, scope: str) -> RunResult:
    _models(scope)
    return execute(
        "work",
        model="unused",
        tools=[work],
        budget=Budget(tool_calls=8, usd=10),
        pricing=PRICING,
        routing=Routing(models=[CHEAP, STRONG], escalation=EscalationPolicy(scope=Scope(scope), resample=0)),
        checkpoint=db,
        run_id="cascade-1",
        resume=True,
    )


def test_an_escalation_for_the_rest_of_the_run_holds_after_kill_and_resume(
    tmp_path: Path, backend: Backend
) -> None:
    db = _killed(tmp_path, "run", backend)
    assert len(backend.rows(db, "select * from thrifty_routing")) == 1  # the escalation, kept as it was told
    result = _resume(db, "run")
    assert result.answer == "done" and result.stop_reason == "completed"
    escalations = [e for e in result.trace if isinstance(e, EscalationEvent)]
    assert [(e.reason, e.scope, e.from_model, e.to_model) for e in escalations] == [
        ("cannot_answer", "run", CHEAP, STRONG)
    ]
    events = result.events
    # the cheap model was asked once, before the kill: after the resume every call went to the strong one
    assert [e["name"] for e in events if e["kind"] == "model"].count(CHEAP) == 1
    assert [e["kind"] for e in events if e["ok"]].count("tool") == 4  # each tool call paid once
    assert [e["detail"] for e in events if not e["ok"]] == [INFLIGHT_DETAIL]  # the one in flight at the kill


def test_escalations_made_again_by_a_node_that_runs_again_are_told_once(
    tmp_path: Path, backend: Backend
) -> None:
    db = _killed(tmp_path, "step", backend)
    kept = len(backend.rows(db, "select * from thrifty_routing"))
    assert kept == 3  # moves 1, 2 and 3 (killed during its tool call)
    result = _resume(db, "step")
    assert result.answer == "done" and result.stop_reason == "completed"
    escalations = [e for e in result.trace if isinstance(e, EscalationEvent)]
    assert [(e.reason, e.scope) for e in escalations] == [("low_confidence", "step")] * 4
    assert all(e.usd > 0 and e.discarded_usd > 0 for e in escalations)
    steps = [e.step for e in escalations]
    assert steps == sorted(steps) and len(set(steps)) == 4
    # each escalation sits right before the move it produced
    trace = result.trace
    for e in escalations:
        after = trace[trace.index(e) + 1]
        assert not isinstance(after, EscalationEvent) and after.step == e.step + 1
    # the re-run step's calls were replayed, not paid again: each model call paid once
    events = result.events
    # four moves, the answer and its check (answer_check), each paid once
    assert [e["name"] for e in events if e["kind"] == "model" and e["ok"]].count(CHEAP) == 6
    assert [e["name"] for e in events if e["kind"] == "model" and e["ok"]].count(STRONG) == 4
    assert len(backend.rows(db, "select * from thrifty_routing")) == 4


def _gateway(scope: str) -> RoutedGateway:
    from thrifty.budget import Ledger

    routing = Routing(models=[CHEAP, STRONG], escalation=EscalationPolicy(scope=Scope(scope), resample=0))
    return RoutedGateway(Ledger(Budget()), PRICING, routing=routing)


def _entry(**fields: Any) -> dict[str, Any]:
    return {"kind": "escalation", "node": "act", "from_model": CHEAP, "to_model": STRONG, **fields}


@pytest.mark.parametrize(
    ("scope", "role", "reason", "run", "node", "pending"),
    [
        ("run", "solver", "low_confidence", 1, {}, {}),
        ("node", "solver", "low_confidence", 0, {"node:act": 1}, {}),
        ("node", "solver", "verifier_rejected", 0, {"role:solver": 1}, {}),
        ("step", "solver", "verifier_rejected", 0, {}, {"solver": 1}),
        ("step", "solver", "low_confidence", 0, {}, {}),
        ("run", "solver", "model_failed", 0, {}, {}),  # a failover keeps nothing
    ],
)
def test_restore_keeps_what_each_escalation_kept(
    scope: str, role: str, reason: str, run: int, node: dict[str, int], pending: dict[str, int]
) -> None:
    gw = _gateway(scope)
    gw.restore([(3, _entry(role=role, reason=reason, scope=scope))], replay_after=10)
    assert (gw.state.run_level, gw.state.node_levels, gw.state.pending) == (run, node, pending)
    assert len(gw.state.records) == 1 and gw.state.replayable == []


def test_restore_a_used_one_call_escalation_and_a_refusal_keep_nothing() -> None:
    gw = _gateway("step")
    gw.restore(
        [
            (3, _entry(role="solver", reason="verifier_rejected", scope="step")),
            (4, {"kind": "consumed", "role": "solver"}),
            (5, _entry(role="solver", reason="low_confidence", scope="run", refused=True)),
            # a resample (same model again) keeps nothing, whatever its scope
            (6, _entry(role="solver", reason="low_confidence", scope="run", to_model=CHEAP, resample=True)),
        ],
        replay_after=10,
    )
    assert (gw.state.run_level, gw.state.node_levels, gw.state.pending) == (0, {}, {})


def test_an_escalation_after_the_checkpoint_is_told_once_when_made_again() -> None:
    gw = _gateway("step")
    told: list[Escalation] = []
    gw.state.listeners.append(told.append)
    fields = {
        "role": "solver",
        "reason": "low_confidence",
        "scope": "step",
        "detail": "confidence 0.20 < 0.5",
    }
    entries = [
        (2, _entry(**fields, step=0)),
        (6, _entry(**fields, step=1)),
        (7, _entry(**fields, step=2, usd=0.5)),
    ]
    gw.restore(entries, replay_after=5, replay_from_step=2)
    # only the one made after the last charge known saved, by the step the saved trace ends at, comes again
    assert len(gw.state.replayable) == 1 and len(gw.state.records) == 3
    again = Escalation(**{k: v for k, v in _entry(**fields, usd=0.5).items() if k != "kind"})
    gw.state.add(again)
    assert told == []  # made again by the re-run node: already in the trace
    gw.state.add(again)
    assert told == [again]  # a new one, told
