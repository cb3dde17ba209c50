"""The ``value_tree`` strategy (BAVT: Budget-Aware Value Tree search).

    expand ──(budget left, no verified answer)──► expand
       └──(verified answer / frontier empty / budget or expansions out)──► finalize ──► END

Each ``expand`` step selects a frontier node with probability proportional to ``V ** (1 / r)`` (r = the
remaining-budget ratio), asks for k distinct next actions, runs them (concurrently if ``parallel``),
scores each new step with the residual critic, prunes steps that add nothing or repeat an observation,
and verifies proposed answers. ``finalize`` returns the anytime best answer: a verified one, else an
answer forced from the best branch, else the best unverified proposal.

Options: see :class:`ValueTreeOptions`.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from typing import Any

from pydantic import Field, PositiveInt

from thrifty.agents.context import RunContext
from thrifty.agents.solver import SolverState, clean_answer, final_answer_call, snapshot
from thrifty.agents.tree import (
    ANSWER_TOOL,
    Action,
    best_terminal,
    frontier,
    new_root,
    node_dict,
    path_messages,
    path_to,
    propose_actions,
    run_actions,
    score_progress,
    select,
    selection_probabilities,
)
from thrifty.agents.verifier import evidence_text, verify
from thrifty.budget import Budget, BudgetExceeded, StopKind, regime_for, stop_reason
from thrifty.workflows.graph import END, Workflow
from thrifty.workflows.options import StrategyOptions, takes_options


class ValueTreeOptions(StrategyOptions):
    """Options of the ``value_tree`` strategy."""

    k: PositiveInt = Field(3, description="Candidate next actions asked for per expansion.")
    max_depth: PositiveInt = Field(4, description="Longest path of steps from the root.")
    max_expansions: PositiveInt = Field(12, description="Expansions before the search stops.")
    prune_below: float = Field(
        0.1, ge=0, le=1, description="Prune a step whose critic progress score (0-1) is below this."
    )
    stop_on_verified: bool = Field(True, description="Stop at the first answer the verifier accepts.")
    verify: bool = Field(True, description="Verify proposed answers.")
    parallel: bool = Field(True, description="Run an expansion's tool calls concurrently.")
    branch_budget: float | None = Field(
        None,
        gt=0,
        le=1,
        description="Fraction of what remains that one expansion may spend, carved so that a branch cannot "
        "starve the others (unused parts are refunded); null: no per-branch limit.",
    )
    seed: int | None = Field(None, description="Seed of the node selection; null: the run's seed.")
    expansions_per_node: PositiveInt = Field(
        2, description="Times a node may be expanded (a node whose children all failed is asked again)."
    )


def budget_stop(ctx: RunContext) -> str | None:
    """Why no further expansion can be paid for, or None."""
    if ctx.tools and not ctx.visible_tools():
        return stop_reason(StopKind.BUDGET_EXHAUSTED, ctx.exhausted_tool_dimension())
    ratios = {d: r for d, r in ctx.ledger.ratios().items() if not d.startswith("tool:")}
    if ratios and regime_for(min(ratios.values())).value == "CRITICAL":
        return stop_reason(StopKind.BUDGET_EXHAUSTED, min(ratios, key=ratios.__getitem__))
    return None


def expansion_width(ctx: RunContext, k: int, r: float) -> int:
    """How many actions to ask for: k while the budget is full, fewer as it depletes, and never more than
    half the tool calls left (one expansion must not spend what the next hop needs). At least 1.

    (Ours: the paper varies selection greediness with r; narrowing the width too keeps a small tool budget
    from being spent in one broad step.)
    """
    width = max(1, round(k * r))
    calls_left = ctx.ledger.available("tool_calls")
    if calls_left != float("inf"):
        width = min(width, max(1, int(calls_left // 2)))
    return min(width, k)


def _verify_terminal(
    ctx: RunContext, question: str, tree: list[dict[str, Any]], node: dict[str, Any], step: int = 0
) -> tuple[str, list[dict[str, Any]]]:
    pseudo: dict[str, Any] = {
        "question": question,
        "answer": node["answer"],
        "messages": path_messages(tree, node["parent"]),
        "window_start": 0,
        "plan": [],
        "candidates": [],
        "summaries": [],
        "extra": {},
        "attempt": node["id"],
        "step": step,
    }
    update = verify(pseudo, ctx)  # type: ignore[arg-type]
    decision = "UNVERIFIED" if update.get("stop_reason") else update["decision"]
    return decision, update["trace"]


@takes_options(ValueTreeOptions)
def build_value_tree(options: ValueTreeOptions | Mapping[str, Any] | None = None) -> Any:
    opts = ValueTreeOptions.of(options).model_dump()
    k, max_depth = opts["k"], opts["max_depth"]

    def expand(state: SolverState, ctx: RunContext) -> dict[str, Any]:
        question = state["question"]
        tree = [dict(n) for n in (state.get("tree") or [new_root(question)])]
        expansions = int((state.get("extra") or {}).get("expansions", 0))
        stop = budget_stop(ctx)
        nodes = frontier(tree, max_depth, int(opts["expansions_per_node"]))
        if stop or not nodes or expansions >= int(opts["max_expansions"]):
            reason = stop or (stop_reason(StopKind.MAX_STEPS) if nodes else None)
            return {"tree": tree, "decision": "DONE", "stop_reason": reason}

        r = ctx.ledger.remaining_ratio()
        seed = opts["seed"] if opts["seed"] is not None else ctx.settings.seed
        rng = random.Random(f"{seed}-{expansions}")
        values = [n["value"] for n in nodes]
        probs = selection_probabilities(values, r)
        chosen = nodes[select(values, r, rng)]
        chosen["expanded"] = int(chosen["expanded"]) + 1

        sub, branch = ctx, None
        if opts["branch_budget"]:
            left = ctx.ledger.remaining()
            share = {d: v * float(opts["branch_budget"]) for d, v in left.items() if d != "seconds"}
            try:
                branch = ctx.ledger.child(
                    Budget.from_limits(share) if share else None,
                    name=f"branch-{chosen['id']}",
                    carve=bool(share),
                )
                sub = ctx.fork(branch)
            except BudgetExceeded as exc:
                return {"tree": tree, "decision": "DONE", "stop_reason": exc.stop_reason}

        trace: list[dict[str, Any]] = []
        children: list[dict[str, Any]] = []
        decision: str | None = None
        valid = True
        width = k
        try:
            width = expansion_width(ctx, k, r)
            actions, thought, valid = propose_actions(sub, question, tree, chosen["id"], width)
            seen_obs = {n["observation"] for n in tree if n["observation"]}
            before = evidence_text(path_messages(tree, chosen["id"]), limit=900)
            next_id = max(n["id"] for n in tree) + 1
            for action in [a for a in actions if a.tool == ANSWER_TOOL]:
                answer = clean_answer(str(action.arguments.get("answer", "")))
                if not answer:
                    continue
                child = node_dict(
                    next_id,
                    chosen["id"],
                    chosen["depth"] + 1,
                    thought=thought,
                    tool=ANSWER_TOOL,
                    arguments=str(action.arguments),
                    terminal=True,
                    answer=answer,
                    key=action.key(),
                    value=chosen["value"],
                    progress_sum=chosen.get("progress_sum", 0.0),
                )
                next_id += 1
                tree.append(child)
                children.append(child)
            for action, obs in run_actions(sub, actions, bool(opts["parallel"])):
                child = node_dict(
                    next_id,
                    chosen["id"],
                    chosen["depth"] + 1,
                    thought=thought,
                    tool=action.tool,
                    arguments=json.dumps(action.arguments),
                    key=action.key(),
                )
                next_id += 1
                if isinstance(obs, BudgetExceeded):
                    child.update(pruned=True, prune_reason=f"not run: {obs.dimension} spent")
                else:
                    child["observation"] = obs.content
                    child["spent"] = {"tool_calls": obs.units, "usd": obs.usd}
                    if not obs.ok:
                        child.update(pruned=True, prune_reason=f"tool error: {obs.error}")
                    elif obs.cached or obs.content in seen_obs:
                        child.update(pruned=True, prune_reason="repeats an observation already in the tree")
                    else:
                        seen_obs.add(obs.content)
                tree.append(child)
                children.append(child)
            for child in children:
                if child["pruned"] or child["terminal"]:
                    continue
                progress, why = score_progress(sub, question, before, _action_of(child), child["observation"])
                total = chosen.get("progress_sum", 0.0) + progress
                child.update(progress=progress, progress_sum=total, value=total / child["depth"], critic=why)
                if progress < float(opts["prune_below"]):
                    child.update(pruned=True, prune_reason=f"no progress ({progress:.2f}): {why[:120]}")
            for child in children:
                if child["terminal"] and opts["verify"]:
                    verdict, entries = _verify_terminal(
                        sub, question, tree, child, int(state.get("step") or 0) + 1
                    )
                    child["verdict"] = verdict
                    trace.extend(entries)
                    if verdict == "SUCCESS" and opts["stop_on_verified"]:
                        decision = "SUCCESS"
        except BudgetExceeded as exc:
            stop = exc.stop_reason
        finally:
            if branch is not None:
                branch.close()  # what the branch did not spend returns to the run

        best = best_terminal(tree)
        entry = ctx.emit(
            {
                "step": int(state.get("step") or 0) + 1,
                "node": "expand",
                "action": "expand",
                "expansion": expansions + 1,
                "selected": chosen["id"],
                "width": width,
                "r": round(r, 4),
                "probabilities": {n["id"]: round(p, 4) for n, p in zip(nodes, probs, strict=True)},
                "children": [
                    {
                        k_: c[k_]
                        for k_ in (
                            "id",
                            "tool",
                            "arguments",
                            "answer",
                            "progress",
                            "value",
                            "pruned",
                            "prune_reason",
                            "verdict",
                        )
                    }
                    for c in children
                ],
                "tree_size": len(tree),
                "valid": valid,
                **snapshot(ctx),
            }
        )
        return {
            "tree": tree,
            "step": int(state.get("step") or 0) + 1,
            "decision": decision,
            "stop_reason": stop,
            "candidate": best["answer"] if best else state.get("candidate"),
            "extra": {"expansions": expansions + 1},
            "trace": [*trace, entry],
        }

    def route(state: SolverState) -> str:
        if state.get("stop_reason") or state.get("decision") in ("SUCCESS", "DONE"):
            return "finalize"
        return "expand"

    def finalize(state: SolverState, ctx: RunContext) -> dict[str, Any]:
        question = state["question"]
        tree = list(state.get("tree") or [new_root(question)])
        best = best_terminal(tree)
        reason = state.get("stop_reason") or stop_reason(StopKind.COMPLETED)
        answer, method = (best["answer"], "verified") if best and best["verdict"] == "SUCCESS" else (None, "")
        if answer is None:
            leaves = [n for n in tree if not n["pruned"] and not n["terminal"]]
            leaf = max(leaves, key=lambda n: (n["value"], n["depth"]), default=tree[0])
            try:
                why = (
                    "The search is over."
                    if reason == StopKind.COMPLETED.value
                    else "The budget is nearly spent."
                )
                reply = final_answer_call(ctx, path_messages(tree, leaf["id"]), question, why)
                answer, method = clean_answer(reply.content) or None, f"forced from branch {leaf['id']}"
            except BudgetExceeded as exc:
                if reason == StopKind.COMPLETED.value:
                    reason = exc.stop_reason
            if answer is None and best is not None:
                answer, method = best["answer"], "best unverified proposal"
        chosen_path = (
            [n["id"] for n in path_to(tree, best["id"])] if best and best["answer"] == answer else []
        )
        entry = ctx.emit(
            {
                "step": state.get("step", 0),
                "node": "finalize",
                "action": "tree",
                "answer": answer,
                "method": method,
                "path": chosen_path,
                "nodes": tree,
                **snapshot(ctx),
            }
        )
        return {"answer": answer or state.get("candidate"), "stop_reason": reason, "trace": [entry]}

    wf = Workflow("value_tree")
    wf.node("expand", expand).node("finalize", finalize)
    wf.route("expand", route, ["expand", "finalize"])
    wf.edge("finalize", END)
    return wf.compile()


def _action_of(node: dict[str, Any]) -> Action:
    return Action(tool=node["tool"], arguments=node["arguments"])
