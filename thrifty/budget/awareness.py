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

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from thrifty.budget.ledger import Ledger
from thrifty.budget.limits import TOOL_PREFIX, tool_dimension


class Regime(StrEnum):
    HIGH = "HIGH"
    MEDIUM = "MEDIUM"
    LOW = "LOW"
    CRITICAL = "CRITICAL"


def regime_for(ratio: float, any_tool_spent: bool = False) -> Regime:
    """The regime for a remaining fraction (CRITICAL as soon as any tool is at 0).

    >>> [regime_for(r).value for r in (0.85, 0.5, 0.2, 0.05)]
    ['HIGH', 'MEDIUM', 'LOW', 'CRITICAL']
    >>> regime_for(0.9, any_tool_spent=True).value
    'CRITICAL'
    """
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


_SHOWN = {"total_tokens": "tokens", "output_tokens": "output tokens", "usd": "usd"}  # in the block, in order


def _used(ledger: Ledger, dim: str, limit_dim: str | None = None) -> float:
    """What was spent on ``dim`` within the scope whose limit on ``limit_dim`` (default ``dim``) binds here;
    the whole run's spend when nothing limits it."""
    binding = ledger.binding(limit_dim or dim)
    return (binding or ledger.root).spent.get(dim, 0.0)


@dataclass(frozen=True)
class ChargeBound:
    """A tool's calls bound by another dimension it charges: ``dim`` has ``left`` and a call takes
    ``per_call`` of it."""

    dim: str
    left: float
    per_call: float


def declare_tool_charge(
    ledger: Ledger, tool: str, amounts: Mapping[str, float], *, payer: Ledger | None = None
) -> None:
    """Declare that each call of ``tool`` made under ``ledger`` (or a ledger below it) also charges at
    least ``amounts`` at ``payer`` (default ``ledger``), e.g. a ``recall`` tool that spends ``memory_ops``
    on a run's memory ledger. The ``<budget>`` block, :func:`spent_tools` and the regime then count the
    calls those dimensions can still pay, as they count a per-tool limit.

    >>> from thrifty.budget import Budget
    >>> run = Ledger(Budget(memory_ops=5))
    >>> declare_tool_charge(run, "recall", {"memory_ops": 2})
    >>> budget_block(run, ["recall"])
    '<budget>recall used: 0, recall remaining: 2 (memory_ops left: 5, 2 per call), regime: HIGH</budget>'
    """
    wanted = {dim: float(v) for dim, v in amounts.items() if v > 0}
    with ledger.lock:
        ledger.tool_charges[tool] = (wanted, payer or ledger)


def _declared(ledger: Ledger) -> dict[str, tuple[dict[str, float], Ledger]]:
    """The charges declared on ``ledger`` and above it, the nearest declaration of a tool first."""
    out: dict[str, tuple[dict[str, float], Ledger]] = {}
    node: Ledger | None = ledger
    while node is not None:
        for tool, charge in node.tool_charges.items():
            out.setdefault(tool, charge)
        node = node.parent
    return out


def _charge_bound(charge: tuple[dict[str, float], Ledger]) -> ChargeBound | None:
    """The dimension of ``charge`` that pays the fewest calls (None when none of them is limited)."""
    amounts, payer = charge
    left = payer.availability()
    best: ChargeBound | None = None
    for dim, per_call in amounts.items():
        if dim not in left:
            continue
        bound = ChargeBound(dim, max(0.0, left[dim]), per_call)
        if best is None or _calls(bound) < _calls(best):
            best = bound
    return best


def _calls(bound: ChargeBound) -> float:
    """Whole calls ``bound`` can still pay."""
    return float(math.floor(bound.left / bound.per_call + 1e-9))


def unpayable_tools(ledger: Ledger, tools: Iterable[str]) -> dict[str, str]:
    """The tools declared with :func:`declare_tool_charge` whose charged dimensions cannot pay one more
    call, each with the dimension that ran out (a ``recall`` tool: ``memory_ops``).

    >>> from thrifty.budget import Budget
    >>> run = Ledger(Budget(memory_ops=1))
    >>> declare_tool_charge(run, "recall", {"memory_ops": 2})
    >>> unpayable_tools(run, ["recall", "search"])
    {'recall': 'memory_ops'}
    """
    declared = _declared(ledger)
    out: dict[str, str] = {}
    for name in tools:
        charge = declared.get(name)
        bound = _charge_bound(charge) if charge is not None else None
        if bound is not None and _calls(bound) < 1:
            out[name] = bound.dim
    return out


def _status(
    ledger: Ledger, tools: Iterable[str], remaining: dict[str, float]
) -> tuple[dict[str, tuple[float, float | None]], dict[str, ChargeBound]]:
    """:func:`tool_status`, and per tool whose calls another dimension it charges binds, that bound."""
    out: dict[str, tuple[float, float | None]] = {}
    bounds: dict[str, ChargeBound] = {}
    declared = _declared(ledger)
    total_left = remaining.get("tool_calls")
    for name in tools:
        dim = tool_dimension(name)
        left = remaining.get(dim)
        by = dim
        if total_left is not None and (left is None or total_left < left):
            left, by = total_left, "tool_calls"
        charge = declared.get(name)
        bound = _charge_bound(charge) if charge is not None else None
        if bound is not None and (left is None or _calls(bound) < left):
            left = _calls(bound)
            bounds[name] = bound
        out[name] = (_used(ledger, dim, by), left)
    return out, bounds


