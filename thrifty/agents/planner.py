"""The planner node (BATS): split the question into exploration and verification clues, keep a checklist.

The checklist is a list of :class:`~thrifty.agents.records.ChecklistItem` ``(id, text, kind, status, spent,
attempt)``; ``status`` is one of pending / done / failed / partial. Items are only ever added or moved between states (each change is
recorded in the trace), never deleted or silently rewritten, so the run's reasoning stays auditable.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, Field, field_validator

from thrifty.agents import prompts
from thrifty.agents.context import RunContext
from thrifty.agents.events import PlanEvent
from thrifty.agents.records import ChecklistItem, ItemKind, ItemStatus
from thrifty.agents.solver import SolverState, snapshot
from thrifty.agents.structured import StructuredRole, structured_call
from thrifty.budget import BudgetExceeded

STATUS_MARK: dict[ItemStatus, str] = {"pending": " ", "done": "x", "failed": "!", "partial": "~"}


Clue = Annotated[str, Field(json_schema_extra={"maxLength": 100})]


class Plan(BaseModel):
    """Bounded sizes keep grammar-constrained local generation short (and a rambling model in check)."""

    exploration: list[Clue] = Field(
        default_factory=list,
        json_schema_extra={"maxItems": 3},
        description="Search clues, most distinctive first.",
    )
    verification: list[Clue] = Field(
        default_factory=list,
        json_schema_extra={"maxItems": 3},
        description="Conditions a correct answer must meet.",
    )

    @field_validator("exploration", "verification", mode="before")
    @classmethod
    def _strings(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [value]
        if isinstance(value, list):
            return [str(v).strip()[:100] for v in value if str(v).strip()][:3]
        return value


def add_items(plan: list[ChecklistItem], new: Plan, attempt: int) -> list[ChecklistItem]:
    """The checklist with the new clues appended (duplicates of existing items are skipped)."""
    items = [i.model_copy() for i in plan]
    seen = {i.text.lower() for i in items}
    kinds: tuple[tuple[ItemKind, list[str]], ...] = (
        ("exploration", new.exploration),
        ("verification", new.verification),
    )
    for kind, clues in kinds:
        for clue in clues:
            if clue.lower() in seen:
                continue
            seen.add(clue.lower())
            items.append(ChecklistItem(id=len(items) + 1, text=clue, kind=kind, attempt=attempt))
    return items


def current_item(plan: list[ChecklistItem]) -> ChecklistItem | None:
    """The exploration item being worked on: the first pending or partial one."""
    for status in ("partial", "pending"):
        for item in plan:
            if item.kind == "exploration" and item.status == status:
                return item
    return None


def render_checklist(plan: list[ChecklistItem]) -> str:
    return "\n".join(f"[{STATUS_MARK[i.status]}] {i.id}. ({i.kind}) {i.text}" for i in plan) or "(empty)"


def context_note(plan: list[ChecklistItem], summaries: list[str]) -> str:
    """What the solver sees with the question: the checklist, the focus, and earlier attempts' summaries."""
    lines = []
    if plan:
        lines.append("Plan checklist ([x] done, [!] failed, [~] partial):")
        lines.append(render_checklist(plan))
        item = current_item(plan)
        if item:
            lines.append(f"Work on item {item.id} now: {item.text}")
    if summaries:
        lines.append("Earlier attempts:")
        lines.extend(f"{n}. {s}" for n, s in enumerate(summaries, 1))
    return "\n".join(lines)


def fallback_plan(question: str) -> Plan:
    """The plan used when the model cannot produce one: search the question itself."""
    return Plan(exploration=[question.strip().rstrip("?")], verification=[])


def plan(state: SolverState, ctx: RunContext) -> dict[str, Any]:
    """Make the first plan, or extend it after a PIVOT (new exploration clues; nothing is deleted)."""
    question = state["question"]
    existing = list(state.get("plan") or [])
    attempt = int(state.get("attempt") or 0) + 1
    summaries = list(state.get("summaries") or [])
    if existing:
        task = prompts.REPLANNER_TASK.format(
            question=question,
            checklist=render_checklist(existing),
            summary=summaries[-1] if summaries else "no evidence found",
        )
    else:
        task = prompts.PLANNER_TASK.format(question=question)
    messages = [{"role": "system", "content": prompts.PLANNER_SYSTEM}, {"role": "user", "content": task}]
    try:
        new, ok = structured_call(
            ctx, StructuredRole.PLAN, Plan, messages, default=fallback_plan(question), node="plan"
        )
    except BudgetExceeded:
        new, ok = (Plan() if existing else fallback_plan(question)), False
    items = add_items(existing, new, attempt)
    if not any(i.kind == "exploration" and i.status in ("pending", "partial") for i in items):
        # Every clue failed and nothing new came: search the question itself once more, phrased plainly.
        items = add_items(
            items, Plan(exploration=[f"{question.strip().rstrip('?')} (new angle {attempt})"]), attempt
        )
    entry = ctx.emit(
        PlanEvent(
            step=state.get("step", 0),
            attempt=attempt,
            replan=bool(existing),
            valid=ok,
            items=[i.model_copy() for i in items],
            **snapshot(ctx),
        )
    )
    return {
        "plan": items,
        "attempt": attempt,
        "context_note": context_note(items, summaries),
        "window_start": len(state.get("messages") or []),
        "trace": [entry],
    }
