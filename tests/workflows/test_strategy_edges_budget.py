"""Edges of the strategies found by an audit: a value tree longer than the graph's step limit, a provider
that fails the value tree's forced answer, and a reply of invisible characters. Each run must end with a RunResult, its best answer, within its budget.

All through the real Gateway, Ledger and ToolRunner with the scripted model."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable

import litellm
import pytest

from thrifty import Agent, Budget, tool
from thrifty.agents.answers import is_non_answer, majority_vote, usable_answer
from thrifty.agents.events import TreeEvent
from thrifty.testing import ScriptedModel, ScriptedReply, ScriptedRequest, call, reply
from thrifty.tools import Corpus, make_search_tools
from thrifty.workflows.result import RunResult

TOOLS = make_search_tools(Corpus([("Paris", "Paris is the capital of France.")]), k=1)
QUESTION = "What is the capital of France?"


def role(request: ScriptedRequest) -> str | None:
    """The structured role a request asks for (plan, verdict, candidates, critic, ...), None for a plain one."""
    fmt = request.params.get("response_format") or {}
    return (fmt.get("json_schema") or {}).get("name")


def within_budget(result: RunResult, budget: Budget) -> None:
    spent = {
        "tool_calls": result.usage.tool_calls,
        "total_tokens": result.usage.total_tokens,
        "model_requests": result.usage.model_requests,
    }
    for dim, limit in budget.limits().items():
        assert spent.get(dim, 0) <= limit, (dim, spent.get(dim), limit)
    assert result.overruns == []


# ------------------------------------------------------------------------- value tree: the step limit
@tool(name="lookup", timeout=None)
def lookup(n: int) -> str:
    """Look up fact number n."""
    return f"fact {n}: something new"


def _endless_search(counter: itertools.count[int]) -> Callable[[ScriptedRequest], ScriptedReply]:
    """A tree whose every expansion finds something new (critic 1.0) and never proposes an answer."""

    def play(request: ScriptedRequest) -> ScriptedReply:
        name = role(request)
        if name == "candidates":
            action = {"tool": "lookup", "arguments": {"n": next(counter)}}
            return reply(json.dumps({"thought": "more", "actions": [action]}))
        if name == "critic":
            return reply(json.dumps({"progress": 1.0, "reason": "new"}))
        return reply("Paris")

    return play


def test_a_value_tree_longer_than_the_graph_step_limit_ends_with_its_forced_answer() -> None:
    """The runner gives the graph max_steps * 4 + 20 supersteps (28 at max_steps=2); 100 expansions do not
    fit. Before, LangGraph ended the run with a GraphRecursionError: stop "error" and no answer."""
    script = ScriptedModel([], default=_endless_search(itertools.count()))
    agent = Agent(
        script.model,
        tools=[lookup],
        strategy="value_tree",
        max_steps=2,
        max_expansions=100,
        max_idle=None,
        verify=False,
    )
    result = agent.run(QUESTION)
    assert result.error is None, result.error
    assert result.stop_reason == "max_steps"
    assert result.answer == "Paris"
    tree = result.trace[-1]
    assert isinstance(tree, TreeEvent) and tree.method.startswith("forced from branch")
    assert result.steps == 25  # 28 - 1 nodes LangGraph runs, less the expansion that stopped and finalize


# ------------------------------------------------------------------ value tree: a provider that fails
def test_a_provider_failing_the_forced_answer_keeps_the_tree_and_its_best_proposal() -> None:
    """The forced answer is the value tree's one unguarded model call: a provider error there escaped the
    node, so the run lost its tree event (what --tree-out writes) and said "ModelError: ..."."""
    proposed = itertools.count()

    moves = [
        [{"tool": "search", "arguments": {"query": "Paris"}}],
        [{"tool": "answer", "arguments": {"answer": "Paris"}}],
    ]

    def play(request: ScriptedRequest) -> ScriptedReply:
        if role(request) == "candidates":  # a search, an answer, then nothing new until max_idle stops it
            n = next(proposed)
            return reply(json.dumps({"actions": moves[n] if n < len(moves) else []}))
        if role(request) == "critic":
            return reply(json.dumps({"progress": 1.0, "reason": "found"}))
        raise litellm.exceptions.InternalServerError("upstream down", llm_provider="scripted", model="x")

    script = ScriptedModel([], default=play)
    agent = Agent(
        script.model, tools=TOOLS, budget=Budget(tool_calls=3), strategy="value_tree", verify=False, retries=0
    )
    result = agent.run(QUESTION)
    within_budget(result, Budget(tool_calls=3))
    assert role(script.requests[-1]) is None  # the last call was the forced answer
    assert result.answer == "Paris"  # the proposal the search made, unverified
    assert result.stop_reason == "error"
    assert result.error is not None and "upstream down" in result.error
    assert not result.error.startswith("ModelError")
    tree = result.trace[-1]
    assert isinstance(tree, TreeEvent), [type(e).__name__ for e in result.trace]
    assert tree.method.startswith("best unverified proposal; forced answer failed") and tree.answer == "Paris"


@pytest.mark.parametrize("forced", ["unknown", "I don't know", QUESTION])
def test_a_forced_reply_that_is_no_answer_never_replaces_the_best_proposal(forced: str) -> None:
    """The forced answer was taken whatever it said: "unknown" or the question itself replaced the
    proposal the search had made (react's answer step has never accepted those)."""
    proposed = itertools.count()
    moves = [
        [{"tool": "search", "arguments": {"query": "Paris"}}],
        [{"tool": "answer", "arguments": {"answer": "Paris"}}],
    ]

    def play(request: ScriptedRequest) -> ScriptedReply:
        if role(request) == "candidates":
            n = next(proposed)
            return reply(json.dumps({"actions": moves[n] if n < len(moves) else []}))
        if role(request) == "critic":
            return reply(json.dumps({"progress": 1.0, "reason": "found"}))
        return reply(forced)  # the forced answer

    script = ScriptedModel([], default=play)
    agent = Agent(
        script.model, tools=TOOLS, budget=Budget(tool_calls=3), strategy="value_tree", verify=False, retries=0
    )
    result = agent.run(QUESTION)
    assert role(script.requests[-1]) is None  # the last call was the forced answer
    assert result.answer == "Paris"  # before: the forced reply
    tree = result.trace[-1]
    assert isinstance(tree, TreeEvent)
    assert (
        tree.method.startswith("best unverified proposal; forced from branch")
        and "is no answer" in tree.method
    )


def test_a_forced_reply_that_is_no_answer_and_no_proposal_ends_unknown() -> None:
    def play(request: ScriptedRequest) -> ScriptedReply:
        if role(request) == "candidates":
            return reply(json.dumps({"actions": [{"tool": "search", "arguments": {"query": "Paris"}}]}))
        if role(request) == "critic":
            return reply(json.dumps({"progress": 0.0, "reason": "nothing"}))
        return reply(QUESTION)  # the forced answer repeats the question

    agent = Agent(
        ScriptedModel([], default=play).model,
        tools=TOOLS,
        budget=Budget(tool_calls=2),
        strategy="value_tree",
        verify=False,
    )
    result = agent.run(QUESTION)
    assert result.answer == "unknown"  # as react: the question is not its own answer


def test_a_provider_failing_a_re_ask_of_the_forced_answer_keeps_the_first_one() -> None:
    """forced_checks re-asks a refused forced answer; a provider error on the re-ask keeps the first answer
    and the budget stop reason (before: the run ended "error")."""

    def play(request: ScriptedRequest) -> ScriptedReply:
        match role(request):
            case "candidates":
                return reply(json.dumps({"actions": [{"tool": "search", "arguments": {"query": "Paris"}}]}))
            case "critic":
                return reply(json.dumps({"progress": 1.0, "reason": "found"}))
            case "verdict":
                return reply(json.dumps({"decision": "PIVOT", "trajectory_summary": "s"}))
        if any("did not accept" in str(m.get("content")) for m in request.messages):  # the re-ask
            raise litellm.exceptions.InternalServerError("upstream down", llm_provider="scripted", model="x")
        return reply("Paris")

    script = ScriptedModel([], default=play)
    agent = Agent(script.model, tools=TOOLS, budget=Budget(tool_calls=1), strategy="value_tree", retries=0)
    result = agent.run(QUESTION)
    within_budget(result, Budget(tool_calls=1))
    assert result.answer == "Paris"
    assert result.stop_reason == "budget_exhausted:tool_calls", result.error
    assert result.error is None
    tree = result.trace[-1]
    assert isinstance(tree, TreeEvent) and "kept the first" in tree.method


# ------------------------------------------------------------------------ replies with nothing visible
@pytest.mark.parametrize("text", ["\x00\x00", "\x1b\x07", "\u200b\u200b", "\x00 \x07\n\t"])
def test_a_reply_of_invisible_characters_is_not_an_answer(text: str) -> None:
    assert is_non_answer(text) and not usable_answer(text, QUESTION)
    assert majority_vote([text, "Paris"]) == ("Paris", 1)
    script = ScriptedModel([call("search", query="Paris"), reply(text)])
    result = Agent(script.model, tools=TOOLS, budget=Budget(tool_calls=2)).run(QUESTION)
    assert result.answer == "unknown"


@pytest.mark.parametrize("text", ["🇫🇷", "42", "Paris\x00"])
def test_visible_answers_stay_answers(text: str) -> None:
    assert usable_answer(text, QUESTION)
