"""The ``value_tree`` strategy (BAVT: Budget-Aware Value Tree search).

    expand ──(budget left, no verified answer)──► expand
       └──(verified answer / frontier empty / budget or expansions out)──► finalize ──► END

Each ``expand`` step selects a frontier node with probability proportional to ``V ** (1 / r)`` (r = the
remaining-budget ratio), asks for k distinct next actions, runs them (concurrently if ``parallel``),
scores each new step with the residual critic, prunes steps that add nothing or repeat an observation,
and verifies proposed answers. ``finalize`` returns the anytime best answer: a verified one, else an
answer forced from the best branch, else the best unverified proposal. Both are module functions
(:func:`expand` takes the options), and so are the rules they apply: :func:`answer_child` and
:func:`tool_child` (pruning), :func:`apply_progress` (value and the progress threshold), :func:`forced_leaf`.

Where the budget went before (issue 13, ``benchmarks/vtree_diag.py``): k = 3 siblings per expansion of which
the simulated actor makes at most one useful (the others were wasted calls); a search that listed the right
page without its evidence was pruned as "no progress", and the branch that would have read it died with it;
a branch that repeated another branch's observation was pruned although the repeat was a free cache hit, so
no branch could combine two hops found on different lines; an interior node was re-expanded while its
children were alive; and an empty frontier ended the search "completed" with budget left (a forced
"unknown"). The rules added for it, each an option (defaults on): ``adaptive_width`` (one action where the
search is sure), ``dead_ends_only`` (re-expand a node only when all its children failed), ``show_tried``
(a re-expansion sees what was tried from the node), ``reuse_repeats``, ``share_evidence`` and
``final_evidence: tree`` (what one branch found, every branch and the forced answer can use),
``compact_evidence`` (long 3-4 hop paths keep the text of the steps that found something), ``reopen`` (no
early "completed" while budget remains), ``max_depth`` 8 and a budget-scaled ``max_expansions``.

Second round (issue 13): the forced answer never read the tree's evidence (``finalize`` did not get the
options, so ``final_evidence: tree`` was dead) and was forced from the branch of highest *mean* value, which
prefers a one-step path that found one paragraph over the three-step path that found both: at three tool
calls most runs end in a forced answer, so that was the tree's deficit at B = 3. Now ``forced_from:
evidence`` (the branch with the most credited steps), ``keep_listings`` (a line past a pruned search keeps the
titles it listed, so it reads the page instead of searching again), ``follow_sure`` (no sampling while the
critic is sure of the newest step), ``retry_rejected`` (a refused answer's node is asked again, at no tool
cost), ``step_chars`` (the critic read 900 characters of an observation and prompts kept 700 of a credited
step, so evidence late in a page was never credited and the line stalled), ``max_idle`` (stop after
expansions that add nothing, instead of reopening a node that has nothing
new to try until the token budget runs out, paying for stray searches on the way: the B = 20 excess of tool
calls) and ``max_rejections`` (a stop after refused answers from grounded paths; off, since the tree pays
for no tool call after its first proposed answer: the next proposals come from evidence already paid for).

Third round (issue 13): at B = 3 and 5 most runs end when the tool budget runs out, with a forced answer that
nobody checked, while every proposal during the search is verified and re-asked when refused. Now
``forced_checks`` (default 2) verifies the forced answer too and asks again while it is refused: model calls
only, so the tool calls of every run are unchanged (+0.03 to +0.06 EM at B = 3 and 5 on dev300, more
tokens). ``final_evidence: all`` (the forced answer also reads every pruned step the run paid for) was
measured within noise and is not the default.

Options: see :class:`ValueTreeOptions`.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from functools import partial
from typing import Any, Literal, cast

from pydantic import Field, PositiveInt

from thrifty.agents import prompts
from thrifty.agents.context import RunContext
from thrifty.agents.events import ExpandedChild, ExpandEvent, TraceEvent, TreeEvent
from thrifty.agents.records import TreeNode
from thrifty.agents.solver import SolverState, answer_usable, clean_answer, final_answer_call, snapshot
from thrifty.agents.tree import (
    ANSWER_TOOL,
    Action,
    best_terminal,
    compact_evidence,
    credited_steps,
    frontier,
    listed_text,
    new_root,
    paid_messages,
    path_messages,
    path_to,
    pooled_messages,
    propose_actions,
    reopened,
    run_actions,
    score_progress,
    select,
    selection_probabilities,
    shared_text,
    wide_needed,
)
from thrifty.agents.verifier import evidence_text, verify
from thrifty.budget import Budget, BudgetExceeded, Ledger, StopKind, regime_for, stop_reason
from thrifty.models.gateway import ModelError
from thrifty.tools import Observation
from thrifty.workflows.graph import END, Workflow
from thrifty.workflows.options import StrategyOptions, takes_options


class ValueTreeOptions(StrategyOptions):
    """Options of the ``value_tree`` strategy."""

    k: PositiveInt = Field(
        le=10,
        default=1,
        description="Candidate next actions asked for per expansion, at most (adaptive_width asks for one where "
        "the search is sure). 1: a line search that branches only where a step failed; measured best with the "
        "simulated model, whose k candidates are no better than one move (benchmarks/README.md).",
    )
    max_depth: PositiveInt = Field(
        le=64,
        default=8,
        description="Longest path of steps from the root (a hop often takes a search and a read).",
    )
    max_expansions: PositiveInt | None = Field(
        le=10_000,
        default=None,
        description="Expansions before the search stops; null: 2 x the tool-call budget + 2 (12 without one).",
    )
    prune_below: float = Field(
        default=0.1, ge=0, le=1, description="Prune a step whose critic progress score (0-1) is below this."
    )
    stop_on_verified: bool = Field(default=True, description="Stop at the first answer the verifier accepts.")
    verify: bool = Field(default=True, description="Verify proposed answers.")
    parallel: bool = Field(default=True, description="Run an expansion's tool calls concurrently.")
    branch_budget: float | None = Field(
        default=None,
        gt=0,
        le=1,
        description="Fraction of what remains that one expansion may spend, carved so that a branch cannot "
        "starve the others (unused parts are refunded); null: no per-branch limit.",
    )
    seed: int | None = Field(default=None, description="Seed of the node selection; null: the run's seed.")
    expansions_per_node: PositiveInt = Field(
        le=100,
        default=2,
        description="Times a node may be expanded (a node whose children all failed is asked again).",
    )
    dead_ends_only: bool = Field(
        default=True,
        description="Re-expand a node only when none of its children is still open (the second expansion is "
        "for a node whose children all failed), so the search does not pay for siblings of a live step.",
    )
    adaptive_width: bool = Field(
        default=True,
        description="Ask for one action where the search is sure (first expansion of the root, a step that "
        "made progress >= widen_below) and widen to k (narrowed by the budget) only where it is not.",
    )
    widen_below: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="With adaptive_width: widen after a step whose progress is below this.",
    )
    show_tried: bool = Field(
        default=True,
        description="A re-expansion's prompt lists what was already tried from the node and what it listed, "
        "so the next step builds on a pruned sibling (e.g. reads the page its search found).",
    )
    reuse_repeats: bool = Field(
        default=True,
        description="A step whose observation another branch already paid for (a free cache hit) is scored "
        "for this branch instead of pruned; only a repeat of the branch's own path is pruned.",
    )
    reopen: bool = Field(
        default=True,
        description="Never finish 'completed' while budget remains: when the frontier empties, go on from the "
        "open nodes whatever their expansion count, else from the nodes pruned for no progress.",
    )
    credited: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="Progress at which a step counts as having found something: its text stays in compact "
        "prompts and is shared with other branches and with a forced answer.",
    )
    share_evidence: bool = Field(
        default=True,
        description="A branch's prompts (expansion and critic) also show what the critic credited on other "
        "branches (progress >= credited), so evidence one branch paid for is not paid for again.",
    )
    compact_evidence: bool = Field(
        default=True,
        description="Prompts show steps without progress as their call and listed titles only, so the "
        "steps that found something keep their text on long (3-4 hop) paths.",
    )
    follow_sure: bool = Field(
        default=True,
        description="Go straight down a line while the critic is sure: expand the newest unexpanded step "
        "whose progress is >= widen_below without sampling; sample with P ∝ V ** (1 / r) only where the "
        "last step made no clear progress (a react-like line where it works, a tree where it stalls).",
    )
    retry_rejected: bool = Field(
        default=True,
        description="After the verifier refuses an answer, ask the node that proposed it once more (an "
        "answer from evidence already paid for costs no tool call) before paying for a new search.",
    )
    max_rejections: PositiveInt | None = Field(
        le=100,
        default=None,
        description="Stop searching after this many refused answers from paths with credited evidence and "
        "force an answer from the tree's evidence (a budget-aware stop: once the evidence was judged "
        "sufficient to answer and re-asking did not help, more searches rarely change it); null: never. "
        "Off by default: measured, the tree spends no tool calls after its first proposed answer (the "
        "next proposals come from evidence already paid for), so the stop only cut answer draws.",
    )
    max_idle: PositiveInt | None = Field(
        le=100,
        default=3,
        description="Stop after this many idle expansions (nothing paid for, nothing kept, no answer: the "
        "model only proposed what was already tried or repeated its own path) and force an answer from "
        "the tree's evidence; without it a node with nothing new to try was reopened until the expansion "
        "cap or the token budget ran out, paying for the odd stray search on the way. null: never.",
    )
    step_chars: PositiveInt | None = Field(
        le=100_000,
        default=1500,
        description="Characters of a step's observation the critic reads, and that a credited step keeps in "
        "compact and shared evidence; null: the earlier 900 and 700 (a page whose evidence came after them "
        "was scored 'no progress' and pruned, and the line never learned it had found it).",
    )
    keep_listings: bool = Field(
        default=True,
        description="An expansion's prompt lists the titles that searches pruned for no progress listed "
        "off its path (paid for), so the line past them reads a listed page instead of searching for it.",
    )
    forced_from: Literal["evidence", "value"] = Field(
        default="evidence",
        description="The branch a forced answer reads: the open node whose path holds the most credited "
        "steps ('evidence', then value, then depth), or the one of highest mean value ('value'), which "
        "favours a short path with one lucky step over a longer one that found more.",
    )
    forced_checks: int = Field(
        default=2,
        ge=0,
        le=5,
        description="When the search ends without a verified answer, verify the forced answer too and, "
        "while the verifier refuses it, ask for the answer again up to this many times (model calls "
        "only: no tool call; the tool budget is usually what ran out). The first accepted answer is "
        "returned, else the first forced one. 0: the forced answer is returned unverified (the earlier "
        "behaviour). Measured: +0.03 to +0.06 EM at B = 3 and 5 on dev300, same tool calls.",
    )
    final_evidence: Literal["auto", "path", "tree", "all"] = Field(
        default="auto",
        description="What a forced answer reads: the best branch ('path'), the best branch plus every "
        "step the critic credited anywhere in the tree ('tree'), or that plus every other step the run "
        "paid for, pruned ones included ('all': the whole purchase, as react's history holds it). "
        "'auto': 'all' on a grounded run (a small model's critic scores pages that hold the answer 'no "
        "progress', and a forced answer that read nothing could not be grounded in any observation), "
        "'tree' otherwise.",
    )


def budget_ratios(ctx: RunContext) -> dict[str, float]:
    """The remaining fraction per limited dimension that an expansion decides by (its width, selection and
    stop). On a resumed durable run whose expansion LangGraph runs again, the spend of the calls it still
    has to replay counts as not made yet (:meth:`RunContext.replay_credit`), so the expansion asks what it
    asked then and its recorded calls are replayed free; the Ledger still checks every call made against
    all the spend."""
    ratios = ctx.ledger.ratios()
    for dim, credit in ctx.replay_credit().items():
        limit = ctx.ledger.limit(dim)
        if dim in ratios and limit:
            ratios[dim] = min(1.0, ratios[dim] + credit / limit)
    return ratios


def budget_stop(ctx: RunContext) -> str | None:
    """Why no further expansion can be paid for, or None."""
    if ctx.tools and not ctx.visible_tools():
        return stop_reason(StopKind.BUDGET_EXHAUSTED, ctx.exhausted_tool_dimension())
    ratios = {d: r for d, r in budget_ratios(ctx).items() if not d.startswith("tool:")}
    if ratios and regime_for(min(ratios.values())).value == "CRITICAL":
        return stop_reason(StopKind.BUDGET_EXHAUSTED, min(ratios, key=ratios.__getitem__))
    return None


def expansion_width(ctx: RunContext, k: int, r: float, credit: Mapping[str, float] | None = None) -> int:
    """How many actions to ask for: k while the budget is full, fewer as it depletes, and never more than
    half the tool calls left (one expansion must not spend what the next hop needs). At least 1.
    ``credit``: spend counted as not made yet (:meth:`RunContext.replay_credit`, a resumed expansion).

    (Ours: the paper varies selection greediness with r; narrowing the width too keeps a small tool budget
    from being spent in one broad step.)
    """
    width = max(1, round(k * r))
    calls_left = ctx.ledger.available("tool_calls") + (credit or {}).get("tool_calls", 0.0)
    if calls_left != float("inf"):
        width = min(width, max(1, int(calls_left // 2)))
    return min(width, k)


def open_branch(ctx: RunContext, node_id: int, fraction: float | None) -> tuple[RunContext, Ledger | None]:
    """The context one expansion of ``node_id`` spends from, and its branch ledger (None: the run's own).

    With ``fraction`` (the ``branch_budget`` option), the branch is carved from ``fraction`` of what the
    run has left, so one branch cannot starve the others; closing it hands back what it did not spend.
    Raises BudgetExceeded when too little is left to carve a branch.
    """
    if not fraction:
        return ctx, None
    left = ctx.ledger.remaining()
    share = {d: v * float(fraction) for d, v in left.items() if d != "seconds"}
    branch = ctx.ledger.child(
        Budget.from_limits(share) if share else None, name=f"branch-{node_id}", carve=bool(share)
    )
    return ctx.fork(branch), branch


# ------------------------------------------------------------------------------------------- children
def answer_child(node_id: int, parent: TreeNode, thought: str, action: Action) -> TreeNode | None:
    """The terminal child for an ``answer`` action (None when the answer is empty). It inherits its
    parent's value until the verifier has spoken."""
    answer = clean_answer(str(action.arguments.get("answer", "")))
    if not answer:
        return None
    return TreeNode(
        id=node_id,
        parent=parent.id,
        depth=parent.depth + 1,
        thought=thought,
        tool=ANSWER_TOOL,
        arguments=str(action.arguments),
        terminal=True,
        answer=answer,
        key=action.key(),
        value=parent.value,
        progress_sum=parent.progress_sum or 0.0,
    )


def tool_child(
    node_id: int,
    parent: TreeNode,
    thought: str,
    action: Action,
    outcome: Observation | BudgetExceeded,
    seen: set[str],
    path_seen: set[str] | None = None,
) -> TreeNode:
    """The child for a tool action that ran (or was refused), pruned at once when it can add nothing.

    The pruning rule: a call the budget refused, a tool error, a cached repeat, or an observation already
    in the tree (``seen``, which a new observation joins) is never scored or expanded. With ``path_seen``
    (the ``reuse_repeats`` option: the observations on the child's own path), a repeat is pruned only when
    its own path already holds it; a repeat of another branch's observation is kept (free evidence reuse).
    """
    child = TreeNode(
        id=node_id,
        parent=parent.id,
        depth=parent.depth + 1,
        thought=thought,
        tool=action.tool,
        arguments=json.dumps(action.arguments),
        key=action.key(),
    )
    if isinstance(outcome, BudgetExceeded):
        return _pruned(child, f"not run: {outcome.dimension} spent")
    child.observation = outcome.content
    child.spent = {"tool_calls": outcome.units, "usd": outcome.usd}
    if not outcome.ok:
        return _pruned(child, f"tool error: {outcome.error}")
    if path_seen is not None:
        if outcome.content in path_seen:
            return _pruned(child, "repeats an observation already on its path")
    elif outcome.cached or outcome.content in seen:
        return _pruned(child, "repeats an observation already in the tree")
    seen.add(outcome.content)
    return child


def _pruned(node: TreeNode, reason: str) -> TreeNode:
    node.pruned, node.prune_reason = True, reason
    return node


def apply_progress(child: TreeNode, parent: TreeNode, progress: float, why: str, prune_below: float) -> None:
    """Record the critic's score of ``child``'s step: its value is the mean progress along its path; a
    step that added less than ``prune_below`` is pruned."""
    total = (parent.progress_sum or 0.0) + progress
    child.progress, child.progress_sum, child.value, child.critic = progress, total, total / child.depth, why
    if progress < prune_below:
        _pruned(child, f"no progress ({progress:.2f}): {why[:120]}")


def max_expansions(ctx: RunContext, option: int | None) -> int:
    """The expansion cap: the option, else 2 x the tool-call budget + 2 (12 without a tool-call limit)."""
    if option:
        return int(option)
    limit = ctx.ledger.limit("tool_calls")
    return 2 * int(limit) + 2 if limit not in (None, float("inf")) else 12


def graph_expansion_cap() -> int | None:
    """The most expansions the running graph's step limit (LangGraph's ``recursion_limit``, which the runner
    derives from ``max_steps``) leaves room for: LangGraph runs at most ``recursion_limit - 1`` nodes, every
    expansion is one, and the expansion that ends the search and ``finalize`` take two more. Past it
    LangGraph would end the run with a GraphRecursionError, an ``error`` with no forced answer. None
    outside a graph run.

    The count of expansions is the run's total, so a resumed durable run (whose limit counts from the
    resume) stops no later than this."""
    try:
        from langgraph.config import get_config

        limit = get_config().get("recursion_limit")
    except RuntimeError:  # called outside a graph (a test calling expand() directly)
        return None
    return max(0, int(limit) - 3) if isinstance(limit, int) else None


def expansion_plan(node: TreeNode, width: int, opts: Mapping[str, Any]) -> int:
    """How many actions to ask ``node`` for: the budget-narrowed ``width``, or 1 with ``adaptive_width``
    where the search is sure (:func:`thrifty.agents.tree.wide_needed`)."""
    if opts.get("adaptive_width") and not wide_needed(node, float(opts.get("widen_below", 0.5))):
        return 1
    return width


def forced_leaf(tree: list[TreeNode], by: str = "value", credited: float = 0.5) -> TreeNode:
    """The branch to force an answer from when no answer was verified, or the root.

    ``by="value"``: the open node of highest value (deepest on ties). ``by="evidence"``: the open node
    whose path holds the most steps with progress >= ``credited``, then by value and depth (the mean
    value of a path falls with every step that found nothing, so by value alone a one-step path that
    found one paragraph beats the two-step path that found both)."""
    leaves = [n for n in tree if not n.pruned and not n.terminal]
    if by == "evidence":
        return max(
            leaves, key=lambda n: (credited_steps(tree, n.id, credited), n.value, n.depth), default=tree[0]
        )
    return max(leaves, key=lambda n: (n.value, n.depth), default=tree[0])


def forced_messages(
    tree: list[TreeNode], leaf_id: int, opts: Mapping[str, Any], grounded: bool = False
) -> list[dict[str, Any]]:
    """What a forced answer reads, by ``final_evidence``: the branch to ``leaf_id`` ('path'), plus the
    steps credited anywhere ('tree'), plus every other step paid for ('all'); 'auto' is 'all' on a
    ``grounded`` run, else 'tree'."""
    credited = float(opts.get("credited", 0.5))
    evidence = opts.get("final_evidence") or "auto"
    if evidence == "auto":
        evidence = "all" if grounded else "tree"
    match evidence:
        case "tree":
            return pooled_messages(tree, leaf_id, credited)
        case "all":
            return paid_messages(tree, leaf_id, credited)
        case _:
            return path_messages(tree, leaf_id)


def refused(node: TreeNode) -> bool:
    """An answer the verifier looked at and did not accept."""
    return node.terminal and node.verdict in ("CONTINUE", "PIVOT")


def rejection_stop(tree: list[TreeNode], limit: int | None, credited: float) -> bool:
    """The budget-aware stop: ``limit`` answers were refused that came from paths holding credited
    evidence (the search had judged its evidence sufficient), so further searching has little value."""
    if not limit:
        return False
    grounded = [
        n for n in tree if refused(n) and n.parent is not None and credited_steps(tree, n.parent, credited)
    ]
    return len(grounded) >= limit


def retry_node(tree: list[TreeNode], retried: list[int]) -> TreeNode | None:
    """The node to re-ask after a refused answer: the parent of the newest answer node, when that answer
    was refused, was not retried yet, and its parent is still open. None otherwise."""
    answers = [n for n in tree if n.terminal]
    if not answers:
        return None
    last = max(answers, key=lambda n: n.id)
    if not refused(last) or last.id in retried or last.parent is None:
        return None
    parent = next(n for n in tree if n.id == last.parent)
    return None if parent.pruned else parent


def choose(
    tree: list[TreeNode], nodes: list[TreeNode], r: float, rng: random.Random, opts: Mapping[str, Any]
) -> tuple[TreeNode, str]:
    """The node to expand and why: a refused answer's node first (``retry_rejected``), then the newest
    unexpanded step the critic was sure of (``follow_sure``), else a sample with P ∝ V ** (1 / r)."""
    if opts.get("retry_rejected"):
        again = retry_node(tree, list(opts.get("_retried") or []))
        if again is not None:
            return again, "retry"
    if opts.get("follow_sure"):
        sure = [
            n
            for n in nodes
            if n.parent is not None and not n.expanded and n.progress >= float(opts["widen_below"])
        ]
        if sure:
            return max(sure, key=lambda n: n.id), "sure"
    values = [n.value for n in nodes]
    return nodes[select(values, r, rng)], "sampled"


def _verify_answer(
    ctx: RunContext, question: str, answer: str, messages: list[dict[str, Any]], attempt: int, step: int = 0
) -> tuple[str, list[TraceEvent]]:
    """The verifier's decision on ``answer`` given ``messages`` (UNVERIFIED when the budget stopped it),
    and its trace."""
    pseudo: dict[str, Any] = {
        "question": question,
        "answer": answer,
        "messages": messages,
        "window_start": 0,
        "plan": [],
        "candidates": [],
        "summaries": [],
        "extra": {},
        "attempt": attempt,
        "step": step,
    }
    update = verify(cast(SolverState, pseudo), ctx)
    decision = "UNVERIFIED" if update.get("stop_reason") else update["decision"]
    return decision, update["trace"]


def _verify_terminal(
    ctx: RunContext, question: str, tree: list[TreeNode], node: TreeNode, step: int = 0
) -> tuple[str, list[TraceEvent]]:
    """The verifier's decision on an answer node (UNVERIFIED when the budget stopped it), and its trace."""
    messages = path_messages(tree, node.parent) if node.parent is not None else []
    return _verify_answer(ctx, question, node.answer or "", messages, node.id, step)


def checked_forced_answer(
    ctx: RunContext,
    question: str,
    messages: list[dict[str, Any]],
    first: str,
    why: str,
    checks: int,
    step: int = 0,
    first_attempt: int = 1,
) -> tuple[str, str, list[TraceEvent]]:
    """``forced_checks``: verify a forced answer and, while the verifier refuses it, ask again (the prompt
    lists the refused answers) up to ``checks`` times (verdicts numbered from ``first_attempt``). Returns
    the first answer the verifier accepts (or could not check for lack of budget), else ``first``; how it
    ended; and the verifier's trace. Model calls only: no tool is offered. A budget stop ends the checks
    and keeps what was found so far."""
    trace: list[TraceEvent] = []
    answer, refused = first, []
    for attempt in range(checks + 1):
        decision, entries = _verify_answer(ctx, question, answer, messages, first_attempt + attempt, step)
        trace.extend(entries)
        if decision == "SUCCESS":
            return answer, f"verified after {attempt} re-asks", trace
        if decision == "UNVERIFIED":
            return (answer if attempt == 0 else first), "unverified: no budget to check", trace
        refused.append(answer)
        if attempt == checks:
            break
        note = {"role": "user", "content": prompts.FORCED_REFUSED.format(refused="; ".join(refused))}
        try:
            again = clean_answer(final_answer_call(ctx, [*messages, note], question, why).content)
        except (BudgetExceeded, ModelError):  # no re-ask to be had: the answers so far stand
            break
        if not again:
            break
        answer = again
    return first, f"refused {len(refused)} times, kept the first", trace


def _action_of(node: TreeNode) -> Action:
    return Action.model_validate({"tool": node.tool or "", "arguments": node.arguments})


def expansion_evidence(
    tree: list[TreeNode], chosen: TreeNode, opts: dict[str, Any]
) -> tuple[str | None, str]:
    """What the expansion of ``chosen`` shows the model (None: the path's own messages) and what the critic
    compares a child's observation against: the path's evidence, compacted to its credited steps if
    ``compact_evidence``, plus what other branches found if ``share_evidence``."""
    credited = float(opts["credited"])
    compact = bool(opts.get("compact_evidence"))
    chars = int(opts.get("step_chars") or 700)
    evidence = compact_evidence(tree, chosen.id, 3600, credited, chars) if compact else None
    before = (
        compact_evidence(tree, chosen.id, 1800, credited, chars)
        if compact
        else evidence_text(path_messages(tree, chosen.id), limit=900)
    )
    listed = listed_text(tree, chosen.id, bool(opts.get("show_tried"))) if opts.get("keep_listings") else ""
    if listed:
        evidence = (
            (evidence or evidence_text(path_messages(tree, chosen.id), limit=1800))
            + "\n"
            + (prompts.EXPAND_LISTED.format(listed=listed))
        )
    shared = shared_text(tree, chosen.id, credited, step_chars=chars) if opts.get("share_evidence") else ""
    if shared:
        note = prompts.EXPAND_SHARED.format(shared=shared)
        evidence = (evidence or evidence_text(path_messages(tree, chosen.id), limit=1800)) + "\n" + note
        before = f"{before}\n{note}"
    return evidence, before


def expandable(
    tree: list[TreeNode], ctx: RunContext, opts: Mapping[str, Any], expansions: int, idle: int = 0
) -> tuple[list[TreeNode], dict[str, Any] | None]:
    """The nodes the next expansion may choose from, or the update that ends the search: a budget stop,
    no node left (after ``reopen``), the expansion cap, the rejection stop (``max_rejections``) or
    ``idle`` expansions reaching ``max_idle``."""
    stop = budget_stop(ctx)
    nodes = frontier(
        tree, int(opts["max_depth"]), int(opts["expansions_per_node"]), bool(opts.get("dead_ends_only"))
    )
    if not nodes and not stop and opts.get("reopen"):
        nodes = reopened(tree, int(opts["max_depth"]))
    cap = max_expansions(ctx, opts.get("max_expansions"))
    graph_cap = graph_expansion_cap()
    if graph_cap is not None:
        cap = min(cap, graph_cap)
    if stop or not nodes or expansions >= cap:
        reason = stop or (stop_reason(StopKind.MAX_STEPS) if nodes else None)
        return nodes, {"tree": tree, "decision": "DONE", "stop_reason": reason}
    if rejection_stop(tree, opts.get("max_rejections"), float(opts["credited"])):
        return nodes, {"tree": tree, "decision": "DONE", "stop_reason": None}
    if opts.get("max_idle") and idle >= int(opts["max_idle"]):
        return nodes, {"tree": tree, "decision": "DONE", "stop_reason": None}
    return nodes, None


def idle_expansion(children: list[TreeNode]) -> bool:
    """An expansion that added nothing: no tool call paid, no child kept, no answer proposed."""
    return not any(c.terminal or not c.pruned or c.spent.get("tool_calls", 0) for c in children)


# ------------------------------------------------------------------------------------------- nodes
def expand(state: SolverState, ctx: RunContext, opts: dict[str, Any]) -> dict[str, Any]:
    """One expansion: select a frontier node (P ∝ V ** (1 / r)), ask for actions, run them, score and prune
    the children, and verify proposed answers. ``opts``: the strategy's options (:class:`ValueTreeOptions`, as a dict)."""
    question = state["question"]
    tree = [n.model_copy() for n in (state.get("tree") or [new_root(question)])]
    expansions = int((state.get("extra") or {}).get("expansions", 0))
    stop: str | None = None
    idle = int((state.get("extra") or {}).get("idle", 0))
    if ctx.ledger.journal is not None:  # a durable run: the charges up to here were the saved steps'
        ctx.ledger.journal.began_after(int((state.get("extra") or {}).get("seq", 0)))
    nodes, done = expandable(tree, ctx, opts, expansions, idle)
    if done is not None:
        return done

    step = int(state.get("step") or 0) + 1
    r = min(budget_ratios(ctx).values(), default=1.0)  # as Ledger.remaining_ratio, replay-aware
    seed = opts["seed"] if opts["seed"] is not None else ctx.settings.seed
    rng = random.Random(f"{seed}-{expansions}")
    retried = list((state.get("extra") or {}).get("retried", []))
    probs = selection_probabilities([n.value for n in nodes], r)
    chosen, how = choose(tree, nodes, r, rng, {**opts, "_retried": retried})
    if how == "retry":
        retried.append(max(n.id for n in tree if n.terminal))
    chosen.expanded += 1
    try:
        sub, branch = open_branch(ctx, chosen.id, opts["branch_budget"])
    except BudgetExceeded as exc:
        return {"tree": tree, "decision": "DONE", "stop_reason": exc.stop_reason}

    trace: list[TraceEvent] = []
    children: list[TreeNode] = []  # added to the tree as they are made: a budget stop keeps them
    decision: str | None = None
    valid = True
    k = int(opts["k"])
    width = k
    try:
        width = expansion_plan(chosen, expansion_width(ctx, k, r, ctx.replay_credit()), opts)
        evidence, before = expansion_evidence(tree, chosen, opts)
        actions, thought, valid = propose_actions(
            sub, question, tree, chosen.id, width, show_tried=bool(opts.get("show_tried")), evidence=evidence
        )
        seen = {n.observation for n in tree if n.observation}
        path_seen = (
            {n.observation for n in path_to(tree, chosen.id) if n.observation}
            if opts.get("reuse_repeats")
            else None
        )
        next_id = max(n.id for n in tree) + 1
        for action in [a for a in actions if a.tool == ANSWER_TOOL]:
            answered = answer_child(next_id, chosen, thought, action)
            if answered is not None:
                next_id += 1
                tree.append(answered)
                children.append(answered)
        for action, outcome in run_actions(sub, actions, bool(opts["parallel"])):
            child = tool_child(next_id, chosen, thought, action, outcome, seen, path_seen)
            next_id += 1
            tree.append(child)
            children.append(child)
        for child in children:
            if not (child.pruned or child.terminal):
                progress, why = score_progress(
                    sub,
                    question,
                    before,
                    _action_of(child),
                    child.observation,
                    int(opts.get("step_chars") or 900),
                )
                apply_progress(child, chosen, progress, why, float(opts["prune_below"]))
        for child in children:
            if child.terminal and opts["verify"]:
                child.verdict, entries = _verify_terminal(sub, question, tree, child, step)
                trace.extend(entries)
                if child.verdict == "SUCCESS" and opts["stop_on_verified"]:
                    decision = "SUCCESS"
    except BudgetExceeded as exc:
        stop = exc.stop_reason
    finally:
        if branch is not None:
            branch.close()  # what the branch did not spend returns to the run

    best = best_terminal(tree)
    entry = ctx.emit(
        ExpandEvent(
            step=step,
            expansion=expansions + 1,
            selected=chosen.id,
            width=width,
            r=round(r, 4),
            probabilities={n.id: round(p, 4) for n, p in zip(nodes, probs, strict=True)},
            children=[ExpandedChild.of(c) for c in children],
            tree_size=len(tree),
            valid=valid,
            **snapshot(ctx),
        )
    )
    return {
        "tree": tree,
        "step": step,
        "decision": decision,
        "stop_reason": stop,
        "candidate": best.answer if best else state.get("candidate"),
        "extra": {
            "expansions": expansions + 1,
            "retried": retried,
            "idle": idle + idle_expansion(children),
            "seq": max((e.seq for e in ctx.ledger.events), default=0),  # the last charge of this expansion
        },
        "trace": [*trace, entry],
    }


def route(state: SolverState) -> str:
    """Finalize on a verified answer, a stop, or a search that is done; expand again otherwise."""
    if state.get("stop_reason") or state.get("decision") in ("SUCCESS", "DONE"):
        return "finalize"
    return "expand"


def finalize(state: SolverState, ctx: RunContext, opts: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The anytime best answer: a verified one, else one forced from the best open branch (plus, with
    ``final_evidence: tree``, every step the critic credited elsewhere), else the best unverified proposal."""
    opts = opts or {}
    question = state["question"]
    tree = list(state.get("tree") or [new_root(question)])
    best = best_terminal(tree)
    reason = state.get("stop_reason") or stop_reason(StopKind.COMPLETED)
    answer, method = (best.answer, "verified") if best and best.verdict == "SUCCESS" else (None, "")
    trace: list[TraceEvent] = []
    error: str | None = None
    unusable = False  # the forced reply was no answer ("unknown", the question, a bare preamble)
    if answer is None:
        leaf = forced_leaf(tree, str(opts.get("forced_from", "value")), float(opts.get("credited", 0.5)))
        try:
            why = (
                "The search is over." if reason == StopKind.COMPLETED.value else "The budget is nearly spent."
            )
            messages = forced_messages(tree, leaf.id, opts, ctx.grounded)
            reply = final_answer_call(ctx, messages, question, why)
            answer, method = clean_answer(reply.content) or None, f"forced from branch {leaf.id}"
            if answer is not None and not answer_usable(answer, question, ctx):
                # as react's answer: it never replaces the tree's best proposal (the run's last resort is
                # "unknown", as there)
                answer, unusable, method = None, True, f"{method}: {answer[:60]!r} is no answer"
            if answer and opts.get("forced_checks"):
                answer, how, checks = checked_forced_answer(
                    ctx,
                    question,
                    messages,
                    answer,
                    why,
                    int(opts["forced_checks"]),
                    state.get("step", 0),
                    max(n.id for n in tree) + 1,
                )
                method, trace = f"{method}, {how}", checks
        except BudgetExceeded as exc:
            if reason == StopKind.COMPLETED.value:
                reason = exc.stop_reason
        except ModelError as exc:  # the provider failed the forced answer: the tree's best still stands
            error, method = str(exc), f"forced answer failed: {str(exc)[:200]}"
            if reason == StopKind.COMPLETED.value:
                reason = stop_reason(StopKind.ERROR)
        if answer is None and best is not None:
            answer, method = (
                best.answer,
                "best unverified proposal" + (f"; {method}" if error or unusable else ""),
            )
    chosen_path = [n.id for n in path_to(tree, best.id)] if best and best.answer == answer else []
    entry = ctx.emit(
        TreeEvent(
            step=state.get("step", 0),
            answer=answer,
            method=method,
            path=chosen_path,
            nodes=tree,
            **snapshot(ctx),
        )
    )
    update: dict[str, Any] = {
        "answer": answer or state.get("candidate") or ("unknown" if unusable else None),
        "stop_reason": reason,
        "trace": [*trace, entry],
    }
    if error is not None and reason == stop_reason(StopKind.ERROR):
        update["error"] = error
    return update


@takes_options(ValueTreeOptions)
def build_value_tree(options: ValueTreeOptions | Mapping[str, Any] | None = None) -> Any:
    opts = ValueTreeOptions.of(options).model_dump()

    wf = Workflow("value_tree")
    wf.node("expand", partial(expand, opts=opts)).node("finalize", partial(finalize, opts=opts))
    wf.route("expand", route, ["expand", "finalize"])
    wf.edge("finalize", END)
    return wf.compile()
