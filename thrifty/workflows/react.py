"""The ``react`` strategy: a LangGraph loop of agent steps (act, then observe its tool calls) with the Budget
Tracker.

One agent step is one LangGraph node (``step``) that routes itself with ``Command``: the model call and the
tool calls it asked for run in the same superstep, and the state (every message, trace entry and the best
answer so far) is committed after each step. A superstep costs LangGraph several hundred microseconds on a
small machine, so splitting a step into an ``act`` node and an ``observe`` node doubled the framework's
per-step cost for nothing a run uses. The ``act`` / ``observe`` functions stay available for custom graphs
(see :mod:`thrifty.workflows.graph`); ``agent_step`` is the step itself.

With ``tracker: false`` the same loop runs without the budget block and policy, which is the plain ReAct
baseline the BATS paper compares against.

react has no options of its own (:class:`ReactOptions` is empty, so a stray key is refused): its knobs,
``tracker``, ``max_steps`` and ``keep_observations``, are fields of the strategy and live on the RunContext.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import Command

from thrifty.agents.context import RunContext
from thrifty.agents.solver import StepState, agent_step
from thrifty.workflows.options import StrategyOptions, takes_options


class ReactOptions(StrategyOptions):
    """react takes no options: ``tracker``, ``max_steps`` and ``keep_observations`` are strategy fields."""


def _step(state: StepState, runtime: Runtime[RunContext]) -> Command[Any]:
    update, go_on = agent_step(state, runtime.context)
    return Command(update=update, goto="step" if go_on else END)


@takes_options(ReactOptions)
def build_react(options: ReactOptions | Mapping[str, Any] | None = None) -> Any:
    """Compile the react graph. ``options`` is checked and unused: react's knobs live on the RunContext."""
    ReactOptions.of(options)
    graph = StateGraph(StepState, context_schema=RunContext)
    graph.add_node("step", _step, destinations=("step", END))
    graph.add_edge(START, "step")
    return graph.compile()
