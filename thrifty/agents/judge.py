"""The judge node: pick the final answer among the candidates the attempts produced.

Verified (SUCCESS) candidates win over the rest. A model call is made only when there is a real choice
(two or more distinct answers in the pool); otherwise, or when the budget cannot pay for it, or the reply
is invalid, the choice falls back to a majority vote (ties to the latest candidate).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from thrifty.agents import prompts
from thrifty.agents.answers import majority_vote, normalize_answer, usable_answer
from thrifty.agents.context import RunContext
from thrifty.agents.events import JudgeEvent
from thrifty.agents.solver import SolverState, snapshot
from thrifty.agents.structured import StructuredRole, structured_call
from thrifty.budget import BudgetExceeded, StopKind, stop_reason


class JudgeChoice(BaseModel):
    index: int
    reason: str = Field(default="", json_schema_extra={"maxLength": 200})


def candidate_pool(state: SolverState) -> list[dict[str, Any]]:
    """All candidates, plus an unverified last answer (e.g. one forced by the budget) if it is new."""
    cands = [dict(c) for c in state.get("candidates") or []]
    last = state.get("answer")
    if last and not any(c.get("answer") == last for c in cands):
        cands.append({"answer": last, "decision": "UNVERIFIED", "attempt": state.get("attempt", 1)})
    question = state.get("question")
    return [c for c in cands if usable_answer(c.get("answer"), question)]


def judge(state: SolverState, ctx: RunContext) -> dict[str, Any]:
    """Choose the final answer; keep a budget stop reason if the run ended by budget."""
    cands = candidate_pool(state)
    verified = [c for c in cands if c.get("decision") == "SUCCESS"]
    pool = verified or cands
    distinct = {normalize_answer(c["answer"]) for c in pool}
    method = "only candidate"
    chosen: str | None
    if not pool:
        last = state.get("candidate") or state.get("answer")
        chosen = last if usable_answer(last, state["question"]) else "unknown"
        method = "no candidates"
    elif len(distinct) == 1:
        chosen = pool[-1]["answer"]
        method = "verified" if verified else "only candidate"
    else:
        listing = "\n".join(
            f"{i}. {c['answer']} [{c.get('decision')}] {c.get('justification', '')[:160]}"
            for i, c in enumerate(pool)
        )
        messages = [
            {"role": "system", "content": prompts.JUDGE_SYSTEM},
            {
                "role": "user",
                "content": prompts.JUDGE_TASK.format(question=state["question"], candidates=listing),
            },
        ]
        fallback = JudgeChoice(index=-1, reason="fallback: majority vote")
        try:
            choice, _ok = structured_call(
                ctx,
                StructuredRole.JUDGE,
                JudgeChoice,
                messages,
                default=fallback,
                node="judge",
                max_tokens=128,
                temperature=0.0,
            )
        except BudgetExceeded:
            choice = fallback
        if 0 <= choice.index < len(pool):
            chosen, method = pool[choice.index]["answer"], f"judge: {choice.reason[:200]}"
        else:
            chosen, _n = majority_vote([c["answer"] for c in reversed(pool)])
            method = "majority vote"
    reason = state.get("stop_reason")
    if not reason or reason == StopKind.COMPLETED.value:
        reason = stop_reason(StopKind.COMPLETED)
    entry = ctx.emit(
        JudgeEvent(step=state.get("step", 0), answer=chosen, method=method, candidates=pool, **snapshot(ctx))
    )
    return {"answer": chosen, "candidate": chosen, "stop_reason": reason, "trace": [entry]}
