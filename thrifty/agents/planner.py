"""The planner node (BATS): split the question into exploration and verification clues, keep a checklist.

The checklist is a list of :class:`~thrifty.agents.records.ChecklistItem` ``(id, text, kind, status, spent,
attempt)``; ``status`` is one of pending / done / failed / partial. Items are only ever added or moved between states (each change is
recorded in the trace), never deleted or silently rewritten, so the run's reasoning stays auditable.

A re-plan never repeats a clue: the re-planner is told which clues failed, a clue that is the same as one
already on the checklist once normalised (:func:`same_clue`: case, punctuation, articles, question words and
word order aside) is dropped and shown in the trace (``PlanEvent.repeated``), and when nothing new is left
the next untried phrase of the question (a quoted title, a name, its keywords) is searched instead. When
every such phrase has been tried too, the plan says so with the stop reason ``completed``, and the ``bats``
graph goes to the judge instead of paying for an attempt that would repeat one.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, Field, field_validator

from thrifty.agents import prompts
from thrifty.agents.answers import normalize_answer
from thrifty.agents.context import RunContext
from thrifty.agents.events import PlanEvent
from thrifty.agents.grounding import question_phrases
from thrifty.agents.records import ChecklistItem, ItemKind, ItemStatus
from thrifty.agents.solver import SolverState, snapshot
from thrifty.agents.structured import StructuredRole, structured_call
from thrifty.budget import BudgetExceeded, StopKind, stop_reason

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
            # one line each; a clue with no letter or digit ("...", "] }") is no search at all
            texts = [" ".join(str(v).split())[:100] for v in value]
            return [t for t in texts if any(ch.isalnum() for ch in t)][:3]
        return value


#: Words that do not make one search clue different from another.
_FILLER = {
    "who", "whom", "whose", "what", "which", "when", "where", "why", "how", "is", "are", "was", "were", "did",
    "do", "does", "of", "in", "on", "for", "and", "or", "to", "by", "with", "from", "at", "new", "angle",
}  # fmt: skip
SAME_CLUE_OVERLAP = 0.8  # word-set overlap (Jaccard) from which two clues are the same search


def clue_words(text: str) -> frozenset[str]:
    """The words that make a clue what it is: normalised, without question words, articles or numbering."""
    return frozenset(w for w in normalize_answer(text).split() if w not in _FILLER and not w.isdigit())


def same_clue(a: str, b: str) -> bool:
    """Whether two clues are the same search once normalised ("Jaws director" / "director of Jaws?")."""
    wa, wb = clue_words(a), clue_words(b)
    if not wa or not wb:
        return normalize_answer(a) == normalize_answer(b)
    return wa == wb or len(wa & wb) / len(wa | wb) >= SAME_CLUE_OVERLAP


def add_items(plan: list[ChecklistItem], new: Plan, attempt: int) -> list[ChecklistItem]:
    """The checklist with the new clues appended (clues that repeat an item, normalised, are skipped)."""
    return add_new_items(plan, new, attempt)[0]


def add_new_items(
    plan: list[ChecklistItem], new: Plan, attempt: int
) -> tuple[list[ChecklistItem], list[str]]:
    """The checklist with the new clues appended, and the clues dropped because they repeat one already
    on it (:func:`same_clue`, whatever its status: a failed clue is not tried again)."""
    items = [i.model_copy() for i in plan]
    repeated: list[str] = []
    kinds: tuple[tuple[ItemKind, list[str]], ...] = (
        ("exploration", new.exploration),
        ("verification", new.verification),
    )
    for kind, clues in kinds:
        for clue in clues:
            if any(i.kind == kind and same_clue(i.text, clue) for i in items):
                if kind == "exploration":
                    repeated.append(clue)
                continue
            items.append(ChecklistItem(id=len(items) + 1, text=clue, kind=kind, attempt=attempt))
    return items, repeated


def untried_phrase(question: str, plan: list[ChecklistItem]) -> str | None:
    """The first phrase of the question (a quoted title, a name, its keywords) no exploration clue has
    covered yet, or None when every one has been tried."""
    tried = [i.text for i in plan if i.kind == "exploration"]
    for phrase in [*question_phrases(question), question.strip().rstrip("?")]:
        if phrase and not any(same_clue(phrase, t) for t in tried):
            return phrase
    return None


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
        failed = [i.text for i in existing if i.kind == "exploration" and i.status == "failed"]
        task = prompts.REPLANNER_TASK.format(
            question=question,
            checklist=render_checklist(existing),
            summary=summaries[-1] if summaries else "no evidence found",
            failed="\n".join(f"- {t}" for t in failed) or "- (none yet)",
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
    items, repeated = add_new_items(existing, new, attempt)
    exhausted = False
    if not any(i.kind == "exploration" and i.status in ("pending", "partial") for i in items):
        # Every clue failed and nothing new came: search a phrase of the question not tried yet; when none is
        # left, another attempt could only repeat one, so the plan ends the search.
        phrase = untried_phrase(question, items)
        if phrase is not None:
            items = add_items(items, Plan(exploration=[phrase]), attempt)
        else:
            exhausted = True
    entry = ctx.emit(
        PlanEvent(
            step=state.get("step", 0),
            attempt=attempt,
            replan=bool(existing),
            valid=ok,
            items=[i.model_copy() for i in items],
            repeated=repeated or None,
            exhausted=exhausted or None,
            **snapshot(ctx),
        )
    )
    update: dict[str, Any] = {
        "plan": items,
        "attempt": attempt,
        "context_note": context_note(items, summaries),
        "window_start": len(state.get("messages") or []),
        "trace": [entry],
    }
    if exhausted:
        update["stop_reason"] = stop_reason(StopKind.COMPLETED)
    return update


def after_plan(state: SolverState) -> str:
    """'judge' when the plan has nothing left to try (every clue and phrase of the question failed),
    else 'solve'."""
    return "judge" if state.get("stop_reason") else "solve"
