"""BAVT value-tree search: selection math, pruning, exhaustion, determinism, tree JSON."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from thrifty import Agent, Budget
from thrifty.agents.events import ExpandEvent, TreeEvent
from thrifty.agents.tree import select, selection_probabilities
from thrifty.testing import ScriptedModel, reply
from thrifty.tools import Corpus, make_search_tools
from thrifty.workflows.result import RunResult

TOOLS = make_search_tools(
    Corpus([("Paris", "Paris is the capital of France."), ("Berlin", "Berlin is the capital of Germany.")]),
    k=1,
)


def actions(*acts: tuple[str, dict]) -> str:
    return json.dumps({"thought": "try", "actions": [{"tool": t, "arguments": a} for t, a in acts]})


def progress(p: float) -> str:
    return json.dumps({"progress": p, "reason": f"p={p}"})


def verdict(decision: str) -> str:
    return json.dumps({"decision": decision, "trajectory_summary": "s", "justification": "j"})


def final_tree(result: RunResult) -> TreeEvent:
    """The value tree's last trace event: the whole tree and its answer."""
    event = result.trace[-1]
    assert isinstance(event, TreeEvent), event
    return event


def tree_agent(script: ScriptedModel, budget: Budget | None = None, **options) -> Agent:
    options.setdefault("k", 2)
    options.setdefault("parallel", False)
    return Agent(
        script.model,
        tools=TOOLS,
        budget=budget or Budget(tool_calls=10),
        strategy="value_tree",
        seed=3,
        **options,
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


# ------------------------------------------------------------------------------------------ search
def scripted_success() -> ScriptedModel:
    return ScriptedModel(
        [
            reply(actions(("search", {"query": "Paris"}), ("search", {"query": "Berlin"}))),
            reply(progress(0.9)),
            reply(progress(0.0)),
            reply(actions(("answer", {"answer": "Paris"}))),
            reply(verdict("SUCCESS")),
        ]
    )


def test_search_prunes_no_progress_and_stops_on_a_verified_answer() -> None:
    result = tree_agent(scripted_success()).run("What is the capital of France?")
    assert result.answer == "Paris" and result.stop_reason == "completed"
    tree = final_tree(result)
    assert tree.method == "verified"
    nodes = {n.id: n for n in tree.nodes}
    assert nodes[1].progress == 0.9 and not nodes[1].pruned
    assert nodes[2].pruned and "no progress" in (nodes[2].prune_reason or "")
    assert nodes[3].terminal and nodes[3].verdict == "SUCCESS"
    assert tree.path == [0, 1, 3]
    expand = [t for t in result.trace if isinstance(t, ExpandEvent)]
    assert expand[1].selected == 1  # the pruned branch is never expanded
    assert result.usage.tool_calls == 2


def test_duplicate_observations_are_pruned_without_a_critic_call() -> None:
    script = ScriptedModel(
        [
            reply(actions(("search", {"query": "Paris"}))),
            reply(progress(0.8)),
            reply(actions(("search", {"query": "paris"}), ("search", {"query": "capital France"}))),
            reply(progress(0.7)),  # only the new observation is scored... if it is new
            reply(actions(("answer", {"answer": "Paris"}))),
            reply(verdict("SUCCESS")),
        ],
        default=reply(verdict("SUCCESS")),
    )
    result = tree_agent(script, max_expansions=3).run("What is the capital of France?")
    nodes = final_tree(result).nodes
    dupes = [n for n in nodes if n.prune_reason and "repeats" in n.prune_reason]
    assert dupes, nodes
    critic_calls = [
        r
        for r in script.requests
        if (r.params.get("response_format") or {}).get("json_schema", {}).get("name") == "critic"
    ]
    scored = [n for n in nodes if n.tool == "search" and not (n.prune_reason or "").startswith("repeats")]
    assert len(critic_calls) == len(scored)


def test_exhaustion_mid_expansion_still_answers() -> None:
    script = ScriptedModel(
        [
            reply(
                actions(
                    ("search", {"query": "Paris"}),
                    ("search", {"query": "Berlin"}),
                    ("search", {"query": "France"}),
                )
            ),
            reply(progress(0.9)),
            reply(progress(0.6)),
            reply("Paris"),  # forced final answer from the best branch
        ]
    )
    search_only = [t for t in TOOLS if t.name == "search"]
    agent = Agent(
        script.model,
        tools=search_only,
        budget=Budget(per_tool={"search": 2}),
        strategy="value_tree",
        k=3,
        parallel=False,
        seed=3,
    )
    result = agent.run("What is the capital of France?")
    assert result.answer == "Paris"
    assert result.stop_reason == "budget_exhausted:tool:search"
    assert result.usage.tool_calls == 2
    nodes = final_tree(result).nodes
    assert any("not run" in (n.prune_reason or "") for n in nodes)
    assert final_tree(result).method.startswith("forced from branch 1")


def test_expansion_narrows_as_the_budget_depletes() -> None:
    from thrifty.workflows.value_tree import expansion_width

    class Ctx:
        def __init__(self, calls: float) -> None:
            self.ledger = type("L", (), {"available": staticmethod(lambda dim: calls)})()

    assert expansion_width(Ctx(float("inf")), 3, 1.0) == 3  # type: ignore[arg-type]
    assert expansion_width(Ctx(float("inf")), 3, 0.4) == 1  # type: ignore[arg-type]
    assert expansion_width(Ctx(5), 3, 1.0) == 2  # type: ignore[arg-type]  # half the calls left, at most
    assert expansion_width(Ctx(1), 3, 1.0) == 1  # type: ignore[arg-type]


def test_same_seed_same_tree() -> None:
    def run() -> list:
        return final_tree(tree_agent(scripted_success()).run("What is the capital of France?")).nodes

    assert run() == run()


def test_unknown_option_is_refused() -> None:
    script = ScriptedModel([reply("x")])
    result = Agent(script.model, tools=TOOLS, strategy="value_tree", bogus=1)
    with pytest.raises(ValueError, match="unknown value_tree option"):
        result.run("Q?")


def test_branch_budgets_refund_what_they_do_not_use() -> None:
    result = tree_agent(
        scripted_success(), budget=Budget(tool_calls=10, total_tokens=5000), branch_budget=0.5
    ).run("What is the capital of France?")
    assert result.answer == "Paris"
    assert result.usage.tool_calls == 2
    ledgers = {e["ledger"] for e in result.events}
    assert any(name.startswith("run/branch-") for name in ledgers)
    assert result.budget["tool_calls"] - result.usage.tool_calls == 8  # the unused slices came back


def test_tree_json_round_trips(tmp_path: Path) -> None:
    result = tree_agent(scripted_success()).run("What is the capital of France?")
    path = tmp_path / "tree.json"
    path.write_text(final_tree(result).model_dump_json())
    assert TreeEvent.model_validate_json(path.read_text()) == final_tree(result)


def test_a_node_whose_children_all_failed_is_asked_again_for_new_actions() -> None:
    script = ScriptedModel(
        [
            reply(actions(("search", {"query": "Berlin"}))),
            reply(progress(0.0)),  # pruned: root's only child added nothing
            reply(
                actions(("search", {"query": "Berlin"}), ("search", {"query": "Paris"}))
            ),  # Berlin already tried
            reply(progress(0.9)),
            reply(actions(("answer", {"answer": "Paris"}))),
            reply(verdict("SUCCESS")),
        ]
    )
    result = tree_agent(script).run("What is the capital of France?")
    assert result.answer == "Paris" and result.stop_reason == "completed"
    nodes = final_tree(result).nodes
    assert [n.arguments for n in nodes if n.tool == "search"] == [
        '{"query": "Berlin"}',
        '{"query": "Paris"}',
    ]
    assert nodes[0].expanded == 2
    assert result.usage.tool_calls == 2
