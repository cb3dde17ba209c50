"""Budget awareness (the BATS Budget Tracker): what the agent is told about what remains.

After every tool result the model sees a block such as
``<budget>search used: 3, search remaining: 7, tool calls used: 4, tool calls remaining: 6</budget>``
and its system prompt carries a policy by regime (remaining fraction):

============  ===========  ==================================================================
regime        remaining    behaviour
============  ===========  ==================================================================
HIGH          >= 70%       broad exploration: several diverse queries, read up to 2-3 passages
MEDIUM        30-70%       converge: 2-3 precise queries, 1-2 passages
LOW           10-30%       verify one fact or finish: 1 focused query, at most 1 passage
CRITICAL      < 10% or a   avoid the depleted tool; answer now (or say "unknown")
              tool at 0
============  ===========  ==================================================================
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from thrifty.budget.ledger import Ledger
from thrifty.budget.limits import TOOL_PREFIX, tool_dimension


class Regime(StrEnum):
    HIGH = "HIGH"
    MEDIUM = "MEDIUM"
    LOW = "LOW"
    CRITICAL = "CRITICAL"


def regime_for(ratio: float, any_tool_spent: bool = False) -> Regime:
    if ratio < 0.10 or any_tool_spent:
        return Regime.CRITICAL
    if ratio < 0.30:
        return Regime.LOW
    if ratio < 0.70:
        return Regime.MEDIUM
    return Regime.HIGH


POLICY = """Budget policy. You see a <budget> block after every tool result. Choose each tool call by what remains:
- HIGH (>= 70% left): explore broadly: try diverse searches, read up to 2-3 passages.
- MEDIUM (30-70% left): converge: 2-3 precise searches, read 1-2 passages.
- LOW (10-30% left): verify one fact or finish: 1 focused search, read at most 1 passage.
- CRITICAL (< 10% left, or a tool at 0): do not use the depleted tool; answer now, or say "unknown".
Justify each tool call against the remaining budget in one short sentence."""


def _fmt(value: float) -> str:
    return f"{value:.4f}" if value != int(value) else str(int(value))


def tool_status(ledger: Ledger, tools: Iterable[str]) -> dict[str, tuple[float, float | None]]:
    """Per tool: (calls used, calls remaining or None when unlimited)."""
    out: dict[str, tuple[float, float | None]] = {}
    remaining = ledger.remaining()
    total_left = remaining.get("tool_calls")
    for name in tools:
        dim = tool_dimension(name)
        used = ledger.root.spent.get(dim, 0.0)
        left = remaining.get(dim)
        if total_left is not None:
            left = total_left if left is None else min(left, total_left)
        out[name] = (used, left)
    return out


def spent_tools(ledger: Ledger, tools: Iterable[str]) -> list[str]:
    """Tools that cannot pay for one more call (to be hidden from the model)."""
    return [
        name for name, (_used, left) in tool_status(ledger, tools).items() if left is not None and left < 1
    ]


def regime(ledger: Ledger, tools: Iterable[str] = ()) -> Regime:
    return regime_for(ledger.remaining_ratio(), bool(spent_tools(ledger, tools)))


def budget_block(ledger: Ledger, tools: Iterable[str]) -> str:
    """The ``<budget>`` block the model sees after each tool result."""
    tools = list(tools)
    parts: list[str] = []
    for name, (used, left) in tool_status(ledger, tools).items():
        parts.append(f"{name} used: {_fmt(used)}")
        parts.append(f"{name} remaining: {'unlimited' if left is None else _fmt(left)}")
    remaining = ledger.remaining()
    root = ledger.root
    for dim, label in (("total_tokens", "tokens"), ("output_tokens", "output tokens"), ("usd", "usd")):
        if dim in remaining:
            parts.append(f"{label} used: {_fmt(round(root.spent.get(dim, 0.0), 4))}")
            parts.append(f"{label} remaining: {_fmt(round(remaining[dim], 4))}")
    if "seconds" in remaining:
        parts.append(f"seconds remaining: {remaining['seconds']:.0f}")
    parts.append(f"regime: {regime(ledger, tools).value}")
    return "<budget>" + ", ".join(parts) + "</budget>"


def is_tool_dimension(dim: str) -> bool:
    return dim.startswith(TOOL_PREFIX)
