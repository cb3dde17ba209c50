"""What the Python API refuses, and when: at Agent(...) with a message that says what to do, before a run."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from thrifty import Agent, Budget
from thrifty.testing import ScriptedModel, call, reply
from thrifty.tools import Corpus, make_search_tools
from thrifty.workflows.runner import SetupError
from thrifty.workflows.strategies import UnknownStrategy

TOOLS = make_search_tools(Corpus([("Paris", "Paris is the capital of France.")]), k=1)


def test_a_plain_function_as_a_tool_is_refused_with_the_decorator_to_use() -> None:
    def lookup(query: str) -> str:
        return query

    with pytest.raises(
        TypeError, match=r"tools\[0\] is the function 'lookup', not a Tool: decorate .* @tool"
    ):
        Agent(ScriptedModel([]).model, tools=[lookup])  # type: ignore[list-item]


def test_a_budget_may_be_a_dict_of_its_fields_and_a_bad_field_is_named() -> None:
    script = ScriptedModel([call("search", query="Paris"), call("search", query="France"), reply("Paris")])
    agent = Agent(script.model, tools=TOOLS, budget={"tool_calls": 1})
    assert agent.budget == Budget(tool_calls=1)
    assert agent.run("Capital of France?").usage.tool_calls == 1
    with pytest.raises(ValidationError, match="tool_calz"):
        Agent(script.model, budget={"tool_calz": 1})
    run_budget = ScriptedModel([call("search", query="Paris"), call("search", query="x"), reply("Paris")])
    assert Agent(run_budget.model, tools=TOOLS).run("q", budget={"tool_calls": 1}).usage.tool_calls == 1


def test_an_unknown_strategy_is_refused_when_the_agent_is_built() -> None:
    with pytest.raises(UnknownStrategy, match="unknown strategy 'batz': use one of react, bats"):
        Agent(ScriptedModel([]).model, strategy="batz")


def test_keep_observations_is_a_keyword_of_the_agent() -> None:
    agent = Agent(ScriptedModel([]).model, keep_observations=2)
    assert agent.strategy.keep_observations == 2


def test_a_per_tool_limit_on_a_tool_the_run_lacks_is_refused_before_anything_is_spent() -> None:
    script = ScriptedModel([call("search", query="Paris"), reply("Paris")])
    agent = Agent(script.model, tools=TOOLS, budget=Budget(per_tool={"serch": 1}))
    with pytest.raises(SetupError, match=r"per_tool names 'serch'.*its tools: read, search"):
        agent.run("Capital of France?")
    assert script.requests == []
