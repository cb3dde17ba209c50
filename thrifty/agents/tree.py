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

from thrifty.agents import grounding, prompts
from thrifty.agents.context import RunContext
from thrifty.agents.records import TreeNode
from thrifty.agents.structured import StructuredRole, structured_call
from thrifty.agents.verifier import evidence_text
from thrifty.budget import BudgetExceeded, WorkerBudgetStops, budget_block
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


def step_messages(n: TreeNode) -> list[dict[str, Any]]:
    """A tool step of the tree as the assistant's call and the tool's result (OpenAI format)."""
    call_id = f"tree_{n.id}"
    call = {"id": call_id, "type": "function", "function": {"name": n.tool, "arguments": n.arguments}}
    return [
        {"role": "assistant", "content": n.thought or None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call_id, "name": n.tool, "content": n.observation},
    ]


def path_messages(tree: list[TreeNode], node_id: int) -> list[dict[str, Any]]:
    """The OpenAI-format trajectory from the root to ``node_id`` (for prompts and the verifier)."""
    messages: list[dict[str, Any]] = []
    for n in path_to(tree, node_id)[1:]:
        if n.tool and n.tool != ANSWER_TOOL:
            messages.extend(step_messages(n))
    return messages


def pooled_messages(tree: list[TreeNode], node_id: int, min_progress: float) -> list[dict[str, Any]]:
    """The path to ``node_id`` followed by every other step of the tree the critic credited with at least
    ``min_progress`` (what another branch found is evidence too), each once, in tree order."""
    messages = path_messages(tree, node_id)
    on_path = {n.id for n in path_to(tree, node_id)}
    seen = {n.observation for n in tree if n.id in on_path and n.observation}
    for n in tree:
        if n.id in on_path or n.terminal or not n.tool or n.progress < min_progress or n.observation in seen:
            continue
        seen.add(n.observation)
        messages.extend(step_messages(n))
    return messages


def paid_messages(tree: list[TreeNode], node_id: int, min_progress: float) -> list[dict[str, Any]]:
    """:func:`pooled_messages`, then every other tool step the run paid for (pruned or not), each
    observation once, in tree order: a forced answer reads everything the budget bought, so a step the
    critic wrongly scored as "no progress" (a noisy critic, a page whose evidence it missed) still grounds
    the best guess, as a react trajectory's whole history does."""
    messages = pooled_messages(tree, node_id, min_progress)
    seen = {m.get("content") for m in messages if m.get("role") == "tool"}
    for n in tree:
        if n.terminal or not n.tool or not n.observation or n.observation in seen:
            continue
        seen.add(n.observation)
        messages.extend(step_messages(n))
    return messages


def frontier(
    tree: list[TreeNode], max_depth: int, per_node: int = 2, dead_ends_only: bool = False
) -> list[TreeNode]:
    """Nodes that may still be expanded: not pruned, not terminal, not too deep, and expanded fewer than
    ``per_node`` times (a node whose first children all failed may be asked again for different ones).

    ``dead_ends_only``: a node already expanded is asked again only while none of its children is still
    open (pruned or answered children only), so the search goes on from what it found instead of paying
    for a sibling of a step that is still alive."""
    open_parents = {n.parent for n in tree if not (n.pruned or n.terminal)} if dead_ends_only else set()
    return [
        n
        for n in tree
        if not (n.pruned or n.terminal)
        and n.depth < max_depth
        and n.expanded < per_node
        and not (n.expanded and n.id in open_parents)
    ]


def reopened(tree: list[TreeNode], max_depth: int) -> list[TreeNode]:
    """The nodes to go on from when the frontier is empty but budget remains: every open node not too
    deep, whatever its expansion count; else the nodes pruned only for lack of progress (their observation
    was new to the tree: a later step may build on it). Empty when neither exists."""
    open_nodes = [n for n in tree if not (n.pruned or n.terminal) and n.depth < max_depth]
    if open_nodes:
        return open_nodes
    return [
        n
        for n in tree
        if n.pruned
        and not n.terminal
        and n.depth < max_depth
        and (n.prune_reason or "").startswith("no progress")
    ]


def wide_needed(node: TreeNode, widen_below: float) -> bool:
    """Widen an expansion only where the search is unsure: a node whose own step made less than
    ``widen_below`` progress (the critic was unsure or saw none), or a node expanded before (its first
    children did not get anywhere). A first expansion of the root, or of a step that clearly made
    progress, asks for one action."""
    if node.expanded > 1:
        return True
    return node.parent is not None and node.progress < widen_below


