"""Property: whatever the strategy and whatever the model says, spend never exceeds a hard limit."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from thrifty import Agent, Budget
from thrifty.models.scripted import ScriptedReply
from thrifty.testing import ScriptedModel
from thrifty.tools import Corpus, make_search_tools

TOOLS = make_search_tools(
    Corpus([("Paris", "Paris is in France."), ("Berlin", "Berlin is in Germany.")]), k=1
)

replies = st.one_of(
    st.builds(
        lambda q, p, c: ScriptedReply(
            tool_calls=[("search", {"query": q})], prompt_tokens=p, completion_tokens=c
        ),
        st.sampled_from(["paris", "berlin", "france", "x"]),
        st.integers(1, 400),
        st.integers(1, 300),
    ),
    st.builds(
        lambda t, p, c: ScriptedReply(
            tool_calls=[("read", {"title": t})], prompt_tokens=p, completion_tokens=c
        ),
        st.sampled_from(["Paris", "Nowhere"]),
        st.integers(1, 400),
        st.integers(1, 300),
    ),
    st.builds(
        lambda a, p, c: ScriptedReply(content=a, prompt_tokens=p, completion_tokens=c),
        st.sampled_from(
            [
                "Paris",
                "Berlin",
                "unknown",
                "{not json",
                json.dumps({"exploration": ["france"], "verification": []}),
                json.dumps({"decision": "SUCCESS", "trajectory_summary": "ok"}),
                json.dumps({"decision": "CONTINUE"}),
                json.dumps({"decision": "PIVOT", "trajectory_summary": "no"}),
                json.dumps({"index": 0}),
                json.dumps(
                    {
                        "actions": [
                            {"tool": "search", "arguments": {"query": "paris"}},
                            {"tool": "read", "arguments": {"title": "Paris"}},
                        ]
                    }
                ),
                json.dumps({"actions": [{"tool": "answer", "arguments": {"answer": "Paris"}}]}),
                json.dumps({"progress": 0.7}),
            ]
        ),
        st.integers(1, 400),
        st.integers(1, 300),
    ),
)

budgets = st.builds(
    Budget,
    tool_calls=st.none() | st.integers(1, 8),
    total_tokens=st.none() | st.integers(200, 6000),
    output_tokens=st.none() | st.integers(50, 2000),
    model_requests=st.none() | st.integers(1, 12),
    per_tool=st.dictionaries(st.sampled_from(["search", "read"]), st.integers(1, 4), max_size=2),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    strategy=st.sampled_from(["react", "bats", "self_consistency", "value_tree"]),
    tracker=st.booleans(),
    script=st.lists(replies, min_size=1, max_size=30),
    budget=budgets,
)
def test_spend_never_exceeds_a_hard_limit(strategy: str, tracker: bool, script: list, budget: Budget) -> None:
    fallback = ScriptedReply(content="Paris", prompt_tokens=50, completion_tokens=20)
    model = ScriptedModel(script, default=fallback)
    options: dict = {"samples": 2} if strategy == "self_consistency" else {}
    if strategy == "value_tree":
        options = {"k": 3, "parallel": True, "max_expansions": 5}
    agent = Agent(
        model.model, tools=TOOLS, budget=budget, strategy=strategy, tracker=tracker, max_steps=10, **options
    )
    result = agent.run("What is the capital of France?")
    spent = {
        "tool_calls": result.usage.tool_calls,
        "total_tokens": result.usage.total_tokens,
        "output_tokens": result.usage.output_tokens,
        "model_requests": result.usage.model_requests,
    }
    for dim, limit in budget.limits().items():
        used = result.usage.per_tool.get(dim[5:], 0) if dim.startswith("tool:") else spent[dim]
        assert used <= limit, (dim, used, limit, result.stop_reason)
    assert result.stop_reason.split(":")[0] in {"completed", "budget_exhausted", "max_steps"}, result.error
    assert result.usage.total_tokens == sum(e["units"].get("total_tokens", 0) for e in result.events)
