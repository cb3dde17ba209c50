"""A preamble or an empty phrase is never accepted as an answer, and a re-plan never repeats a clue that
already failed: react, bats and self-consistency with the scripted model (no grammar, no grounding: the path
a remote OpenAI-compatible model takes)."""

from __future__ import annotations

import json

import pytest

from thrifty import Agent, Budget
from thrifty.agents.events import AnswerEvent, PlanEvent, VerdictEvent
from thrifty.testing import ScriptedModel, call, reply
from thrifty.tools import Corpus, make_search_tools

QUESTION = "Who directed the film Jaws?"
PASSAGES = [
    ("Jaws (film)", "Jaws is a 1975 American thriller film directed by Steven Spielberg."),
    ("Paris", "Paris is the capital of France."),
]
PREAMBLES = ["The answer to the question is:", "Answer:", "", " ... ", "?!", "Who directed the film Jaws"]


@pytest.fixture()
def tools() -> list:
    return make_search_tools(Corpus(PASSAGES), k=1)


def plan_json(exploration: list[str]) -> str:
    return json.dumps({"exploration": exploration, "verification": []})


def verdict(decision: str) -> str:
    return json.dumps(
        {"verification": [], "decision": decision, "justification": "j", "trajectory_summary": "s"}
    )


def roles(script: ScriptedModel) -> list[str]:
    out = []
    for r in script.requests:
        rf = r.params.get("response_format")
        out.append(rf["json_schema"]["name"] if rf else ("act" if r.tool_names else "answer"))
    return out


def searched(script: ScriptedModel) -> list[str]:
    """The clue each attempt was told to work on (the solver's task message), once per attempt."""
    notes: list[str] = []
    for r in script.requests:
        if r.tool_names and len(r.messages) > 1:
            text = str(r.messages[1]["content"])
            for line in text.splitlines():
                clue = line.split("now: ", 1)[1] if line.startswith("Work on item") else None
                if clue and (not notes or notes[-1] != clue):
                    notes.append(clue)
    return notes


# ------------------------------------------------------------------------------------------- react
@pytest.mark.parametrize("text", PREAMBLES)
def test_react_never_returns_a_preamble(tools: list, text: str) -> None:
    script = ScriptedModel([call("search", query="Jaws"), reply(text)])
    result = Agent(script.model, tools=tools, budget=Budget(tool_calls=3), temperature=0.0).run(QUESTION)
    assert result.answer == "unknown"
    assert [e.answer for e in result.trace if isinstance(e, AnswerEvent)] == ["unknown"]


def test_an_answer_after_a_preamble_line_is_kept(tools: list) -> None:
    script = ScriptedModel(
        [call("search", query="Jaws"), reply("The answer to the question is:\nSteven Spielberg")]
    )
    result = Agent(script.model, tools=tools, budget=Budget(tool_calls=3), temperature=0.0).run(QUESTION)
    assert result.answer == "Steven Spielberg"


def test_a_preamble_does_not_replace_an_earlier_real_candidate(tools: list) -> None:
    thought = call("search", query="Jaws")
    thought.content = "Probably Steven Spielberg"
    script = ScriptedModel([thought, reply("The answer to the question is:")])
    result = Agent(script.model, tools=tools, budget=Budget(tool_calls=3), temperature=0.0).run(QUESTION)
    assert result.answer == "Probably Steven Spielberg"


# -------------------------------------------------------------------------------------------- bats
def bats(script: ScriptedModel, tools: list, **options: object) -> Agent:
    return Agent(
        script.model, tools=tools, budget=Budget(tool_calls=10), strategy="bats", temperature=0.0, **options
    )


def test_bats_does_not_verify_a_preamble_and_replans_without_repeating_the_failed_clue(tools: list) -> None:
    script = ScriptedModel(
        [
            reply(plan_json(["Jaws director"])),
            call("search", query="Jaws director"),
            reply("The answer to the question is:"),  # no verifier call for it: a free PIVOT
            reply(plan_json(["director of Jaws?", "JAWS  Director"])),  # the failed clue, reworded twice
            call("search", query="Jaws"),
            reply("Steven Spielberg"),
            reply(verdict("SUCCESS")),
        ]
    )
    result = bats(script, tools).run(QUESTION)
    assert result.answer == "Steven Spielberg" and result.stop_reason == "completed"
    assert roles(script) == ["plan", "act", "act", "plan", "act", "act", "verdict"]
    first = next(e for e in result.trace if isinstance(e, VerdictEvent))
    assert first.decision == "PIVOT" and first.justification == "no answer was proposed: nothing to verify"
    replan = [e for e in result.trace if isinstance(e, PlanEvent)][1]
    assert replan.repeated == ["director of Jaws?", "JAWS Director"]  # one line, spaces squeezed
    assert "repeats dropped" in replan.describe()
    # the next attempt searched a phrase of the question that had not been tried, not the failed clue
    assert [(i.text, i.status) for i in replan.items] == [("Jaws director", "failed"), ("Jaws", "pending")]
    assert searched(script) == ["Jaws director", "Jaws"]
    # the re-planner was told which clues failed
    assert (
        "already failed" in script.requests[3].last_text and "- Jaws director" in script.requests[3].last_text
    )


def test_bats_stops_when_every_phrase_of_the_question_has_failed(tools: list) -> None:
    clues = ["Jaws", "directed film Jaws"]  # every phrase of the question
    replies = [reply(plan_json(clues))]
    for clue in clues:
        replies += [call("search", query=clue), reply("Paris"), reply(verdict("PIVOT"))]
    replies.insert(4, reply(plan_json(["jaws"])))  # the re-plan after the first failure repeats
    replies.append(reply(plan_json(["Jaws", "film Jaws directed?"])))  # and after the second, too
    script = ScriptedModel(replies)
    result = bats(script, tools, max_attempts=10).run(QUESTION)
    plans = [e for e in result.trace if isinstance(e, PlanEvent)]
    assert plans[-1].exhausted is True and "nothing left to try" in plans[-1].describe()
    assert result.stop_reason == "completed"
    # no attempt after the last plan: it went to the judge, which had only refuted candidates
    assert roles(script)[-1] == "plan" and len(script.requests) == len(replies)
    assert searched(script) == clues


def test_bats_judge_never_picks_a_preamble_by_majority(tools: list) -> None:
    script = ScriptedModel(
        [
            reply(plan_json(["Jaws"])),
            call("search", query="Jaws"),
            reply("The answer to the question is:"),
            reply(plan_json(["directed film Jaws"])),
            call("search", query="directed film Jaws"),
            reply("Answer:"),
        ]
    )
    result = bats(script, tools, max_attempts=2).run(QUESTION)
    assert result.answer == "unknown"
    assert roles(script) == ["plan", "act", "act", "plan", "act", "act"]  # neither non-answer was verified


# -------------------------------------------------------------------------------- self-consistency
def test_preambles_do_not_vote() -> None:
    replies = [reply("The answer to the question is:"), reply("Answer:"), reply("Steven Spielberg")]
    script = ScriptedModel(replies)
    agent = Agent(
        script.model,
        budget=Budget(total_tokens=3000),
        strategy="self_consistency",
        samples=3,
        temperature=0.0,
    )
    assert agent.run(QUESTION).answer == "Steven Spielberg"
