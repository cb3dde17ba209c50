"""The agent's node logic: planner, solver, verifier, judge, value-tree expansion and critic, structured
calls, prompts, and the run context every node receives; the typed trace events the nodes report
(:mod:`thrifty.agents.events`) and the records they keep (:mod:`thrifty.agents.records`: checklist items,
tree nodes). Models are reached only through the Gateway (:mod:`thrifty.models`), tools only through the
ToolRunner.

The nodes are plain functions ``(state, ctx) -> update`` to compose in your own :class:`~thrifty.Workflow`.
"""

from thrifty.agents.context import ModelSettings, RunContext
from thrifty.agents.judge import judge
from thrifty.agents.planner import plan
from thrifty.agents.solver import SolverState, act, agent_step, observe, route_after_act, solve
from thrifty.agents.verifier import verify

__all__ = [
    "ModelSettings",
    "RunContext",
    "SolverState",
    "act",
    "agent_step",
    "judge",
    "observe",
    "plan",
    "route_after_act",
    "solve",
    "verify",
]
