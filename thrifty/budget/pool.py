"""One budget shared by many runs, in this process or (through a proxy such as a Ray actor) in many.

A :class:`BudgetPool` holds one :class:`~thrifty.budget.ledger.Ledger` for a whole grid or batch. Each run
*leases* its worst case from it before it starts (the limits of its own budget: a run cannot spend more than
those) and *settles* what it really spent when it ends, which hands the unused part back. Since a run starts
only once its whole worst case is held, the sum over all runs, wherever they execute, can never cross the
pool's limits: the same reserve-then-settle rule as one Ledger, one level up.

A lease whose holder disappears (a worker process that died, a lost connection) is :meth:`BudgetPool.abandon`\\ ed:
settled at its worst case, since what the run spent before it died cannot be known. Its id is then closed, so
that a late ``lease`` with the same id (a message from the dead worker still on its way) is refused rather
than held forever; the run is retried under a new lease id.

The pool imports nothing beyond the budget package: whoever shares it across processes wraps it (see
``thrifty.scale``).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any, Protocol

from thrifty.budget.errors import BudgetExceeded
from thrifty.budget.ledger import Ledger, Reservation
from thrifty.budget.limits import Budget, tool_dimension

__all__ = ["BudgetPool", "LeaseClient", "lease_too_big", "usage_spent"]

_EPS = 1e-9


class LeaseClient(Protocol):
    """What a run needs of a pool: a BudgetPool itself, or a proxy to one in another process."""

    def lease(self, lease_id: str, amounts: Mapping[str, float]) -> bool: ...

    def settle(self, lease_id: str, actual: Mapping[str, float]) -> None: ...

    def release(self, lease_id: str) -> None: ...

    def abandon(self, lease_id: str) -> None: ...


def usage_spent(usage: Mapping[str, Any]) -> dict[str, float]:
    """What a run spent, in Ledger dimensions, from its usage (a RunResult's ``usage`` as a dict, or a
    bench record's): what its lease settles.

    >>> usage_spent({"usd": 0.002, "tool_calls": 2, "per_tool": {"search": 2}, "seconds": 1.5, "total_tokens": 0})
    {'usd': 0.002, 'tool_calls': 2.0, 'tool:search': 2.0}
    """
    dims = ("usd", "input_tokens", "output_tokens", "total_tokens", "tool_calls", "model_requests")
    out = {dim: float(usage.get(dim) or 0.0) for dim in dims}
    per_tool: Mapping[str, Any] = usage.get("per_tool") or {}
    for name, calls in per_tool.items():
        out[tool_dimension(str(name))] = float(calls)
    return {dim: value for dim, value in out.items() if value}


def lease_too_big(budget: Budget, amounts: Mapping[str, float]) -> str | None:
    """Why ``amounts`` can never be leased from a pool with ``budget`` (one of its limits is smaller than the
    amount asked), or None when it fits an empty pool.

    >>> lease_too_big(Budget(usd=1.0), {"usd": 2.5, "tool_calls": 3})
    'usd: one run may need 2.5 but the whole budget is 1'
    >>> lease_too_big(Budget(usd=1.0), {"usd": 0.5}) is None
    True
    """
    for dim, limit in budget.limits().items():
        if dim == "seconds":
            continue
        amount = float(amounts.get(dim, 0.0))
        if amount > limit + _EPS:
            return f"{dim}: one run may need {amount:g} but the whole budget is {limit:g}"
    return None


class BudgetPool:
    """A global budget that runs lease their worst case from and settle back into.

    >>> pool = BudgetPool(Budget(usd=1.0))
    >>> pool.lease("a", {"usd": 0.6}), pool.lease("b", {"usd": 0.6})  # b does not fit while a is open
    (True, False)
    >>> pool.settle("a", {"usd": 0.1})  # a spent less than its worst case: the rest comes back
    >>> pool.lease("b", {"usd": 0.6})
    True
    >>> pool.abandon("b")  # b's worker died: its worst case counts as spent
    >>> pool.spent()["usd"], pool.lease("b", {"usd": 0.1})  # and the id is closed
    (0.7, False)
    """

    def __init__(self, budget: Budget, *, name: str = "global") -> None:
        if "seconds" in budget.limits():
            raise ValueError("a shared budget cannot limit seconds: each run has its own clock")
        self.budget = budget
        self.ledger = Ledger(budget, name=name)
        self._open: dict[str, Reservation] = {}
        self._closed: set[str] = set()
        self._lock = threading.Lock()
        self.refused = 0
        self.abandoned = 0

    def lease(self, lease_id: str, amounts: Mapping[str, float]) -> bool:
        """Hold ``amounts`` for a run; False (nothing held) when the pool cannot pay them now or the id was
        already used."""
        with self._lock:
            if lease_id in self._open or lease_id in self._closed:
                self.refused += 1
                return False
            wanted = {dim: float(v) for dim, v in amounts.items() if v}
            try:
                self._open[lease_id] = self.ledger.reserve(wanted, kind="lease", name=lease_id)
            except BudgetExceeded:
                self.refused += 1
                return False
            return True

    def settle(self, lease_id: str, actual: Mapping[str, float]) -> None:
        """Charge what the run really spent (more than its lease is recorded as an overrun, never hidden)."""
        with self._lock:
            res = self._open.pop(lease_id, None)
            self._closed.add(lease_id)
            if res is not None:
                self.ledger.settle(res, {dim: float(v) for dim, v in actual.items() if v})

    def release(self, lease_id: str) -> None:
        """Give a lease back unspent (its run stopped before it cost anything)."""
        with self._lock:
            res = self._open.pop(lease_id, None)
            self._closed.add(lease_id)
            if res is not None:
                self.ledger.release(res)

    def abandon(self, lease_id: str) -> None:
        """Settle a lease whose run was lost at its worst case, and close its id. A no-op for a lease
        already settled or released."""
        with self._lock:
            res = self._open.pop(lease_id, None)
            self._closed.add(lease_id)
            if res is not None:
                self.abandoned += 1
                self.ledger.settle(res, detail="abandoned: charged at its worst case")

    def record(self, spent: Mapping[str, float], *, name: str = "earlier runs") -> None:
        """Count spending made before the pool existed (the finished runs of a grid being resumed)."""
        with self._lock:
            res = self.ledger.reserve({}, kind="earlier", name=name)
            self.ledger.settle(res, {dim: float(v) for dim, v in spent.items() if v})

    def open_leases(self) -> list[str]:
        with self._lock:
            return list(self._open)

    def spent(self) -> dict[str, float]:
        with self._lock:
            return {dim: v for dim, v in self.ledger.spent.items() if v}

    def reserved(self) -> dict[str, float]:
        with self._lock:
            return {dim: v for dim, v in self.ledger.reserved.items() if v > _EPS}

    def snapshot(self) -> dict[str, Any]:
        """Limits, spent, held, counts: what a report shows (plain data, picklable)."""
        with self._lock:
            return {
                "limits": self.budget.limits(),
                "spent": {dim: v for dim, v in self.ledger.spent.items() if v},
                "reserved": {dim: v for dim, v in self.ledger.reserved.items() if v > _EPS},
                "open": len(self._open),
                "refused": self.refused,
                "abandoned": self.abandoned,
                "overruns": [o.to_dict() for o in self.ledger.overruns],
            }
