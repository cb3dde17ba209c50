"""The embedding API under a web application's demands: runs at once on one Agent, cancelled runs that stop
spending, bad arguments refused before anything is spent, and no secret in an error."""

from __future__ import annotations

import asyncio
import itertools
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from thrifty import Agent, Budget
from thrifty.agents.events import TraceEvent
from thrifty.budget import Ledger, Pricing
from thrifty.testing import ScriptedModel, ScriptedReply, ScriptedRequest, call, reply
from thrifty.tools import calculator, tool
from thrifty.workflows.result import RunResult
from thrifty.workflows.stream import RunCancelled, RunStream


def _question_number(request: ScriptedRequest) -> int:
    question = next(str(m["content"]) for m in request.messages if m["role"] == "user")
    found = re.search(r"Q(\d+)", question)
    assert found is not None
    return int(found.group(1))


def _per_question(request: ScriptedRequest) -> ScriptedReply:
    """Question Qn: n % 3 calculator calls (each naming n), then the answer An."""
    n = _question_number(request)
    seen = sum(m["role"] == "tool" for m in request.messages)
    if seen < n % 3:
        return ScriptedReply(tool_calls=[("calculator", {"expression": f"{n}+{seen}"})])
    return ScriptedReply(content=f"A{n}")


def test_runs_at_once_on_one_agent_keep_their_own_spending_and_trace() -> None:
    agent = Agent(
        ScriptedModel([], default=_per_question).model, tools=[calculator], budget=Budget(tool_calls=5)
    )

    def one(n: int) -> tuple[int, RunResult, list[TraceEvent] | None]:
        told: list[TraceEvent] = []
        return n, agent.run(f"Q{n}?", on_trace=told.append), told

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(24)))

    async def many() -> list[RunResult]:
        return list(await asyncio.gather(*(agent.arun(f"Q{n}?") for n in range(24, 36))))

    results += [(24 + i, r, None) for i, r in enumerate(asyncio.run(many()))]
    for n, result, told in results:
        assert result.answer == f"A{n}"
        assert result.usage.tool_calls == n % 3 and result.usage.model_requests == n % 3 + 1
        calls = [e for e in result.trace if e.action == "tool_calls"]
        assert all(f'"{n}+' in e.model_dump_json() for e in calls)
        if told is not None:
            assert told == result.trace
    assert len({r.run_id for _, r, _ in results}) == len(results)


def _endless_agent(calls: list[float]) -> Agent:
    """An agent whose model calls a slow tool with new arguments at every step, for 40 steps."""

    @tool
    def slow(text: str) -> str:
        """Answer slowly."""
        calls.append(time.monotonic())
        time.sleep(0.05)
        return text

    count = itertools.count()
    script = ScriptedModel(
        [], default=lambda _: ScriptedReply(tool_calls=[("slow", {"text": f"t{next(count)}"})])
    )
    return Agent(script.model, tools=[slow], budget=Budget(tool_calls=40), max_steps=40)


def test_a_cancelled_arun_stops_its_run_and_spends_nothing_after() -> None:
    calls: list[float] = []
    agent = _endless_agent(calls)
    told: list[TraceEvent] = []

    async def main() -> tuple[int, int]:
        task = asyncio.create_task(agent.arun("loop", on_trace=told.append))
        while len(calls) < 2:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        at_cancel = len(calls)
        await asyncio.sleep(0.5)  # ten more tool calls' time
        return at_cancel, len(calls)

    at_cancel, later = asyncio.run(main())
    assert later == at_cancel <= 3  # the run stopped at its next step, in the background too
    assert told  # arun takes run's on_trace


def test_an_astream_left_early_in_async_with_has_ended_its_run_on_the_next_line() -> None:
    calls: list[float] = []
    agent = _endless_agent(calls)

    async def main() -> None:
        async with agent.astream("loop") as stream:
            async for event in stream:
                if event.kind == "trace":
                    break
        assert stream.cancelled and stream.result is not None
        assert stream.result.stop_reason == "cancelled"
        assert all(v == 0 for v in stream.ledger.reserved.values())
        spent = len(calls)
        await asyncio.sleep(0.3)
        assert len(calls) == spent

    asyncio.run(main())


