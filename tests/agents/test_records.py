"""Typed checklist items and tree nodes: their fields, and a JSON form with absent keys left out."""

from __future__ import annotations

import json

from thrifty.agents.planner import Plan, add_items, current_item, render_checklist
from thrifty.agents.records import ChecklistItem, TreeNode

NODE_KEYS = [
    "id",
    "parent",
    "depth",
    "thought",
    "tool",
    "arguments",
    "observation",
    "progress",
    "value",
    "pruned",
    "prune_reason",
    "terminal",
    "answer",
    "verdict",
    "expanded",
    "spent",
]


def test_a_tree_nodes_optional_keys_appear_once_set() -> None:
    root = TreeNode(id=0, parent=None, depth=0, value=0.5)
    assert list(root.model_dump()) == NODE_KEYS
    child = TreeNode(id=1, parent=0, depth=1, key="search:{}", spent={"tool_calls": 1, "usd": 0.001})
    assert list(json.loads(child.model_dump_json())) == [*NODE_KEYS, "key"]
    child.progress_sum, child.critic = 0.4, "new evidence"
    dumped = child.model_dump()
    assert list(dumped)[-3:] == ["key", "progress_sum", "critic"]
    assert dumped["spent"] == {"tool_calls": 1, "usd": 0.001}
    assert type(dumped["spent"]["tool_calls"]) is int  # units stay whole numbers in the JSON
    assert TreeNode.model_validate_json(child.model_dump_json()) == child


def test_checklist_items_are_added_without_duplicates_and_worked_in_order() -> None:
    items = add_items(
        [], Plan(exploration=["capital of France", "Paris"], verification=["a city"]), attempt=1
    )
    assert [(i.id, i.kind, i.status, i.attempt) for i in items] == [
        (1, "exploration", "pending", 1),
        (2, "exploration", "pending", 1),
        (3, "verification", "pending", 1),
    ]
    items[0].status = "failed"
    more = add_items(items, Plan(exploration=["PARIS", "French capital"]), attempt=2)
    assert [i.text for i in more] == ["capital of France", "Paris", "a city", "French capital"]
    assert more[0] is not items[0]  # the earlier checklist is left as it was
    assert current_item(more) == more[1]
    assert render_checklist(more).splitlines()[0] == "[!] 1. (exploration) capital of France"
    assert list(ChecklistItem(id=1, text="t", kind="exploration", attempt=1).model_dump()) == [
        "id",
        "text",
        "kind",
        "status",
        "spent",
        "attempt",
    ]
