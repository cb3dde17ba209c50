"""The ``react`` strategy: a two-node LangGraph loop (act -> observe -> act ...) with the Budget Tracker.

With ``tracker: false`` the same loop runs without the budget block and policy, which is the plain ReAct
baseline the BATS paper compares against.
"""

from __future__ import annotations

from typing import Any

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from thrifty.agents.context import RunContext
from thrifty.agents.solver import SolverState, act, observe, route_after_act


def _act(state: SolverState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    return act(state, runtime.context)


def _observe(state: SolverState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    return observe(state, runtime.context)


def build_react(options: dict[str, Any] | None = None) -> Any:
    """Compile the react graph. ``options`` is unused: react's knobs live on the RunContext."""
    graph = StateGraph(SolverState, context_schema=RunContext)
    graph.add_node("act", _act)
    graph.add_node("observe", _observe)
    graph.add_edge(START, "act")
    graph.add_conditional_edges("act", route_after_act, {"observe": "observe", "end": END})
    graph.add_edge("observe", "act")
    return graph.compile()
