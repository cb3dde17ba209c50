"""The value tree's budget rules (issue 13): adaptive width, re-expanding dead ends only, reopening instead of
completing early, the tried list, reuse of other branches' observations, compact and shared evidence, the
pooled forced answer and the budget-scaled expansion cap."""

from __future__ import annotations

import json
import random

from thrifty import Agent, Budget
from thrifty.agents.events import ExpandEvent, TreeEvent
from thrifty.agents.records import TreeNode
from thrifty.agents.tree import (
    Action,
    compact_evidence,
    credited_steps,
    frontier,
    listed_text,
    new_root,
    paid_messages,
    pooled_messages,
    reopened,
    shared_text,
    tried_text,
    wide_needed,
)
from thrifty.budget import Ledger
from thrifty.models.settings import ModelSettings
from thrifty.testing import ScriptedModel, ScriptedReply, reply
from thrifty.tools import Corpus, Observation, make_search_tools
from thrifty.workflows.runner import execute
from thrifty.workflows.spec import StrategySpec
from thrifty.workflows.value_tree import (
    choose,
    expansion_plan,
    forced_leaf,
    idle_expansion,
    max_expansions,
    rejection_stop,
    retry_node,
    tool_child,
)

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


def test_paid_messages_add_every_other_paid_step_once_after_the_pooled_evidence() -> None:
    tree = [
        *small_tree(),
        node(4, 0, 1, tool="read", arguments='{"title": "D"}', observation="D found", progress=1.0),
        node(5, 1, 2, tool="read", arguments='{"title": "B"}', observation="Title: B\nB text", pruned=True),
        node(6, 3, 3, tool="answer", terminal=True, answer="x"),
    ]
    messages = paid_messages(tree, 3, 0.5)
    contents = [m.get("content") for m in messages if m["role"] == "tool"]
    # the path, the credited step elsewhere, then the pruned search B (once: node 5 repeats it); no answer
    assert contents == ["Title: A\nA text", "Title: C\nC text", "D found", "Title: B\nB text"]
    assert messages[: len(pooled_messages(tree, 3, 0.5))] == pooled_messages(tree, 3, 0.5)


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


# ------------------------------------------------------------------------- issue 13, second round
def test_listed_text_keeps_what_a_pruned_search_off_the_path_listed() -> None:
    tree = small_tree()  # node 2: a search from the root, pruned for no progress, that listed B
    assert listed_text(tree, 3) == '> search({"query": "b"})\nTitle: B'  # 3 descends from the root
    assert listed_text(tree, 0) == ""  # the root's own children are in its tried list
    assert listed_text(tree, 0, exclude_own=False) == '> search({"query": "b"})\nTitle: B'
    tree[2].prune_reason = "repeats an observation already on its path"
    assert listed_text(tree, 3) == ""  # only steps pruned for lack of progress


def test_the_forced_answer_reads_the_branch_with_the_most_credited_steps() -> None:
    tree = [
        new_root("q"),
        node(1, 0, 1, tool="search", progress=1.0, value=1.0),
        node(2, 1, 2, tool="search", progress=0.2, value=0.6),
        node(3, 2, 3, tool="read", progress=1.0, value=0.73),  # two credited steps on its path
    ]
    assert forced_leaf(tree, "value").id == 1
    assert forced_leaf(tree, "evidence", 0.5).id == 3
    assert credited_steps(tree, 3, 0.5) == 2 and credited_steps(tree, 2, 0.5) == 1


def answer_tree(verdict: str) -> list[TreeNode]:
    return [
        new_root("q"),
        node(1, 0, 1, tool="search", progress=1.0, value=1.0, expanded=1),
        node(2, 1, 2, tool="answer", terminal=True, answer="x", verdict=verdict),
        node(3, 0, 1, tool="search", progress=0.3, value=0.3),
    ]


