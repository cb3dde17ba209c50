"""BAVT value-tree search: the children, pruning and scoring rules, the forced answer's branch, and whole
searches (pruning, exhaustion, determinism, tree JSON). The selection math is in tests/agents/test_tree.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from thrifty import Agent, Budget
from thrifty.agents.events import ExpandEvent, TreeEvent
from thrifty.agents.records import TreeNode
from thrifty.agents.tree import Action, new_root
from thrifty.budget import BudgetExceeded
from thrifty.store.durable import DurableStore
from thrifty.testing import ScriptedModel, ScriptedReply, ScriptedRequest, reply
from thrifty.tools import Corpus, Observation, make_search_tools
from thrifty.workflows.result import RunResult
from thrifty.workflows.value_tree import answer_child, apply_progress, forced_leaf, route, tool_child

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
    options.setdefault("adaptive_width", False)  # these scripts offer k actions at every expansion
    return Agent(
        script.model,
        tools=TOOLS,
        budget=budget or Budget(tool_calls=10),
        strategy="value_tree",
        seed=3,
        **options,
    )


# ------------------------------------------------------------------------------------------ rules
def parent_node(value: float = 0.6, progress_sum: float | None = 0.6) -> TreeNode:
    return TreeNode(id=1, parent=0, depth=1, tool="search", value=value, progress_sum=progress_sum)


def observation(content: str = "Paris is the capital.", **fields: object) -> Observation:
    base: dict[str, object] = {"tool": "search", "content": content, "ok": True, "units": 1, "usd": 0.001}
    return Observation.model_validate({**base, **fields})


def test_an_answer_child_is_terminal_and_inherits_its_parents_value() -> None:
    child = answer_child(
        5, parent_node(), "sure", Action(tool="answer", arguments={"answer": "Answer: Paris."})
    )
    assert child is not None and child.terminal and child.answer == "Paris"
    assert (child.id, child.parent, child.depth, child.value, child.progress_sum) == (5, 1, 2, 0.6, 0.6)
    assert child.key == 'answer:{"answer": "answer: paris."}'
    assert answer_child(5, new_root("q"), "", Action(tool="answer", arguments={"answer": " "})) is None
    from_root = answer_child(1, new_root("q"), "", Action(tool="answer", arguments={"answer": "x"}))
    assert from_root is not None and from_root.progress_sum == 0.0  # the root has no progress yet


@pytest.mark.parametrize(
    ("outcome", "seen", "reason"),
    [
        (observation(), set(), None),
        (observation(), {"Paris is the capital."}, "repeats an observation already in the tree"),
        (observation(cached=True), set(), "repeats an observation already in the tree"),
        (observation(ok=False, error="boom"), set(), "tool error: boom"),
        (BudgetExceeded("tool_calls", 1, 0), set(), "not run: tool_calls spent"),
    ],
)
def test_tool_children_that_can_add_nothing_are_pruned_at_once(
    outcome: Observation | BudgetExceeded, seen: set[str], reason: str | None
) -> None:
    action = Action(tool="search", arguments={"query": "France"})
    child = tool_child(7, parent_node(), "look", action, outcome, seen)
    assert (child.pruned, child.prune_reason) == (reason is not None, reason)
    assert child.arguments == '{"query": "France"}' and child.key == action.key()
    if isinstance(outcome, Observation):
        assert child.observation == outcome.content and child.spent == {"tool_calls": 1, "usd": 0.001}
    if reason is None:
        assert seen == {"Paris is the capital."}  # a new observation joins the seen set


def test_a_scored_childs_value_is_the_mean_progress_along_its_path() -> None:
    parent = parent_node(progress_sum=0.6)
    child = TreeNode(id=2, parent=1, depth=2)
    apply_progress(child, parent, 0.8, "found it", prune_below=0.1)
    assert child.value == pytest.approx(0.7) and child.progress_sum == pytest.approx(1.4)
    assert (child.progress, child.critic, child.pruned) == (0.8, "found it", False)

    weak = TreeNode(id=3, parent=1, depth=2)
    apply_progress(weak, parent, 0.05, "nothing new", prune_below=0.1)
    assert weak.pruned and weak.prune_reason == "no progress (0.05): nothing new"


def test_the_forced_answer_comes_from_the_best_open_branch() -> None:
    root = new_root("q")
    assert forced_leaf([root]) is root
    tree = [
        root,
        TreeNode(id=1, parent=0, depth=1, value=0.7),
        TreeNode(id=2, parent=1, depth=2, value=0.7),  # same value, deeper: preferred
        TreeNode(id=3, parent=0, depth=1, value=0.9, pruned=True),
        TreeNode(id=4, parent=0, depth=1, value=0.95, terminal=True, answer="x"),
    ]
    assert forced_leaf(tree).id == 2


def test_route_finalizes_on_a_stop_a_verified_answer_or_a_finished_search() -> None:
    assert route({"question": "q"}) == "expand"
    assert route({"question": "q", "decision": None}) == "expand"
    assert route({"question": "q", "decision": "SUCCESS"}) == "finalize"
    assert route({"question": "q", "decision": "DONE"}) == "finalize"
    assert route({"question": "q", "stop_reason": "budget_exhausted:usd"}) == "finalize"


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
            reply(json.dumps({"decision": "SUCCESS", "trajectory_summary": "s", "justification": "j"})),
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
        adaptive_width=False,
        seed=3,
    )
    result = agent.run("What is the capital of France?")
    assert result.answer == "Paris"
    assert result.stop_reason == "budget_exhausted:tool:search"
    assert result.usage.tool_calls == 2
    nodes = final_tree(result).nodes
    assert any("not run" in (n.prune_reason or "") for n in nodes)
    assert final_tree(result).method == "forced from branch 1, verified after 0 re-asks"


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
    with pytest.raises(ValueError, match="'bogus' is not an option of strategy 'value_tree'"):
        Agent(script.model, tools=TOOLS, strategy="value_tree", bogus=1)


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


def _schema(request: ScriptedRequest) -> str | None:
    return (request.params.get("response_format") or {}).get("json_schema", {}).get("name")


def _three_searches(request: ScriptedRequest) -> ScriptedReply:
    """Three searches at the one expansion, each scored 0.5, then the forced answer."""
    name = _schema(request)
    if name == "candidates":
        return reply(
            actions(
                ("search", {"query": "Paris"}),
                ("search", {"query": "Berlin"}),
                ("search", {"query": "France"}),
            )
        )
    if name == "critic":
        return reply(progress(0.5))
    if name == "verdict":
        return reply(verdict("SUCCESS"))
    return reply("Paris")


def test_a_limit_binding_in_a_parallel_tool_call_pauses_the_run_and_the_resume_pays_nothing_twice(
    tmp_path: Path,
) -> None:
    """The expansion's tool calls run in threads; the one the budget refuses pauses the run from the node
    once they have all run (not pruned as 'not run'), and the resumed expansion replays the two that
    completed free."""
    search_only = [t for t in TOOLS if t.name == "search"]

    def agent(searches: int) -> Agent:
        script = ScriptedModel([], default=_three_searches)
        return Agent(
            script.model,
            tools=search_only,
            budget=Budget(per_tool={"search": searches}),
            strategy="value_tree",
            k=3,
            parallel=True,
            adaptive_width=False,
            max_expansions=1,
            seed=3,
        )

    # the resumed expansion sees the two searches of before the pause as spent (they were): a limit raised
    # well above them keeps its width (3 actions) as in an uninterrupted run
    reference = agent(20).run("What is the capital of France?")
    assert reference.usage.tool_calls == 3 and reference.answer == "Paris"

    db = tmp_path / "ck.db"
    paused = agent(2).run("What is the capital of France?", on_limit="pause", checkpoint=db)
    assert paused.paused and paused.stop_reason == "paused:tool:search", paused.stop_reason
    assert paused.usage.tool_calls == 2

    done = agent(20).run(
        "What is the capital of France?", run_id=paused.run_id, checkpoint=db, on_limit="pause"
    )
    assert (done.answer, done.stop_reason) == (reference.answer, reference.stop_reason)
    assert done.usage.tool_calls == 3  # the two searches made before the pause were replayed free
    tool_keys = [
        c["call_key"] for c in DurableStore(db).charges(done.run_id) if c["kind"] == "tool" and c["ok"]
    ]
    assert len(tool_keys) == len(set(tool_keys)) == 3
    nodes = final_tree(done).nodes
    assert len(nodes) == len(final_tree(reference).nodes) == 4
    assert not any("not run" in (n.prune_reason or "") for n in nodes)
    assert [e["seq"] for e in done.events] == list(range(1, len(done.events) + 1))


def test_without_pause_a_refused_parallel_tool_call_is_pruned_as_before() -> None:
    script = ScriptedModel([], default=_three_searches)
    result = Agent(
        script.model,
        tools=[t for t in TOOLS if t.name == "search"],
        budget=Budget(per_tool={"search": 2}),
        strategy="value_tree",
        k=3,
        parallel=True,
        adaptive_width=False,
        max_expansions=1,
        seed=3,
    ).run("What is the capital of France?")
    assert not result.paused and result.usage.tool_calls == 2
    assert sum("not run" in (n.prune_reason or "") for n in final_tree(result).nodes) == 1
