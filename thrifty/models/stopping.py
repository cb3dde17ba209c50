"""When an in-process generation must end early (no LiteLLM import: the Gateway uses it on every call).

While an in-process provider's ``generate`` runs, :func:`stop_signal` returns the call's :class:`StopSignal`.
It fires once

* the call's ``timeout`` has passed (the Gateway caps that timeout to the time budget left);
* the asyncio task awaiting the call was cancelled;
* the run is stopping: the Gateway makes the call under :func:`stopping_when` with its Ledger's
  :meth:`~thrifty.budget.Ledger.stopping` (a cancelled stream or ``arun``, Ctrl-C in a grid or batch, a
  server shutting down), whose next charge would be refused anyway;
* the run's time budget is spent, by the Ledger's own clock (``time_left``): the timeout alone counts from
  when the provider starts, a little after the Gateway planned it.

A provider that checks it between tokens (``local/`` and ``hf/`` do) ends its generation there; see
:mod:`thrifty.models.inprocess` for what the call then reports.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class StopSignal:
    """When a generation must end early: its ``timeout`` (seconds from now) has passed, ``cancelled`` is set,
    or ``stopping()`` says the run is stopping. Calling it answers whether to stop now; once it has said
    yes, :attr:`fired` stays true and :attr:`why` says which."""

    def __init__(
        self,
        timeout: float | None = None,
        cancelled: threading.Event | None = None,
        stopping: Callable[[], bool] | None = None,
        time_left: Callable[[], float] | None = None,
    ) -> None:
        self.timeout = timeout
        self.deadline = None if timeout is None else time.monotonic() + max(timeout, 0.0)
        self.cancelled = cancelled if cancelled is not None else threading.Event()
        self.stopping = stopping
        self.time_left = time_left
        self.fired = False
        self.why = ""

    def __call__(self) -> bool:
        if self.fired:
            return True
        if self.cancelled.is_set():
            self.why = "cancelled"
        elif self.stopping is not None and self.stopping():
            self.why = "stopped: the run is stopping"
        elif self.deadline is not None and time.monotonic() >= self.deadline:
            self.why = f"timed out after {self.timeout:g} s"
        elif self.time_left is not None and self.time_left() <= 0:
            self.why = "timed out: the time budget is spent"
        self.fired = bool(self.why)
        return self.fired


_current: contextvars.ContextVar[StopSignal | None] = contextvars.ContextVar("thrifty_stop", default=None)
_ambient: contextvars.ContextVar[tuple[Callable[[], bool], Callable[[], float] | None] | None] = (
    contextvars.ContextVar("thrifty_stopping", default=None)
)


def stop_signal() -> StopSignal:
    """The running in-process call's stop signal (one that never fires outside a call)."""
    return _current.get() or StopSignal()


@contextmanager
def stopping_when(
    stopping: Callable[[], bool], time_left: Callable[[], float] | None = None
) -> Iterator[None]:
    """In-process calls made inside this block (and in threads or tasks started from it) also stop once
    ``stopping()`` is true or ``time_left()`` (seconds) is 0 or less."""
    token = _ambient.set((stopping, time_left))
    try:
        yield
    finally:
        _ambient.reset(token)


@contextmanager
def generating(timeout: float | None, cancelled: threading.Event | None) -> Iterator[StopSignal]:
    """The stop signal of one in-process call (what :func:`stop_signal` returns inside the block)."""
    stopping, time_left = _ambient.get() or (None, None)
    signal = StopSignal(timeout, cancelled, stopping, time_left)
    token = _current.set(signal)
    try:
        yield signal
    finally:
        _current.reset(token)
