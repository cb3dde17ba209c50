"""The ``bats`` strategy (Budget-Aware Test-time Scaling): plan -> solve -> verify -> SUCCESS | CONTINUE | PIVOT.

    plan ──► solve ──► verify ──SUCCESS──────────────► judge ──► END
      ▲                  │  └─CONTINUE──► solve            ▲
      └────PIVOT─────────┘     (budget or attempts out) ───┘

The solver is the react loop with the Budget Tracker; the verifier's trajectory summary replaces the raw
trajectory in the next attempt. The loop ends on SUCCESS, when the budget cannot pay for another attempt
(stop reason ``budget_exhausted:<dimension>``), or after ``max_attempts`` (``max_steps``); the judge then
picks the best verified answer. A re-plan never repeats a failed clue (:mod:`thrifty.agents.planner`); a plan
with nothing left to try goes straight to the judge (stop reason ``completed``), and an attempt that ends
without a real answer (a preamble, "unknown") is a PIVOT that costs no verifier call.

Options (``strategy.options`` in YAML, keyword arguments in ``Agent``): see :class:`BatsOptions`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import Field, PositiveInt

from thrifty.agents.judge import judge
from thrifty.agents.planner import after_plan, plan
from thrifty.agents.solver import SolverState, solve
from thrifty.agents.verifier import verify
from thrifty.budget import Regime, StopKind, regime_for, stop_reason
from thrifty.workflows.graph import END, Workflow
from thrifty.workflows.options import StrategyOptions, takes_options


class BatsOptions(StrategyOptions):
    """Options of the ``bats`` strategy."""

    max_attempts: PositiveInt = Field(
        default=4,
        le=100,
        description="Plan-solve-verify attempts before the judge picks the best verified answer.",
    )


def after_solve(state: SolverState) -> str:
    """A proposed answer goes to the verifier; a forced stop (budget, steps, error) goes to the judge."""
    reason = state.get("stop_reason")
    if reason and reason != StopKind.COMPLETED.value:
        return "judge"
    return "verify" if state.get("answer") else "judge"


@takes_options(BatsOptions)
def build_bats(options: BatsOptions | Mapping[str, Any] | None = None) -> Any:
    max_attempts = BatsOptions.of(options).max_attempts

    def gate(state: SolverState, ctx: Any) -> dict[str, Any]:
        """After a verdict: stop when budget or attempts are out (recording why), else go on."""
        if state.get("stop_reason") or state.get("decision") == "SUCCESS":
            return {}
        if int(state.get("attempt") or 1) >= max_attempts:
            return {"stop_reason": stop_reason(StopKind.MAX_STEPS)}
        if ctx.tools and not ctx.visible_tools():
            return {"stop_reason": stop_reason(StopKind.BUDGET_EXHAUSTED, ctx.exhausted_tool_dimension())}
        if int(state.get("step") or 0) >= ctx.max_steps:
            return {"stop_reason": stop_reason(StopKind.MAX_STEPS)}
        # CRITICAL on a shared dimension (a single spent tool only hides that tool): no room for an attempt.
        ratios = {d: r for d, r in ctx.ledger.ratios().items() if not d.startswith("tool:")}
        if ratios and regime_for(min(ratios.values())) is Regime.CRITICAL:
            return {
                "stop_reason": stop_reason(StopKind.BUDGET_EXHAUSTED, min(ratios, key=ratios.__getitem__))
            }
        return {}

    def next_step(state: SolverState) -> str:
        if state.get("stop_reason") or state.get("decision") == "SUCCESS":
            return "judge"
        return "solve" if state.get("decision") == "CONTINUE" else "plan"

    wf = Workflow("bats")
    wf.node("plan", plan).node("solve", solve).node("verify", verify).node("gate", gate).node("judge", judge)
    wf.route("plan", after_plan, ["solve", "judge"])  # a plan with nothing left to try ends the search
    wf.route("solve", after_solve, ["verify", "judge"])
    wf.edge("verify", "gate")
    wf.route("gate", next_step, ["judge", "solve", "plan"])
    wf.edge("judge", END)
    return wf.compile()