def tried_text(tree: list[TreeNode], node_id: int, chars: int = 300) -> str:
    """What was already tried from ``node_id`` (its children's calls, each with the start of its result and
    what became of it), so a re-expansion builds on it (e.g. reads a page a pruned search listed) instead
    of repeating it. Empty when nothing was tried."""
    lines = []
    for n in tree:
        if n.parent != node_id or n.terminal or not n.tool:
            continue
        fate = f"pruned: {n.prune_reason}" if n.pruned else f"progress {n.progress:.2f}"
        lines.append(f"> {n.tool}({n.arguments}) [{fate[:80]}]")
        if n.observation:
            lines.append(n.observation[:chars])
    return "\n".join(lines)


def compact_evidence(
    tree: list[TreeNode], node_id: int, limit: int, full_above: float, step_chars: int = 700
) -> str:
    """The path's evidence with each step that made less than ``full_above`` progress cut to its call and
    the titles it listed, so that the steps that found something keep their text on long (3-4 hop) paths.
    Newest kept when still over ``limit``."""
    lines: list[str] = []
    for n in path_to(tree, node_id)[1:]:
        if not n.tool or n.tool == ANSWER_TOOL:
            continue
        lines.append(f"> {n.tool}({n.arguments})")
        text = n.observation.split("\n<budget>")[0]
        if n.progress >= full_above:
            lines.append(text[:step_chars])
        else:
            titles = [line for line in text.splitlines() if line.startswith("Title:")]
            lines.append("\n".join(titles) if titles else text[:160])
    text = "\n".join(lines) or "(no evidence: no tool was used)"
    return text if len(text) <= limit else "…" + text[-limit:]


def listed_text(tree: list[TreeNode], node_id: int, exclude_own: bool = True) -> str:
    """The titles listed by steps pruned for no progress whose parent is on the path to ``node_id``: a
    search that listed the next page without its evidence was paid for, and the line that goes on past it
    should still know what it listed (read the page instead of searching for it again). With
    ``exclude_own``, the children of ``node_id`` itself are left out (the tried list shows them). Empty
    when there are none."""
    on_path = {n.id for n in path_to(tree, node_id)}
    parents = on_path - {node_id} if exclude_own else on_path
    lines: list[str] = []
    for n in tree:
        if (
            n.parent not in parents
            or n.id in on_path
            or n.terminal
            or not n.tool
            or not (n.pruned and (n.prune_reason or "").startswith("no progress"))
        ):
            continue
        text = n.observation.split("\n<budget>")[0]
        titles = [line for line in text.splitlines() if line.startswith("Title:")]
        if titles:
            lines.append(f"> {n.tool}({n.arguments})")
            lines.extend(titles)
    return "\n".join(lines)


def credited_steps(tree: list[TreeNode], node_id: int, min_progress: float) -> int:
    """How many steps on the path to ``node_id`` the critic credited with at least ``min_progress``."""
    return sum(
        1 for n in path_to(tree, node_id)[1:] if n.tool and not n.terminal and n.progress >= min_progress
    )


def shared_text(
    tree: list[TreeNode], node_id: int, min_progress: float, limit: int = 1400, step_chars: int = 700
) -> str:
    """What other branches found: the observations of steps off the path to ``node_id`` that the critic
    credited with at least ``min_progress``, each once (empty when none). A branch builds on them instead
    of paying again for what a sibling already found."""
    on_path = path_to(tree, node_id)
    seen = {n.observation for n in on_path if n.observation}
    ids = {n.id for n in on_path}
    lines: list[str] = []
    for n in tree:
        if n.id in ids or n.terminal or not n.tool or n.progress < min_progress or n.observation in seen:
            continue
        seen.add(n.observation)
        lines.append(f"> {n.tool}({n.arguments})")
        lines.append(n.observation.split("\n<budget>")[0][:step_chars])
    text = "\n".join(lines)
    return text if len(text) <= limit else "…" + text[-limit:]


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
    thought: str = Field(default="", json_schema_extra={"maxLength": 200})
    actions: list[Action] = Field(default_factory=list, json_schema_extra={"maxItems": 5})