def tool_status(
    ledger: Ledger, tools: Iterable[str], remaining: dict[str, float] | None = None
) -> dict[str, tuple[float, float | None]]:
    """Per tool: (calls used, calls remaining or None when unlimited). ``remaining``: a fresh
    ``ledger.remaining()`` when the caller already has one.

    "Used" is counted against the limit that "remaining" comes from (the tool's own, or all tool calls), in
    the ledger where it binds — a branch's own calls in a branch with its own budget — so that used and
    remaining add up to a budget the agent can reason about. A tool declared with
    :func:`declare_tool_charge` has no more calls remaining than the dimensions it charges can pay.
    """
    if remaining is None:
        remaining = ledger.remaining()
    return _status(ledger, tools, remaining)[0]


@dataclass(frozen=True)
class BudgetView:
    """One reading of a ledger, as the agent is shown it: what remains, per tool, and the regime.

    Reading walks the ledger tree under its lock; a node reads once and uses the view for both the
    ``<budget>`` block and its trace entry.
    """

    remaining: dict[str, float]
    ratio: float  # the minimum remaining fraction over every limit
    tools: dict[str, tuple[float, float | None]]  # (used, remaining or None) per tool
    spent: dict[str, float]  # per dimension the block shows: spent within the scope whose limit binds here
    regime: Regime
    usd_spent: float = 0.0  # dollars spent by this ledger (a branch's own spend, for a child)
    # Per tool whose remaining calls another dimension it charges sets (declare_tool_charge): that dimension.
    bounds: dict[str, ChargeBound] = field(default_factory=dict[str, ChargeBound])

    @classmethod
    def read(cls, ledger: Ledger, tools: Iterable[str] = ()) -> BudgetView:
        with ledger.lock:  # the ledger's readings below share one pass over the tree until it changes
            remaining = ledger.remaining()
            status, bounds = _status(ledger, tools, remaining)
            ratio = ledger.remaining_ratio()
            spent = {dim: _used(ledger, dim) for dim in _SHOWN if dim in remaining}
            usd_spent = ledger.usd_spent
        depleted = any(left is not None and left < 1 for _used, left in status.values())
        return cls(remaining, ratio, status, spent, regime_for(ratio, depleted), usd_spent, bounds)

    def block(self) -> str:
        """The ``<budget>`` block the model sees after each tool result."""
        parts: list[str] = []
        for name, (used, left) in self.tools.items():
            parts.append(f"{name} used: {_fmt(used)}")
            shown = "unlimited" if left is None else _fmt(left)
            bound = self.bounds.get(name)
            if bound is not None:  # say what sets it: a call takes more than a call
                shown += f" ({bound.dim} left: {_fmt(round(bound.left, 4))}, {_fmt(bound.per_call)} per call)"
            parts.append(f"{name} remaining: {shown}")
        remaining = self.remaining
        for dim, label in _SHOWN.items():
            if dim in remaining:
                parts.append(f"{label} used: {_fmt(round(self.spent.get(dim, 0.0), 4))}")
                parts.append(f"{label} remaining: {_fmt(round(remaining[dim], 4))}")
        if "seconds" in remaining:
            parts.append(f"seconds remaining: {remaining['seconds']:.0f}")
        parts.append(f"regime: {self.regime.value}")
        return "<budget>" + ", ".join(parts) + "</budget>"


def spent_tools(ledger: Ledger, tools: Iterable[str]) -> list[str]:
    """Tools that cannot pay for one more call (to be hidden from the model)."""
    return [
        name for name, (_used, left) in tool_status(ledger, tools).items() if left is not None and left < 1
    ]


def regime(ledger: Ledger, tools: Iterable[str] = ()) -> Regime:
    """The regime a ledger is in now (the least remaining fraction over its limits, and the tools').

    >>> from thrifty.budget import Budget
    >>> ledger = Ledger(Budget(tool_calls=10))
    >>> _ = ledger.charge({"tool_calls": 8, "tool:search": 8}, kind="tool", name="search")
    >>> regime(ledger, ["search"]).value
    'LOW'
    """
    return BudgetView.read(ledger, tools).regime


def budget_block(ledger: Ledger, tools: Iterable[str]) -> str:
    """The ``<budget>`` block the model sees after each tool result.

    >>> from thrifty.budget import Budget
    >>> ledger = Ledger(Budget(tool_calls=10, per_tool={"read": 2}))
    >>> _ = ledger.charge({"tool_calls": 4, "tool:search": 4}, kind="tool", name="search")
    >>> budget_block(ledger, ["search", "read"])
    '<budget>search used: 4, search remaining: 6, read used: 0, read remaining: 2, regime: MEDIUM</budget>'
    """
    return BudgetView.read(ledger, tools).block()


def is_tool_dimension(dim: str) -> bool:
    return dim.startswith(TOOL_PREFIX)
