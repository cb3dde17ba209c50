"""RunResult: what every run returns, whatever happened — answer, why it stopped, what it spent."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from thrifty.agents.events import TraceEvent
from thrifty.budget import Ledger, StopKind
from thrifty.budget.limits import TOOL_PREFIX
from thrifty.memory import MemoryReport

EXIT_ANSWERED = 0
EXIT_INTERNAL = 1
EXIT_BAD_INPUT = 2
EXIT_BUDGET = 4


class Usage(BaseModel):
    """Spending by dimension (the numbers the Ledger settled)."""

    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    cached_tokens: int = 0
    model_requests: int = 0
    tool_calls: int = 0
    per_tool: dict[str, int] = Field(default_factory=dict)
    # Memory operations (writes, recalls, forgets) spent, whether or not the budget limits them; 0 in a
    # result saved before the field existed.
    memory_ops: int = 0
    usd: float = 0.0
    seconds: float = 0.0

    @classmethod
    def from_ledger(cls, ledger: Ledger) -> Usage:
        spent = ledger.used()
        return cls(
            input_tokens=int(spent.get("input_tokens", 0)),
            output_tokens=int(spent.get("output_tokens", 0)),
            total_tokens=int(spent.get("total_tokens", 0)),
            cached_tokens=int(spent.get("cached_tokens", 0)),
            model_requests=int(spent.get("model_requests", 0)),
            tool_calls=int(spent.get("tool_calls", 0)),
            per_tool={k[len(TOOL_PREFIX) :]: int(v) for k, v in spent.items() if k.startswith(TOOL_PREFIX)},
            memory_ops=int(spent.get("memory_ops", 0)),
            usd=round(spent.get("usd", 0.0), 8),
            seconds=round(spent.get("seconds", 0.0), 3),
        )


class Cost(BaseModel):
    """The unified cost (BATS): tokens at their prices plus tool calls at theirs."""

    tokens_usd: float = 0.0
    tools_usd: float = 0.0
    total_usd: float = 0.0

    @classmethod
    def from_ledger(cls, ledger: Ledger) -> Cost:
        tokens = sum(e.usd for e in ledger.events if e.kind == "model")
        tools = sum(e.usd for e in ledger.events if e.kind == "tool")
        return cls(
            tokens_usd=round(tokens, 8), tools_usd=round(tools, 8), total_usd=round(ledger.usd_spent, 8)
        )


class Overrun(BaseModel):
    """A limit the run went past: a provider reported more than was reserved, or the run ended more than
    ``SECONDS_GRACE`` past its time limit (see the Ledger's Overrun). One per ledger and dimension, with what
    was finally spent there."""

    dimension: str
    limit: float
    spent: float
    ledger: str = "run"

    @classmethod
    def from_ledger(cls, ledger: Ledger) -> list[Overrun]:
        ledger.note_overtime()  # a run that ended past its time limit, with nothing settled since
        last: dict[tuple[str, str], Overrun] = {}
        for o in ledger.overruns:
            last[(o.ledger, o.dimension)] = cls(
                dimension=o.dimension, limit=o.limit, spent=o.spent, ledger=o.ledger
            )
        return list(last.values())


class RunResult(BaseModel):
    """The outcome of a run. ``answer`` is the best answer found, even when the budget stopped the run."""

    run_id: str
    task: str = ""
    question: str
    answer: str | None
    stop_reason: str
    strategy: str
    model: str
    budget: dict[str, float] = Field(default_factory=dict, description="The limits the run was given.")
    usage: Usage
    cost: Cost
    steps: int = 0
    error: str | None = None
    expected_answer: str | None = None
    trace: list[TraceEvent] = Field(
        default_factory=list, description="What each node did, in order (thrifty.agents.events)."
    )
    events: list[dict[str, Any]] = Field(default_factory=list, description="Every settled charge.")
    overruns: list[Overrun] = Field(
        default_factory=list,
        description="Limits crossed because a provider reported more than was reserved (empty when none was).",
    )
    memory: list[MemoryReport] = Field(
        default_factory=list,
        description="Each memory recall: the tiers the router proposed and ran, its cost, the router's time.",
    )

    @property
    def exhausted(self) -> bool:
        return self.stop_reason.startswith(StopKind.BUDGET_EXHAUSTED.value)

    @property
    def paused(self) -> bool:
        """Paused at its budget (``paused:<dimension>``, a task with ``on_limit: pause``): resume it with a
        raised budget to continue."""
        return self.stop_reason.startswith("paused:")

    @property
    def exit_code(self) -> int:
        """0 answered, 4 stopped (or paused) by budget (answer still given), 1 error or cancelled."""
        if self.stop_reason.startswith((StopKind.ERROR.value, StopKind.CANCELLED.value)):
            return EXIT_INTERNAL
        if self.exhausted or self.paused or self.stop_reason == StopKind.MAX_STEPS.value:
            return EXIT_BUDGET
        return EXIT_ANSWERED