def test_a_refused_answers_node_is_asked_again_once_before_anything_else() -> None:
    tree = answer_tree("CONTINUE")
    assert retry_node(tree, []) is tree[1]
    assert retry_node(tree, [2]) is None  # already retried
    assert retry_node(answer_tree("SUCCESS"), []) is None
    assert retry_node(answer_tree("UNVERIFIED"), []) is None  # the budget stopped the verifier
    rng = random.Random(0)
    opts = {"retry_rejected": True, "follow_sure": True, "widen_below": 0.5}
    chosen, how = choose(tree, [tree[3]], 1.0, rng, opts)
    assert (chosen.id, how) == (1, "retry")
    chosen, how = choose(tree, [tree[3]], 1.0, rng, {**opts, "_retried": [2]})
    assert (chosen.id, how) == (3, "sampled")  # node 3 made progress 0.3: not sure, so sampled


def test_follow_sure_goes_on_from_the_newest_step_the_critic_was_sure_of() -> None:
    tree = [
        new_root("q"),
        node(1, 0, 1, tool="search", progress=0.9, value=0.9, expanded=1),
        node(2, 1, 2, tool="read", progress=0.8, value=0.85),
        node(3, 0, 1, tool="search", progress=0.95, value=0.95),
        node(4, 1, 2, tool="search", progress=0.2, value=0.55),
    ]
    leaves = [tree[2], tree[3], tree[4]]
    opts = {"retry_rejected": True, "follow_sure": True, "widen_below": 0.5}
    assert choose(tree, leaves, 1.0, random.Random(0), opts)[0].id == 3
    assert choose(tree, leaves[:1] + leaves[2:], 1.0, random.Random(0), opts)[0].id == 2
    _, how = choose(tree, [tree[4]], 1.0, random.Random(0), opts)
    assert how == "sampled"


def test_the_search_stops_after_max_rejections_grounded_refusals() -> None:
    tree = answer_tree("CONTINUE")
    assert not rejection_stop(tree, 2, 0.5)
    tree.append(node(5, 1, 2, tool="answer", terminal=True, answer="y", verdict="CONTINUE"))
    assert rejection_stop(tree, 2, 0.5) and not rejection_stop(tree, None, 0.5)
    ungrounded = [new_root("q"), node(1, 0, 1, tool="answer", terminal=True, answer="x", verdict="PIVOT")]
    ungrounded.append(node(2, 0, 1, tool="answer", terminal=True, answer="z", verdict="PIVOT"))
    assert not rejection_stop(ungrounded, 2, 0.5)  # guesses with no evidence behind them: search on


def cands(*actions: dict[str, object]) -> ScriptedReply:
    return reply(json.dumps({"thought": "t", "actions": list(actions)}))


def test_a_refused_answer_is_retried_then_the_search_stops_and_answers_from_the_tree() -> None:
    search = {"tool": "search", "arguments": {"query": "Paris"}}
    script = ScriptedModel(
        [
            cands(search),
            reply(json.dumps({"progress": 0.9, "reason": "found"})),
            cands({"tool": "answer", "arguments": {"answer": "Lyon"}}),
            reply(json.dumps({"decision": "CONTINUE", "trajectory_summary": "s", "justification": "no"})),
            cands({"tool": "answer", "arguments": {"answer": "Nice"}}),  # the retry, from the same node
            reply(json.dumps({"decision": "CONTINUE", "trajectory_summary": "s", "justification": "no"})),
            reply("Paris"),  # the forced answer, after the second grounded refusal
        ]
    )
    agent = Agent(
        script.model,
        tools=TOOLS,
        budget=Budget(tool_calls=10),
        strategy="value_tree",
        seed=3,
        parallel=False,
        max_rejections=2,
        forced_checks=0,
    )
    result = agent.run("What is the capital of France?")
    expands = [e for e in result.trace if isinstance(e, ExpandEvent)]
    assert [e.selected for e in expands] == [0, 1, 1]  # the refused answer's node, asked again
    assert result.answer == "Paris" and result.usage.tool_calls == 1 and result.stop_reason == "completed"
    tree = result.trace[-1]
    assert isinstance(tree, TreeEvent) and tree.method.startswith("forced from branch 1")
    final = json.dumps(script.requests[-1].messages)
    assert "Paris is the capital of France" in final  # read from the tree's evidence


