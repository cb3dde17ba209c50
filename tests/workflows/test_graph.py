"""The Python workflow API: custom graphs of built-in and user nodes, run with the same budget guarantees."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from thrifty import Agent, Budget
from thrifty.agents.solver import solve
from thrifty.testing import ScriptedModel, call, reply
from thrifty.tools import Corpus, make_search_tools
from thrifty.workflows import load_task, run_task
from thrifty.workflows.graph import END, Workflow, WorkflowError

TOOLS = make_search_tools(Corpus([("Paris", "Paris is the capital of France.")]), k=1)
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_custom_plan_solve_verify_loop_from_the_example() -> None:
    sys.path.insert(0, str(EXAMPLES))
    try:
        from custom_workflow import build
    finally:
        sys.path.remove(str(EXAMPLES))
    script = ScriptedModel(
        [
            reply(json.dumps({"exploration": ["France capital"], "verification": []})),
            call("search", query="France capital"),
            reply("Paris"),
            reply(json.dumps({"decision": "SUCCESS", "trajectory_summary": "Paris is the capital"})),
        ]
    )
    result = Agent(script.model, tools=TOOLS, budget=Budget(tool_calls=3), strategy=build()).run(
        "Capital of France?"
    )
    assert result.answer == "Paris" and result.stop_reason == "completed"
    assert result.strategy == "plan-solve-verify"
    assert [t.action for t in result.trace] == [
        "plan",
        "tool_calls",
        "observation",
        "answer",
        "verdict",
        "judge",
    ]


def test_user_defined_nodes_share_the_budget() -> None:
    def rewrite(state: dict, ctx: object) -> dict:
        return {"question": state["question"].upper(), "extra": {"rewritten": True}}

    def shout(state: dict, ctx: object) -> dict:
        return {"answer": f"{state['answer']}!", "extra": {"shouted": True}}

    wf = Workflow("custom").node("rewrite", rewrite).node("solve", solve).node("shout", shout)
    wf.edge("rewrite", "solve").edge("solve", "shout").edge("shout", END)
    script = ScriptedModel([call("search", query="x"), reply("Paris")])
    result = Agent(script.model, tools=TOOLS, budget=Budget(tool_calls=1), strategy=wf).run("capital?")
    assert result.answer == "Paris!"
    assert "CAPITAL?" in script.requests[0].messages[1]["content"]
    assert result.usage.tool_calls == 1


def test_act_and_observe_as_separate_nodes_routed_by_route_after_act() -> None:
    from thrifty.agents.solver import act, observe, route_after_act

    wf = Workflow("two-node-react").node("act", act).node("observe", observe)
    wf.route("act", route_after_act, {"observe": "observe", "end": END}).edge("observe", "act")
    script = ScriptedModel([call("search", query="France"), reply("Paris")])
    result = Agent(script.model, tools=TOOLS, budget=Budget(tool_calls=2), strategy=wf).run("Capital?")
    assert result.answer == "Paris" and result.stop_reason == "completed"
    assert [t.action for t in result.trace] == ["tool_calls", "observation", "answer"]


def test_bad_graphs_are_refused_clearly() -> None:
    with pytest.raises(WorkflowError, match="no node named 'missing'"):
        Workflow().node("a", solve).edge("a", "missing").compile()
    with pytest.raises(WorkflowError, match="no nodes"):
        Workflow().compile()
    with pytest.raises(WorkflowError, match="twice"):
        Workflow().node("a", solve).node("a", solve)


def test_task_file_can_name_a_module_function_strategy(tmp_path: Path) -> None:
    (tmp_path / "mygraph.py").write_text(
        "from thrifty.agents.solver import solve\n"
        "from thrifty.workflows.graph import END, Workflow\n"
        "def build(options):\n"
        "    return Workflow('mine').node('solve', solve).edge('solve', END)\n"
    )
    script = ScriptedModel([reply("Paris")])
    task = tmp_path / "task.yaml"
    task.write_text(
        f"question: Capital?\nmodel: {script.model}\nstrategy:\n  name: mygraph:build\noutput:\n  store: null\n"
    )
    result = run_task(load_task(task))
    assert result.answer == "Paris"
    assert result.strategy == "mygraph:build"


def _answer_then(second: object) -> Workflow:
    wf = Workflow("answer-then")
    wf.node("a", lambda state, ctx: {"answer": "from a", "trace": [{"kind": "note", "action": "a ran"}]})
    wf.node("b", second)  # type: ignore[arg-type]
    return wf.edge("a", "b").edge("b", END)


def test_a_node_that_crashes_keeps_the_answer_and_trace_found_before_it() -> None:
    def boom(state: object, ctx: object) -> dict[str, object]:
        raise RuntimeError("boom")

    result = Agent(ScriptedModel([]).model, budget=Budget(tool_calls=1), strategy=_answer_then(boom)).run("q")
    assert result.stop_reason == "error" and result.error == "RuntimeError: boom"
    assert result.answer == "from a" and [t.describe() for t in result.trace] == ["a ran"]


def test_an_interrupted_run_keeps_the_answer_found_before_it() -> None:
    def interrupted(state: object, ctx: object) -> dict[str, object]:
        raise KeyboardInterrupt

    result = Agent(
        ScriptedModel([]).model, budget=Budget(tool_calls=1), strategy=_answer_then(interrupted)
    ).run("q")
    assert result.stop_reason == "cancelled" and result.answer == "from a" and len(result.trace) == 1


@pytest.mark.parametrize("paths", [None, ["b", END]])
def test_a_route_to_an_undeclared_node_is_an_error_naming_it(paths: list[str] | None) -> None:
    wf = Workflow("misrouted")
    wf.node("a", lambda state, ctx: {"answer": "from a"}).node("b", lambda state, ctx: {})
    wf.route("a", lambda state: "bb", paths).edge("b", END)
    result = Agent(ScriptedModel([]).model, budget=Budget(tool_calls=1), strategy=wf).run("q")
    # the run ends "error" naming the route, where it ended "completed" (no destinations) or with a bare
    # KeyError; and it keeps what the step before the route wrote (LangGraph commits a step's writes only
    # once its routes ran, so raising in the route lost them: the answer was None)
    assert result.stop_reason == "error" and result.error is not None
    assert "route from 'a' returned 'bb'" in result.error and "'b'" in result.error
    assert result.answer == "from a"


@pytest.mark.parametrize("paths", [None, ["b", END]])
def test_a_router_that_raises_ends_the_run_in_error_keeping_the_step_s_answer(
    paths: list[str] | None,
) -> None:
    def broken(state: object) -> str:
        raise RuntimeError("router bug")

    wf = Workflow("broken-route")
    wf.node("a", lambda state, ctx: {"answer": "from a"}).node("b", lambda state, ctx: {})
    wf.route("a", broken, paths).edge("b", END)
    result = Agent(ScriptedModel([]).model, budget=Budget(tool_calls=1), strategy=wf).run("q")
    assert result.stop_reason == "error" and result.answer == "from a"  # before: answer None
    assert result.error == "route from 'a' raised RuntimeError: router bug"


def test_the_route_error_node_name_is_reserved() -> None:
    with pytest.raises(WorkflowError, match="reserved"):
        Workflow("w").node("__route_error__", lambda state, ctx: {})
