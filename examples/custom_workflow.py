"""Declare your own planner -> solver -> verifier loop in Python and run it under a budget.

Run it: `python examples/custom_workflow.py` (embedded local model, no API key).
The same `build` function can be named from a task file: `strategy: {name: "custom_workflow:build"}`.
"""

from thrifty import END, Agent, Budget, Workflow
from thrifty.agents import SolverState, judge, plan, solve, verify
from thrifty.agents.events import JudgeEvent, PlanEvent, VerdictEvent
from thrifty.tools import bundled_dataset_path, load_corpus, make_search_tools
from thrifty.workflows.bats import after_solve


def next_after_verify(state: SolverState) -> str:
    """SUCCESS, a budget stop or 3 attempts end the loop; CONTINUE digs deeper; PIVOT re-plans."""
    decision = state.get("decision")
    if state.get("stop_reason") or decision == "SUCCESS" or state.get("attempt", 0) >= 3:
        return "judge"
    return "solve" if decision == "CONTINUE" else "plan"


def build(options: dict | None = None) -> Workflow:
    wf = Workflow("plan-solve-verify")
    wf.node("plan", plan).node("solve", solve).node("verify", verify).node("judge", judge)
    wf.edge("plan", "solve").edge("judge", END)
    wf.route("solve", after_solve, ["verify", "judge"])  # a budget stop skips verification
    wf.route("verify", next_after_verify, ["judge", "solve", "plan"])
    return wf


if __name__ == "__main__":
    tools = make_search_tools(load_corpus(bundled_dataset_path("hotpotqa")), k=2)
    agent = Agent(
        "local/smollm2",
        tools=tools,
        budget=Budget(tool_calls=4, total_tokens=20000),
        strategy=build(),
        temperature=0.2,
        seed=7,
        max_tokens=96,
    )
    result = agent.run("Who was born first, Morgan Llywelyn or Robert Jordan?")
    for event in result.trace:  # typed events (thrifty.agents.events)
        match event:
            case PlanEvent(items=items):
                print("plan ->", [i.text for i in items])
            case VerdictEvent(decision=decision):
                print("verdict ->", decision)
            case JudgeEvent(answer=answer):
                print("judge ->", answer)
    print(
        f"answer: {result.answer} | stopped: {result.stop_reason} | {result.usage.tool_calls} tool calls, {result.usage.total_tokens} tokens"
    )