def test_the_forced_answer_honours_final_evidence() -> None:
    """finalize gets the strategy's options: with final_evidence: tree the forced answer also reads a
    credited step off the branch it is forced from (here chosen by value: the shorter branch)."""
    finals = {}
    for evidence in ("tree", "path"):
        script = ScriptedModel(
            [
                cands({"tool": "search", "arguments": {"query": "Berlin"}}),
                reply(json.dumps({"progress": 0.9, "reason": "found"})),
                cands({"tool": "search", "arguments": {"query": "Paris"}}),
                reply(json.dumps({"progress": 0.6, "reason": "partly"})),  # value 0.75 < 0.9
                reply("Paris"),
            ]
        )
        agent = Agent(
            script.model,
            tools=TOOLS,
            budget=Budget(tool_calls=2),
            strategy="value_tree",
            seed=3,
            parallel=False,
            final_evidence=evidence,
            forced_from="value",
            forced_checks=0,
        )
        result = agent.run("What is the capital of France?")
        tree = result.trace[-1]
        assert isinstance(tree, TreeEvent) and tree.method == "forced from branch 1"
        finals[evidence] = json.dumps(script.requests[-1].messages)
    assert "Berlin is the capital" in finals["tree"] and "Paris is the capital" in finals["tree"]
    assert "Berlin is the capital" in finals["path"] and "Paris is the capital" not in finals["path"]


def _paris_pruned_script() -> ScriptedModel:
    """Two searches: Berlin credited (0.9), then Paris scored "no progress" and pruned; the forced answer."""
    return ScriptedModel(
        [
            cands({"tool": "search", "arguments": {"query": "Berlin"}}),
            reply(json.dumps({"progress": 0.9, "reason": "found"})),
            cands({"tool": "search", "arguments": {"query": "Paris"}}),
            reply(json.dumps({"progress": 0.0, "reason": "nothing"})),  # pruned
            reply("Paris"),
        ]
    )


def test_final_evidence_all_lets_the_forced_answer_read_a_pruned_step() -> None:
    """A step the critic scored "no progress" is pruned, but it was paid for: with final_evidence: all
    the forced answer reads it (the critic may have been wrong), with 'tree' it does not."""
    finals = {}
    for evidence in ("all", "tree"):
        script = _paris_pruned_script()
        agent = Agent(
            script.model,
            tools=TOOLS,
            budget=Budget(tool_calls=2),
            strategy="value_tree",
            seed=3,
            parallel=False,
            final_evidence=evidence,
            forced_checks=0,
        )
        result = agent.run("What is the capital of France?")
        tree = result.trace[-1]
        assert isinstance(tree, TreeEvent) and tree.method == "forced from branch 1"
        assert [n.pruned for n in tree.nodes if n.tool == "search"] == [False, True]
        assert result.usage.tool_calls == 2
        finals[evidence] = json.dumps(script.requests[-1].messages)
    assert "Berlin is the capital" in finals["all"] and "Paris is the capital" in finals["all"]
    assert "Berlin is the capital" in finals["tree"] and "Paris is the capital" not in finals["tree"]


def test_a_grounded_run_forces_its_answer_from_every_step_it_paid_for() -> None:
    """final_evidence: auto is 'all' on a grounded run (a small model's critic scores the page holding
    the answer "no progress"; an answer forced from nothing could not be grounded) and 'tree' otherwise."""
    finals = {}
    for grounded in (True, False):
        script = _paris_pruned_script()
        result = execute(
            "What is the capital of France?",
            model=script.model,
            tools=TOOLS,
            budget=Budget(tool_calls=2),
            strategy=StrategySpec(
                name="value_tree", options={"seed": 3, "parallel": False, "forced_checks": 0}
            ),
            settings=ModelSettings(grounded=grounded, seed=3),
        )
        tree = result.trace[-1]
        assert isinstance(tree, TreeEvent) and [n.pruned for n in tree.nodes if n.tool == "search"] == [
            False,
            True,
        ]
        finals[grounded] = json.dumps(script.requests[-1].messages)
    assert "Paris is the capital" in finals[True]
    assert "Paris is the capital" not in finals[False]


