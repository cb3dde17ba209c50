"""OpenTelemetry spans for a run: the run, each graph node, each model call, tool call and memory operation.

Spans are made only when the application has set a tracer provider (``opentelemetry-sdk`` and an exporter
of its choice); otherwise nothing is done. The API package is a dependency, the SDK is not.

=====================  ====================================================================================
span                   attributes
=====================  ====================================================================================
``thrifty.run``        ``thrifty.run_id``, ``thrifty.strategy``, ``gen_ai.request.model``, the limits
                       (``thrifty.budget.limit.<dim>``); at its end ``thrifty.stop_reason`` and what was spent
``thrifty.node <n>``   ``thrifty.node``, ``thrifty.step`` (a LangGraph task, from its start to its result)
``chat <model>``       ``gen_ai.operation.name`` = ``chat``, ``gen_ai.system``, ``gen_ai.request.model``,
                       ``gen_ai.usage.input_tokens`` / ``output_tokens``
``execute_tool <t>``   ``gen_ai.operation.name`` = ``execute_tool``, ``gen_ai.tool.name``
``memory <tier>``      ``thrifty.memory.tier``
=====================  ====================================================================================

Every call span also carries its charge (``thrifty.charge.usd``, ``thrifty.charge.<unit>``, ``thrifty.charge.ok``)
and the budget left once it settled (``thrifty.budget.remaining.<dim>``). A call span starts when the
Ledger reserves for it and ends when it settles (or is given back). Texts pass :func:`thrifty.redact.redact`.
"""

from __future__ import annotations

import threading
from typing import Any

from thrifty.budget import ChargeEvent, Ledger, Reservation
from thrifty.redact import redact

_KINDS = {"model": "chat", "tool": "execute_tool", "memory": "memory"}


def _tracer() -> Any | None:
    """thrifty's tracer, or None when no tracer provider is set (the API's default does nothing)."""
    try:
        from opentelemetry import trace
    except ImportError:
        return None
    provider = trace.get_tracer_provider()
    if isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
        return None
    return provider.get_tracer("thrifty")


class RunTelemetry:
    """The spans of one run (``enabled`` is False, and every method does nothing, without a provider)."""

    def __init__(self, ledger: Ledger, *, run_id: str, strategy: str, model: str) -> None:
        self.ledger = ledger
        self.tracer = _tracer()
        self.enabled = self.tracer is not None
        self._calls: dict[int, Any] = {}
        self._nodes: dict[str, Any] = {}
        self._lock = threading.Lock()
        self.span: Any = None
        self._ctx: Any = None
        self._fields = {"run_id": run_id, "strategy": strategy, "model": model}

    def start(self) -> None:
        if self.tracer is None:
            return
        from opentelemetry import trace

        attributes: dict[str, Any] = {
            "thrifty.run_id": self._fields["run_id"],
            "thrifty.strategy": self._fields["strategy"],
            "gen_ai.request.model": self._fields["model"],
        }
        for dim, limit in self.ledger.budget.limits().items():
            attributes[f"thrifty.budget.limit.{dim}"] = float(limit)
        self.span = self.tracer.start_span("thrifty.run", attributes=attributes)
        self._ctx = trace.set_span_in_context(self.span)
        self.ledger.reserve_listeners.append(self.on_reserve)
        self.ledger.release_listeners.append(self.on_release)
        self.ledger.listeners.append(self.on_charge)

    def finish(self, result: Any) -> None:
        if self.span is None:
            return
        for listeners, fn in (
            (self.ledger.reserve_listeners, self.on_reserve),
            (self.ledger.release_listeners, self.on_release),
        ):
            if fn in listeners:
                listeners.remove(fn)
        if self.on_charge in self.ledger.listeners:
            self.ledger.listeners.remove(self.on_charge)
        with self._lock:
            open_spans = [*self._calls.values(), *self._nodes.values()]
            self._calls.clear()
            self._nodes.clear()
        for span in open_spans:
            span.end()
        self.span.set_attribute("thrifty.stop_reason", result.stop_reason)
        self.span.set_attribute("thrifty.steps", int(result.steps))
        for dim, value in self.ledger.used().items():
            self.span.set_attribute(f"thrifty.spent.{dim}", float(value))
        if result.error:
            self.span.set_attribute("error.type", redact(str(result.error))[:200])
        self.span.end()

    # ----------------------------------------------------------------------------------- nodes
    def on_task(self, chunk: Any) -> None:
        """A LangGraph ``tasks`` stream item: a node's task started (``input``) or ended (``result``)."""
        if self.span is None or self.tracer is None or not isinstance(chunk, dict):
            return
        task_id, name = str(chunk.get("id", "")), str(chunk.get("name", "node"))
        if "input" in chunk:
            span = self.tracer.start_span(
                f"thrifty.node {name}", context=self._ctx, attributes={"thrifty.node": name}
            )
            with self._lock:
                self._nodes[task_id] = span
            return
        with self._lock:
            span = self._nodes.pop(task_id, None)
        if span is not None:
            if chunk.get("error"):
                span.set_attribute("error.type", redact(str(chunk["error"]))[:200])
            span.end()

    # ----------------------------------------------------------------------------------- calls
    def on_reserve(self, res: Reservation) -> None:
        operation = _KINDS.get(res.kind)
        if operation is None or self.tracer is None:
            return
        attributes: dict[str, Any] = {"gen_ai.operation.name": operation}
        if res.node:
            attributes["thrifty.node"] = res.node
        if res.kind == "model":
            attributes["gen_ai.request.model"] = res.name
            attributes["gen_ai.system"] = res.name.split("/", 1)[0]
        elif res.kind == "tool":
            attributes["gen_ai.tool.name"] = res.name
        else:
            attributes["thrifty.memory.tier"] = res.name
        span = self.tracer.start_span(f"{operation} {res.name}", context=self._ctx, attributes=attributes)
        with self._lock:
            self._calls[res.id] = span

    def on_release(self, res: Reservation) -> None:
        with self._lock:
            span = self._calls.pop(res.id, None)
        if span is not None:
            span.set_attribute("thrifty.charge.released", True)
            span.end()

    def on_charge(self, event: ChargeEvent) -> None:
        with self._lock:
            span = self._calls.pop(event.reservation, None)
        if span is None:
            return
        units = event.units
        if event.kind == "model":
            span.set_attribute("gen_ai.usage.input_tokens", int(units.get("input_tokens", 0)))
            span.set_attribute("gen_ai.usage.output_tokens", int(units.get("output_tokens", 0)))
        for unit, value in units.items():
            span.set_attribute(f"thrifty.charge.{unit}", float(value))
        span.set_attribute("thrifty.charge.usd", float(event.usd))
        span.set_attribute("thrifty.charge.ok", bool(event.ok))
        if event.detail:
            span.set_attribute("thrifty.charge.detail", redact(event.detail)[:300])
        for dim, left in self.ledger.remaining().items():
            span.set_attribute(f"thrifty.budget.remaining.{dim}", float(left))
        span.end()
