"""ToolRunner: bad calls become observations at no cost; real calls are reserved, charged and cached."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from thrifty.agents.context import RunContext
from thrifty.budget import Budget, BudgetExceeded, Ledger, Pricing
from thrifty.budget.awareness import declare_tool_charge
from thrifty.models.gateway import Gateway
from thrifty.tools import Observation, ToolError, ToolRunner, TransientToolError, tool


@tool(price=0.5)
def echo(text: str, times: int = 1) -> str:
    """Repeat text.

    Args:
        text: What to repeat.
        times: How many times.
    """
    return text * times


@tool(batch_arg="items", price=0.1)
def upper(items: list[str]) -> list[str]:
    """Upper-case several strings in one call."""
    return [i.upper() for i in items]


@tool
def structured(n: int) -> dict[str, object]:
    """Return structured data."""
    return {"n": n, "squares": [i * i for i in range(n)]}


def make_runner(budget: Budget | None = None, **kwargs: object) -> tuple[ToolRunner, Ledger]:
    ledger = Ledger(budget or Budget())
    return ToolRunner([echo, upper, structured], ledger, **kwargs), ledger  # type: ignore[arg-type]


def test_successful_call_is_reserved_settled_and_reported() -> None:
    runner, ledger = make_runner(Budget(tool_calls=5, usd=10))
    obs = runner.run("echo", {"text": "ab", "times": 2}, node="act")
    assert isinstance(obs, Observation)
    assert obs.ok and not obs.cached
    assert obs.content == "abab"
    assert obs.arguments == {"text": "ab", "times": 2}
    assert (obs.units, obs.usd, obs.attempts) == (1, 0.5, 1)
    assert obs.error is None
    [event] = ledger.events
    assert (event.kind, event.name, event.node, event.ok) == ("tool", "echo", "act", True)
    assert event.units == {"tool_calls": 1.0, "tool:echo": 1.0}
    assert event.usd == 0.5
    assert ledger.remaining()["tool_calls"] == 4


def test_structured_results_become_compact_json_and_long_ones_are_truncated() -> None:
    runner, _ = make_runner(max_chars=20)
    obs = runner.run("structured", {"n": 3})
    assert obs.content == '{"n":3,"squares":[0,1,4]}'[:20] + "\n...[truncated: 5 more chars]"
    runner2, _ = make_runner()
    assert runner2.run("structured", {"n": 3}).content == '{"n":3,"squares":[0,1,4]}'


def test_validation_error_is_an_observation_and_costs_nothing() -> None:
    runner, ledger = make_runner(Budget(tool_calls=1))
    obs = runner.run("echo", {"times": "many"})
    assert not obs.ok
    assert obs.units == 0 and obs.usd == 0
    assert "text: Field required" in obs.content
    assert "times:" in obs.content
    assert "echo(text: str, times: int = 1)" in obs.content
    assert len(obs.content) < 400
    assert ledger.events == []
    assert ledger.remaining()["tool_calls"] == 1
    assert runner.counters["rejected"] == 1


def test_arguments_may_be_a_json_string_and_malformed_json_is_explained() -> None:
    runner, ledger = make_runner()
    assert runner.run("echo", '{"text": "hi"}').content == "hi"
    bad = runner.run("echo", '{"text": "hi"')
    assert not bad.ok
    assert bad.content.startswith("error: arguments are not valid JSON")
    assert "echo(text: str" in bad.content
    not_object = runner.run("echo", "[1, 2]")
    assert not not_object.ok and "JSON object" in not_object.content
    assert len(ledger.events) == 1


def test_unknown_tool_lists_the_available_ones_without_charging() -> None:
    runner, ledger = make_runner()
    obs = runner.run("google", {"q": "x"})
    assert not obs.ok
    assert "unknown tool 'google'" in obs.content
    assert "echo, structured, upper" in obs.content
    assert ledger.events == []


def test_identical_repeat_is_served_from_the_cache_for_free() -> None:
    calls: list[str] = []

    @tool
    def count(text: str) -> str:
        """Count calls."""
        calls.append(text)
        return f"seen {text}"

    ledger = Ledger(Budget(tool_calls=1))
    runner = ToolRunner([count], ledger)
    first = runner.run("count", {"text": "a"})
    events = len(ledger.events)
    again = runner.run("count", '{"text":"a"}')  # same canonical arguments, given as JSON text
    assert again.ok and again.cached
    assert again.content == first.content
    assert (again.units, again.usd) == (0, 0.0)
    assert len(ledger.events) == events
    assert calls == ["a"]
    assert runner.counters["cache_hits"] == 1
    # the budget is spent, so a new call is refused, but the cached one is still served
    with pytest.raises(BudgetExceeded):
        runner.run("count", {"text": "b"})
    assert runner.run("count", {"text": "a"}).cached


def test_cache_can_be_disabled() -> None:
    runner, ledger = make_runner(cache=False)
    runner.run("echo", {"text": "a"})
    obs = runner.run("echo", {"text": "a"})
    assert not obs.cached
    assert len(ledger.events) == 2


def test_per_tool_limit_raises_budget_exceeded_with_the_dimension() -> None:
    runner, ledger = make_runner(Budget(per_tool={"echo": 2}))
    runner.run("echo", {"text": "a"})
    runner.run("echo", {"text": "b"})
    with pytest.raises(BudgetExceeded) as info:
        runner.run("echo", {"text": "c"})
    assert info.value.dimension == "tool:echo"
    assert info.value.stop_reason == "budget_exhausted:tool:echo"
    assert len(ledger.events) == 2
    assert runner.run("structured", {"n": 1}).ok  # other tools are unaffected


def test_usd_limit_uses_configured_price_over_declared() -> None:
    ledger = Ledger(Budget(usd=1.0))
    runner = ToolRunner([echo], ledger, pricing=Pricing(tools={"echo": 0.4}))
    assert runner.run("echo", {"text": "a"}).usd == pytest.approx(0.4)
    runner.run("echo", {"text": "b"})
    with pytest.raises(BudgetExceeded) as info:
        runner.run("echo", {"text": "c"})
    assert info.value.dimension == "usd"


def test_batch_arg_charges_one_unit_per_item() -> None:
    runner, ledger = make_runner(Budget(tool_calls=4))
    obs = runner.run("upper", {"items": ["a", "b", "c"]})
    assert obs.content == '["A","B","C"]'
    assert obs.units == 3
    assert obs.usd == pytest.approx(0.3)
    assert ledger.events[0].units == {"tool_calls": 3.0, "tool:upper": 3.0}
    with pytest.raises(BudgetExceeded):
        runner.run("upper", {"items": ["d", "e"]})
    assert runner.run("upper", {"items": ["d"]}).ok


def test_a_raising_tool_is_retried_each_attempt_charged_then_reported() -> None:
    attempts: list[int] = []

    @tool(retries=2, price=0.01)
    def flaky(x: int) -> int:
        """Always fails."""
        attempts.append(x)
        raise RuntimeError("backend down")

    ledger = Ledger(Budget(tool_calls=10))
    runner = ToolRunner([flaky], ledger)
    obs = runner.run("flaky", {"x": 1})
    assert not obs.ok
    assert obs.content == "error: RuntimeError: backend down (after 3 attempts)"
    assert obs.error == "RuntimeError: backend down"
    assert len(attempts) == 3
    assert obs.attempts == 3 and obs.units == 3 and obs.usd == pytest.approx(0.03)
    assert [e.ok for e in ledger.events] == [False, False, False]
    assert all(e.detail == "RuntimeError: backend down" for e in ledger.events)
    assert ledger.remaining()["tool_calls"] == 7
    # failures are not cached: the next identical call runs (and is charged) again
    runner.run("flaky", {"x": 1})
    assert len(attempts) == 6


def test_a_retry_that_succeeds_is_charged_for_both_attempts() -> None:
    state = {"n": 0}

    @tool
    def once_flaky() -> str:
        """Fails once."""
        state["n"] += 1
        if state["n"] == 1:
            raise ConnectionError("reset")
        return "fine"

    ledger = Ledger(Budget(tool_calls=5))
    obs = ToolRunner([once_flaky], ledger).run("once_flaky", {})
    assert obs.ok and obs.content == "fine" and obs.attempts == 2 and obs.units == 2
    assert [e.ok for e in ledger.events] == [False, True]


def test_a_retry_the_budget_cannot_pay_reports_the_failure() -> None:
    @tool(retries=3)
    def broken() -> str:
        """Always fails."""
        raise ValueError("nope")

    ledger = Ledger(Budget(tool_calls=2))
    obs = ToolRunner([broken], ledger).run("broken")
    assert not obs.ok and obs.attempts == 2
    assert obs.error == "ValueError: nope"
    assert ledger.remaining()["tool_calls"] == 0


def test_tool_error_is_not_retried() -> None:
    calls: list[int] = []

    @tool(retries=3)
    def picky(x: int) -> str:
        """Refuses odd numbers."""
        calls.append(x)
        raise ToolError("odd numbers are not allowed")

    ledger = Ledger()
    obs = ToolRunner([picky], ledger).run("picky", {"x": 1})
    assert obs.content == "error: odd numbers are not allowed"
    assert len(calls) == 1 and len(ledger.events) == 1


def test_a_transient_tool_error_is_retried_and_shown_without_its_class_name() -> None:
    calls: list[int] = []

    @tool(retries=2)
    def weather(city: str) -> str:
        """A service that is down."""
        calls.append(1)
        raise TransientToolError("the weather service is down; try again later")

    ledger = Ledger()
    obs = ToolRunner([weather], ledger).run("weather", {"city": "Oslo"})
    assert len(calls) == 3 and obs.attempts == 3  # retried, unlike a ToolError
    assert obs.content == "error: the weather service is down; try again later (after 3 attempts)"
    assert all(e.detail == "the weather service is down; try again later" for e in ledger.events)


def test_sync_tool_timeout_is_an_error_observation() -> None:
    release = threading.Event()

    @tool(timeout=0.1)
    def slow() -> str:
        """Hangs."""
        release.wait(5)
        return "late"

    ledger = Ledger()
    runner = ToolRunner([slow], ledger)
    started = time.monotonic()
    obs = runner.run("slow")
    release.set()
    runner.close()
    assert time.monotonic() - started < 2
    assert not obs.ok
    assert obs.error == "timed out after 0.1s"
    assert obs.attempts == 1  # timeouts are not retried by default
    assert [e.ok for e in ledger.events] == [False]
    assert runner.counters["timeouts"] == 1


async def test_async_tool_timeout_and_success_via_arun() -> None:
    @tool(timeout=0.05)
    async def sleepy(seconds: float) -> str:
        """Sleeps."""
        await asyncio.sleep(seconds)
        return "awake"

    ledger = Ledger()
    runner = ToolRunner([sleepy, echo], ledger)
    slow = await runner.arun("sleepy", {"seconds": 2})
    assert not slow.ok and slow.error == "timed out after 0.05s"
    fast = await runner.arun("sleepy", {"seconds": 0})
    assert fast.ok and fast.content == "awake"
    assert (await runner.arun("echo", '{"text": "z"}')).content == "z"  # sync tool from arun
    runner.close()


def test_async_tool_runs_from_sync_run() -> None:
    @tool(timeout=0.05)
    async def nap(seconds: float) -> str:
        """Sleeps."""
        await asyncio.sleep(seconds)
        return "done"

    runner = ToolRunner([nap], Ledger())
    assert runner.run("nap", {"seconds": 0}).content == "done"
    assert runner.run("nap", {"seconds": 1}).error == "timed out after 0.05s"
    runner.close()


def test_tool_without_timeout_runs_on_the_callers_thread_sync_and_async() -> None:
    seen: list[str] = []

    @tool(timeout=None, retries=1)
    def where(fail: bool = False) -> str:
        """Report the thread it ran on.

        Args:
            fail: Raise a refusal instead.
        """
        seen.append(threading.current_thread().name)
        if fail:
            raise ToolError("refused here")
        return "ok"

    ledger = Ledger()
    runner = ToolRunner([where], ledger, cache=False)
    assert runner.run("where").content == "ok"
    refused = runner.run("where", {"fail": True})
    assert refused.error == "refused here" and refused.attempts == 1  # a refusal is not retried
    assert asyncio.run(runner.arun("where")).content == "ok"
    assert seen == [threading.current_thread().name] * 3
    assert runner._pool is None  # no worker thread was ever started
    assert [e.ok for e in ledger.events] == [True, False, True]


def test_tool_timeout_must_be_positive_or_none() -> None:
    def fn() -> str:
        """Nothing."""
        return ""

    with pytest.raises(ValueError, match="timeout must be > 0"):
        tool(timeout=0)(fn)
    assert tool(timeout=None)(fn).timeout is None


def test_builtin_in_memory_tools_run_inline() -> None:
    from thrifty.tools.calculator import calculator

    assert calculator.timeout is None


def test_available_hides_a_spent_tool() -> None:
    runner, ledger = make_runner(Budget(per_tool={"echo": 1}))
    assert {t.name for t in runner.available()} == {"echo", "upper", "structured"}
    runner.run("echo", {"text": "a"})
    assert {t.name for t in runner.available()} == {"upper", "structured"}
    child = ledger.child(Budget(per_tool={"upper": 1}), name="branch")
    child.charge({"tool_calls": 1, "tool:upper": 1}, kind="tool", name="upper")
    assert {t.name for t in runner.available(child)} == {"structured"}


def test_available_hides_a_tool_whose_declared_charge_cannot_be_paid() -> None:
    # a recall tool spends memory_ops on the run's memory ledger: with fewer left than one call needs it is
    # hidden like a spent tool, and a run with nothing left to call says memory_ops ran out
    runner, ledger = make_runner(Budget(memory_ops=3))
    declare_tool_charge(ledger, "echo", {"memory_ops": 2})
    assert {t.name for t in runner.available()} == {"echo", "upper", "structured"}
    ledger.charge({"memory_ops": 2}, kind="memory", name="retrieve:low")
    assert {t.name for t in runner.available()} == {"upper", "structured"}
    assert {t.name for t in runner.available(ledger.child(name="branch"))} == {"upper", "structured"}
    only_echo = ToolRunner([echo], ledger)
    ctx = RunContext(ledger=ledger, gateway=Gateway(ledger), runner=only_echo, model="m", tools=[echo])
    assert ctx.visible_tools() == [] and ctx.exhausted_tool_dimension() == "memory_ops"


def test_arguments_nested_too_deeply_are_an_observation_not_a_crash() -> None:
    runner, ledger = make_runner()
    deep = runner.run("echo", "[" * 100_000 + "]" * 100_000)
    assert not deep.ok and deep.content.startswith("error: the arguments nest too deeply")
    assert len(ledger.events) == 0


def test_available_hides_tools_priced_above_the_remaining_dollars() -> None:
    runner, ledger = make_runner(Budget(usd=0.55))
    runner.run("echo", {"text": "a"})  # 0.5 spent, 0.05 left
    assert {t.name for t in runner.available(ledger)} == {"structured"}


def test_concurrent_calls_never_overspend() -> None:
    @tool
    def work(i: int) -> int:
        """Some work."""
        time.sleep(0.01)
        return i

    ledger = Ledger(Budget(tool_calls=5))
    runner = ToolRunner([work], ledger)
    results: list[object] = []

    def call(i: int) -> None:
        try:
            results.append(runner.run("work", {"i": i}))
        except BudgetExceeded as exc:
            results.append(exc)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    runner.close()
    assert sum(isinstance(r, Observation) for r in results) == 5
    assert sum(isinstance(r, BudgetExceeded) for r in results) == 7
    assert ledger.spent["tool_calls"] == 5


def test_duplicate_tool_names_are_refused() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        ToolRunner([echo, echo], Ledger())


def test_a_call_can_charge_a_child_ledger() -> None:
    runner, ledger = make_runner(Budget(tool_calls=10))
    branch = ledger.child(Budget(tool_calls=1), name="branch")
    obs = runner.run("echo", {"text": "a"}, ledger=branch, node="b")
    assert obs.ok
    assert branch.events[0].ledger == "run/branch"
    assert ledger.spent["tool_calls"] == 1  # the parent sees the child's spending
    with pytest.raises(BudgetExceeded):
        runner.run("echo", {"text": "b"}, ledger=branch)
    assert runner.run("echo", {"text": "b"}).ok


def test_an_interrupted_attempt_is_given_back_and_the_interrupt_propagates() -> None:
    @tool(timeout=None)
    def stuck(x: int) -> str:
        """Interrupted while running."""
        raise KeyboardInterrupt

    ledger = Ledger(Budget(tool_calls=3))
    runner = ToolRunner([stuck], ledger)
    with pytest.raises(KeyboardInterrupt):
        runner.run("stuck", {"x": 1})
    assert ledger.spent["tool_calls"] == 0 and ledger.reserved["tool_calls"] == 0
    assert ledger.available("tool_calls") == 3


def test_a_cancelled_async_attempt_is_given_back() -> None:
    @tool
    async def slow(x: int) -> str:
        """Cancelled while running."""
        await asyncio.sleep(10)
        return "never"

    ledger = Ledger(Budget(tool_calls=3))
    runner = ToolRunner([slow], ledger)

    async def main() -> None:
        task = asyncio.create_task(runner.arun("slow", {"x": 1}))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert ledger.spent["tool_calls"] == 0 and ledger.reserved["tool_calls"] == 0


# Issue 14 item 5: a tool's own timeout never outlasts the run's time budget.
def _hanging_tools(release: threading.Event) -> list:
    @tool(timeout=30)
    def stuck() -> str:
        """Hangs."""
        release.wait(10)
        return "late"

    @tool(timeout=30)
    async def astuck() -> str:
        """Hangs (async)."""
        await asyncio.sleep(10)
        return "late"

    return [stuck, astuck]


@pytest.mark.parametrize("name", ["stuck", "astuck"])
def test_a_tool_timeout_longer_than_the_time_left_waits_only_the_time_left(name: str) -> None:
    release = threading.Event()
    ledger = Ledger(Budget(seconds=0.4))
    runner = ToolRunner(_hanging_tools(release), ledger)
    started = time.monotonic()
    with pytest.raises(BudgetExceeded) as info:
        runner.run(name)
    waited = time.monotonic() - started
    release.set()
    runner.close()
    assert info.value.dimension == "seconds"
    assert waited < 0.9, f"waited {waited:.2f}s against a 0.4s budget"
    assert [e.ok for e in ledger.events] == [False]  # the attempt is charged, as a failure


@pytest.mark.parametrize("name", ["stuck", "astuck"])
async def test_arun_waits_only_the_time_left(name: str) -> None:
    release = threading.Event()
    ledger = Ledger(Budget(seconds=0.4))
    runner = ToolRunner(_hanging_tools(release), ledger)
    started = time.monotonic()
    with pytest.raises(BudgetExceeded) as info:
        await runner.arun(name)
    waited = time.monotonic() - started
    release.set()
    runner.close()
    assert info.value.dimension == "seconds"
    assert waited < 0.9


def test_a_child_ledgers_time_left_bounds_the_wait_too() -> None:
    release = threading.Event()
    run = Ledger(Budget(seconds=30))
    branch = run.child(Budget(seconds=0.3), name="branch")
    runner = ToolRunner(_hanging_tools(release), run)
    started = time.monotonic()
    with pytest.raises(BudgetExceeded):
        runner.run("stuck", ledger=branch)
    release.set()
    runner.close()
    assert time.monotonic() - started < 0.8


@pytest.mark.parametrize("is_async", [False, True])
@pytest.mark.parametrize("timeout", [None, 5.0])  # on the caller's thread, and in a worker thread
def test_a_tool_that_calls_sys_exit_fails_the_call_not_the_process(
    timeout: float | None, is_async: bool
) -> None:
    import sys

    def exits(text: str) -> str:
        """Exit."""
        sys.exit(3)

    async def exits_async(text: str) -> str:
        """Exit."""
        sys.exit(3)

    quitter = tool(name="quitter", timeout=timeout)(exits_async if is_async else exits)
    ledger = Ledger(Budget())
    with ToolRunner([quitter], ledger) as runner:
        seen = runner.run("quitter", {"text": "x"})
        assert not seen.ok and "the tool tried to end the process (SystemExit: 3)" in seen.content
        again = asyncio.run(runner.arun("quitter", {"text": "y"}))
        assert not again.ok and "SystemExit: 3" in again.content
    assert ledger.spent["tool_calls"] == 2  # charged once each, not retried
