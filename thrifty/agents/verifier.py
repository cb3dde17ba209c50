"""The verifier node (BATS): check a proposed answer constraint by constraint and decide what to do next.

Decisions: SUCCESS (accept), CONTINUE (dig deeper on this line), PIVOT (change line). The verifier weighs
the remaining budget — in its prompt, and again in code: CONTINUE with a LOW or CRITICAL budget becomes a
PIVOT, as the paper prescribes for insufficient budget. Its trajectory summary replaces the raw
trajectory in the next attempt's context, which keeps prompts short.
"""

from __future__ import annotations

import difflib
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from thrifty.agents import prompts
from thrifty.agents.answers import usable_answer
from thrifty.agents.context import RunContext
from thrifty.agents.events import VerdictEvent
from thrifty.agents.planner import context_note, current_item
from thrifty.agents.records import ChecklistItem, ItemStatus
from thrifty.agents.solver import SolverState, snapshot
from thrifty.agents.structured import StructuredRole, structured_request
from thrifty.budget import BudgetExceeded, Regime, budget_block, regime

Decision = Literal["SUCCESS", "CONTINUE", "PIVOT"]
CheckStatus = Literal["satisfied", "contradicted", "unverifiable"]


class ConstraintCheck(BaseModel):
    constraint: str = Field(json_schema_extra={"maxLength": 120})
    status: CheckStatus = "unverifiable"


