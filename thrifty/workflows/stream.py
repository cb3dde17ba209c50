"""A run's events as they happen: ``Agent.stream(...)`` / ``Agent.astream(...)`` and the CLI's live view.

Every event says which run it belongs to, its place in the stream (``index``) and the budget at that moment
(``remaining`` per limited dimension, ``usd_spent``). Four kinds, told apart by ``kind``:

==========  =================================================================================================
``kind``    what happened
==========  =================================================================================================
start       the run began (its id, question, strategy, model and limits)
trace       a node did something (``event``: the typed trace entry of :mod:`thrifty.agents.events`: a plan,
            tool calls, an observation, a verdict, a tree expansion, an answer, a stop...)
charge      the Ledger settled a charge (``charge``: a model call, a tool call, a memory operation, with its
            units and dollars)
result      the run ended (``result``: its :class:`~thrifty.workflows.result.RunResult`); always the last
==========  =================================================================================================

::

    for event in agent.stream("Which magazine was started first?"):
        if event.kind == "charge":
            print(event.charge["kind"], event.charge["usd"], event.remaining)
        elif event.kind == "result":
            print(event.result.answer)

The run goes on in a worker thread while the caller reads; a consumer that stops reading early (``break``,
closing the generator) cancels the run at its next step, and the run still ends with its charges recorded.
An ``async for`` that stops early closes its generator only at the event loop's next turn; read it in
``async with agent.astream(...) as stream:`` (or call ``await stream.aclose()``) to have the run ended, and
``stream.result`` set, when the block is left (``with agent.stream(...) as stream:`` likewise).
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from types import TracebackType
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from thrifty.agents.events import TraceEvent
from thrifty.budget import ChargeEvent, Ledger, Reservation
from thrifty.redact import redact
from thrifty.workflows.result import RunResult

__all__ = [
    "ChargeStreamEvent",
    "ResultStreamEvent",
    "RunCancelled",
    "RunEvent",
    "RunStream",
    "StartStreamEvent",
    "TraceStreamEvent",
]


class StreamEventBase(BaseModel):
    run_id: str
    index: int = 0  # the event's place in the stream (0, 1, 2, ...)
    remaining: dict[str, float] = Field(
        default_factory=dict, description="What is left per limited dimension."
    )
    usd_spent: float = 0.0


class StartStreamEvent(StreamEventBase):
    kind: Literal["start"] = "start"
    question: str = ""
    strategy: str = ""
    model: str = ""
    budget: dict[str, float] = Field(default_factory=dict)
    resumed: bool = False


class TraceStreamEvent(StreamEventBase):
    kind: Literal["trace"] = "trace"
    event: TraceEvent

    def describe(self) -> str:
        return self.event.describe()


class ChargeStreamEvent(StreamEventBase):
    kind: Literal["charge"] = "charge"
    charge: dict[str, Any]

    def describe(self) -> str:
        c = self.charge
        return f"charged {c['kind']} {c['name']}: ${c['usd']:.6f}" + (
            "" if c.get("ok", True) else " (failed)"
        )


class ResultStreamEvent(StreamEventBase):
    kind: Literal["result"] = "result"
    result: RunResult

    def describe(self) -> str:
        return f"{self.result.stop_reason}: {self.result.answer}"


RunEvent = Annotated[
    StartStreamEvent | TraceStreamEvent | ChargeStreamEvent | ResultStreamEvent, Field(discriminator="kind")
]
"""Any event of a run's stream."""


class RunCancelled(KeyboardInterrupt):
    """Raised inside a run whose stream was closed or cancelled: the run stops as ``cancelled``.

    A KeyboardInterrupt, so that the runner ends the run as it ends one stopped with Ctrl-C (the best answer
    so far and every charge kept)."""


