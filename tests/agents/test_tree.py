"""Value-tree search nodes: selection math, the tree helpers over typed nodes, and the anytime best answer."""

from __future__ import annotations

import random

import pytest

from thrifty.agents.records import TreeNode
from thrifty.agents.tree import (
    ANSWER_TOOL,
    best_terminal,
    child_keys,
    frontier,
    new_root,
    path_messages,
    path_to,
    select,
    selection_probabilities,
)


# ------------------------------------------------------------------------------------------ selection
def test_r_one_is_proportional_to_value() -> None:
    assert selection_probabilities([1.0, 3.0], 1.0) == pytest.approx([0.25, 0.75])


def test_small_r_is_greedy_and_ties_share() -> None:
    probs = selection_probabilities([0.2, 0.9, 0.5], 0.001)
    assert probs[1] == pytest.approx(1.0)
    assert selection_probabilities([0.9, 0.9, 0.1], 0.001) == pytest.approx([0.5, 0.5, 0.0], abs=1e-9)


def test_r_in_between_sharpens() -> None:
    flat = selection_probabilities([0.4, 0.8], 1.0)[1]
    sharp = selection_probabilities([0.4, 0.8], 0.5)[1]
    assert flat == pytest.approx(2 / 3) and sharp == pytest.approx(0.8)  # 0.8^2 / (0.4^2 + 0.8^2)


def test_zero_and_negative_values_are_shifted_positive() -> None:
    probs = selection_probabilities([0.0, 0.0], 1.0)
    assert probs == pytest.approx([0.5, 0.5])
    probs = selection_probabilities([-1.0, 0.0, 1.0], 1.0)
    assert probs[0] < 1e-5 and probs[2] > probs[1] > 0
    assert sum(selection_probabilities([0.0, 0.3], 0.2)) == pytest.approx(1.0)


def test_select_is_reproducible_and_follows_the_probabilities() -> None:
    values = [0.2, 0.6, 0.2]
    picks = [select(values, 1.0, random.Random(i)) for i in range(3000)]
    assert picks.count(1) / 3000 == pytest.approx(0.6, abs=0.04)
    assert [select(values, 1.0, random.Random(7)) for _ in range(3)] == [
        select(values, 1.0, random.Random(7))
    ] * 3


# ------------------------------------------------------------------------------------------ tree
def small_tree() -> list[TreeNode]:
    """root -> 1 search (-> 3 answer), 2 pruned search."""
    return [
        new_root("Capital of France?"),
        TreeNode(
            id=1,
            parent=0,
            depth=1,
            thought="look",
            tool="search",
            arguments='{"query": "France"}',
            observation="Paris is the capital.",
            key="search:a",
            value=0.9,
        ),
        TreeNode(id=2, parent=0, depth=1, tool="search", key="search:b", pruned=True),
        TreeNode(id=3, parent=1, depth=2, tool=ANSWER_TOOL, terminal=True, answer="Paris", key="answer:c"),
    ]


def test_root_path_and_messages() -> None:
    tree = small_tree()
    assert tree[0].value == 0.5 and tree[0].thought == "question: Capital of France?"
    assert [n.id for n in path_to(tree, 3)] == [0, 1, 3]
    messages = path_messages(tree, 3)  # the answer node adds no tool call
    assert [m["role"] for m in messages] == ["assistant", "tool"]
    assert messages[0]["tool_calls"][0]["function"] == {"name": "search", "arguments": '{"query": "France"}'}
    assert messages[1] == {
        "role": "tool",
        "tool_call_id": "tree_1",
        "name": "search",
        "content": "Paris is the capital.",
    }


def test_frontier_leaves_out_pruned_terminal_deep_and_spent_nodes() -> None:
    tree = small_tree()
    assert [n.id for n in frontier(tree, max_depth=4)] == [0, 1]
    assert [n.id for n in frontier(tree, max_depth=1)] == [0]  # node 1 is as deep as allowed
    tree[0].expanded = 2
    assert [n.id for n in frontier(tree, max_depth=4, per_node=2)] == [1]
    assert child_keys(tree, 0) == {"search:a", "search:b"} and child_keys(tree, 3) == set()


def answer(node_id: int, value: float, verdict: str | None) -> TreeNode:
    return TreeNode(
        id=node_id,
        parent=0,
        depth=1,
        tool=ANSWER_TOOL,
        terminal=True,
        answer=f"a{node_id}",
        value=value,
        verdict=verdict,
    )


@pytest.mark.parametrize(
    ("answers", "best"),
    [
        ([], None),
        ([answer(1, 0.9, "PIVOT"), answer(2, 0.1, "SUCCESS")], 2),  # verified beats any value
        ([answer(1, 0.9, "PIVOT"), answer(2, 0.1, None)], 2),  # unrefuted beats refuted
        ([answer(1, 0.4, "UNVERIFIED"), answer(2, 0.6, "CONTINUE")], 2),  # then by value
        ([answer(1, 0.5, None), answer(2, 0.5, None)], 1),  # ties: the earliest
    ],
)
def test_best_terminal_prefers_verified_then_unrefuted_then_value(
    answers: list[TreeNode], best: int | None
) -> None:
    chosen = best_terminal([new_root("q"), *answers])
    assert (chosen.id if chosen else None) == best
