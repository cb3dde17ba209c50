"""An in-process generation stops at its call's timeout, when the task awaiting it is cancelled, or when
its run is stopping.

Before, ``local/`` and ``hf/`` ignored the Gateway's timeout (capped to the time budget left), so a call ran
past a ``seconds`` budget; a cancelled ``acompletion`` went on generating in its worker thread for nobody;
and a cancelled stream or ``arun`` (or Ctrl-C in a grid, a server's shutdown) waited for the generation
under way to end. Now the call's :class:`StopSignal` fires, the provider cuts its generation, and the call
fails with a ``GenerationTimeout`` whose tokens the Gateway charges (not retried: it would run out again),
or, when the run is stopping, with the run's own stop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import pytest

from tests.clocks import FakeClock
from thrifty import Agent, Provider, register_provider
from thrifty.budget import Budget, BudgetExceeded, Ledger
from thrifty.models import Gateway, ModelError, stopping
from thrifty.models._litellm import get_litellm
from thrifty.models.inprocess import Generation, GenerationTimeout, InProcessProvider, StopSignal, stop_signal
from thrifty.workflows.stream import RunCancelled, stop_on

litellm: Any = get_litellm()
MSG = [{"role": "user", "content": "hello"}]


class _Waiting(InProcessProvider):
    """Generates one token per check of its stop signal, up to ``max_tokens``; records how it ended."""

    prefix = "stopwait"
    model_errors = (ValueError,)
    ended: ClassVar[list[str]] = []
    started = threading.Event()

    def generate(self, model: str, messages: Sequence[Any], params: Mapping[str, Any]) -> Generation:
        signal = stop_signal()
        made = 0
        self.started.set()
        while made < int(params.get("max_tokens") or 16):
            if signal():
                break
            made += 1
            if signal.cancelled.wait(0.005):  # a slow token; wakes at once on a cancel
                continue
        self.ended.append("stopped" if signal.fired else "finished")
        return {
            "message": litellm.Message(content="x" * made, role="assistant"),
            "finish_reason": "stop",
            "prompt_tokens": 3,
            "completion_tokens": made,
        }


@pytest.fixture(autouse=True)
def _provider() -> None:
    register_provider(Provider(_Waiting.prefix, handler=_Waiting, in_process=True, free=True), replace=True)
    _Waiting.ended.clear()
    _Waiting.started.clear()


def test_a_signal_fires_past_its_deadline_or_when_cancelled_and_stays_fired(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(stopping, "time", FakeClock(0.0, step=1.0))
    signal = StopSignal(timeout=2.5)  # deadline 3.5 on the clock read at 1.0
    assert [signal() for _ in range(3)] == [False, False, True]  # reads 2.0, 3.0, 4.0
    assert signal() and signal.fired
    cancelled = StopSignal()
    assert not cancelled()
    cancelled.cancelled.set()
    assert cancelled() and cancelled.fired
    assert not stop_signal()()  # outside a call: a signal that never fires


def test_a_generation_past_its_timeout_is_cut_charged_and_not_retried(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(stopping, "time", FakeClock(0.0, step=1.0))
    ledger = Ledger(Budget(model_requests=5))
    with pytest.raises(ModelError) as info:
        Gateway(ledger, retries=3, backoff=0).complete("stopwait/m", MSG, max_tokens=50, timeout=10)
    assert "GenerationTimeout" in str(info.value) and "timed out after 10 s" in str(info.value)
    assert _Waiting.ended == ["stopped"]
    assert len(ledger.events) == 1  # not retried: the same generation would only run out again
    (event,) = ledger.events
    assert not event.ok
    made = event.units["output_tokens"]
    assert 0 < made < 50  # what the cut generation made is charged, not 0 and not the reserved 50
    assert event.units["input_tokens"] == 3 and event.units["model_requests"] == 1


def test_a_generation_within_its_timeout_is_untouched() -> None:
    ledger = Ledger(Budget(model_requests=5))
    reply = Gateway(ledger).complete("stopwait/m", MSG, max_tokens=4, timeout=60)
    assert reply.content == "xxxx" and _Waiting.ended == ["finished"]


def test_cancelling_the_awaiting_task_stops_the_generation_in_its_thread() -> None:
    async def main() -> None:
        gateway = Gateway(Ledger(Budget(model_requests=5)))
        task = asyncio.create_task(gateway.acomplete("stopwait/m", MSG, max_tokens=100_000))
        await asyncio.to_thread(_Waiting.started.wait, 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    # the worker thread ended its loop on the cancel, long before 100,000 slow tokens
    for _ in range(200):
        if _Waiting.ended:
            break
        threading.Event().wait(0.05)
    assert _Waiting.ended == ["stopped"]


def test_a_cut_generation_is_a_litellm_timeout_carrying_its_tokens() -> None:
    exc = GenerationTimeout("cut", "stopwait/m", "stopwait", 7, 2)
    assert isinstance(exc, litellm.Timeout) and exc.spent_tokens == (7, 2) and exc.retryable is False


def _cut_by_a_stop(run: Any) -> BaseException | None:
    """Start ``run`` (it makes one slow in-process call) in a thread, set the stop once the generation is
    under way, and check the generation was cut, not run to its end."""
    stop = threading.Event()
    errors: list[BaseException] = []

    def work() -> None:
        try:
            run(stop)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=work)
    thread.start()
    assert _Waiting.started.wait(10)
    stop.set()
    thread.join(30)
    assert not thread.is_alive()
    assert _Waiting.ended == ["stopped"]  # before: "finished", 100,000 slow tokens later
    return errors[0] if errors else None


def test_a_stopping_run_cuts_its_generation_and_stops_as_the_run_s_next_charge_would() -> None:
    ledger = Ledger(Budget(model_requests=5))
    seen: list[Any] = []

    def run(stop: threading.Event) -> None:
        stop_on(ledger, stop)
        seen.append(Gateway(ledger, retries=3, backoff=0).complete("stopwait/m", MSG, max_tokens=100_000))

    error = _cut_by_a_stop(run)
    assert isinstance(error, RunCancelled) and not seen  # the run's stop, not a model error
    (event,) = ledger.events  # charged once, what it made; not retried
    assert not event.ok and "the run is stopping" in event.detail
    assert 0 < event.units["output_tokens"] < 100_000 and event.units["input_tokens"] == 3
    assert all(v == 0 for v in ledger.reserved.values())  # nothing left reserved


def test_cancelling_a_stream_cuts_the_generation_under_way() -> None:
    agent = Agent("stopwait/m", budget=Budget(model_requests=3), max_tokens=100_000)

    def run(stop: threading.Event) -> None:
        stream = agent.stream("Say x.")
        threading.Thread(target=lambda: (stop.wait(30), stream.cancel()), daemon=True).start()
        for _ in stream:
            pass
        assert stream.result is not None
        assert stream.result.stop_reason == "cancelled"

    assert _cut_by_a_stop(run) is None


def test_a_generation_stops_when_the_run_s_time_is_spent_by_the_ledger_s_clock() -> None:
    """The Gateway's timeout counts from when the provider starts, a little after the call was planned: a
    generation cut on it alone could end past the time limit (an overrun). The Ledger's own clock cuts it
    as the limit passes: here a clock that moves 1 s per read, against a 20 s budget."""
    ticks = FakeClock(0.0, step=1.0)
    ledger = Ledger(Budget(seconds=20), clock=ticks.monotonic)
    with pytest.raises(BudgetExceeded) as info:  # the time budget spent: a budget stop, not a model error
        Gateway(ledger, retries=0).complete("stopwait/m", MSG, max_tokens=100_000)
    assert info.value.dimension == "seconds"
    assert _Waiting.ended == ["stopped"]
    (event,) = ledger.events
    # cut as the Ledger's clock passed 20 s (a few reads of it per token), not 19 real seconds later
    assert "the time budget is spent" in event.detail and 0 < event.units["output_tokens"] < 30
