"""Budgets, the Ledger, prices and budget awareness. Knows nothing of graphs, prompts or the CLI."""

from thrifty.budget.awareness import POLICY, BudgetView, Regime, budget_block, regime, regime_for, spent_tools
from thrifty.budget.errors import BudgetExceeded, StopKind, WorkerBudgetStops, stop_reason
from thrifty.budget.ledger import ChargeEvent, Ledger, Overrun, Reservation
from thrifty.budget.limits import DIMENSIONS, Budget, tool_dimension
from thrifty.budget.pricing import DEFAULT_TOOL_PRICES, ModelPrice, Pricing, UnpricedModelError

__all__ = [
    "DEFAULT_TOOL_PRICES",
    "DIMENSIONS",
    "POLICY",
    "Budget",
    "BudgetExceeded",
    "BudgetView",
    "ChargeEvent",
    "Ledger",
    "ModelPrice",
    "Overrun",
    "Pricing",
    "Regime",
    "Reservation",
    "StopKind",
    "UnpricedModelError",
    "WorkerBudgetStops",
    "budget_block",
    "regime",
    "regime_for",
    "spent_tools",
    "stop_reason",
    "tool_dimension",
]
