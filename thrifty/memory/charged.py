"""The one charged entry point: every memory operation reserves its worst case before it runs.

Why the same pattern as a tool call (see :mod:`thrifty.tools.runner`): memory must never overspend and must
show up in the Ledger's events like any other cost. So, for each operation:

1. the tier prices it (:meth:`MemoryTier.estimate`);
2. the memory part is reserved (``kind="memory"``, ``name`` = the tier's name for a recall,
   ``write:<tier>`` or ``forget:<tier>`` for the others), and the worst case of the
   tier's model calls is checked against what is left; if either cannot be paid, :class:`BudgetExceeded`
   is raised and nothing runs (the store is untouched, nothing is spent);
3. the operation runs; if it raises, the reservation is released (the model calls it made, if any, were
   charged by the Gateway as they happened, as they cost);
4. the reservation is settled with what the operation reports (its estimate when it reports nothing).

The seam also checks what a tier hands back before anyone sees it: more than ``k`` items, or an item
outside the recall's scope, is a broken tier, raised as :class:`MemoryTierError` (another user's memory is
never returned quietly).

Memory on its own cap: ``ChargedMemory(tier, ledger).capped(Budget(memory_ops=20, total_tokens=3000))``
runs on ``ledger.child(...)``, so memory can never take more than its cap nor more than the run has left,
and what it leaves unused was never taken from the run.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, overload

from thrifty.budget import Budget, BudgetExceeded, Ledger
from thrifty.memory.records import (
    ForgetRequest,
    Forgotten,
    MemoryItem,
    MemoryRequest,
    Outcome,
    Recalled,
    RecallRequest,
    Scope,
    WriteRequest,
    Written,
)
from thrifty.memory.tier import Estimate, MemoryContext, MemoryTier
from thrifty.redact import redact

__all__ = ["ChargedMemory", "MemoryTierError", "charge"]

_EPS = 1e-9


class MemoryTierError(RuntimeError):
    """A tier broke its contract (a bad estimate, or a recall outside its scope or over ``k``)."""


def _checked_estimate(tier: MemoryTier, request: MemoryRequest) -> Estimate:
    estimate = tier.estimate(request)
    if not isinstance(estimate, Estimate):
        raise MemoryTierError(f"memory tier '{tier.name}': estimate() must return an Estimate")
    if estimate.memory.get("memory_ops", 0.0) < 1:
        raise MemoryTierError(f"memory tier '{tier.name}': every operation costs at least 1 memory_ops")
    for dim, amount in estimate.total().items():
        if amount < 0 or math.isnan(amount):
            raise MemoryTierError(f"memory tier '{tier.name}': estimate of {dim} is {amount}")
    return estimate


def _refuse_unaffordable(ledger: Ledger, amounts: Mapping[str, float]) -> None:
    """Raise BudgetExceeded for the first dimension of ``amounts`` that cannot be paid now."""
    left = ledger.availability()
    for dim, want in amounts.items():
        if dim in left and want > left[dim] + _EPS:
            binding = ledger.binding(dim)
            raise BudgetExceeded(dim, want, left[dim], binding.path if binding else ledger.path)


def _run(tier: MemoryTier, request: MemoryRequest, ctx: MemoryContext) -> Outcome:
    if isinstance(request, WriteRequest):
        return tier.write(request, ctx)
    if isinstance(request, RecallRequest):
        outcome = tier.recall(request, ctx)
        if len(outcome.items) > request.k:
            raise MemoryTierError(
                f"memory tier '{tier.name}' recalled {len(outcome.items)} items for k={request.k}"
            )
        if not all(request.scope.covers(item.scope) for item in outcome.items):
            raise MemoryTierError(f"memory tier '{tier.name}' recalled an item outside the requested scope")
        if request.kinds is not None and any(item.kind not in request.kinds for item in outcome.items):
            raise MemoryTierError(f"memory tier '{tier.name}' recalled an item of a layer not asked for")
        return outcome
    if isinstance(request, ForgetRequest):
        return tier.forget(request, ctx)
    raise TypeError(f"not a memory request: {type(request).__name__}")


def _detail(outcome: Outcome) -> str:
    """The charge event's label. A tier's own text is scrubbed (:func:`thrifty.redact.redact`): it goes
    into the trace and the run store, and a tier backed by a service may quote its credentials."""
    if outcome.detail:
        return redact(outcome.detail)
    if isinstance(outcome, Written):
        return f"added={outcome.added} skipped={outcome.skipped}"
    if isinstance(outcome, Recalled):
        return f"items={len(outcome.items)}"
    if isinstance(outcome, Forgotten):
        return f"removed={outcome.removed}"
    return ""


def _charge_name(tier: MemoryTier, request: MemoryRequest) -> str:
    """What the Ledger calls the operation: a recall by its tier ("retrieve:low"), a write or forget by what
    it does and the tier ("write:retrieve:low"; an ingest's charge read "retrieve:low", as if it recalled)."""
    return tier.name if isinstance(request, RecallRequest) else f"{request.op}:{tier.name}"


@overload
def charge(tier: MemoryTier, request: WriteRequest, ledger: Ledger, *, node: str | None = ...) -> Written: ...
@overload
def charge(
    tier: MemoryTier, request: RecallRequest, ledger: Ledger, *, node: str | None = ...
) -> Recalled: ...
@overload
def charge(
    tier: MemoryTier, request: ForgetRequest, ledger: Ledger, *, node: str | None = ...
) -> Forgotten: ...
def charge(
    tier: MemoryTier, request: MemoryRequest, ledger: Ledger, *, node: str | None = "memory"
) -> Outcome:
    """Run one memory operation on ``tier``, charged to ``ledger`` (see the module docstring).

    Raises BudgetExceeded (nothing run, nothing spent) when the budget cannot pay the operation's worst case.
    """
    estimate = _checked_estimate(tier, request)
    res = ledger.reserve(estimate.memory, kind="memory", name=_charge_name(tier, request), node=node)
    try:
        if estimate.models:
            _refuse_unaffordable(ledger, estimate.models)
        outcome = _run(tier, request, MemoryContext(ledger, node))
    except BaseException:
        ledger.release(res)
        raise
    actual = estimate.memory if outcome.cost is None else outcome.cost
    ledger.settle(res, actual, detail=_detail(outcome))
    return outcome


class ChargedMemory:
    """A tier bound to a ledger: the convenient face of :func:`charge`.

    >>> from thrifty.memory import LexicalTier
    >>> memory = ChargedMemory(LexicalTier(), Ledger(Budget(memory_ops=3)))
    >>> memory.remember("Caroline moved from Sweden four years ago", {"user_id": "caroline"}).added
    1
    >>> [i.text for i in memory.recall("Where is Caroline from?", {"user_id": "caroline"}, k=1).items]
    ['Caroline moved from Sweden four years ago']
    >>> memory.ledger.remaining()["memory_ops"]
    1.0
    """

    def __init__(self, tier: MemoryTier, ledger: Ledger, *, node: str | None = "memory") -> None:
        self.tier = tier
        self.ledger = ledger
        self.node = node

    def on(self, ledger: Ledger) -> ChargedMemory:
        """The same tier charged to another ledger (a branch's, a sub-agent's)."""
        return ChargedMemory(self.tier, ledger, node=self.node)

    def capped(self, budget: Budget, *, name: str = "memory") -> ChargedMemory:
        """The same tier on a child ledger with its own cap (``ledger.child(budget, name=name)``)."""
        return self.on(self.ledger.child(budget, name=name))

    def estimate(self, request: MemoryRequest) -> Estimate:
        return _checked_estimate(self.tier, request)

    def can_afford(self, request: MemoryRequest) -> bool:
        """Whether the budget could pay ``request``'s worst case now (to step down to a cheaper tier)."""
        return self.ledger.can_afford(self.estimate(request).total())

    def run(self, request: MemoryRequest) -> Outcome:
        return charge(self.tier, request, self.ledger, node=self.node)

    def write(self, items: Iterable[MemoryItem]) -> Written:
        """Store ``items`` (one operation; an empty batch is no operation and costs nothing)."""
        batch = tuple(items)
        if not batch:
            return Written()
        return charge(self.tier, WriteRequest(items=batch), self.ledger, node=self.node)

    def remember(
        self, text: str, scope: Scope | Mapping[str, str], *, source: str = "", **fields: Any
    ) -> Written:
        """Store one piece of text (``fields``: any other :class:`MemoryItem` field, e.g. ``valid_from``)."""
        return self.write([MemoryItem(text=text, scope=Scope.of(scope), source=source, **fields)])

    def recall(
        self, query: str, scope: Scope | Mapping[str, str], *, k: int = 5, kinds: Iterable[str] | None = None
    ) -> Recalled:
        """At most ``k`` items (``kinds``: only those layers, e.g. ``{"fact"}``)."""
        layers = None if kinds is None else frozenset(kinds)
        request = RecallRequest(query=query, k=k, scope=Scope.of(scope), kinds=layers)
        return charge(self.tier, request, self.ledger, node=self.node)

    def forget(self, scope: Scope | Mapping[str, str]) -> Forgotten:
        return charge(self.tier, ForgetRequest(scope=Scope.of(scope)), self.ledger, node=self.node)

    def __repr__(self) -> str:
        return f"ChargedMemory({self.tier!r}, ledger={self.ledger.path!r})"
