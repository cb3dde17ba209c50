"""Why a run stopped, and the exception a Ledger raises when a charge would break a limit."""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from enum import StrEnum

#: Told of every budget stop a run declares (``stop_reason(BUDGET_EXHAUSTED, dim)``), with the dimension,
#: before the stop is returned. A run that pauses at its budget sets it (and it may raise to pause).
ON_BUDGET_STOP: contextvars.ContextVar[Callable[[str], None] | None] = contextvars.ContextVar(
    "thrifty_on_budget_stop", default=None
)


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
        super().__init__(
            f"budget '{ledger}' cannot pay {requested:g} {dimension}: only {max(available, 0):g} left"
        )

    @property
    def stop_reason(self) -> str:
        return stop_reason(StopKind.BUDGET_EXHAUSTED, self.dimension)
