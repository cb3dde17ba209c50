"""RetryPolicy: the first attempt runs directly; after a retryable failure tenacity runs the rest, with the
same attempt count, waits and hooks as if it had run them all."""

from __future__ import annotations

import asyncio

import pytest
import tenacity

from thrifty.budget.retry import RetryPolicy


class Flaky(Exception):
    pass


class Fatal(Exception):
    pass


def failing(errors: list[Exception], result: str = "ok"):
    calls: list[int] = []

    def fn() -> str:
        calls.append(1)
        if errors:
            raise errors.pop(0)
        return result

    return fn, calls


def test_first_success_runs_once_without_tenacity(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*a: object, **k: object) -> None:
        raise AssertionError("tenacity must not be entered when the first attempt succeeds")

    monkeypatch.setattr("thrifty.budget.retry.Retrying.__init__", boom)
    fn, calls = failing([])
    assert RetryPolicy(attempts=3, retry=lambda e: True).call(fn) == "ok"
    assert len(calls) == 1


def test_retries_until_success_and_counts_every_attempt() -> None:
    fn, calls = failing([Flaky(), Flaky()])
    sleeps: list[int] = []
    policy = RetryPolicy(
        attempts=3, retry=lambda e: isinstance(e, Flaky), before_sleep=lambda: sleeps.append(1)
    )
    assert policy.call(fn) == "ok"
    assert len(calls) == 3
    assert len(sleeps) == 2  # one wait before each retry, the first failure's included


def test_gives_up_after_attempts_and_raises_the_last_failure() -> None:
    first, last = Flaky("first"), Flaky("last")
    fn, calls = failing([first, Flaky("second"), last, Flaky("never")])
    with pytest.raises(Flaky) as info:
        RetryPolicy(attempts=3, retry=lambda e: True).call(fn)
    assert info.value is last
    assert len(calls) == 3


def test_not_retryable_is_raised_at_once() -> None:
    fn, calls = failing([Fatal()])
    with pytest.raises(Fatal):
        RetryPolicy(attempts=5, retry=lambda e: isinstance(e, Flaky)).call(fn)
    assert len(calls) == 1


def test_a_later_non_retryable_failure_stops_the_retries() -> None:
    fn, calls = failing([Flaky(), Fatal(), Flaky()])
    with pytest.raises(Fatal):
        RetryPolicy(attempts=5, retry=lambda e: isinstance(e, Flaky)).call(fn)
    assert len(calls) == 2


def test_single_attempt_never_retries() -> None:
    fn, calls = failing([Flaky()])
    with pytest.raises(Flaky):
        RetryPolicy(attempts=1, retry=lambda e: True).call(fn)
    assert len(calls) == 1


def test_before_sleep_can_stop_the_retries() -> None:
    fn, calls = failing([Flaky(), Flaky()])

    def out_of_time() -> None:
        raise TimeoutError("time budget spent")

    with pytest.raises(TimeoutError):
        RetryPolicy(attempts=3, retry=lambda e: True, before_sleep=out_of_time).call(fn)
    assert len(calls) == 1


def test_waits_follow_the_exponential_schedule_from_the_first_failure(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    waits: list[float] = []
    monkeypatch.setattr(tenacity.Retrying, "__init__", _with_sleep(tenacity.Retrying.__init__, waits.append))
    fn, _calls = failing([Flaky(), Flaky(), Flaky()])
    RetryPolicy(attempts=4, retry=lambda e: True, backoff=0.5, max_wait=1.5).call(fn)
    assert waits == [0.5, 1.0, 1.5]  # 0.5 * 2**(n-1), capped at max_wait


def _with_sleep(init, sleep):  # type: ignore[no-untyped-def]
    def patched(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        kwargs["sleep"] = sleep
        init(self, *args, **kwargs)

    return patched


def test_async_twin_retries_and_replays_the_first_failure() -> None:
    errors: list[Exception] = [Flaky(), Flaky()]
    calls: list[int] = []

    async def fn() -> str:
        calls.append(1)
        if errors:
            raise errors.pop(0)
        return "ok"

    sleeps: list[int] = []
    policy = RetryPolicy(attempts=3, retry=lambda e: True, before_sleep=lambda: sleeps.append(1))
    assert asyncio.run(policy.acall(fn)) == "ok"
    assert len(calls) == 3 and len(sleeps) == 2


def test_async_twin_raises_non_retryable_at_once() -> None:
    calls: list[int] = []

    async def fn() -> str:
        calls.append(1)
        raise Fatal()

    with pytest.raises(Fatal):
        asyncio.run(RetryPolicy(attempts=3, retry=lambda e: isinstance(e, Flaky)).acall(fn))
    assert len(calls) == 1


def test_a_failure_that_asks_for_a_longer_wait_gets_it(monkeypatch: pytest.MonkeyPatch) -> None:
    waits: list[float] = []
    monkeypatch.setattr(tenacity.Retrying, "__init__", _with_sleep(tenacity.Retrying.__init__, waits.append))
    fn, _calls = failing([Flaky(), Fatal(), Flaky()])
    policy = RetryPolicy(
        attempts=4,
        retry=lambda e: True,
        backoff=0.5,
        max_wait=4,
        wait_hint=lambda e: 3.0 if isinstance(e, Fatal) else None,  # e.g. a 429's Retry-After
    )
    assert policy.call(fn) == "ok"
    assert waits == [0.5, 3.0, 2.0]  # the hint raises a wait, never lowers one


def test_before_wait_sees_each_wait_and_can_refuse_it(monkeypatch: pytest.MonkeyPatch) -> None:
    waits: list[float] = []
    monkeypatch.setattr(tenacity.Retrying, "__init__", _with_sleep(tenacity.Retrying.__init__, waits.append))
    seen: list[float] = []

    def time_left(seconds: float) -> None:
        seen.append(seconds)
        if seconds > 1:
            raise TimeoutError("the wait would end past the time budget")

    fn, calls = failing([Flaky(), Flaky(), Flaky()])
    policy = RetryPolicy(attempts=4, retry=lambda e: True, backoff=1, max_wait=8, before_wait=time_left)
    with pytest.raises(TimeoutError):
        policy.call(fn)
    assert seen == [1.0, 2.0] and waits == [1.0]  # the 2 s wait was refused, not slept
    assert len(calls) == 2
