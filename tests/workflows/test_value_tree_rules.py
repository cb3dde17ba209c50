"""The value tree's budget rules (issue 13): adaptive width, re-expanding dead ends only, reopening instead of
completing early, the tried list, reuse of other branches' observations, compact and shared evidence, the
pooled forced answer and the budget-scaled expansion cap."""

from __future__ import annotations

import json

from thrifty import Agent, Budget
from thrifty.agents.events import ExpandEvent, TreeEvent
from thrifty.agents.records import TreeNode
from thrifty.agents.tree import (
    Action,
    compact_evidence,
    frontier,
    new_root,
    pooled_messages,
    reopened,
    shared_text,
    tried_text,
    wide_needed,
)
from thrifty.budget import Ledger
from thrifty.testing import ScriptedModel, reply
from thrifty.tools import Corpus, Observation, make_search_tools
from thrifty.workflows.value_tree import expansion_plan, max_expansions, tool_child

TOOLS = make_search_tools(
    Corpus([("Paris", "Paris is the capital of France."), ("Berlin", "Berlin is the capital of Germany.")]),
    k=1,
)


def node(id: int, parent: int | None, depth: int, **fields: object) -> TreeNode:
    return TreeNode(id=id, parent=parent, depth=depth, **fields)  # type: ignore[arg-type]


def small_tree() -> list[TreeNode]:
    return [
        new_root("q"),
        node(
            1, 0, 1, tool="search", arguments='{"query": "a"}', observation="Title: A\nA text", progress=0.9
        ),
        node(
            2,
            0,
            1,
            tool="search",
            arguments='{"query": "b"}',
            observation="Title: B\nB text",
            progress=0.05,
            pruned=True,
            prune_reason="no progress (0.05): nothing",
        ),
        node(
            3, 1, 2, tool="search", arguments='{"query": "c"}', observation="Title: C\nC text", progress=0.2
        ),
    ]


# ------------------------------------------------------------------------------------------ width
def test_width_is_one_where_the_search_is_sure_and_k_where_it_is_not() -> None:
    root = new_root("q")
    root.expanded = 1
    assert not wide_needed(root, 0.5)  # first expansion of the root
    root.expanded = 2
    assert wide_needed(root, 0.5)  # a dead end asked again
    sure = node(1, 0, 1, progress=0.9, expanded=1)
    unsure = node(2, 0, 1, progress=0.3, expanded=1)
    assert not wide_needed(sure, 0.5) and wide_needed(unsure, 0.5)
    opts = {"adaptive_width": True, "widen_below": 0.5}
    assert expansion_plan(sure, 3, opts) == 1 and expansion_plan(unsure, 3, opts) == 3
    assert expansion_plan(sure, 3, {"adaptive_width": False}) == 3


# ------------------------------------------------------------------------------------------ frontier
def test_an_expanded_node_is_asked_again_only_when_all_its_children_failed() -> None:
    tree = small_tree()
    tree[0].expanded = 1
    tree[1].expanded = 1
    # the root has a live child (1), node 1 has a live child (3): only the leaf 3 is open with dead_ends_only
    assert [n.id for n in frontier(tree, 8, 2, dead_ends_only=True)] == [3]
    assert [n.id for n in frontier(tree, 8, 2)] == [0, 1, 3]
    tree[3].pruned = True  # node 1's only child failed: node 1 may be asked again
    assert [n.id for n in frontier(tree, 8, 2, dead_ends_only=True)] == [1]


def test_reopen_goes_on_from_open_nodes_else_from_no_progress_steps() -> None:
    tree = small_tree()
    for n in tree:
        n.expanded = 2
    assert frontier(tree, 8, 2) == []
    assert [n.id for n in reopened(tree, 8)] == [0, 1, 3]  # whatever their expansion count
    assert [n.id for n in reopened(tree, 1)] == [0]  # not too deep
    tree[0].pruned, tree[0].prune_reason = True, "tool error: x"  # no open node left: no-progress steps
    tree[1].pruned, tree[1].prune_reason = True, "tool error: x"
    tree[3].pruned, tree[3].prune_reason = True, "no progress (0.00): x"
    assert [n.id for n in reopened(tree, 8)] == [2, 3]  # a tool error is never reopened
    assert [n.id for n in reopened(tree, 2)] == [2]  # not too deep
    tree[2].prune_reason = "repeats an observation already on its path"
    assert reopened(tree, 2) == []