class Verdict(BaseModel):
    """Bounded sizes keep grammar-constrained local generation short; the decision follows its checks."""

    verification: list[ConstraintCheck] = Field(default_factory=list, json_schema_extra={"maxItems": 4})
    decision: Decision
    justification: str = Field(default="", json_schema_extra={"maxLength": 240})
    trajectory_summary: str = Field(default="", json_schema_extra={"maxLength": 400})

    @field_validator("verification", mode="before")
    @classmethod
    def _prose(cls, value: Any) -> Any:
        """A verifier that wrote its checks as prose still gave a decision: keep it, without checks."""
        return [] if isinstance(value, str) else value

    @field_validator("decision", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    def checks(self) -> list[ConstraintCheck]:
        return self.verification


def evidence_text(messages: list[dict[str, Any]], limit: int = 2400) -> str:
    """The attempt's tool calls and results as short text (budget blocks removed), newest kept."""
    lines: list[str] = []
    for m in messages:
        if m.get("role") == "assistant" and m.get("tool_calls"):
            for c in m["tool_calls"]:
                lines.append(f"> {c['function']['name']}({c['function'].get('arguments', '')})")
        elif m.get("role") == "tool":
            text = str(m.get("content") or "").split("\n<budget>")[0]
            lines.append(text[:700])
    text = "\n".join(lines) or "(no evidence: no tool was used)"
    return text if len(text) <= limit else "…" + text[-limit:]


def _auto_summary(answer: str | None, messages: list[dict[str, Any]]) -> str:
    calls = [
        f"{c['function']['name']}({c['function'].get('arguments', '')})"
        for m in messages
        if m.get("role") == "assistant"
        for c in m.get("tool_calls") or []
    ]
    return f"Tried {', '.join(calls) or 'no tools'}; proposed '{answer}'."


# The checklist status an item moves to: the item worked on, after the decision; a condition, after its check.
_STATUS_AFTER: dict[Decision, ItemStatus] = {"SUCCESS": "done", "CONTINUE": "partial", "PIVOT": "failed"}
_STATUS_AFTER_CHECK: dict[CheckStatus, ItemStatus] = {
    "satisfied": "done",
    "contradicted": "failed",
    "unverifiable": "partial",
}


def _mark(plan: list[ChecklistItem], verdict: Verdict, spent: dict[str, float]) -> list[ChecklistItem]:
    """Update checklist statuses from the verdict (never deleting an item)."""
    items = [i.model_copy() for i in plan]
    item = current_item(items)
    if item is not None:
        item.status = _STATUS_AFTER[verdict.decision]
        item.spent = {k: round(item.spent.get(k, 0) + v, 6) for k, v in spent.items()}
    checks = verdict.checks()
    verification_items = [i for i in items if i.kind == "verification"]
    for check in checks:
        best = max(
            verification_items,
            key=lambda i: difflib.SequenceMatcher(None, i.text.lower(), check.constraint.lower()).ratio(),
            default=None,
        )
        if best is None:
            continue
        ratio = difflib.SequenceMatcher(None, best.text.lower(), check.constraint.lower()).ratio()
        if ratio >= 0.5 or len(checks) == len(verification_items):
            best.status = _STATUS_AFTER_CHECK[check.status]
    return items


def spent_since(ctx: RunContext, mark: dict[str, float] | None) -> dict[str, float]:
    used = ctx.ledger.used()
    keys = ("tool_calls", "total_tokens", "usd")
    return {k: round(used.get(k, 0.0) - (mark or {}).get(k, 0.0), 6) for k in keys}


def _check(
    ctx: RunContext, messages: list[dict[str, Any]], fallback: Verdict
) -> tuple[Verdict, bool, str | None]:
    """The verifier's call: its verdict, whether it was valid, and the stop reason if the budget stopped it."""
    stop: str | None = None
    try:
        out = structured_request(
            ctx, StructuredRole.VERDICT, Verdict, messages, default=fallback, node="verify", temperature=0.0
        )
        verdict, ok = out.value, out.ok
        if not ok:  # say why: an invalid reply, or a model error
            why = f"no valid verdict ({out.error}); keeping the answer as an unverified candidate"
            verdict = verdict.model_copy(update={"justification": why[:300]})
    except BudgetExceeded as exc:
        verdict, ok, stop = (
            fallback.model_copy(update={"justification": f"no budget to verify: {exc}"}),
            False,
            exc.stop_reason,
        )
    return verdict, ok, stop


def verify(state: SolverState, ctx: RunContext) -> dict[str, Any]:
    """Check the proposed answer; record the candidate; set up the next attempt's context."""
    answer = state.get("answer")
    question = state["question"]
    window = list(state.get("messages") or [])[int(state.get("window_start") or 0) :]
    plan = list(state.get("plan") or [])
    conditions = [i.text for i in plan if i.kind == "verification"]
    extra = dict(state.get("extra") or {})
    spent = spent_since(ctx, extra.get("mark"))
    messages = [
        {"role": "system", "content": prompts.VERIFIER_SYSTEM},
        {
            "role": "user",
            "content": prompts.VERIFIER_TASK.format(
                question=question,
                conditions="\n".join(f"- {c}" for c in conditions) or "- (none given)",
                answer=answer,
                evidence=evidence_text(window),
                budget=budget_block(ctx.ledger, ctx.tool_names),
            ),
        },
    ]
    fallback = Verdict(
        decision="PIVOT",
        justification="the verifier's reply was not valid JSON twice; keeping the answer as an unverified candidate",
        trajectory_summary=_auto_summary(answer, window),
    )
    stop: str | None = None
    if not usable_answer(answer, question):
        # Nothing to check (no answer, "unknown", a preamble): a dead end, and no model call is paid for it.
        verdict, ok = (
            fallback.model_copy(update={"justification": "no answer was proposed: nothing to verify"}),
            True,
        )
    else:
        verdict, ok, stop = _check(ctx, messages, fallback)
    now = regime(ctx.ledger, ctx.tool_names)
    overridden = None
    if verdict.decision == "CONTINUE" and now in (Regime.LOW, Regime.CRITICAL):
        overridden = f"CONTINUE needs budget, but the regime is {now.value}: pivoting"
        verdict = verdict.model_copy(update={"decision": "PIVOT"})
    summary = verdict.trajectory_summary.strip() or _auto_summary(answer, window)
    candidates = [
        *list(state.get("candidates") or []),
        {
            "answer": answer,
            "decision": verdict.decision if stop is None else "UNVERIFIED",
            "attempt": state.get("attempt", 1),
            "justification": verdict.justification[:300],
        },
    ]
    items = _mark(plan, verdict, spent)
    summaries = [*list(state.get("summaries") or []), f"answer '{answer}' -> {verdict.decision}: {summary}"]
    entry = ctx.emit(
        VerdictEvent(
            step=state.get("step", 0),
            attempt=state.get("attempt", 1),
            answer=answer,
            decision=verdict.decision,
            valid=ok,
            overridden=overridden,
            checks=[c.model_dump() for c in verdict.checks()],
            justification=verdict.justification[:400],
            summary=summary[:400],
            attempt_spent=spent,
            items=[i.model_copy() for i in items],
            **snapshot(ctx),
        )
    )
    update: dict[str, Any] = {
        "decision": verdict.decision,
        "candidates": candidates,
        "candidate": answer if verdict.decision == "SUCCESS" else (state.get("candidate") or answer),
        "plan": items,
        "summaries": summaries,
        "context_note": context_note(items, summaries),
        "window_start": len(state.get("messages") or []),
        "answer": None,
        "stop_reason": stop,
        "trace": [entry],
        "extra": {"mark": ctx.ledger.used()},
    }
    return update
