"""OpenTelemetry spans of a run (issue 16): run, nodes, model and tool calls, with gen_ai.* attributes, the
charge and the budget left; read from the SDK's in-memory exporter."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from thrifty import Agent, Budget
from thrifty.testing import ScriptedModel, call, reply
from thrifty.tools import calculator
from thrifty.workflows import telemetry


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    # the provider this run sees (the global one can be set once per process)
    monkeypatch.setattr(telemetry, "_tracer", lambda: provider.get_tracer("thrifty"))
    yield exporter
    provider.shutdown()


def _attrs(span: Any) -> dict[str, Any]:
    return dict(span.attributes or {})


def test_a_run_has_its_spans_with_charges_and_budget(spans: InMemorySpanExporter) -> None:
    script = ScriptedModel(
        [call("calculator", expression="2+2", prompt_tokens=30), reply("4", prompt_tokens=40)]
    )
    result = Agent(script.model, tools=[calculator], budget=Budget(tool_calls=3, total_tokens=5000)).run(
        "2+2?"
    )
    finished = spans.get_finished_spans()
    names = [s.name for s in finished]
    run = next(s for s in finished if s.name == "thrifty.run")
    assert (
        _attrs(run)["thrifty.run_id"] == result.run_id and _attrs(run)["thrifty.stop_reason"] == "completed"
    )
    assert (
        _attrs(run)["thrifty.budget.limit.tool_calls"] == 3.0
        and _attrs(run)["thrifty.spent.tool_calls"] == 1.0
    )
    chats = [s for s in finished if s.name == f"chat {script.model}"]
    assert len(chats) == 2
    first = _attrs(chats[0])
    assert first["gen_ai.operation.name"] == "chat" and first["gen_ai.system"] == "scripted"
    assert first["gen_ai.usage.input_tokens"] == 30 and first["thrifty.charge.model_requests"] == 1.0
    assert first["thrifty.budget.remaining.total_tokens"] == 5000 - 35
    tool = next(s for s in finished if s.name == "execute_tool calculator")
    assert (
        _attrs(tool)["gen_ai.tool.name"] == "calculator"
        and _attrs(tool)["thrifty.budget.remaining.tool_calls"] == 2.0
    )
    assert names.count("thrifty.node step") == 2
    run_id = run.get_span_context()
    ids = [s.get_span_context() for s in finished]
    assert run_id is not None and all(i is not None and i.trace_id == run_id.trace_id for i in ids)
    # every span hangs from the run's
    assert all(s.parent is not None and s.parent.span_id == run_id.span_id for s in finished if s is not run)


def test_without_a_tracer_provider_nothing_is_traced() -> None:
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)  # no SDK set up here
    assert telemetry._tracer() is None  # pyright: ignore[reportPrivateUsage]
    script = ScriptedModel([reply("4")])
    assert Agent(script.model).run("2+2?").answer == "4"
