"""Typed trace events: one model per kind, the line each describes itself with, and their JSON form."""

from __future__ import annotations

import json
from typing import Any

import pytest

from thrifty import Agent, Budget
from thrifty.agents.events import (
    AnswerEvent,
    CustomEvent,
    ExpandedChild,
    ExpandEvent,
    JudgeEvent,
    ObservationEvent,
    PlanEvent,
    RequestedCall,
    StopEvent,
    ToolCallsEvent,
    TraceEvent,
    TreeEvent,
    VerdictEvent,
    VoteEvent,
    as_event,
)
from thrifty.agents.records import ChecklistItem, TreeNode
from thrifty.testing import ScriptedModel, ScriptedReply, call, reply
from thrifty.tools import Corpus, make_search_tools
from thrifty.workflows.graph import END, Workflow
from thrifty.workflows.result import Cost, RunResult, Usage

BUDGET: dict[str, Any] = {
    "remaining": {"tool_calls": 2.0},
    "ratio": 0.5,
    "regime": "MEDIUM",
    "usd_spent": 0.001,
}
TOOLS = make_search_tools(Corpus([("Paris", "Paris is the capital of France.")]), k=1)


def item(text: str, status: str = "pending", kind: str = "exploration") -> ChecklistItem:
    return ChecklistItem(id=1, text=text, kind=kind, status=status, attempt=1)  # type: ignore[arg-type]


def child(**fields: Any) -> ExpandedChild:
    base: dict[str, Any] = {
        "id": 1,
        "tool": "search",
        "arguments": "{}",
        "answer": None,
        "progress": 0.0,
        "value": 0.0,
        "pruned": False,
        "prune_reason": None,
        "verdict": None,
    }
    return ExpandedChild(**{**base, **fields})


# ------------------------------------------------------------------------------------------ describe
@pytest.mark.parametrize(
    ("event", "line"),
    [
        (
            ToolCallsEvent(
                step=1,
                calls=[RequestedCall(tool="search", arguments='{"query": "Paris"}')],
                thought="",
                hidden_tools=[],
                tokens=15,
                **BUDGET,
            ),
            'calls search({"query": "Paris"})',
        ),
        (
            ObservationEvent(
                tool="search",
                arguments="{}",
                observation="Paris is\nthe capital\n<budget>tool calls remaining: 1</budget>",
                ok=True,
                cached=True,
                usd=0.0,
                **BUDGET,
            ),
            "search → Paris is the capital [cached, free]",
        ),
        (AnswerEvent(answer="Paris", forced=False, tokens=3, **BUDGET), "proposes: Paris"),
        (AnswerEvent(node="final", answer="Paris", forced=True, tokens=3, **BUDGET), "forced answer: Paris"),
        (
            StopEvent(stop_reason="budget_exhausted:usd", detail="d", **BUDGET),
            "stopped: budget_exhausted:usd",
        ),
        (
            PlanEvent(attempt=1, replan=False, valid=True, items=[item("capital of France")], **BUDGET),
            "plan: [pending] capital of France",
        ),
        (
            PlanEvent(attempt=2, replan=True, valid=True, items=[item("a", "failed"), item("b")], **BUDGET),
            "re-plan: [failed] a; [pending] b",
        ),
        (
            VerdictEvent(
                attempt=1,
                answer="Lyon",
                decision="PIVOT",
                valid=True,
                overridden="CONTINUE needs budget",
                checks=[],
                justification="not   the capital",
                summary="",
                attempt_spent={},
                items=[],
                **BUDGET,
            ),
            "verifier: 'Lyon' → PIVOT (CONTINUE needs budget): not the capital",
        ),
        (
            JudgeEvent(answer="Paris", method="verified", candidates=[], **BUDGET),
            "judge picks 'Paris' (verified)",
        ),
        (
            ExpandEvent(
                expansion=1,
                selected=0,
                width=2,
                r=0.8,
                probabilities={0: 1.0},
                children=[child(value=0.9), child(id=2, pruned=True)],
                tree_size=3,
                valid=True,
                **BUDGET,
            ),
            "expand node 0 (r=0.8): search V=0.90, search ✗ V=0.00",
        ),
        (
            ExpandEvent(
                expansion=1,
                selected=0,
                width=2,
                r=0.8,
                probabilities={0: 1.0},
                children=[],
                tree_size=1,
                valid=False,
                **BUDGET,
            ),
            "expand node 0 (r=0.8): no new actions",
        ),
        (
            TreeEvent(
                answer="Paris",
                method="verified",
                path=[0],
                nodes=[TreeNode(id=0, parent=None, depth=0)],
                **BUDGET,
            ),
            "tree of 1 nodes → 'Paris' (verified)",
        ),
        (
            TreeEvent(
                answer=None,
                method="forced answer failed: model error",
                path=[],
                nodes=[TreeNode(id=0, parent=None, depth=0)],
                **BUDGET,
            ),
            "tree of 1 nodes → no answer (forced answer failed: model error)",  # it said → 'None'
        ),
        (
            VoteEvent(answers=["Paris", None], answer="Paris", votes=1, sample_stops=[], **BUDGET),
            "vote ['Paris', None] → 'Paris' (1 votes)",
        ),
        (CustomEvent(action="note", detail="looked it up"), "looked it up"),
        (CustomEvent(action="note"), "note"),
    ],
)
def test_each_kind_describes_itself(event: TraceEvent, line: str) -> None:
    assert event.describe() == line


