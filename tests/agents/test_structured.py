"""Structured calls: the role names sent on the wire, validation, one retry, then the default."""

from __future__ import annotations

import json

import pytest
from pydantic import BaseModel

from thrifty.agents.context import RunContext
from thrifty.agents.structured import StructuredRole, structured_call
from thrifty.budget import Budget, Ledger
from thrifty.models.gateway import Gateway
from thrifty.testing import ScriptedModel, reply
from thrifty.tools import ToolRunner


class Pick(BaseModel):
    index: int


def context(script: ScriptedModel) -> RunContext:
    ledger = Ledger(Budget(total_tokens=1000))
    return RunContext(
        ledger=ledger, gateway=Gateway(ledger), runner=ToolRunner([], ledger), model=script.model
    )


def sent_name(script: ScriptedModel, request: int = 0) -> object:
    return script.requests[request].params["response_format"]["json_schema"]["name"]


def test_the_roles_and_their_wire_names() -> None:
    assert {r.value for r in StructuredRole} == {
        "plan",
        "verdict",
        "judge",
        "candidates",
        "critic",
        "final_answer",
    }


@pytest.mark.parametrize("role", [*StructuredRole, "my_extractor"])
def test_the_role_is_sent_as_a_plain_name(role: StructuredRole | str) -> None:
    script = ScriptedModel([reply('{"index": 2}')])
    pick, ok = structured_call(context(script), role, Pick, [], default=Pick(index=-1), node="n")
    assert (pick.index, ok) == (2, True)
    name = sent_name(script)
    assert type(name) is str and name == str(role)  # a plain str, whatever the model's client does with it
    assert json.dumps(script.requests[0].params["response_format"]).count(f'"name": "{role}"') == 1


def test_an_invalid_reply_is_retried_once_then_the_default_is_used() -> None:
    script = ScriptedModel([reply("no json"), reply('{"index": "x"}')])
    pick, ok = structured_call(
        context(script), StructuredRole.JUDGE, Pick, [], default=Pick(index=-1), node="judge"
    )
    assert (pick.index, ok) == (-1, False)
    assert len(script.requests) == 2 and sent_name(script, 1) == "judge"
    assert "not valid" in script.requests[1].messages[-1]["content"]