def refusing_after(
    stop: threading.Event, error: Callable[[], BaseException] | None = None
) -> Callable[[Reservation], None]:
    """A Ledger reserve listener that refuses every charge once ``stop`` is set: the run ends ``cancelled`` at
    its next model or tool call, not only at its next trace event (the call already under way ends first
    and is charged; the refused reservation is handed back, nothing is spent after it). ``error`` makes the
    exception raised instead of RunCancelled (the server's shutdown leaves a checkpointed run resumable)."""

    def refuse(reservation: Reservation) -> None:
        if stop.is_set():
            reservation.ledger.release(reservation)
            raise (
                error()
                if error is not None
                else RunCancelled("cancelled: the run stops before its next call")
            )

    return refuse


def stop_on(ledger: Ledger, stop: threading.Event, error: Callable[[], BaseException] | None = None) -> None:
    """Stop the run on ``ledger`` once ``stop`` is set: every later charge is refused (:func:`refusing_after`)
    and an in-process model generation under way is cut at its next token (``Ledger.stops``)."""
    ledger.reserve_listeners.append(refusing_after(stop, error))
    ledger.stops.append(stop)


_DONE = object()

#: Starts the run: given the stream's trace callback and its cancel flag, returns the RunResult.
Starter = Callable[[Callable[[TraceEvent], None]], RunResult]


