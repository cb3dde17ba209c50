"""Why a run stopped, and the exception a Ledger raises when a charge would break a limit."""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable
from enum import StrEnum
from typing import TypeVar

_T = TypeVar("_T")
_R = TypeVar("_R")

#: Told of every budget stop a run declares (``stop_reason(BUDGET_EXHAUSTED, dim)``), with the dimension,
#: before the stop is returned. A run that pauses at its budget sets it (and it may raise to pause).
ON_BUDGET_STOP: contextvars.ContextVar[Callable[[str], None] | None] = contextvars.ContextVar(
    "thrifty_on_budget_stop", default=None
)


class WorkerBudgetStops:
    """Budget stops declared in worker threads a node starts itself (self-consistency samples, the value
    tree's parallel tool calls), told to the run's :data:`ON_BUDGET_STOP` hook in the node's own thread.

    A run that pauses at its budget raises a LangGraph interrupt from that hook, and an interrupt must come
    from the node, not from a thread it started (where the hook is not even set: a thread starts with an
    empty context). So a worker only records the binding dimension (:meth:`worker`, :meth:`record`) and
    goes on to its own end as in a stopping run; once the workers have joined, the node calls
    :meth:`declare`, which tells the hook of the first stop recorded: a pausing run pauses there (its
    completed calls are replayed free when the node runs again on resume); a stopping run has no hook and
    nothing changes.
    """

    def __init__(self) -> None:
        self.hook = ON_BUDGET_STOP.get()  # the node's: read in its thread
        self.dimensions: list[str] = []
        self._lock = threading.Lock()

    def record(self, dimension: str) -> None:
        with self._lock:
            self.dimensions.append(dimension)

    def worker(self, fn: Callable[[_T], _R]) -> Callable[[_T], _R]:
        """``fn`` as a worker's function: the budget stops it declares are recorded, not told to the hook."""

        def run(item: _T) -> _R:
            token = ON_BUDGET_STOP.set(self.record if self.hook is not None else None)
            try:
                return fn(item)
            finally:
                ON_BUDGET_STOP.reset(token)

        return run

    def declare(self) -> None:
        """In the node's thread, after the workers joined: tell the hook of the first stop recorded (a
        pausing run's hook raises its interrupt here)."""
        with self._lock:
            first = self.dimensions[0] if self.dimensions else None
        if self.hook is not None and first is not None:
            self.hook(first)


class StopKind(StrEnum):
    COMPLETED = "completed"
    BUDGET_EXHAUSTED = "budget_exhausted"
    MAX_STEPS = "max_steps"
    ERROR = "error"
    CANCELLED = "cancelled"


def stop_reason(kind: StopKind | str, dimension: str | None = None) -> str:
    """The typed stop reason string: ``completed`` or ``budget_exhausted:<dimension>`` and so on.

    >>> stop_reason("completed"), stop_reason(StopKind.BUDGET_EXHAUSTED, "usd")
    ('completed', 'budget_exhausted:usd')
    """
    kind = StopKind(kind)
    if kind is StopKind.BUDGET_EXHAUSTED:
        hook = ON_BUDGET_STOP.get()
        if hook is not None:
            hook(dimension or "unknown")
        return f"{kind.value}:{dimension or 'unknown'}"
    return kind.value


class BudgetExceeded(Exception):
    """A reservation or check would take a dimension past its hard limit.

    Carries the dimension so the run can stop with ``budget_exhausted:<dimension>``.
    """

    def __init__(self, dimension: str, requested: float, available: float, ledger: str = "run") -> None:
        self.dimension = dimension
        self.requested = requested
        self.available = available
        self.ledger = ledger
        if dimension == "seconds" and requested <= 0:  # a check of the clock, not a reservation
            text = f"budget '{ledger}' is out of time: its seconds limit has passed"
        else:
            text = f"budget '{ledger}' cannot pay {requested:g} {dimension}: only {max(available, 0):g} left"
        super().__init__(text)

    @property
    def stop_reason(self) -> str:
        return stop_reason(StopKind.BUDGET_EXHAUSTED, self.dimension)
