"""The react strategy with the Budget Tracker, driven by the scripted model through the real Gateway."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from thrifty import Agent, Budget, tool
from thrifty.models.scripted import ScriptedReply
from thrifty.store import RunStore
from thrifty.testing import ScriptedModel, call, reply
from thrifty.tools import Corpus, make_search_tools
from thrifty.workflows.result import EXIT_ANSWERED, EXIT_BUDGET, EXIT_INTERNAL

PASSAGES = [
    ("Paris", "Paris is the capital and largest city of France."),
    ("Berlin", "Berlin is the capital of Germany."),
    ("The Prestige (film)", "The Prestige is a 2006 mystery thriller film directed by Christopher Nolan."),
]


@pytest.fixture()
def search_tools() -> list:
    return make_search_tools(Corpus(PASSAGES), k=2)


def _agent(script: ScriptedModel, tools: list, **kw) -> Agent:
    return Agent(script.model, tools=tools, temperature=0.0, **kw)


def tool_messages(script: ScriptedModel, i: int) -> list[dict]:
    return [m for m in script.requests[i].messages if m.get("role") == "tool"]


def test_answers_and_completes(search_tools: list) -> None:
    script = ScriptedModel([call("search", query="capital of France"), reply("Paris")])
    result = _agent(script, search_tools, budget=Budget(tool_calls=5)).run("What is the capital of France?")
    assert result.answer == "Paris"
    assert result.stop_reason == "completed"
    assert result.exit_code == EXIT_ANSWERED
    assert result.usage.tool_calls == 1
    assert result.usage.per_tool == {"search": 1}
    assert result.usage.model_requests == 2
    assert result.usage.total_tokens == 30  # 2 calls x (10 prompt + 5 completion)
    assert result.cost.tools_usd == pytest.approx(0.001)
    assert [e["kind"] for e in result.events] == ["model", "tool", "model"]
    assert [t.action for t in result.trace] == ["tool_calls", "observation", "answer"]


def test_budget_block_and_policy_follow_the_spend(search_tools: list) -> None:
    script = ScriptedModel(
        [call("search", query=q) for q in ("paris", "berlin", "france", "germany", "nolan")]
        + [reply("Paris")]
    )
    _agent(script, search_tools, budget=Budget(per_tool={"search": 10})).run("Q?")
    system = script.requests[0].messages[0]["content"]
    assert "CRITICAL" in system and "HIGH" in system
    blocks = [tool_messages(script, i)[-1]["content"] for i in range(1, 6)]
    assert "<budget>search used: 1, search remaining: 9" in blocks[0]
    assert "regime: HIGH" in blocks[0]  # 9/10 left
    assert "regime: HIGH" in blocks[2]  # 7/10 left
    assert "regime: MEDIUM" in blocks[3]  # 6/10 left
    assert "search used: 5, search remaining: 5" in blocks[4]


def test_tracker_off_is_plain_react(search_tools: list) -> None:
    script = ScriptedModel([call("search", query="paris"), reply("Paris")])
    result = _agent(script, search_tools, budget=Budget(tool_calls=5), tracker=False).run("Q?")
    assert "<budget>" not in tool_messages(script, 1)[0]["content"]
    assert "CRITICAL" not in script.requests[0].messages[0]["content"]
    assert result.strategy == "react(no tracker)"


def test_spent_tool_is_hidden(search_tools: list) -> None:
    script = ScriptedModel([call("search", query="paris"), call("read", title="Paris"), reply("Paris")])
    _agent(script, search_tools, budget=Budget(per_tool={"search": 1, "read": 5})).run("Q?")
    assert script.requests[0].tool_names == ["search", "read"]
    assert script.requests[1].tool_names == ["read"]


def test_tool_budget_exhaustion_forces_an_answer(search_tools: list) -> None:
    script = ScriptedModel([call("search", query="paris"), call("search", query="france"), reply("Paris.")])
    result = _agent(script, search_tools, budget=Budget(tool_calls=2)).run("What is the capital of France?")
    assert result.answer == "Paris"
    assert result.stop_reason == "budget_exhausted:tool_calls"
    assert result.exit_code == EXIT_BUDGET
    assert result.usage.tool_calls == 2
    final = script.requests[2]
    assert final.tool_names == []  # no tools on the forced final call
    assert "cannot use tools" in final.last_text
    assert result.trace[-1].forced is True


def test_token_budget_that_allows_only_an_answer_forces_it(search_tools: list) -> None:
    script = ScriptedModel(
        [call("search", query="paris", prompt_tokens=100), reply("Paris", prompt_tokens=100)]
    )
    # A round needs 2 x 100 + 200 prompt + 256 + 64 completion = 720 tokens: affordable at first (800 left),
    # not after the first call spent 105 (695 left), so the second call must answer.
    result = _agent(script, search_tools, budget=Budget(total_tokens=800), max_tokens=256).run("Q?")
    assert result.stop_reason == "budget_exhausted:total_tokens"
    assert result.answer == "Paris"
    assert script.requests[1].tool_names == []
    assert result.usage.total_tokens <= 800


def test_budget_too_small_for_any_call_keeps_the_best_answer(search_tools: list) -> None:
    script = ScriptedModel(
        [
            ScriptedReply(
                content="Maybe Paris", tool_calls=[("search", {"query": "paris"})], prompt_tokens=10
            ),
            reply("never reached", prompt_tokens=10),
        ]
    )
    result = _agent(script, search_tools, budget=Budget(model_requests=1)).run("Q?")
    assert result.stop_reason == "budget_exhausted:model_requests"
    assert result.answer == "Maybe Paris"  # the anytime best answer survives the stop
    assert result.exit_code == EXIT_BUDGET


def test_max_steps_forces_an_answer(search_tools: list) -> None:
    script = ScriptedModel([call("search", query=f"q{i}") for i in range(2)] + [reply("Berlin")])
    result = _agent(script, search_tools, max_steps=3).run("Q?")
    assert result.stop_reason == "max_steps"
    assert result.answer == "Berlin"
    assert script.requests[2].tool_names == []


def test_malformed_tool_json_goes_back_to_the_model(search_tools: list) -> None:
    bad = ScriptedReply(tool_calls=[("search", '{"query": "paris"')])  # truncated JSON
    wrong = ScriptedReply(tool_calls=[("search", {"q": "paris"})])  # wrong argument name
    script = ScriptedModel([bad, wrong, reply("Paris")])
    result = _agent(script, search_tools, budget=Budget(tool_calls=3)).run("Q?")
    assert result.answer == "Paris" and result.stop_reason == "completed"
    assert result.usage.tool_calls == 0  # invalid calls cost nothing
    observations = [t for t in result.trace if t.action == "observation"]
    assert [o.ok for o in observations] == [False, False]
    assert "query" in tool_messages(script, 2)[-1]["content"]


def test_a_tool_that_raises_is_an_observation_not_a_crash() -> None:
    @tool(retries=0)
    def flaky(x: int) -> str:
        """Always fails."""
        raise RuntimeError("disk on fire")

    script = ScriptedModel([call("flaky", x=1), reply("unknown")])
    result = _agent(script, [flaky], budget=Budget(tool_calls=3)).run("Q?")
    assert result.stop_reason == "completed"
    assert "disk on fire" in tool_messages(script, 1)[0]["content"]
    assert result.usage.tool_calls == 1  # the failed attempt was charged


def test_identical_repeated_call_is_served_from_cache(search_tools: list) -> None:
    script = ScriptedModel([call("search", query="paris"), call("search", query="paris"), reply("Paris")])
    result = _agent(script, search_tools, budget=Budget(tool_calls=5)).run("Q?")
    assert result.usage.tool_calls == 1
    assert [t.cached for t in result.trace if t.action == "observation"] == [False, True]


def test_provider_error_stops_with_error_but_keeps_records(search_tools: list) -> None:
    script = ScriptedModel([call("search", query="paris"), ValueError("provider exploded")])
    result = _agent(script, search_tools, budget=Budget(tool_calls=5)).run("Q?")
    assert result.stop_reason == "error"
    assert "provider exploded" in (result.error or "")
    assert result.exit_code == EXIT_INTERNAL
    assert result.usage.tool_calls == 1 and result.usage.model_requests == 2


def test_runs_are_recorded_in_the_store(tmp_path: Path, search_tools: list) -> None:
    db = tmp_path / "runs.db"
    script = ScriptedModel([call("search", query="paris"), reply("Paris")])
    result = _agent(script, search_tools, budget=Budget(tool_calls=5), store=db).run("Q?")
    store = RunStore(db)
    saved = store.get(result.run_id)
    assert saved is not None and saved["answer"] == "Paris"
    assert [c["kind"] for c in store.charges(result.run_id)] == ["model", "tool", "model"]
    assert store.recent()[0]["run_id"] == result.run_id
    json.dumps(saved)  # the stored result is plain JSON


def test_a_model_stuck_repeating_itself_is_asked_to_answer(search_tools: list) -> None:
    script = ScriptedModel([call("search", query="paris")] * 3 + [reply("Paris")])
    result = _agent(script, search_tools, budget=Budget(tool_calls=5)).run("Q?")
    assert result.answer == "Paris" and result.stop_reason == "completed"
    assert result.usage.tool_calls == 1
    assert script.requests[3].tool_names == []  # the 4th call had to answer
    assert "repeating" in script.requests[3].last_text


def test_time_running_out_forces_the_answer_while_one_still_fits(search_tools: list) -> None:
    from thrifty.budget import Ledger

    now = [0.0]

    def slow(step):  # each model call takes 10 "seconds" on the ledger's clock
        def run(request: object) -> object:
            now[0] += 10.0
            return step

        return run

    script = ScriptedModel(
        [slow(call("search", query="paris")), slow(call("search", query="x")), slow(reply("Paris"))]
    )
    ledger = Ledger(Budget(seconds=40), clock=lambda: now[0])
    from thrifty.workflows.runner import execute

    result = execute("Q?", model=script.model, tools=search_tools, ledger=ledger)
    # after 2 calls (20 s) only 20 s remain < 2.5 x 10 s: the third call must answer, and fits
    assert result.answer == "Paris"
    assert result.stop_reason == "budget_exhausted:seconds"
    assert script.requests[2].tool_names == []


def test_one_superstep_per_agent_step_commits_the_call_and_its_results_together(search_tools: list) -> None:
    from thrifty.agents.context import RunContext
    from thrifty.budget import Ledger
    from thrifty.models.gateway import Gateway
    from thrifty.tools import ToolRunner
    from thrifty.workflows.react import build_react

    script = ScriptedModel(
        [call("search", query="capital of France"), call("read", title="Paris"), reply("Paris")]
    )
    ledger = Ledger(Budget(tool_calls=5))
    ctx = RunContext(
        ledger=ledger,
        gateway=Gateway(ledger),
        runner=ToolRunner(search_tools, ledger),
        model=script.model,
        tools=search_tools,
    )
    graph = build_react({})
    assert set(graph.nodes) == {"__start__", "step"}
    updates = list(
        graph.stream(
            {"question": "Capital of France?", "messages": [], "trace": []},
            context=ctx,
            stream_mode="updates",
        )
    )
    assert [list(u) for u in updates] == [["step"]] * 3
    roles = [[m["role"] for m in u["step"]["messages"]] for u in updates]
    assert roles == [["assistant", "tool"], ["assistant", "tool"], ["assistant"]]
    assert [u["step"]["step"] for u in updates] == [1, 2, 3]
    assert updates[-1]["step"]["answer"] == "Paris"
    assert [[t.action for t in u["step"]["trace"]] for u in updates] == [
        ["tool_calls", "observation"],
        ["tool_calls", "observation"],
        ["answer"],
    ]


def test_older_observations_make_way_when_the_context_window_is_full(
    search_tools: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A long run on a small context window goes on and answers instead of stopping with an error."""
    from thrifty.agents.solver import OLDER_RESULT_NOTE, REPLY_ROOM
    from thrifty.models.gateway import Gateway

    def count(messages: list[dict]) -> int:
        return sum(len(str(m.get("content") or "")) for m in messages) // 4

    monkeypatch.setattr(
        Gateway, "count_prompt_tokens", lambda self, model, messages, tools=None: count(messages)
    )

    def run(window: int | None) -> tuple[ScriptedModel, object]:
        monkeypatch.setattr(Gateway, "context_window", lambda self, model: window)
        queries = ("paris", "berlin", "prestige film", "capital of germany")
        script = ScriptedModel([*(call("search", query=q) for q in queries), reply("Paris")])
        return script, _agent(script, search_tools, budget=Budget(tool_calls=10)).run("Q?")

    roomy, _ = run(None)
    sizes = [count(r.messages) for r in roomy.requests]
    assert sizes == sorted(sizes) and sizes[-1] > sizes[3] > sizes[2]
    window = sizes[3] + REPLY_ROOM - 10  # the third prompt fits as it is; the fourth and fifth do not
    script, result = run(window)
    assert result.answer == "Paris" and result.stop_reason == "completed", result.error
    assert result.usage.tool_calls == 4
    assert all(count(r.messages) + REPLY_ROOM <= window for r in script.requests)
    last = tool_messages(script, 4)
    assert last[0]["content"] == OLDER_RESULT_NOTE and last[-1]["content"] != OLDER_RESULT_NOTE
    contents = lambda s, i: [m["content"] for m in tool_messages(s, i)]  # noqa: E731
    assert contents(script, 2) == contents(roomy, 2)  # nothing removed while it fits
