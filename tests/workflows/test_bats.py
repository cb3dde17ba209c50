"""BATS with the scripted model: every path of plan -> solve -> verify -> SUCCESS | CONTINUE | PIVOT -> judge."""

from __future__ import annotations

import json

import pytest

from thrifty import Agent, Budget
from thrifty.agents.events import VerdictEvent
from thrifty.testing import ScriptedModel, call, reply
from thrifty.tools import Corpus, make_search_tools

PASSAGES = [
    ("Paris", "Paris is the capital and largest city of France."),
    ("Berlin", "Berlin is the capital of Germany."),
]


def plan_json(exploration: list[str], verification: list[str] | None = None) -> str:
    return json.dumps({"exploration": exploration, "verification": verification or []})


def verdict(decision: str, summary: str = "found facts", checks: list | None = None) -> str:
    return json.dumps(
        {
            "verification": checks or [],
            "decision": decision,
            "justification": f"because {decision}",
            "trajectory_summary": summary,
        }
    )


@pytest.fixture()
def tools() -> list:
    return make_search_tools(Corpus(PASSAGES), k=1)


def bats(script: ScriptedModel, tools: list, budget: Budget | None = None, **options) -> Agent:
    return Agent(
        script.model,
        tools=tools,
        budget=budget or Budget(tool_calls=10),
        strategy="bats",
        temperature=0.0,
        **options,
    )


def roles(script: ScriptedModel) -> list[str]:
    out = []
    for r in script.requests:
        rf = r.params.get("response_format")
        out.append(rf["json_schema"]["name"] if rf else ("act" if r.tool_names else "answer"))
    return out


def test_success_on_first_attempt(tools: list) -> None:
    script = ScriptedModel(
        [
            reply(plan_json(["capital of France"], ["is a city in France"])),
            call("search", query="capital of France"),
            reply("Paris"),
            reply(verdict("SUCCESS", checks=[{"constraint": "is a city in France", "status": "satisfied"}])),
        ]
    )
    result = bats(script, tools).run("What is the capital of France?")
    assert result.answer == "Paris"
    assert result.stop_reason == "completed"
    assert roles(script) == ["plan", "act", "act", "verdict"]  # no judge call for a single verified answer
    plan_entry = next(t for t in result.trace if t.action == "plan")
    assert [i.status for i in plan_entry.items] == ["pending", "pending"]
    verdict_entry = next(t for t in result.trace if t.action == "verdict")
    assert verdict_entry.decision == "SUCCESS"
    assert [i.status for i in verdict_entry.items] == ["done", "done"]
    assert verdict_entry.attempt_spent["tool_calls"] == 1
    assert result.trace[-1].action == "judge" and result.trace[-1].method == "verified"
    # the solver saw the plan with the question
    assert "Work on item 1 now: capital of France" in script.requests[1].messages[1]["content"]


def test_continue_then_success_replaces_the_trajectory_by_its_summary(tools: list) -> None:
    script = ScriptedModel(
        [
            reply(plan_json(["capital of France"])),
            call("search", query="France"),
            reply("Berlin"),
            reply(verdict("CONTINUE", summary="SUMMARY-ONE: France's capital is named in the Paris article")),
            call("search", query="Paris"),
            reply("Paris"),
            reply(verdict("SUCCESS")),
        ]
    )
    result = bats(script, tools).run("What is the capital of France?")
    assert result.answer == "Paris" and result.stop_reason == "completed"
    assert roles(script) == ["plan", "act", "act", "verdict", "act", "act", "verdict"]
    second_attempt = script.requests[4].messages
    assert "SUMMARY-ONE" in second_attempt[1]["content"]
    assert not any(m.get("role") == "tool" for m in second_attempt)  # raw trajectory gone from context
    decisions = [t.decision for t in result.trace if t.action == "verdict"]
    assert decisions == ["CONTINUE", "SUCCESS"]
    assert [t.items[0].status for t in result.trace if t.action == "verdict"] == ["partial", "done"]


def test_pivot_replans_and_keeps_the_checklist(tools: list) -> None:
    script = ScriptedModel(
        [
            reply(plan_json(["capital of Germany"])),
            call("search", query="Germany"),
            reply("Berlin"),
            reply(verdict("PIVOT", summary="wrong country")),
            reply(plan_json(["capital of France"])),
            call("search", query="France capital"),
            reply("Paris"),
            reply(verdict("SUCCESS")),
        ]
    )
    result = bats(script, tools).run("What is the capital of France?")
    assert result.answer == "Paris"
    assert roles(script) == ["plan", "act", "act", "verdict", "plan", "act", "act", "verdict"]
    assert "wrong country" in script.requests[4].last_text  # the re-planner saw why
    replan = [t for t in result.trace if t.action == "plan"][1]
    assert replan.replan is True
    assert [(i.text, i.status) for i in replan.items] == [
        ("capital of Germany", "failed"),
        ("capital of France", "pending"),
    ]


