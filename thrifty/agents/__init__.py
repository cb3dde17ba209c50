"""The agent's node logic: planner, solver, verifier, judge, value-tree expansion and critic, structured
calls, prompts, and the run context every node receives; the typed trace events the nodes report
(:mod:`thrifty.agents.events`) and the records they keep (:mod:`thrifty.agents.records`: checklist items,
tree nodes). Models are reached only through the Gateway (:mod:`thrifty.models`)."""

from thrifty.agents.context import ModelSettings, RunContext

__all__ = ["ModelSettings", "RunContext"]
