"""Self-consistency: exact budget split over carved child ledgers, majority vote, ties, and a pause at the
budget that binds inside a parallel sample."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from thrifty import Agent, Budget
from thrifty.agents.answers import majority_vote, normalize_answer
from thrifty.budget import Ledger
from thrifty.store.durable import DurableStore
from thrifty.testing import ScriptedModel, ScriptedReply, ScriptedRequest, call, reply
from thrifty.tools import Corpus, make_search_tools
from thrifty.workflows.runner import execute
from thrifty.workflows.spec import StrategySpec
from thrifty.workflows.stream import RunCancelled

TOOLS = make_search_tools(
    Corpus([("Paris", "Paris is the capital of France."), ("Berlin", "Berlin is in Germany.")]), k=1
)


def sc(script: ScriptedModel, budget: Budget, samples: int = 3) -> Agent:
    return Agent(
        script.model,
        tools=TOOLS,
        budget=budget,
        strategy="self_consistency",
        samples=samples,
        temperature=0.0,
    )


def test_exact_budget_split_and_majority_vote() -> None:
    script = ScriptedModel(
        [
            call("search", query="a"),
            reply("Paris"),
            call("search", query="b"),
            reply("paris."),
            call("search", query="c"),
            reply("Berlin"),
        ]
    )
    result = sc(script, Budget(tool_calls=9, total_tokens=3000)).run("Capital of France?")
    assert result.answer == "Paris"
    assert result.stop_reason == "completed"
    vote = result.trace[-1]
    assert vote.action == "vote" and vote.votes == 2
    per_sample = Counter(e["ledger"] for e in result.events if e["kind"] == "tool")
    assert per_sample == {"run/sample-1": 1, "run/sample-2": 1, "run/sample-3": 1}
    # every model call was capped by its sample's slice: 1000 tokens - 10 prompt
    assert all(r.max_tokens <= 990 for r in script.requests)
    # unused slices returned: the run's remaining budget is exactly what was not spent
    assert result.usage.tool_calls == 3 and result.usage.total_tokens == 6 * 15


def test_slices_round_down_and_each_sample_is_capped() -> None:
    # 10 tool calls over 3 samples: 3 each (1 never handed out); a sample that wants a 4th call is refused.
    replies = []
    for _ in range(3):
        replies += [call("search", query=f"q{i}") for i in range(3)] + [reply("Paris")]
    script = ScriptedModel(replies)
    result = sc(script, Budget(tool_calls=10)).run("Capital of France?")
    assert result.usage.tool_calls == 9
    stops = result.trace[-1].sample_stops
    assert stops == ["budget_exhausted:tool_calls"] * 3
    assert result.answer == "Paris" and result.stop_reason == "completed"


def test_tie_goes_to_the_earliest_sample_and_unknown_does_not_vote() -> None:
    script = ScriptedModel([reply("Berlin"), reply("unknown"), reply("Paris")])
    result = sc(script, Budget(tool_calls=3)).run("Q?")
    assert result.answer == "Berlin"
    assert result.trace[-1].answers == ["Berlin", "unknown", "Paris"]


def test_majority_vote_unit() -> None:
    assert majority_vote(["The Paris", "paris", "Berlin"]) == ("The Paris", 2)
    assert majority_vote(["B", "A", "A", "B"]) == ("B", 2)  # tie -> first seen
    assert majority_vote(["unknown", "", None]) == (None, 0)
    assert normalize_answer("The  Eiffel-Tower!") == "eiffeltower"


def test_a_budget_too_small_for_every_sample_runs_as_many_as_it_can_pay() -> None:
    # It used to stop at once with no answer: 2 tool calls cannot be cut into 3 slices of one.
    script = ScriptedModel(
        [call("search", query="a"), reply("Paris"), call("search", query="b"), reply("Paris")]
    )
    result = sc(script, Budget(tool_calls=2, total_tokens=2000), samples=3).run("Capital of France?")
    assert result.answer == "Paris" and result.usage.tool_calls == 2
    assert {e.sample for e in result.trace if getattr(e, "sample", None)} == {1, 2}


def test_budget_too_small_for_one_sample_stops_cleanly() -> None:
    script = ScriptedModel([reply("x")])
    result = sc(script, Budget(tool_calls=1, total_tokens=1), samples=3).run("Q?")
    assert result.stop_reason.startswith("budget_exhausted")
    assert result.usage.model_requests == 0


def test_when_every_sample_fails_the_error_says_why() -> None:
    from thrifty import Agent, Budget

    script = ScriptedModel([], default=ValueError("the provider is down"))
    result = Agent(script, strategy="self_consistency", samples=2, budget=Budget(total_tokens=2000)).run("Q?")
    assert result.stop_reason == "error"
    assert result.error is not None and "the provider is down" in result.error


def _two_searches(request: ScriptedRequest) -> ScriptedReply:
    done = sum(1 for m in request.messages if m.get("role") == "tool")
    return call("search", query=f"q{done}") if done < 2 else reply("Paris")


def test_a_limit_binding_in_a_parallel_sample_pauses_the_run_and_the_resume_pays_nothing_twice(
    tmp_path: Path,
) -> None:
    """The samples run in threads; the one whose slice binds records it, and the node pauses the run once
    they have joined (a LangGraph interrupt from the node, not the thread)."""
    script = ScriptedModel([], default=_two_searches)

    def agent(budget: Budget) -> Agent:
        return Agent(
            script.model, tools=TOOLS, budget=budget, strategy="self_consistency", samples=2, parallel=True
        )

    reference = agent(Budget(tool_calls=6)).run("Capital of France?")
    assert reference.answer == "Paris" and reference.usage.tool_calls == 4

    db = tmp_path / "ck.db"
    paused = agent(Budget(tool_calls=2)).run("Capital of France?", on_limit="pause", checkpoint=db)
    assert paused.paused and paused.stop_reason == "paused:tool_calls", paused.stop_reason
    assert paused.usage.tool_calls == 2 and paused.answer is None
    assert DurableStore(db).runs(unfinished=True)[0]["status"] == "paused"

    done = agent(Budget(tool_calls=6)).run(
        "Capital of France?", run_id=paused.run_id, checkpoint=db, on_limit="pause"
    )
    assert done.stop_reason == "completed" and done.answer == "Paris" and done.run_id == paused.run_id
    # each sample's first search was paid before the pause and replayed free after it
    assert done.usage.tool_calls == reference.usage.tool_calls == 4
    assert [e["kind"] for e in done.events if e["ok"]].count("tool") == 4
    assert [e["seq"] for e in done.events] == list(range(1, len(done.events) + 1))


def test_without_pause_a_parallel_sample_still_stops_at_its_slice(tmp_path: Path) -> None:
    script = ScriptedModel([], default=_two_searches)
    result = Agent(
        script.model,
        tools=TOOLS,
        budget=Budget(tool_calls=2),
        strategy="self_consistency",
        samples=2,
        parallel=True,
    ).run("Capital of France?", checkpoint=tmp_path / "ck.db")
    assert not result.paused and result.usage.tool_calls == 2
    assert result.trace[-1].sample_stops == ["budget_exhausted:tool_calls"] * 2


def test_a_run_cancelled_in_a_sample_gives_every_later_slice_back() -> None:
    # The sequential samples' slices are carved up front: one cancelled in sample 1 used to leave samples
    # 2 and 3's slices reserved in the run's ledger for good.
    script = ScriptedModel([call("search", query="a"), reply("Paris")] * 3)
    ledger = Ledger(Budget(tool_calls=9, total_tokens=3000))

    def cancel(_event: object) -> None:
        raise RunCancelled("the reader stopped")

    result = execute(
        "Capital of France?",
        model=script.model,
        tools=TOOLS,
        ledger=ledger,
        strategy=StrategySpec(name="self_consistency", options={"samples": 3}),
        on_trace=cancel,
    )
    assert result.stop_reason == "cancelled", result.stop_reason
    assert all(v < 1e-9 for v in ledger.reserved.values()), dict(ledger.reserved)