def test_a_search_that_cannot_go_on_does_not_complete_with_budget_left() -> None:
    script = ScriptedModel(
        [
            reply(
                json.dumps(
                    {"thought": "t", "actions": [{"tool": "search", "arguments": {"query": "Berlin"}}]}
                )
            ),
            reply(json.dumps({"progress": 0.0, "reason": "nothing"})),  # pruned
            reply(
                json.dumps(
                    {"thought": "t", "actions": [{"tool": "search", "arguments": {"query": "Berlin"}}]}
                )
            ),
            # nothing new from the root twice: reopened, the pruned Berlin step is expanded
            reply(
                json.dumps({"thought": "t", "actions": [{"tool": "search", "arguments": {"query": "Paris"}}]})
            ),
            reply(json.dumps({"progress": 0.9, "reason": "found"})),
            reply(
                json.dumps(
                    {"thought": "t", "actions": [{"tool": "answer", "arguments": {"answer": "Paris"}}]}
                )
            ),
            reply(json.dumps({"decision": "SUCCESS", "trajectory_summary": "s", "justification": "j"})),
        ]
    )
    agent = Agent(
        script.model, tools=TOOLS, budget=Budget(tool_calls=6), strategy="value_tree", seed=3, parallel=False
    )
    result = agent.run("What is the capital of France?")
    assert result.answer == "Paris" and result.stop_reason == "completed"
    tree = result.trace[-1]
    assert isinstance(tree, TreeEvent) and tree.method == "verified"
    expands = [e for e in result.trace if isinstance(e, ExpandEvent)]
    # the root, asked twice for nothing new, is reopened (it is still open) instead of completing
    assert [e.selected for e in expands] == [0, 0, 0, 2, 2][: len(expands)]
    assert expands[0].width == 1  # adaptive: the root's first expansion asks for one action
    # the root's re-expansion prompt listed what was tried from it
    prompts = [json.dumps(r.messages) for r in script.requests]
    assert "Already tried from this point" in prompts[2] and "Berlin" in prompts[2]


def test_legacy_options_complete_early() -> None:
    script = ScriptedModel(
        [
            reply(
                json.dumps(
                    {"thought": "t", "actions": [{"tool": "search", "arguments": {"query": "Berlin"}}]}
                )
            ),
            reply(json.dumps({"progress": 0.0, "reason": "nothing"})),
            reply(json.dumps({"thought": "t", "actions": []})),
        ],
        default=reply("unknown"),
    )
    agent = Agent(
        script.model,
        tools=TOOLS,
        budget=Budget(tool_calls=6),
        strategy="value_tree",
        seed=3,
        parallel=False,
        reopen=False,
    )
    result = agent.run("What is the capital of France?")
    assert result.stop_reason == "completed" and result.usage.tool_calls == 1


# ------------------------------------------------------------------------------------------ evidence
def test_tried_text_lists_a_nodes_children_with_their_fate() -> None:
    text = tried_text(small_tree(), 0)
    assert '> search({"query": "a"}) [progress 0.90]' in text
    assert '> search({"query": "b"}) [pruned: no progress (0.05): nothing]' in text and "Title: B" in text
    assert tried_text(small_tree(), 3) == ""


def test_compact_evidence_keeps_the_text_of_credited_steps_only() -> None:
    text = compact_evidence(small_tree(), 3, 3600, 0.5)
    assert "A text" in text and "Title: C" in text and "C text" not in text
    assert compact_evidence([new_root("q")], 0, 100, 0.5).startswith("(no evidence")


def test_shared_text_and_pooled_messages_bring_credited_steps_from_other_branches() -> None:
    tree = [
        *small_tree(),
        node(4, 0, 1, tool="read", arguments='{"title": "D"}', observation="D found", progress=1.0),
    ]
    shared = shared_text(tree, 3, 0.5)
    assert "D found" in shared and "A text" not in shared and "B text" not in shared  # A is on the path
    messages = pooled_messages(tree, 3, 0.5)
    contents = [m.get("content") for m in messages if m["role"] == "tool"]
    assert contents == ["Title: A\nA text", "Title: C\nC text", "D found"]


def test_a_repeat_of_another_branchs_observation_is_reused_not_pruned() -> None:
    parent = node(1, 0, 1, tool="search")
    action = Action(tool="search", arguments={"query": "x"})
    obs = Observation(tool="search", content="seen elsewhere", ok=True, units=0, usd=0.0, cached=True)
    kept = tool_child(5, parent, "", action, obs, {"seen elsewhere"}, path_seen=set())
    assert not kept.pruned
    own = tool_child(5, parent, "", action, obs, {"seen elsewhere"}, path_seen={"seen elsewhere"})
    assert own.pruned and own.prune_reason == "repeats an observation already on its path"
    legacy = tool_child(5, parent, "", action, obs, {"seen elsewhere"})
    assert legacy.pruned and legacy.prune_reason == "repeats an observation already in the tree"


def test_the_expansion_cap_scales_with_the_tool_call_budget() -> None:
    class Ctx:
        def __init__(self, ledger: Ledger) -> None:
            self.ledger = ledger

    assert max_expansions(Ctx(Ledger(Budget(tool_calls=5))), None) == 12  # type: ignore[arg-type]
    assert max_expansions(Ctx(Ledger(Budget(tool_calls=10))), None) == 22  # type: ignore[arg-type]
    assert max_expansions(Ctx(Ledger(Budget())), None) == 12  # type: ignore[arg-type]
    assert max_expansions(Ctx(Ledger(Budget(tool_calls=10))), 4) == 4  # type: ignore[arg-type]
