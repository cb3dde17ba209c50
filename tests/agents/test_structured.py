"""Structured calls: the role names sent on the wire, validation, one retry, then the default."""

from __future__ import annotations

import json

import pytest
from pydantic import BaseModel, ValidationError

from thrifty.agents.context import RunContext
from thrifty.agents.planner import Plan
from thrifty.agents.structured import (
    StructuredRole,
    parse_reply,
    repair_json,
    structured_call,
    structured_format,
    structured_request,
)
from thrifty.budget import Budget, Ledger
from thrifty.models.gateway import Gateway
from thrifty.models.settings import ModelSettings
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


# ------------------------------------------------------------------ formats and the lenient reading
def test_a_malformed_reply_is_repaired_without_a_second_call() -> None:
    script = ScriptedModel([reply("Sure! Here it is: {'index': 3,} hope this helps")])
    out = structured_request(context(script), "judge", Pick, [], default=Pick(index=-1), node="n")
    assert (out.value.index, out.ok, out.repaired) == (3, True, True)
    assert len(script.requests) == 1 and out.label() == "json_schema, repaired"


def test_a_reply_cut_off_by_max_tokens_keeps_what_it_had() -> None:
    script = ScriptedModel([reply('{"exploration": ["Jaws film director", "Steven Spiel')])
    plan, ok = structured_call(context(script), StructuredRole.PLAN, Plan, [], default=Plan(), node="plan")
    assert ok and plan.exploration == ["Jaws film director", "Steven Spiel"]


def test_prose_without_json_is_not_repaired_into_an_object() -> None:
    assert repair_json("The answer to the question is:") is None
    assert repair_json("") is None and repair_json(None) is None
    with pytest.raises(ValueError):
        parse_reply("The answer to the question is:", Pick)


def test_the_default_says_why_it_was_used() -> None:
    script = ScriptedModel([reply("The answer to the question is:"), reply("still no json")])
    out = structured_request(context(script), "judge", Pick, [], default=Pick(index=-1), node="n")
    assert (out.value.index, out.ok) == (-1, False)
    assert out.error == "invalid reply twice: no JSON object in the reply"
    assert out.label().startswith("default used (json_schema): invalid reply twice")


@pytest.mark.parametrize("mode", ["json_schema", "json_object", "none"])
def test_the_response_format_setting_decides_what_is_sent(mode: str) -> None:
    script = ScriptedModel([reply('{"index": 1}')])
    ctx = context(script)
    ctx.settings = ModelSettings(response_format=mode)  # type: ignore[arg-type]
    out = structured_request(ctx, StructuredRole.JUDGE, Pick, [], default=Pick(index=-1), node="judge")
    assert out.ok and out.format == mode
    sent = script.requests[0].params.get("response_format")
    if mode == "none":
        assert sent is None
        return
    assert sent["type"] == mode
    if mode == "json_schema":
        assert sent["json_schema"]["name"] == "judge" and sent["json_schema"]["strict"] is False
        schema = sent["json_schema"]["schema"]
    else:  # JSON mode with the schema alongside (llama.cpp's servers make a grammar of it)
        schema = sent["schema"]
    assert schema["properties"]["index"]["type"] == "integer"


def test_auto_keeps_json_schema_for_in_process_models_and_asks_litellm_for_remote_ones() -> None:
    script = ScriptedModel([])
    ctx = context(script)
    assert structured_format(ctx) == "json_schema"  # the scripted model runs in process
    remote = RunContext(
        ledger=ctx.ledger,
        gateway=Gateway(ctx.ledger, api_base="http://127.0.0.1:9/v1"),
        runner=ctx.runner,
        model="openai/gpt-4o-mini",
    )
    assert structured_format(remote) == "json_schema"  # LiteLLM knows it takes a schema
    remote.model = "openai/my-llama"  # a name LiteLLM does not know: JSON mode with the schema
    assert structured_format(remote) == "json_object"
    remote.settings = ModelSettings(response_format="none")
    assert structured_format(remote) == "none"


def test_a_bad_response_format_setting_is_refused() -> None:
    with pytest.raises(ValidationError, match="response_format"):
        ModelSettings(response_format="xml")  # type: ignore[arg-type]
