"""The agent's node logic: planner, solver, verifier, judge, value-tree expansion and critic, structured
calls, prompts, and the run context every node receives. Models are reached only through the Gateway
(:mod:`thrifty.models`)."""

from thrifty.agents.context import ModelSettings, RunContext

__all__ = ["ModelSettings", "RunContext"]