def test_an_expansion_is_idle_when_it_paid_for_nothing_and_kept_nothing() -> None:
    repeat = node(
        5, 1, 2, tool="read", pruned=True, prune_reason="repeats an observation already on its path"
    )
    assert idle_expansion([]) and idle_expansion([repeat])
    paid = node(
        6, 1, 2, tool="search", pruned=True, prune_reason="no progress (0.0)", spent={"tool_calls": 1}
    )
    assert not idle_expansion([repeat, paid])  # a search was paid for
    assert not idle_expansion([node(7, 1, 2, tool="search", progress=0.9)])  # kept
    assert not idle_expansion([node(8, 1, 2, tool="answer", terminal=True, answer="x")])


def test_the_search_stops_after_max_idle_expansions_instead_of_reopening_forever() -> None:
    read = {"tool": "read", "arguments": {"title": "Paris"}}
    script = ScriptedModel(
        [
            cands(read),
            reply(json.dumps({"progress": 0.9, "reason": "found"})),
            *[cands(read) for _ in range(3)],  # the same read again and again: filtered as tried, idle
            reply("Paris"),  # the forced answer
        ],
        default=cands(read),
    )
    agent = Agent(
        script.model, tools=TOOLS, budget=Budget(tool_calls=10), strategy="value_tree", seed=3, parallel=False
    )
    result = agent.run("What is the capital of France?")
    expands = [e for e in result.trace if isinstance(e, ExpandEvent)]
    assert len(expands) == 4 and all(c.pruned for e in expands[1:] for c in e.children)
    assert result.answer == "Paris" and result.usage.tool_calls == 1 and result.stop_reason == "completed"
    capped = Agent(
        ScriptedModel(
            [cands(read), reply(json.dumps({"progress": 0.9, "reason": "found"}))], default=cands(read)
        ).model,
        tools=TOOLS,
        budget=Budget(tool_calls=10),
        strategy="value_tree",
        seed=3,
        parallel=False,
        max_idle=None,
    ).run("What is the capital of France?")
    assert len([e for e in capped.trace if isinstance(e, ExpandEvent)]) > 4  # went on to the expansion cap


def test_keep_listings_shows_a_line_what_a_pruned_search_before_it_listed() -> None:
    """search Berlin (found) -> search Paris (listed Paris, pruned) -> read Paris from the same node (found):
    the next expansion, from the read, still sees the title the pruned search listed."""
    prompts = {}
    for keep in (True, False):
        script = ScriptedModel(
            [
                cands({"tool": "search", "arguments": {"query": "Berlin"}}),
                reply(json.dumps({"progress": 0.9, "reason": "found"})),
                cands({"tool": "search", "arguments": {"query": "Paris"}}),
                reply(json.dumps({"progress": 0.0, "reason": "nothing yet"})),
                cands({"tool": "read", "arguments": {"title": "Paris"}}),
                reply(json.dumps({"progress": 0.9, "reason": "found"})),
                cands({"tool": "answer", "arguments": {"answer": "Paris"}}),
                reply(json.dumps({"decision": "SUCCESS", "trajectory_summary": "s", "justification": "j"})),
            ]
        )
        agent = Agent(
            script.model,
            tools=TOOLS,
            budget=Budget(tool_calls=5),
            strategy="value_tree",
            seed=3,
            parallel=False,
            keep_listings=keep,
        )
        result = agent.run("What is the capital of France?")
        assert result.answer == "Paris"
        assert [e.selected for e in result.trace if isinstance(e, ExpandEvent)] == [0, 1, 1, 3]
        prompts[keep] = json.dumps(script.requests[6].messages)
    assert "Pages listed earlier" in prompts[True] and "Title: Paris" in prompts[True]
    assert "Pages listed earlier" not in prompts[False]


