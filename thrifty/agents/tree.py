"""Value-tree search nodes (BAVT): budget-conditioned selection, expansion into k actions, residual critic.

* Selection samples the node to expand with probability proportional to ``V ** (1 / r)``, r = the ledger's
  remaining ratio: at r = 1 proportional to value (explore), as r -> 0 greedy on the best node (exploit).
* Expansion asks for k distinct next actions, runs the tool calls (cache hits are free), and creates a
  child per action; an "answer" action makes a terminal child that the verifier checks.
* The residual critic scores only what the *last step added* (LLM self-evaluation of whole states is
  over-confident). Children that add nothing, or repeat an observation already in the tree, are pruned at
  once and never spent on again.

A node's value is the mean progress along its path (root = 0.5): bounded in [0, 1], and it rewards lines
that keep adding evidence over one lucky step. (The paper did not publish its aggregation; this is ours.)
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

from pydantic import BaseModel, Field, field_validator

from thrifty.agents import prompts
from thrifty.agents.context import RunContext
from thrifty.agents.records import TreeNode
from thrifty.agents.structured import StructuredRole, structured_call
from thrifty.agents.verifier import evidence_text
from thrifty.budget import BudgetExceeded, budget_block
from thrifty.tools import Observation

ANSWER_TOOL = "answer"
ROOT_VALUE = 0.5


# ------------------------------------------------------------------------------------------- selection
def selection_probabilities(values: Sequence[float], r: float) -> list[float]:
    """P(i) proportional to V_i ** (1 / r), values shifted to be positive; r is clipped to [1e-3, 1].

    Computed in log space so that tiny r (a nearly spent budget) is exactly greedy instead of overflowing;
    ties at the top share the probability equally.
    """
    if not values:
        return []
    r = min(1.0, max(1e-3, r))
    low = min(values)
    shifted = [v - low + 1e-6 if low <= 0 else v for v in values]
    logs = [math.log(v) / r for v in shifted]
    top = max(logs)
    weights = [math.exp(x - top) for x in logs]
    total = sum(weights)
    return [w / total for w in weights]


def select(values: Sequence[float], r: float, rng: random.Random) -> int:
    probs = selection_probabilities(values, r)
    return rng.choices(range(len(values)), weights=probs, k=1)[0]


# ------------------------------------------------------------------------------------------------ tree
def new_root(question: str) -> TreeNode:
    return TreeNode(id=0, parent=None, depth=0, thought=f"question: {question}", value=ROOT_VALUE)


def path_to(tree: list[TreeNode], node_id: int) -> list[TreeNode]:
    """The nodes from the root to ``node_id``."""
    by_id = {n.id: n for n in tree}
    path = []
    cur: int | None = node_id
    while cur is not None:
        path.append(by_id[cur])
        cur = by_id[cur].parent
    return list(reversed(path))


def path_messages(tree: list[TreeNode], node_id: int) -> list[dict[str, Any]]:
    """The OpenAI-format trajectory from the root to ``node_id`` (for prompts and the verifier)."""
    messages: list[dict[str, Any]] = []
    for n in path_to(tree, node_id)[1:]:
        if n.tool and n.tool != ANSWER_TOOL:
            call_id = f"tree_{n.id}"
            messages.append(
                {
                    "role": "assistant",
                    "content": n.thought or None,
                    "tool_calls": [
                        {
                            "id": call_id,
                            "type": "function",
                            "function": {"name": n.tool, "arguments": n.arguments},
                        }
                    ],
                }
            )
            messages.append(
                {"role": "tool", "tool_call_id": call_id, "name": n.tool, "content": n.observation}
            )
    return messages


def frontier(tree: list[TreeNode], max_depth: int, per_node: int = 2) -> list[TreeNode]:
    """Nodes that may still be expanded: not pruned, not terminal, not too deep, and expanded fewer than
    ``per_node`` times (a node whose first children all failed may be asked again for different ones)."""
    return [n for n in tree if not (n.pruned or n.terminal) and n.depth < max_depth and n.expanded < per_node]


def child_keys(tree: list[TreeNode], node_id: int) -> set[str]:
    """The actions already tried from ``node_id`` (so a re-expansion asks for new ones)."""
    return {n.key for n in tree if n.parent == node_id and n.key}


# A verified answer first, then an unrefuted one, then a refuted one.
_VERDICT_RANK = {"SUCCESS": 2, None: 1, "CONTINUE": 1, "UNVERIFIED": 1, "PIVOT": 0}


def best_terminal(tree: list[TreeNode]) -> TreeNode | None:
    """The anytime best answer: verified SUCCESS first, then unrefuted, then by value (ties: the earliest)."""
    terminals = [n for n in tree if n.terminal and n.answer]
    if not terminals:
        return None
    return max(terminals, key=lambda n: (_VERDICT_RANK.get(n.verdict, 1), n.value, -n.id))


# ------------------------------------------------------------------------------------------- expansion
class Action(BaseModel):
    tool: str
    arguments: dict[str, Any] = Field(default_factory=dict)

    @field_validator("arguments", mode="before")
    @classmethod
    def _parse(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                return json.loads(value)
            except json.JSONDecodeError:
                return {"query": value}
        return value or {}

    def key(self) -> str:
        return f"{self.tool}:{json.dumps(self.arguments, sort_keys=True).lower()}"


class Candidates(BaseModel):
    thought: str = Field("", json_schema_extra={"maxLength": 200})
    actions: list[Action] = Field(default_factory=list, json_schema_extra={"maxItems": 5})


class Progress(BaseModel):
    progress: float = Field(ge=0.0, le=1.0)
    reason: str = Field("", json_schema_extra={"maxLength": 160})

    @field_validator("progress", mode="before")
    @classmethod
    def _clip(cls, value: Any) -> Any:
        try:
            return min(1.0, max(0.0, float(value)))
        except (TypeError, ValueError):
            return value


def describe_tools(ctx: RunContext) -> str:
    lines = []
    for t in ctx.visible_tools():
        params = t.openai_schema()["function"].get("parameters", {}).get("properties", {})
        lines.append(f"- {t.name}({', '.join(params)}): {t.description.splitlines()[0][:120]}")
    lines.append(f"- {ANSWER_TOOL}(answer): give the final answer")
    return "\n".join(lines)


def candidates_schema(ctx: RunContext, k: int, allow_answer: bool = True) -> dict[str, Any]:
    """The candidates reply with each tool's own argument schema spelled out (one ``anyOf`` branch per
    tool, plus ``answer`` when allowed), so a grammar-constrained model must fill in real arguments."""
    branches = []
    for t in ctx.visible_tools():
        params = t.openai_schema()["function"].get("parameters") or {"type": "object"}
        branches.append(
            {
                "type": "object",
                "properties": {"tool": {"const": t.name}, "arguments": params},
                "required": ["tool", "arguments"],
            }
        )
    if allow_answer or not branches:
        branches.append(_ANSWER_BRANCH)
    return {
        "type": "object",
        "properties": {
            "thought": {"type": "string", "maxLength": 200},
            "actions": {"type": "array", "items": {"anyOf": branches}, "minItems": 1, "maxItems": max(1, k)},
        },
        "required": ["thought", "actions"],
    }


_ANSWER_BRANCH: dict[str, Any] = {
    "type": "object",
    "properties": {
        "tool": {"const": ANSWER_TOOL},
        "arguments": {
            "type": "object",
            "properties": {"answer": {"type": "string", "maxLength": 120}},
            "required": ["answer"],
        },
    },
    "required": ["tool", "arguments"],
}


def propose_actions(
    ctx: RunContext, question: str, tree: list[TreeNode], node_id: int, k: int
) -> tuple[list[Action], str, bool]:
    """Ask for k candidate next actions from ``node_id``; returns (distinct actions, thought, valid)."""
    evidence = evidence_text(path_messages(tree, node_id), limit=1800)
    messages = [
        {"role": "system", "content": prompts.EXPAND_SYSTEM.format(k=k, tools=describe_tools(ctx))},
        {
            "role": "user",
            "content": prompts.EXPAND_TASK.format(
                question=question, evidence=evidence, budget=budget_block(ctx.ledger, ctx.tool_names)
            ),
        },
    ]
    fallback = Candidates(actions=[Action(tool="search", arguments={"query": question})] if ctx.tools else [])
    cands, ok = structured_call(
        ctx,
        StructuredRole.CANDIDATES,
        Candidates,
        messages,
        default=fallback,
        node="expand",
        schema=candidates_schema(ctx, k),
    )
    allowed = {t.name for t in ctx.visible_tools()}
    if node_id != 0 or not allowed:
        allowed.add(ANSWER_TOOL)
    seen: set[str] = child_keys(tree, node_id)  # on a re-expansion, only new actions count
    distinct: list[Action] = []
    for action in cands.actions:
        if action.tool not in allowed or action.key() in seen:
            continue
        seen.add(action.key())
        distinct.append(action)
    return distinct[:k], cands.thought, ok


def run_action(ctx: RunContext, action: Action) -> tuple[Action, Observation | BudgetExceeded]:
    """Run one tool action: its observation, or the BudgetExceeded that refused it."""
    try:
        return action, ctx.runner.run(action.tool, action.arguments, node="expand")
    except BudgetExceeded as exc:
        return action, exc


def run_actions(
    ctx: RunContext, actions: Sequence[Action], parallel: bool
) -> list[tuple[Action, Observation | BudgetExceeded]]:
    """Run the tool actions (concurrently if asked), in order; the Ledger keeps the budget exact either way."""
    tool_actions = [a for a in actions if a.tool != ANSWER_TOOL]
    if parallel and len(tool_actions) > 1:
        with ThreadPoolExecutor(max_workers=len(tool_actions)) as pool:
            return list(pool.map(partial(run_action, ctx), tool_actions))
    return [run_action(ctx, a) for a in tool_actions]


def score_progress(
    ctx: RunContext, question: str, before: str, action: Action, observation: str
) -> tuple[float, str]:
    """The residual critic: how much did this one step add? (0 on an invalid reply: no evidence of progress.)"""
    messages = [
        {"role": "system", "content": prompts.CRITIC_SYSTEM},
        {
            "role": "user",
            "content": prompts.CRITIC_TASK.format(
                question=question,
                before=before,
                action=f"{action.tool}({json.dumps(action.arguments)})",
                observation=observation[:900],
            ),
        },
    ]
    score, ok = structured_call(
        ctx,
        StructuredRole.CRITIC,
        Progress,
        messages,
        default=Progress(progress=0.0, reason="invalid critic reply"),
        node="critic",
        max_tokens=96,
        temperature=0.0,
    )
    return score.progress, score.reason if ok else "critic reply invalid: no progress assumed"
