"""Agent.stream / astream: a run's typed events as they happen, the budget left at each, the result last."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from typer.testing import CliRunner

from thrifty import Agent, Budget
from thrifty.agents.events import AnswerEvent, ObservationEvent, ToolCallsEvent
from thrifty.cli import app
from thrifty.testing import ScriptedModel, ScriptedReply, call, reply
from thrifty.tools import calculator
from thrifty.workflows.runner import SetupError
from thrifty.workflows.stream import (
    ChargeStreamEvent,
    ResultStreamEvent,
    RunStream,
    StartStreamEvent,
    TraceStreamEvent,
)


def _agent(*steps: ScriptedReply, tool_calls: int | None = None) -> Agent:
    script = ScriptedModel(list(steps))
    return Agent(script.model, tools=[calculator], budget=Budget(tool_calls=tool_calls))


def test_events_come_in_order_with_the_budget_left_at_each() -> None:
    agent = _agent(
        call("calculator", expression="2+2"), call("calculator", expression="3*3"), reply("4"), tool_calls=3
    )
    events = list(agent.stream("2+2?"))
    assert isinstance(events[0], StartStreamEvent) and isinstance(events[-1], ResultStreamEvent)
    assert [e.index for e in events] == list(range(len(events)))
    assert len({e.run_id for e in events}) == 1 and events[-1].result.run_id == events[0].run_id
    assert events[0].budget == {"tool_calls": 3.0} and events[0].remaining == {"tool_calls": 3.0}
    traces = [e.event for e in events if isinstance(e, TraceStreamEvent)]
    assert [type(t) for t in traces] == [
        ToolCallsEvent,
        ObservationEvent,
        ToolCallsEvent,
        ObservationEvent,
        AnswerEvent,
    ]
    charges = [e for e in events if isinstance(e, ChargeStreamEvent)]
    assert [c.charge["kind"] for c in charges] == ["model", "tool", "model", "tool", "model"]
    # each charge event shows the budget as it was once that charge settled
    tools_paid = 0
    for c in charges:
        tools_paid += c.charge["kind"] == "tool"
        assert c.remaining["tool_calls"] == 3 - tools_paid
    result = events[-1].result
    assert result.answer == "4" and result.usage.tool_calls == 2
    assert [c.charge["seq"] for c in charges] == [e["seq"] for e in result.events]
    assert events[-1].remaining == {"tool_calls": 1.0}


def test_astream_yields_the_same_kinds_without_blocking_the_loop() -> None:
    agent = _agent(call("calculator", expression="2+2"), reply("4"))

    async def read() -> list[str]:
        ticks = 0
        kinds: list[str] = []

        async def tick() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        ticker = asyncio.create_task(tick())
        async for event in agent.astream("2+2?"):
            kinds.append(event.kind)
        ticker.cancel()
        assert ticks > 0
        return kinds

    kinds = asyncio.run(read())
    assert kinds[0] == "start" and kinds[-1] == "result"
    assert kinds.count("charge") == 3 and kinds.count("trace") == 3


def test_a_reader_that_stops_early_cancels_the_run() -> None:
    import time

    from thrifty.tools import tool

    holder: list[RunStream] = []

    @tool
    def slow_echo(text: str) -> str:
        """Echo text once the run is cancelled (at most 10 s), so the run cannot end before its reader."""
        deadline = time.monotonic() + 10
        while not holder[0].cancelled and time.monotonic() < deadline:
            time.sleep(0.01)
        return text

    script = ScriptedModel([], default=call("slow_echo", text="again"))
    agent = Agent(script.model, tools=[slow_echo], budget=Budget(tool_calls=50), max_steps=40)
    stream = agent.stream("loop")
    holder.append(stream)
    for event in stream:  # the first trace is step 1's tool call, made before the tool runs
        if isinstance(event, TraceStreamEvent):
            break
    assert stream.cancelled
    assert stream.result is not None and stream.result.stop_reason == "cancelled"
    assert stream.result.usage.tool_calls <= 1  # stopped at the step it was in, not after 40


def test_a_run_that_cannot_start_raises_to_the_reader() -> None:
    agent = Agent("scripted/no-such-script-here", budget=Budget(tool_calls=1))
    with pytest.raises(SetupError, match="no scripted model"):
        list(agent.stream("?"))


def test_the_cli_shows_no_run_id_for_a_run_that_could_not_start(tmp_path: Path) -> None:
    task = tmp_path / "task.yaml"
    task.write_text("question: What is 2+2?\nmodel: scripted/no-such-script-here\nbudget:\n  tool_calls: 3\n")
    res = CliRunner().invoke(app, ["run", str(task), "--no-store"])
    assert res.exit_code == 2, res.output
    assert "no scripted model" in res.stderr and "run id" not in res.stderr


def test_the_cli_shows_the_run_id_and_each_step_from_the_stream(tmp_path: Path) -> None:
    script = ScriptedModel([call("calculator", expression="2+2"), reply("4")])
    task = tmp_path / "task.yaml"
    task.write_text(
        f"question: What is 2+2?\nmodel: {script.model}\ntools: [calculator]\nbudget:\n  tool_calls: 3\n"
        f"output:\n  store: {tmp_path / 'runs.db'}\n"
    )
    res = CliRunner().invoke(app, ["run", str(task)])
    assert res.exit_code == 0, res.output
    assert "run id: " in res.stderr and "[step 1] calls calculator" in res.stderr
    run_id = res.stderr.split("run id: ")[1].split()[0]
    assert (
        len(run_id) == 12
        and run_id in CliRunner().invoke(app, ["runs", "--store", str(tmp_path / "runs.db")]).stdout
    )
