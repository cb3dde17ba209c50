"""When an in-process generation must end early (no LiteLLM import: the Gateway uses it on every call).

While an in-process provider's ``generate`` runs, :func:`stop_signal` returns the call's :class:`StopSignal`.
It fires once

* the call's ``timeout`` has passed (the Gateway caps that timeout to the time budget left);
* the asyncio task awaiting the call was cancelled;
* the run is stopping: the Gateway makes the call under :func:`stopping_when` with its Ledger, whose
  :meth:`~thrifty.budget.Ledger.stopping` says so (a cancelled stream or ``arun``, Ctrl-C in a grid or
  batch, a server shutting down) when its next charge would be refused anyway;
* the run's time budget is spent, by that Ledger's own clock: the timeout alone counts from when the
  provider starts, a little after the Gateway planned it.

A provider that checks it between tokens (``local/`` and ``hf/`` do) ends its generation there; see
:mod:`thrifty.models.inprocess` for what the call then reports.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from thrifty.budget import Ledger


class StopSignal:
    """When a generation must end early: its ``timeout`` (seconds from now) has passed, ``cancelled`` is set,
    or the run on ``ledger`` is stopping or out of time. Calling it answers whether to stop now; once it has
    said yes, :attr:`fired` stays true and :attr:`why` says which."""

    def __init__(
        self,
        timeout: float | None = None,
        cancelled: threading.Event | None = None,
        ledger: Ledger | None = None,
    ) -> None:
        self.timeout = timeout
        self.deadline = None if timeout is None else time.monotonic() + max(timeout, 0.0)
        self.cancelled = cancelled if cancelled is not None else threading.Event()
        self.ledger = ledger
        self.fired = False
        self.why = ""

    def __call__(self) -> bool:
        if self.fired:
            return True
        if self.cancelled.is_set():
            self.why = "cancelled"
        elif self.ledger is not None and self.ledger.stopping():
            self.why = "stopped: the run is stopping"
        elif self.deadline is not None and time.monotonic() >= self.deadline:
            self.why = f"timed out after {self.timeout:g} s"
        elif self.ledger is not None and self.ledger.available("seconds") <= 0:
            self.why = "timed out: the time budget is spent"
        self.fired = bool(self.why)
        return self.fired


_current: contextvars.ContextVar[StopSignal | None] = contextvars.ContextVar("thrifty_stop", default=None)
_ambient: contextvars.ContextVar[Ledger | None] = contextvars.ContextVar("thrifty_stopping", default=None)


def stop_signal() -> StopSignal:
    """The running in-process call's stop signal (one that never fires outside a call)."""
    return _current.get() or StopSignal()


@contextmanager
def stopping_when(ledger: Ledger) -> Iterator[None]:
    """In-process calls made inside this block (and in threads or tasks started from it) also stop once the
    run on ``ledger`` is stopping or its time budget is spent."""
    token = _ambient.set(ledger)
    try:
        yield
    finally:
        _ambient.reset(token)


@contextmanager
def generating(timeout: float | None, cancelled: threading.Event | None) -> Iterator[StopSignal]:
    """The stop signal of one in-process call (what :func:`stop_signal` returns inside the block)."""
    signal = StopSignal(timeout, cancelled, _ambient.get())
    token = _current.set(signal)
    try:
        yield signal
    finally:
        _current.reset(token)
