"""An in-process generation stops at its call's timeout or when the task awaiting it is cancelled.

Before, ``local/`` and ``hf/`` ignored the Gateway's timeout (capped to the time budget left), so a call ran
past a ``seconds`` budget, and a cancelled ``acompletion`` went on generating in its worker thread for
nobody. Now the shell's :class:`StopSignal` fires, the provider cuts its generation, and the call fails with
a ``GenerationTimeout`` whose tokens the Gateway charges; it is not retried (it would run out again).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import pytest

from thrifty import Provider, register_provider
from thrifty.budget import Budget, Ledger
from thrifty.models import Gateway, ModelError, inprocess
from thrifty.models._litellm import get_litellm
from thrifty.models.inprocess import Generation, GenerationTimeout, InProcessProvider, StopSignal, stop_signal

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


class _Clock:
    """A monotonic clock that moves ``step`` seconds each time it is read."""

    def __init__(self, step: float) -> None:
        self.now = 0.0
        self.step = step

    def monotonic(self) -> float:
        self.now += self.step
        return self.now


@pytest.fixture(autouse=True)
def _provider() -> None:
    register_provider(Provider(_Waiting.prefix, handler=_Waiting, in_process=True, free=True), replace=True)
    _Waiting.ended.clear()
    _Waiting.started.clear()


def test_a_signal_fires_past_its_deadline_or_when_cancelled_and_stays_fired(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(inprocess, "time", _Clock(1.0))
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
    monkeypatch.setattr(inprocess, "time", _Clock(1.0))
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