class Progress(BaseModel):
    progress: float = Field(ge=0.0, le=1.0)
    reason: str = Field(default="", json_schema_extra={"maxLength": 160})

    @field_validator("progress", mode="before")
    @classmethod
    def _clip(cls, value: Any) -> Any:
        try:
            return min(1.0, max(0.0, float(value)))
        except (TypeError, ValueError):
            return value


def describe_tools(ctx: RunContext) -> str:
    listed = grounding.tool_lines([t.openai_schema() for t in ctx.visible_tools()])
    return "\n".join(line for line in (listed, f"- {ANSWER_TOOL}(answer): give the final answer") if line)


def candidates_schema(
    ctx: RunContext,
    k: int,
    allow_answer: bool = True,
    *,
    question: str | None = None,
    path: Sequence[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The candidates reply with each tool's own argument schema spelled out (one ``anyOf`` branch per
    tool, plus ``answer`` when allowed), so a grammar-constrained model must fill in real arguments.

    Given the ``question`` and the node's ``path`` (its messages) on a grounded run (``ctx.grounded``,
    :mod:`thrifty.agents.grounding`), the policies of the react solver apply to the tree too: no answer
    before something was observed on the path, ``query`` / ``title`` arguments drawn from the question's
    phrases and the titles seen, and answers drawn from the observed spans.
    """
    schemas = [t.openai_schema() for t in ctx.visible_tools()]
    answer_branch = _ANSWER_BRANCH
    if question is not None and ctx.grounded:
        history = list(path or [])
        schemas = grounding.grounded_tool_schemas(schemas, question, history)
        observations = grounding.observed(history)
        if not observations and schemas:
            allow_answer = False  # look before answering
        elif observations:
            spans = grounding.answer_spans(question, observations)
            answer_branch = _answer_branch({"type": "string", "enum": spans} if spans else None)
    branches = grounding.tool_branches(schemas)
    if allow_answer or not branches:
        branches.append(answer_branch)
    return {
        "type": "object",
        "properties": {
            "thought": {"type": "string", "maxLength": 200},
            "actions": {"type": "array", "items": {"anyOf": branches}, "minItems": 1, "maxItems": max(1, k)},
        },
        "required": ["thought", "actions"],
    }


def _answer_branch(answer: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "tool": {"const": ANSWER_TOOL},
            "arguments": {
                "type": "object",
                "properties": {"answer": answer or {"type": "string", "maxLength": 120}},
                "required": ["answer"],
            },
        },
        "required": ["tool", "arguments"],
    }


_ANSWER_BRANCH: dict[str, Any] = _answer_branch(None)


def propose_actions(
    ctx: RunContext,
    question: str,
    tree: list[TreeNode],
    node_id: int,
    k: int,
    *,
    show_tried: bool = False,
    evidence: str | None = None,
) -> tuple[list[Action], str, bool]:
    """Ask for k candidate next actions from ``node_id``; returns (distinct actions, thought, valid).

    ``show_tried``: the prompt also lists what was already tried from this node (:func:`tried_text`).
    ``evidence``: the path's evidence as text (default: :func:`evidence_text` of the path, 1800 chars).
    """
    path = path_messages(tree, node_id)
    if evidence is None:
        evidence = evidence_text(path, limit=1800)
    tried = tried_text(tree, node_id) if show_tried else ""
    if tried:
        evidence = f"{evidence}\n{prompts.EXPAND_TRIED.format(tried=tried)}"
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
        schema=candidates_schema(ctx, k, question=question, path=path),
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
    """Run the tool actions (concurrently if asked), in order; the Ledger keeps the budget exact either way.
    A call the budget refused is a budget stop, declared here in the node's thread once all have run: a run
    that pauses at its budget pauses (and its completed calls are replayed free when it resumes)."""
    tool_actions = [a for a in actions if a.tool != ANSWER_TOOL]
    if parallel and len(tool_actions) > 1:
        with ThreadPoolExecutor(max_workers=len(tool_actions)) as pool:
            results = list(pool.map(partial(run_action, ctx), tool_actions))
    else:
        results = [run_action(ctx, a) for a in tool_actions]
    stops = WorkerBudgetStops()
    for _, outcome in results:
        if isinstance(outcome, BudgetExceeded):
            stops.record(outcome.dimension)
    stops.declare()
    return results


def score_progress(
    ctx: RunContext,
    question: str,
    before: str,
    action: Action,
    observation: str,
    observation_chars: int = 900,
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
                observation=observation[:observation_chars],
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