# ------------------------------------------------------------------------------------------ JSON form
def test_json_puts_the_budget_last_and_leaves_absent_optional_keys_out() -> None:
    event = ObservationEvent(
        step=2, tool="search", arguments="{}", observation="x", ok=False, cached=False, usd=0.0, **BUDGET
    )
    assert list(event.model_dump()) == [
        "step",
        "node",
        "action",
        "tool",
        "arguments",
        "observation",
        "ok",
        "cached",
        "usd",
        "remaining",
        "ratio",
        "regime",
        "usd_spent",
    ]
    event.budget, event.sample = "tool_calls", 2
    keys = list(json.loads(event.model_dump_json()))
    assert keys[keys.index("usd") + 1] == "budget" and keys[-5:] == [*BUDGET, "sample"]


def test_a_dict_becomes_its_kind_and_an_unknown_kind_is_kept_as_given() -> None:
    stop = as_event({"action": "stop", "step": 3, "stop_reason": "max_steps", "detail": "d", **BUDGET})
    assert isinstance(stop, StopEvent) and stop.node == "act" and stop.step == 3
    assert as_event(stop) is stop

    given = {"action": "lookup", "step": 4, "detail": "cache hit", "hits": [1, 2]}
    custom = as_event(given)
    assert isinstance(custom, CustomEvent) and custom.describe() == "cache hit"
    assert custom.model_dump() == given  # no budget fields, no defaults added
    assert as_event({"detail": "no action at all"}).describe() == "no action at all"


def test_run_result_round_trips_through_json_with_every_field_typed() -> None:
    nodes = [
        TreeNode(id=0, parent=None, depth=0, value=0.5),
        TreeNode(id=1, parent=0, depth=1, tool="search", key="search:{}", progress_sum=0.9, critic="ok"),
    ]
    trace = [
        ExpandEvent(
            expansion=1,
            selected=0,
            width=1,
            r=1.0,
            probabilities={0: 1.0},
            children=[ExpandedChild.of(nodes[1])],
            tree_size=2,
            valid=True,
            **BUDGET,
        ),
        TreeEvent(answer=None, method="", path=[], nodes=nodes, **BUDGET),
        as_event({"action": "lookup", "detail": "d"}),
    ]
    result = RunResult(
        run_id="r",
        question="q",
        answer=None,
        stop_reason="completed",
        strategy="value_tree",
        model="m",
        usage=Usage(),
        cost=Cost(),
        trace=trace,
    )
    text = result.model_dump_json()
    back = RunResult.model_validate_json(text)
    assert back == result and back.model_dump_json() == text
    assert [type(e) for e in back.trace] == [ExpandEvent, TreeEvent, CustomEvent]
    tree = json.loads(text)["trace"][1]["nodes"]
    assert "key" not in tree[0] and tree[1]["critic"] == "ok"  # absent keys stay absent


# ------------------------------------------------------------------------------------------ in a run
def test_on_trace_receives_the_typed_events_of_the_trace_as_they_happen() -> None:
    script = ScriptedModel([call("search", query="Paris"), reply("Paris")])
    seen: list[TraceEvent] = []
    result = Agent(script.model, tools=TOOLS, budget=Budget(tool_calls=3)).run(
        "Capital?", on_trace=seen.append
    )
    assert seen == result.trace
    assert [type(e) for e in seen] == [ToolCallsEvent, ObservationEvent, AnswerEvent]
    calls = seen[0]
    assert isinstance(calls, ToolCallsEvent) and json.loads(calls.calls[0].arguments) == {"query": "Paris"}
    assert all(e.regime and e.remaining is not None for e in seen)


def test_a_call_the_budget_refuses_names_the_dimension() -> None:
    two_calls = ScriptedReply(tool_calls=[("search", {"query": "Paris"}), ("search", {"query": "France"})])
    script = ScriptedModel([two_calls, reply("Paris")])
    result = Agent(script.model, tools=TOOLS, budget=Budget(tool_calls=1)).run("Capital?")
    observations = [e for e in result.trace if isinstance(e, ObservationEvent)]
    assert [o.budget for o in observations] == [None, "tool_calls"]
    refused = json.loads(observations[1].model_dump_json())
    assert refused["ok"] is False and "budget" in refused
    assert "budget" not in json.loads(observations[0].model_dump_json())


def test_a_custom_node_may_emit_dicts() -> None:
    def lookup(state: dict, ctx: Any) -> dict:
        return {"trace": [ctx.emit({"action": "lookup", "detail": "looked"})], "answer": "Paris"}

    wf = Workflow("custom").node("lookup", lookup).edge("lookup", END)
    seen: list[TraceEvent] = []
    result = Agent(ScriptedModel([]).model, strategy=wf).run("Capital?", on_trace=seen.append)
    assert result.answer == "Paris"
    assert isinstance(seen[0], CustomEvent) and result.trace == seen
    assert json.loads(result.model_dump_json())["trace"] == [{"action": "lookup", "detail": "looked"}]