def test_step_chars_keeps_evidence_that_comes_late_in_a_page() -> None:
    late = "filler " * 150 + "THE EVIDENCE"  # past 700 and 900 characters
    tree = [
        new_root("q"),
        node(1, 0, 1, tool="read", arguments='{"title": "Long"}', observation=late, progress=0.9),
    ]
    assert "THE EVIDENCE" not in compact_evidence(tree, 1, 3600, 0.5)  # the old 700 characters
    assert "THE EVIDENCE" in compact_evidence(tree, 1, 3600, 0.5, step_chars=1500)
    assert "THE EVIDENCE" in shared_text(tree, 0, 0.5, limit=3000, step_chars=1500)
    tools = make_search_tools(Corpus([("Long", late)]), k=1)
    for chars, seen in ((900, False), (1500, True)):
        script = ScriptedModel(
            [
                cands({"tool": "read", "arguments": {"title": "Long"}}),
                reply(json.dumps({"progress": 0.9, "reason": "found"})),
            ],
            default=reply("x"),
        )
        Agent(
            script.model,
            tools=tools,
            budget=Budget(tool_calls=1),
            strategy="value_tree",
            parallel=False,
            step_chars=chars,
        ).run("What is long?")
        critic = json.dumps(script.requests[1].messages)
        assert "CRITIC" in critic.upper() or "progress" in critic
        assert ("THE EVIDENCE" in critic) is seen


def verdict(decision: str) -> ScriptedReply:
    return reply(json.dumps({"decision": decision, "trajectory_summary": "s", "justification": "j"}))


def test_forced_checks_verify_the_forced_answer_and_ask_again_while_it_is_refused() -> None:
    """The tool budget ran out (one call): with forced_checks the forced answer is verified, a refused one
    is asked again (model calls only, the refused answer named in the prompt), and the accepted one wins."""
    script = ScriptedModel(
        [
            cands({"tool": "search", "arguments": {"query": "Paris"}}),
            reply(json.dumps({"progress": 0.9, "reason": "found"})),
            reply("Lyon"),  # the forced answer
            verdict("CONTINUE"),
            reply("Paris"),  # asked again
            verdict("SUCCESS"),
        ]
    )
    agent = Agent(
        script.model,
        tools=TOOLS,
        budget=Budget(tool_calls=1),
        strategy="value_tree",
        seed=3,
        parallel=False,
        forced_checks=2,
    )
    result = agent.run("What is the capital of France?")
    assert result.answer == "Paris" and result.usage.tool_calls == 1
    tree = result.trace[-1]
    assert isinstance(tree, TreeEvent) and tree.method == "forced from branch 1, verified after 1 re-asks"
    reask = json.dumps(script.requests[4].messages)
    assert "did not accept these answers" in reask and "Lyon" in reask and "Paris is the capital" in reask
    assert len(script.requests) == 6


def test_forced_checks_keep_the_first_answer_when_every_one_is_refused_and_zero_turns_them_off() -> None:
    replies = [
        cands({"tool": "search", "arguments": {"query": "Paris"}}),
        reply(json.dumps({"progress": 0.9, "reason": "found"})),
        reply("Lyon"),
        verdict("CONTINUE"),
        reply("Nice"),
        verdict("PIVOT"),
    ]
    for checks, answer, requests, method in (
        (1, "Lyon", 6, "forced from branch 1, refused 2 times, kept the first"),
        (0, "Lyon", 3, "forced from branch 1"),
    ):
        script = ScriptedModel(list(replies))
        agent = Agent(
            script.model,
            tools=TOOLS,
            budget=Budget(tool_calls=1),
            strategy="value_tree",
            seed=3,
            parallel=False,
            forced_checks=checks,
        )
        result = agent.run("What is the capital of France?")
        tree = result.trace[-1]
        assert result.answer == answer and isinstance(tree, TreeEvent) and tree.method == method
        assert len(script.requests) == requests
