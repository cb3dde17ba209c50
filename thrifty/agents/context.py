"""What every node of a run can reach: the Ledger, the Gateway, the tools, the settings.

Carried as LangGraph's run-scoped ``context`` (never global state), so two runs in one process never
share a budget.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from thrifty.agents.events import TraceEvent, as_event
from thrifty.budget import Ledger, tool_dimension
from thrifty.budget.awareness import unpayable_tools
from thrifty.models.gateway import Gateway
from thrifty.models.settings import ModelSettings
from thrifty.tools import Tool, ToolRunner

__all__ = ["DEFAULT_MAX_STEPS", "ModelSettings", "RunContext"]

DEFAULT_MAX_STEPS = 12  # model calls a run may make before it must answer (``strategy.max_steps``)


@dataclass
class RunContext:
    ledger: Ledger
    gateway: Gateway
    runner: ToolRunner
    model: str
    tools: list[Tool] = field(default_factory=list)
    settings: ModelSettings = field(default_factory=ModelSettings)
    tracker: bool = True
    max_steps: int = DEFAULT_MAX_STEPS
    keep_observations: int | None = None  # keep only the N most recent tool results in context (BATS)
    system_extra: str | None = None
    on_trace: Callable[[TraceEvent], None] | None = None
    #: A grounded run's server ignored ``tool_choice`` (no tool-call template): moves are asked for as JSON
    #: (:func:`thrifty.agents.grounding.action_schema`) for the rest of the run.
    json_actions: bool = False
    _schemas: dict[tuple[str, ...], list[dict[str, Any]]] = field(default_factory=dict, repr=False)

    def tool_schemas(self, tools: list[Tool]) -> list[dict[str, Any]]:
        """The ``tools=[...]`` entries for ``tools``, built once per run and set of tools (every model call
        sends them; treat the list as read-only)."""
        key = tuple(t.name for t in tools)
        if key not in self._schemas:
            self._schemas[key] = [t.openai_schema() for t in tools]
        return self._schemas[key]

    def emit(self, entry: TraceEvent | dict[str, Any]) -> TraceEvent:
        """Report a trace event to the live view (if any) and return it for the state (a dict from a
        custom node becomes its typed event, or a CustomEvent)."""
        event = as_event(entry)
        if self.on_trace is not None:
            self.on_trace(event)
        return event

    @property
    def tool_names(self) -> list[str]:
        return [t.name for t in self.tools]

    def replay_credit(self) -> dict[str, float]:
        """A resumed durable run, while the node LangGraph runs again replays the calls it had made: the
        spend of its calls still to be replayed, which it had not made at this point when it first ran
        (:meth:`thrifty.store.durable.RunJournal.credit`); {} otherwise. Budget checks that choose what to
        ask the model add it, so the node asks what it asked then and its recorded calls are replayed free
        instead of being asked differently (and paid again); every call made is still reserved against
        the whole spend."""
        journal = self.ledger.journal
        return journal.credit(self.ledger.path) if journal is not None else {}

    def visible_tools(self) -> list[Tool]:
        """Tools the budget can still pay one call of; a spent tool is hidden from the model."""
        return self.runner.available(self.ledger, self.replay_credit())

    def exhausted_tool_dimension(self) -> str:
        """Which dimension ran out when no tool is visible any more (for the stop reason)."""
        if self.ledger.available("tool_calls") < 1:
            return "tool_calls"
        if self.ledger.available("usd") < min((self.runner.price(t) for t in self.tools), default=0):
            return "usd"
        for t in self.tools:
            if self.ledger.available(tool_dimension(t.name)) < 1:
                return tool_dimension(t.name)
        unpaid = unpayable_tools(self.ledger, [t.name for t in self.tools])  # e.g. recall: memory_ops
        return next(iter(unpaid.values()), "tool_calls")

    @property
    def grounded(self) -> bool:
        """Whether the grounding policies apply (:mod:`thrifty.agents.grounding`): the setting, or by default
        whether the provider is grammar-constrained (a small local model)."""
        if self.settings.grounded is not None:
            return self.settings.grounded
        try:
            return bool(self.gateway.provider(self.model).grammar)
        except Exception:
            return False

    def model_kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {}
        if self.settings.temperature is not None:
            kw["temperature"] = self.settings.temperature
        if self.settings.seed is not None:
            kw["seed"] = self.settings.seed
        return kw

    def fork(self, ledger: Ledger, *, seed_offset: int = 0) -> RunContext:
        """The same run settings on another ledger (a branch, a sample, a sub-agent), with its own tool cache."""
        gateway = self.gateway.spawn(ledger)  # a RoutedGateway keeps its models and escalations
        seed = None if self.settings.seed is None else self.settings.seed + seed_offset
        return replace(
            self,
            ledger=ledger,
            gateway=gateway,
            runner=ToolRunner(self.tools, ledger, self.runner.pricing),
            settings=self.settings.model_copy(update={"seed": seed}),
        )