class RunStream:
    """One run executed in a worker thread, its events handed over through a queue as they happen.

    ``start(on_trace)`` runs the run (on ``ledger``, which the stream listens to for charges) and returns its
    RunResult. Iterate it (``for event in stream``) or ``async for`` it; :meth:`cancel` stops the run at its
    next step. Events are made in the run's thread, so their budget fields are read at the moment they
    happen.
    """

    def __init__(self, ledger: Ledger, run_id: str, start: Starter, *, head: dict[str, Any] | None = None):
        self.ledger = ledger
        self.run_id = run_id
        self._start = start
        self._head = dict(head or {})
        if isinstance(self._head.get("question"), str):  # masked, as the run itself masks it (runner.execute)
            self._head["question"] = redact(self._head["question"])
        self._index = 0
        self._lock = threading.Lock()
        self._cancel = threading.Event()
        self._sinks: list[Callable[[Any], None]] = []
        self._thread: threading.Thread | None = None
        self._closed = False
        self.result: RunResult | None = None
        self.error: BaseException | None = None
        stop_on(ledger, self._cancel)

    # ------------------------------------------------------------------------------- inside the run
    def _budget(self) -> dict[str, Any]:
        remaining = self.ledger.remaining()
        return {
            "remaining": {k: round(v, 8) for k, v in remaining.items()},
            "usd_spent": self.ledger.usd_spent,
        }

    def _emit(self, make: Callable[[int, dict[str, Any]], Any]) -> None:
        with self._lock:
            event = make(self._index, self._budget())
            self._index += 1
            sinks = list(self._sinks)
        for sink in sinks:
            sink(event)

    def _on_trace(self, event: TraceEvent) -> None:
        self._emit(lambda i, b: TraceStreamEvent(run_id=self.run_id, index=i, event=event, **b))
        if self._cancel.is_set():
            raise RunCancelled(f"run {self.run_id} cancelled")

    def _on_charge(self, charge: ChargeEvent) -> None:
        self._emit(lambda i, b: ChargeStreamEvent(run_id=self.run_id, index=i, charge=charge.to_dict(), **b))

    def _run(self) -> None:
        self.ledger.listeners.append(self._on_charge)
        try:
            self._emit(lambda i, b: StartStreamEvent(run_id=self.run_id, index=i, **self._head, **b))
            self.result = self._start(self._on_trace)
            result = self.result
            self._emit(lambda i, b: ResultStreamEvent(run_id=self.run_id, index=i, result=result, **b))
        except BaseException as exc:  # handed to the reader, raised there
            self.error = exc
        finally:
            if self._on_charge in self.ledger.listeners:
                self.ledger.listeners.remove(self._on_charge)
            with self._lock:
                sinks = list(self._sinks)
            for sink in sinks:
                sink(_DONE)

    def _launch(self, sink: Callable[[Any], None]) -> None:
        if self._thread is not None:
            raise RuntimeError("a RunStream is read once")
        if self._closed:
            raise RuntimeError("this RunStream was closed before it was read: start a new one")
        self._sinks.append(sink)
        self._thread = threading.Thread(target=self._run, name=f"thrifty-run-{self.run_id}", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------------------------- reading
    def cancel(self) -> None:
        """Stop the run at its next step (it ends ``cancelled``, its best answer and charges kept)."""
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        """Whether the run was asked to stop (by :meth:`cancel` or by its reader stopping early)."""
        return self._cancel.is_set()

    def __iter__(self) -> Iterator[RunEvent]:
        inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._launch(inbox.put)
        try:
            while True:
                item = inbox.get()
                if item is _DONE:
                    break
                yield item
        finally:
            self._finish()

    async def __aiter__(self) -> AsyncIterator[RunEvent]:
        loop = asyncio.get_running_loop()
        inbox: asyncio.Queue[Any] = asyncio.Queue()

        def sink(item: Any) -> None:
            loop.call_soon_threadsafe(inbox.put_nowait, item)

        self._launch(sink)
        try:
            while True:
                item = await inbox.get()
                if item is _DONE:
                    break
                yield item
        finally:
            if self._thread is not None and self._thread.is_alive():
                self.cancel()
                await asyncio.to_thread(self._thread.join)
            self._raise()

    def close(self) -> None:
        """Stop the run if it is still going and wait until it has ended (``result`` is then set, its charges
        settled); raise its error, if it failed. What leaving ``with agent.stream(...) as stream:`` does."""
        self._closed = True
        self._finish()

    async def aclose(self) -> None:
        """:meth:`close` for asyncio, without blocking the event loop: ``async with agent.astream(...) as
        stream:`` calls it on leaving, so that a reader that stops early (``break``) has the run ended, and
        ``stream.result`` set, on the next line (an ``async for`` alone only closes it a little later)."""
        self._closed = True
        if self._thread is not None and self._thread.is_alive():
            self.cancel()
            await asyncio.to_thread(self._thread.join)
        self._raise()

    def __enter__(self) -> RunStream:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is None:
            self.close()
            return
        self._closed = True
        if self._thread is not None and self._thread.is_alive():
            self.cancel()
            self._thread.join()  # the body's own exception goes on; the run has ended

    async def __aenter__(self) -> RunStream:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is None:
            await self.aclose()
            return
        self._closed = True
        if self._thread is not None and self._thread.is_alive():
            self.cancel()
            await asyncio.shield(asyncio.to_thread(self._thread.join))

    def _finish(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            self.cancel()  # the reader stopped early
            self._thread.join()
        self._raise()

    def _raise(self) -> None:
        error, self.error = self.error, None
        if error is not None and not isinstance(error, RunCancelled):
            raise error


def stream_task(
    spec: Any,
    *,
    store: bool = True,
    ledger: Ledger | None = None,
    on_store_error: Callable[[Exception], None] | None = None,
    run_id: str | None = None,
    **durable: Any,
) -> RunStream:
    """A task file's run as a :class:`RunStream` (what the CLI's live view reads). ``durable``: the
    ``checkpoint``, ``resume`` and ``checkpoint_meta`` of :func:`thrifty.workflows.runner.execute`."""
    from thrifty.workflows.runner import new_run_id, run_ledger, run_task

    ledger = ledger or run_ledger(spec.budget)
    run_id = run_id or new_run_id()

    def start(on_trace: Callable[[TraceEvent], None]) -> RunResult:
        return run_task(
            spec,
            on_trace=on_trace,
            store=store,
            ledger=ledger,
            on_store_error=on_store_error,
            run_id=run_id,
            **durable,
        )

    head = {
        "question": spec.rendered_question(),
        "strategy": spec.strategy.name,
        "model": spec.model,
        "budget": spec.budget.limits(),
        "resumed": bool(durable.get("resume")),
    }
    return RunStream(ledger, run_id, start, head=head)