def test_budget_exhausted_mid_attempt_the_judge_still_answers(tools: list) -> None:
    script = ScriptedModel(
        [
            reply(plan_json(["France"])),
            call("search", query="France"),
            reply("Berlin"),
            reply(verdict("PIVOT", summary="Berlin is in Germany")),
            reply(plan_json(["capital city France"])),
            call("search", query="capital city"),
            reply("Paris"),  # forced: the tool budget is spent
            reply(json.dumps({"index": 1, "reason": "Paris is in France"})),
        ]
    )
    result = bats(script, tools, budget=Budget(tool_calls=2)).run("What is the capital of France?")
    assert result.stop_reason == "budget_exhausted:tool_calls"
    assert result.answer == "Paris"
    assert result.usage.tool_calls == 2
    assert roles(script)[-2:] == ["answer", "judge"]
    judge_entry = result.trace[-1]
    assert [c["answer"] for c in judge_entry.candidates] == ["Berlin", "Paris"]
    assert judge_entry.method.startswith("judge")


def test_malformed_verifier_output_is_retried_once_with_the_error(tools: list) -> None:
    script = ScriptedModel(
        [
            reply(plan_json(["France"])),
            reply("Paris"),
            reply("I think it is fine"),  # not JSON
            reply(verdict("SUCCESS")),
        ]
    )
    result = bats(script, tools).run("What is the capital of France?")
    assert result.answer == "Paris" and result.stop_reason == "completed"
    assert "not valid" in script.requests[3].last_text


def test_verifier_that_never_gives_json_falls_back_safely(tools: list) -> None:
    script = ScriptedModel([reply(plan_json(["France"])), reply("Paris"), reply("nope"), reply("{broken")])
    result = bats(script, tools, max_attempts=1).run("What is the capital of France?")
    assert result.answer == "Paris"  # kept as an unverified candidate
    assert result.stop_reason == "max_steps"
    entry = next(t for t in result.trace if t.action == "verdict")
    assert entry.valid is False and entry.decision == "PIVOT"


def test_malformed_plan_falls_back_to_searching_the_question(tools: list) -> None:
    script = ScriptedModel(
        [reply("no plan"), reply("still no plan"), reply("Paris"), reply(verdict("SUCCESS"))]
    )
    result = bats(script, tools).run("What is the capital of France?")
    assert result.answer == "Paris"
    plan_entry = next(t for t in result.trace if t.action == "plan")
    assert plan_entry.valid is False
    assert plan_entry.items[0].text == "What is the capital of France"


def test_continue_with_a_low_budget_becomes_pivot(tools: list) -> None:
    script = ScriptedModel(
        [
            reply(plan_json(["France"])),
            call("search", query="France"),
            call("search", query="capital"),
            call("search", query="city"),
            reply("Berlin"),
            reply(verdict("CONTINUE")),
            reply(plan_json(["capital city"])),
            reply("Paris"),
            reply(verdict("SUCCESS")),
        ]
    )
    result = bats(script, tools, budget=Budget(tool_calls=4)).run("What is the capital of France?")
    first = next(t for t in result.trace if t.action == "verdict")
    assert first.decision == "PIVOT" and "LOW" in (first.overridden or "")
    assert result.answer == "Paris"


def test_max_attempts_reaches_the_strategy(tools: list) -> None:
    """The same CONTINUE verdict: with the default (4) a second attempt follows; with max_attempts=1 the
    judge answers after the first."""
    replies = [
        reply(plan_json(["capital of France"])),
        call("search", query="France"),
        reply("Berlin"),
        reply(verdict("CONTINUE")),
        call("search", query="Paris"),
        reply("Paris"),
        reply(verdict("SUCCESS")),
    ]
    script = ScriptedModel(replies)
    assert bats(script, tools).run("What is the capital of France?").answer == "Paris"
    script = ScriptedModel(replies)
    result = bats(script, tools, max_attempts=1).run("What is the capital of France?")
    assert result.stop_reason == "max_steps" and result.answer == "Berlin"
    assert [t.decision for t in result.trace if isinstance(t, VerdictEvent)] == ["CONTINUE"]
    assert roles(script) == ["plan", "act", "act", "verdict"]


def test_a_misspelt_option_is_refused_with_the_valid_ones(tools: list) -> None:
    with pytest.raises(ValueError) as info:
        bats(ScriptedModel([]), tools, max_attemps=2)
    assert str(info.value) == (
        "'max_attemps' is not an option of strategy 'bats' "
        "(fix: check the spelling; the options of bats are: max_attempts)"
    )
    with pytest.raises(ValueError, match="option 'max_attempts' of strategy 'bats': Input should be"):
        bats(ScriptedModel([]), tools, max_attempts=0)