def test_a_stream_closed_before_it_is_read_runs_nothing() -> None:
    script = ScriptedModel([reply("4")])
    stream = Agent(script.model).stream("2+2?")
    with stream:
        pass
    with pytest.raises(RuntimeError, match="closed before it was read"):
        list(stream)
    assert script.requests == []


def test_stream_and_arun_take_runs_other_arguments() -> None:
    script = ScriptedModel([reply("4")])
    agent = Agent(script.model)
    with pytest.raises(ValueError, match="memory_scope is given but this Agent has no memory"):
        agent.stream("2+2?", memory_scope={"user_id": "a"})
    events = list(agent.stream("2+2?", on_limit="stop"))
    assert events[-1].kind == "result" and events[-1].result.answer == "4"


@pytest.mark.parametrize(
    ("arguments", "error", "says"),
    [
        ({"question": None}, TypeError, "question must be a str .* got NoneType"),
        ({"question": 42}, TypeError, "question must be a str .* got int"),
        ({"question": "  "}, ValueError, "question is empty"),
        ({"question": "q", "run_id": 5}, TypeError, "run_id must be a str"),
        ({"question": "q", "on_trace": 5}, TypeError, "on_trace must be a function"),
        ({"question": "q", "memory_scope": {"user_id": "a"}}, ValueError, "has no memory"),
    ],
)
def test_a_runs_bad_argument_is_refused_before_anything_is_spent(
    arguments: dict[str, Any],
    error: type[Exception],
    says: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)  # a run_id makes a durable run: its checkpoint file would be made here
    script = ScriptedModel([call("calculator", expression="1+1"), reply("2")])
    agent = Agent(script.model, tools=[calculator])
    with pytest.raises(error, match=says):
        agent.run(**arguments)
    with pytest.raises(error, match=says):
        asyncio.run(agent.arun(**arguments))
    if "on_trace" not in arguments:
        with pytest.raises(error, match=says):
            agent.stream(**arguments)
    assert script.requests == [] and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("keywords", "error", "says"),
    [
        ({"tools": calculator}, TypeError, r"write tools=\[calculator\], not tools=calculator"),
        ({"tools": "calculator"}, TypeError, r"tools must be a list of tools .* got str"),
        ({"system_prompt": 5}, TypeError, "system_prompt must be a str"),
        ({"store": 5}, TypeError, "store must be a path or URL"),
        ({"memory": "memory.db"}, TypeError, "memory must be a thrifty.memory.Memory"),
        ({"memory_scope": {"user_id": "a"}}, ValueError, "memory_scope is given but memory is not"),
        ({"pricing": 5}, TypeError, "pricing must be a Pricing"),
        ({"temperature": "hot"}, ValidationError, "validation error for Agent\ntemperature"),
    ],
)
def test_an_agents_bad_argument_is_named_when_it_is_built(
    keywords: dict[str, Any],
    error: type[Exception],
    says: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(error, match=says):
        Agent(ScriptedModel([]).model, **keywords)
    assert list(tmp_path.iterdir()) == []


def test_pricing_and_memory_budget_may_be_dicts_like_budget() -> None:
    script = ScriptedModel([call("calculator", expression="1+1"), reply("2")])
    agent = Agent(script.model, tools=[calculator], pricing={"tools": {"calculator": 0.25}})
    assert agent.pricing == Pricing(tools={"calculator": 0.25})
    assert agent.run("1+1?").cost.tools_usd == 0.25
    from thrifty.memory import Memory

    with Memory(router="rules") as memory:
        agent = Agent(ScriptedModel([reply("x")]).model, memory=memory, memory_budget={"memory_ops": 2})
        assert agent.memory is not None and agent.memory.budget == Budget(memory_ops=2)


def test_an_api_base_with_a_key_is_refused_without_showing_the_key() -> None:
    for url in (
        "http://user:hunter2-secret-99@127.0.0.1/v1",
        "http://127.0.0.1/v1?api_key=hunter2-secret-99",
    ):
        with pytest.raises(ValidationError, match="api_base must not hold credentials") as info:
            Agent("openai/gpt-4o-mini", api_base=url)
        assert "hunter2" not in str(info.value) and "hunter2" not in repr(info.value)


def test_a_stream_closed_while_running_waits_for_its_run_and_keeps_threads_tidy() -> None:
    calls: list[float] = []
    agent = _endless_agent(calls)
    stream = agent.stream("loop")
    with stream:
        for event in stream:
            if event.kind == "trace":
                break
    assert stream.result is not None and stream.result.stop_reason == "cancelled"
    assert not [t for t in threading.enumerate() if t.name.startswith("thrifty-run-")]


def test_an_on_trace_callback_that_raises_is_named_in_the_run_s_error() -> None:
    def broken(_event: object) -> None:
        raise ValueError("my dashboard is down")

    script = ScriptedModel([reply("Paris")])
    result = Agent(script.model).run("Capital of France?", on_trace=broken)
    assert result.stop_reason == "error"
    assert result.error is not None and result.error.startswith(
        "TraceCallbackError: the on_trace callback raised ValueError: my dashboard is down"
    ), result.error


def _gated_agent(entered: threading.Event, release: threading.Event, calls: list[str]) -> Agent:
    """One reply asking for two tool calls; the first waits until the test lets it go."""

    @tool(timeout=30)
    def slow(text: str) -> str:
        """Wait for the test."""
        calls.append(text)
        if text == "first":
            entered.set()
            release.wait(10)
        return f"done {text}"

    both = ScriptedReply(tool_calls=[("slow", {"text": "first"}), ("slow", {"text": "second"})])
    script = ScriptedModel([both, reply("x")])
    return Agent(script.model, tools=[slow], budget=Budget(tool_calls=10))


def test_a_cancelled_stream_pays_for_no_call_after_the_one_under_way() -> None:
    # The cancel used to take effect at the next trace event only: the second tool call of the same reply
    # (and the model calls of a value-tree expansion, ...) were still made and charged.
    entered, release, calls = threading.Event(), threading.Event(), []
    stream = _gated_agent(entered, release, calls).stream("q?")
    events = iter(stream)
    next(events)  # start: the run is under way
    assert entered.wait(10)
    stream.cancel()
    release.set()
    for _ in events:
        pass
    assert stream.result is not None and stream.result.stop_reason == "cancelled"
    assert calls == ["first"] and stream.result.usage.tool_calls == 1


def test_a_cancelled_arun_pays_for_no_call_after_the_one_under_way() -> None:
    entered, release, calls = threading.Event(), threading.Event(), []
    agent = _gated_agent(entered, release, calls)

    async def main() -> None:
        task = asyncio.create_task(agent.arun("q?"))
        assert await asyncio.to_thread(entered.wait, 10)
        task.cancel()
        await asyncio.sleep(0.05)
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert calls == ["first"]


def test_a_cancelled_stream_refuses_the_run_s_next_charge_even_between_trace_events() -> None:
    # A node may pay for several calls between two trace events (a value-tree expansion: candidates, tool
    # calls, critic scores). The cancel used to wait for the next trace event; now the run's Ledger refuses
    # the next reservation.
    ledger = Ledger(Budget(tool_calls=10))
    charged: list[int] = []
    go_on = threading.Event()
    stream_box: list[RunStream] = []

    def start(_on_trace: Any) -> RunResult:
        ledger.charge({"tool_calls": 1}, kind="tool", name="first")
        charged.append(1)
        stream_box[0].cancel()  # the reader stops while the node is still working
        with pytest.raises(RunCancelled):
            ledger.charge({"tool_calls": 1}, kind="tool", name="second")
        go_on.set()
        raise RunCancelled("stopped")

    stream = RunStream(ledger, "r1", start)
    stream_box.append(stream)
    for _ in stream:  # a cancelled run is not an error for its reader
        pass
    assert go_on.is_set() and charged == [1]
    assert ledger.spent["tool_calls"] == 1 and not any(ledger.reserved.values())
