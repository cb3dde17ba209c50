"""Several models in one run: cascades, per-role models, escalation, refusals and failover (scripted models
through the real Gateway and Ledger)."""

from __future__ import annotations

import asyncio
import json

import pytest
from pydantic import ValidationError

from thrifty.budget import Budget, BudgetExceeded, Ledger, ModelPrice, Pricing, UnpricedModelError
from thrifty.models import ModelError, Provider, register_provider
from thrifty.models.routing import (
    EscalationPolicy,
    RoutedGateway,
    Routing,
    Scope,
    Trigger,
    parse_model_spec,
    role_of,
)
from thrifty.testing import ScriptedModel, call, reply
from thrifty.testing import ScriptedReply as R

CHEAP = ModelPrice(input_per_token=1e-6, output_per_token=2e-6)
STRONG = ModelPrice(input_per_token=20e-6, output_per_token=40e-6)
MSG = [{"role": "user", "content": "Which is older?"}]


def _pair(
    cheap: list, strong: list, **policy: object
) -> tuple[ScriptedModel, ScriptedModel, Routing, Pricing]:
    weak, big = ScriptedModel(cheap), ScriptedModel(strong)
    policy.setdefault("resample", 0)  # one call, one escalation: the resample tests below set their own
    routing = Routing(models=[weak.model, big.model], escalation=EscalationPolicy.model_validate(policy))
    pricing = Pricing(models={weak.model: CHEAP, big.model: STRONG})
    return weak, big, routing, pricing


def _gateway(routing: Routing, pricing: Pricing, budget: Budget | None = None) -> RoutedGateway:
    gw = RoutedGateway(Ledger(budget or Budget(usd=1.0)), pricing, routing=routing, retries=0, backoff=0)
    gw.check_models()
    return gw


def test_cannot_answer_escalates_the_step_and_each_model_is_charged_its_own_price() -> None:
    weak, big, routing, pricing = _pair(
        [reply("unknown", prompt_tokens=100, completion_tokens=2)],
        [reply("1901", prompt_tokens=100, completion_tokens=3)],
    )
    gw = _gateway(routing, pricing)
    out = gw.complete(gw.entry, MSG, node="act", max_tokens=64)
    assert out.content == "1901" and out.model == big.model
    charges = [(e.name, e.usd) for e in gw.ledger.events]
    assert charges == [
        (weak.model, pytest.approx(100 * 1e-6 + 2 * 2e-6)),
        (big.model, pytest.approx(100 * 20e-6 + 3 * 40e-6)),
    ]
    [record] = gw.state.records
    assert (record.reason, record.from_model, record.to_model, record.refused) == (
        Trigger.CANNOT_ANSWER,
        weak.model,
        big.model,
        False,
    )
    assert record.usd == pytest.approx(100 * 20e-6 + 3 * 40e-6)
    assert record.discarded_usd == pytest.approx(100 * 1e-6 + 2 * 2e-6)


def test_a_confident_answer_stays_on_the_cheap_model() -> None:
    weak, big, routing, pricing = _pair([R(content="1901", confidence=0.9)], [])
    gw = _gateway(routing, pricing)
    out = gw.complete(gw.entry, MSG, node="act")
    assert out.model == weak.model and out.confidence == pytest.approx(0.9)
    assert gw.state.records == [] and big.requests == []


def test_low_confidence_escalates() -> None:
    _weak, _big, routing, pricing = _pair(
        [R(content="1850", confidence=0.2)], [reply("1901")], min_confidence=0.5
    )
    gw = _gateway(routing, pricing)
    assert gw.complete(gw.entry, MSG, node="act").content == "1901"
    assert [r.reason for r in gw.state.records] == [Trigger.LOW_CONFIDENCE]
    assert "0.20 < 0.5" in gw.state.records[0].detail


def test_structured_output_that_does_not_parse_escalates() -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "verdict", "schema": {}}}
    _weak, _big, routing, pricing = _pair([reply("SUCCESS, I think")], [reply('{"decision": "SUCCESS"}')])
    gw = _gateway(routing, pricing)
    out = gw.complete(gw.entry, MSG, node="verify", response_format=fmt)
    assert json.loads(out.content or "") == {"decision": "SUCCESS"}
    assert [(r.role, r.reason) for r in gw.state.records] == [("verifier", Trigger.PARSE_FAILED)]


def test_escalation_refused_when_the_budget_cannot_pay_the_stronger_model() -> None:
    weak, big, routing, pricing = _pair([reply("unknown", prompt_tokens=100, completion_tokens=2)], [])
    # The cheap call costs ~1e-4; the strong one needs at least 32 completion tokens (1.28e-3) at 4e-5.
    gw = _gateway(routing, pricing, Budget(usd=0.0012))
    out = gw.complete(gw.entry, MSG, node="act", max_tokens=64)
    assert out.model == weak.model and out.content == "unknown"
    [record] = gw.state.records
    assert record.refused and record.to_model == big.model and "refused" in record.detail
    assert big.requests == []  # nothing was spent on the strong model
    assert gw.ledger.spent["usd"] <= 0.0012


def test_failover_to_the_next_model_when_the_cheap_one_fails() -> None:
    weak, big, routing, pricing = _pair([ValueError("the cheap server is down")], [reply("1901")])
    gw = _gateway(routing, pricing)
    out = gw.complete(gw.entry, MSG, node="act")
    assert out.model == big.model
    [record] = gw.state.records
    assert record.reason == Trigger.MODEL_FAILED
    failed = [e for e in gw.ledger.events if not e.ok]
    assert [e.name for e in failed] == [weak.model]  # the failed attempt is a request of the cheap model


def test_failover_with_no_model_left_raises_model_error() -> None:
    _weak, _big, routing, pricing = _pair([ValueError("down")], [ValueError("down too")])
    gw = _gateway(routing, pricing)
    with pytest.raises(ModelError):
        gw.complete(gw.entry, MSG, node="act")
    assert gw.ledger.spent["model_requests"] == 2


def test_scope_run_keeps_the_stronger_model_for_the_rest_of_the_run() -> None:
    weak, big, routing, pricing = _pair([reply("unknown")], [reply("a"), reply("b")], scope="run")
    gw = _gateway(routing, pricing)
    gw.complete(gw.entry, MSG, node="act")
    assert gw.complete(gw.entry, MSG, node="plan").model == big.model  # every role, later calls
    assert len(weak.requests) == 1


def test_scope_step_goes_back_to_the_cheap_model() -> None:
    weak, _big, routing, pricing = _pair([reply("unknown"), reply("fine")], [reply("a")], scope="step")
    gw = _gateway(routing, pricing)
    gw.complete(gw.entry, MSG, node="act")
    assert gw.complete(gw.entry, MSG, node="act").model == weak.model


def test_scope_node_keeps_the_node_on_the_stronger_model_only() -> None:
    weak, big, routing, pricing = _pair(
        [reply("unknown"), reply("other node")], [reply("a"), reply("b")], scope="node"
    )
    gw = _gateway(routing, pricing)
    gw.complete(gw.entry, MSG, node="act")
    assert gw.complete(gw.entry, MSG, node="judge").model == weak.model
    assert gw.complete(gw.entry, MSG, node="act").model == big.model


def test_a_verifier_rejection_escalates_the_solver_next_call() -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "verdict", "schema": {}}}
    _weak, big, routing, pricing = _pair([reply('{"decision": "CONTINUE"}')], [reply("1901")])
    gw = _gateway(routing, pricing)
    gw.complete(gw.entry, MSG, node="verify", response_format=fmt)
    [record] = gw.state.records
    assert (record.reason, record.role) == (Trigger.VERIFIER_REJECTED, "solver")
    assert gw.complete(gw.entry, MSG, node="act").model == big.model


def test_a_role_on_its_own_model() -> None:
    weak, big = ScriptedModel([reply("x")]), ScriptedModel([reply('{"exploration": []}')])
    routing = Routing(models=[weak.model], roles={"planner": big.model})
    gw = _gateway(routing, Pricing(models={weak.model: CHEAP, big.model: STRONG}))
    assert gw.complete(gw.entry, MSG, node="plan").model == big.model
    assert gw.complete(gw.entry, MSG, node="act").model == weak.model


def test_the_cascade_starts_on_the_cheapest_whatever_the_order_given() -> None:
    weak, big = ScriptedModel([reply("1901")]), ScriptedModel([])
    routing = Routing(models=[big.model, weak.model])
    gw = _gateway(routing, Pricing(models={weak.model: CHEAP, big.model: STRONG}))
    assert gw.entry == weak.model
    assert gw.complete(gw.entry, MSG, node="act").model == weak.model


def test_async_calls_escalate_too() -> None:
    _weak, big, routing, pricing = _pair([reply("I don't know")], [reply("1901")])
    gw = _gateway(routing, pricing)
    out = asyncio.run(gw.acomplete(gw.entry, MSG, node="final"))
    assert out.model == big.model and gw.state.records[0].reason == Trigger.CANNOT_ANSWER


def test_tool_calls_are_never_an_inability_to_answer() -> None:
    _weak, _big, routing, pricing = _pair([call("search", query="x")], [])
    gw = _gateway(routing, pricing)
    assert gw.complete(gw.entry, MSG, node="act").tool_calls and gw.state.records == []


def test_a_trigger_left_out_of_the_policy_does_not_escalate() -> None:
    weak, _big, routing, pricing = _pair([reply("unknown")], [], on=["parse_failed"])
    gw = _gateway(routing, pricing)
    assert gw.complete(gw.entry, MSG, node="act").model == weak.model


# ------------------------------------------------------------------------------------------ bad input
def test_unknown_role_is_refused() -> None:
    with pytest.raises(ValidationError, match="unknown role 'coder'"):
        Routing(models=["openai/gpt-4o"], roles={"coder": "openai/gpt-4o"})


def test_a_routing_without_models_is_refused() -> None:
    with pytest.raises(ValidationError, match="names no model"):
        Routing()


def test_unknown_provider_in_a_cascade_is_refused_before_spending() -> None:
    weak = ScriptedModel([reply("x")])
    gw = RoutedGateway(Ledger(Budget()), routing=Routing(models=[weak.model, "nosuch/model"]))
    with pytest.raises(ModelError, match="unknown provider 'nosuch'"):
        gw.check_models()
    assert gw.ledger.events == []


def test_unpriced_model_under_a_usd_budget_is_refused() -> None:
    register_provider(Provider("unpriced", in_process=True), replace=True)  # no price known anywhere
    weak = ScriptedModel([reply("x")])
    routing = Routing(models=[weak.model, "unpriced/big"])
    gw = RoutedGateway(Ledger(Budget(usd=1)), Pricing(models={weak.model: CHEAP}), routing=routing)
    with pytest.raises(UnpricedModelError):
        gw.check_models()


def test_parse_model_spec() -> None:
    assert parse_model_spec("openai/gpt-4o") is None
    cascade = parse_model_spec("sim/p=0.5,q=0.6>sim/p=0.9")
    assert cascade is not None and cascade.models == ["sim/p=0.5,q=0.6", "sim/p=0.9"]
    roles = parse_model_spec("local/a;verifier=openai/b;solver=local/a>openai/b")
    assert roles is not None and roles.models == ["local/a"]
    assert roles.roles == {"verifier": "openai/b", "solver": ["local/a", "openai/b"]}
    with pytest.raises(ValueError, match="unknown role 'boss'"):
        parse_model_spec("boss=openai/b")


def test_role_of() -> None:
    assert role_of("act", None) == "solver"
    assert role_of("my_node", {"type": "json_schema", "json_schema": {"name": "judge"}}) == "judge"
    assert role_of("my_node", None) is None


def test_scope_values() -> None:
    assert [s.value for s in Scope] == ["step", "node", "run"]


def test_the_worst_case_among_failover_candidates_is_held_before_the_call() -> None:
    """While the cheap model is being called, the strong model's worst case is held: another spender
    (a parallel branch) cannot take it, so the fallback is always paid for."""
    ledger_box: dict[str, Ledger] = {}
    seen: dict[str, float] = {}

    def cheap_fails(request: object) -> R:
        ledger = ledger_box["ledger"]
        seen["available"] = ledger.available("usd")
        with pytest.raises(BudgetExceeded):
            ledger.reserve({"usd": 0.009}, kind="tool", name="parallel-branch")
        raise ValueError("the cheap server is down")

    weak, big = ScriptedModel([cheap_fails]), ScriptedModel([reply("1901", prompt_tokens=10)])
    routing = Routing(models=[weak.model, big.model])
    gw = _gateway(routing, Pricing(models={weak.model: CHEAP, big.model: STRONG}), Budget(usd=0.01))
    ledger_box["ledger"] = gw.ledger
    out = gw.complete(gw.entry, MSG, node="act", max_tokens=100)
    assert out.model == big.model
    # held: the strong model's worst case (prompt + 100 tokens at its price), not only the cheap call's
    assert seen["available"] < 0.01 - 100 * 40e-6
    assert [e.ledger for e in gw.ledger.events] == ["run/failover", "run/failover"]
    assert gw.ledger.reserved["usd"] == pytest.approx(0.0, abs=1e-12)  # the hold went back
    assert gw.ledger.spent["usd"] <= 0.01


def test_a_failover_the_budget_cannot_hold_is_left_out_and_logged() -> None:
    weak, big = ScriptedModel([reply("fine", prompt_tokens=50)]), ScriptedModel([])
    routing = Routing(models=[weak.model, big.model], escalation=EscalationPolicy(on=[Trigger.MODEL_FAILED]))
    # the cheap call fits; the strong one cannot pay even its prompt
    gw = _gateway(routing, Pricing(models={weak.model: CHEAP, big.model: STRONG}), Budget(usd=0.0002))
    assert gw.complete(gw.entry, MSG, node="act", max_tokens=50).model == weak.model
    [record] = gw.state.records
    assert record.refused and record.reason == Trigger.MODEL_FAILED and "no failover" in record.detail


def test_when_the_stronger_model_fails_the_weaker_reply_stands() -> None:
    weak, _big, routing, pricing = _pair([reply("unknown")], [ValueError("the strong server is down")])
    gw = _gateway(routing, pricing)
    out = gw.complete(gw.entry, MSG, node="act")
    assert out.model == weak.model and out.content == "unknown"
    [record] = gw.state.records
    assert "failed too" in record.detail


def test_a_grammar_only_answer_format_is_not_sent_to_a_model_without_grammar() -> None:
    grounded = {
        "type": "json_schema",
        "json_schema": {"name": "grounded_answer", "schema": {"type": "string"}},
    }
    # a JSON string is valid output for it (no parse failure); "unknown" in it is an inability to answer
    _weak, big, routing, pricing = _pair([reply('"unknown"')], [reply("1901")])
    gw = _gateway(routing, pricing)
    out = gw.complete(gw.entry, MSG, node="act", response_format=grounded)
    assert out.model == big.model
    assert gw.state.records[0].reason == Trigger.CANNOT_ANSWER
    assert "response_format" not in big.requests[0].params  # scripted/ has no grammar


def test_a_json_string_is_not_a_parse_failure() -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "verdict", "schema": {"type": "string"}}}
    weak, _big, routing, pricing = _pair([reply('"SUCCESS"')], [])
    gw = _gateway(routing, pricing)
    assert gw.complete(gw.entry, MSG, node="verify", response_format=fmt).model == weak.model


def test_an_escalation_kept_for_the_run_is_refused_once_the_budget_cannot_pay_it() -> None:
    weak, big, routing, pricing = _pair(
        [reply("unknown", prompt_tokens=100, completion_tokens=2), reply("fine", prompt_tokens=100)],
        [reply("1901", prompt_tokens=100, completion_tokens=3)],
        scope="run",
    )
    gw = _gateway(routing, pricing, Budget(usd=0.0035))
    assert gw.complete(gw.entry, MSG, node="act", max_tokens=64).model == big.model
    # the run stays on the strong model... until what is left cannot pay its call
    assert gw.complete(gw.entry, MSG, node="act", max_tokens=64).model == weak.model
    assert [(r.reason, r.refused) for r in gw.state.records] == [
        (Trigger.CANNOT_ANSWER, False),
        ("kept_escalation", True),
    ]
    assert gw.ledger.spent["usd"] <= 0.0035


def _move(confidence: float) -> R:
    return R(tool_calls=[("search", {"query": "x"})], confidence=confidence)


def test_a_move_has_its_own_confidence_threshold() -> None:
    # a move at 0.45 is below min_confidence (0.5) but not below the moves' own threshold (0.4)
    weak, big, routing, pricing = _pair(
        [_move(0.45), _move(0.3), R(content="1850", confidence=0.45)],
        [_move(0.9), reply("1901")],
        min_confidence=0.5,
        min_confidence_moves=0.4,
    )
    gw = _gateway(routing, pricing)
    assert gw.complete(gw.entry, MSG, node="act").model == weak.model
    assert gw.complete(gw.entry, MSG, node="act").model == big.model  # 0.3 < 0.4
    assert gw.complete(gw.entry, MSG, node="act").content == "1901"  # an answer: 0.45 < 0.5
    assert [r.detail for r in gw.state.records] == ["confidence 0.30 < 0.4", "confidence 0.45 < 0.5"]
    # 0 never escalates a move on confidence
    weak, big, routing, pricing = _pair([_move(0.01)], [], min_confidence_moves=0)
    gw = _gateway(routing, pricing)
    assert gw.complete(gw.entry, MSG, node="act").model == weak.model and gw.state.records == []


def test_a_doubtful_move_escalates_only_when_few_tool_calls_are_left() -> None:
    weak, big, routing, pricing = _pair(
        [_move(0.2), _move(0.2), R(content="1850", confidence=0.2)],
        [_move(0.9), reply("1901")],
        moves_when_tools_left=2,
    )
    gw = _gateway(routing, pricing, Budget(usd=1.0, tool_calls=3))
    assert gw.complete(gw.entry, MSG, node="act").model == weak.model  # 3 tool calls left: kept
    gw.ledger.charge({"tool_calls": 1}, kind="tool", name="search")
    assert gw.complete(gw.entry, MSG, node="act").model == big.model  # 2 left: a wasted one matters
    # an answer escalates whatever is left
    assert gw.complete(gw.entry, MSG, node="act").content == "1901"
    assert [r.reason for r in gw.state.records] == [Trigger.LOW_CONFIDENCE] * 2
    # without a tool-call limit, a doubtful move is never short of tool calls: kept
    weak, big, routing, pricing = _pair([_move(0.2)], [], moves_when_tools_left=2)
    gw = _gateway(routing, pricing)
    assert gw.complete(gw.entry, MSG, node="act").model == weak.model


def test_the_move_settings_are_checked() -> None:
    with pytest.raises(ValidationError):
        EscalationPolicy.model_validate({"min_confidence_moves": 1.5})
    with pytest.raises(ValidationError):
        EscalationPolicy.model_validate({"moves_when_tools_left": -1})


def test_failover_only_a_list_of_deployments_tried_in_order() -> None:
    # escalation on model_failed only: the cascade is a failover list (no escalation on the replies)
    first, second, routing, pricing = _pair(
        [ValueError("the first deployment is down"), reply("unknown")],
        [reply("1901")],
        on=["model_failed"],
    )
    gw = _gateway(routing, pricing)
    assert gw.complete(gw.entry, MSG, node="act").model == second.model  # failed over, charged its price
    assert gw.complete(gw.entry, MSG, node="act").content == "unknown"  # "unknown" is not a failure
    assert [r.reason for r in gw.state.records] == [Trigger.MODEL_FAILED]
    assert [e.name for e in gw.ledger.events if e.ok] == [second.model, first.model]


# ------------------------------------------------------------------- compact prompt and answer check
def _trajectory() -> list[dict]:
    """A solver's prompt after two tool results: the system prompt with the Budget Tracker's policy."""
    from thrifty.agents.prompts import react_system

    block = "<budget>search used: {u}, search remaining: {r}, regime: HIGH</budget>"
    return [
        {"role": "system", "content": react_system(True)},
        {"role": "user", "content": "Question: Which is older?"},
        {"role": "assistant", "content": None, "tool_calls": []},
        {"role": "tool", "tool_call_id": "1", "content": "Title: A\nborn 1850\n" + block.format(u=1, r=2)},
        {"role": "assistant", "content": None, "tool_calls": []},
        {"role": "tool", "tool_call_id": "2", "content": "Title: B\nborn 1901\n" + block.format(u=2, r=1)},
    ]


def test_compact_prompt_drops_the_policy_and_the_stale_budget_blocks_only() -> None:
    from thrifty.agents.prompts import REACT_SYSTEM
    from thrifty.budget import POLICY
    from thrifty.models.routing import compact_prompt

    full = _trajectory()
    short = compact_prompt(full)
    assert short[0]["content"] == REACT_SYSTEM and POLICY in full[0]["content"]
    assert short[3]["content"] == "Title: A\nborn 1850"  # an older result: its stale budget block is gone
    assert short[5] == full[5] and "search remaining: 1" in short[5]["content"]  # the latest one stays
    assert short[1:3] == full[1:3] and short[4] == full[4]
    assert full == _trajectory()  # the caller's messages are not changed
    plain = [{"role": "system", "content": "Be brief."}, *full[1:2]]
    assert compact_prompt(plain) == plain


@pytest.mark.parametrize("prompt", ["compact", "full"])
def test_an_escalated_call_is_sent_the_compact_prompt(prompt: str) -> None:
    from thrifty.budget import POLICY

    weak, big, routing, pricing = _pair(
        [R(content="unknown")], [reply("1901")], prompt=prompt, answer_check=False
    )
    gw = _gateway(routing, pricing)
    assert gw.complete(gw.entry, _trajectory(), node="act").content == "1901"
    [cheap_request], [strong_request] = weak.requests, big.requests
    assert POLICY in cheap_request.messages[0]["content"]  # the cheap model always gets the full prompt
    sent = "\n".join(str(m.get("content")) for m in strong_request.messages)
    if prompt == "compact":
        assert POLICY not in sent and sent.count("<budget>") == 1 and "search remaining: 1" in sent
    else:
        assert strong_request.messages == cheap_request.messages


def test_the_compact_prompt_costs_the_stronger_model_less() -> None:
    usd = {}
    for prompt in ("full", "compact"):
        # the strong model reports the size of the prompt it was sent
        _weak, _big, routing, pricing = _pair(
            [R(content="unknown")],
            [lambda req: reply("1901", prompt_tokens=len(json.dumps(req.messages)) // 4)],
            prompt=prompt,
            answer_check=False,
        )
        gw = _gateway(routing, pricing)
        gw.complete(gw.entry, _trajectory(), node="act")
        usd[prompt] = gw.state.records[0].usd
    assert 0 < usd["compact"] < usd["full"]


def _verdict(decision: str) -> R:
    return R(
        content=json.dumps({"decision": decision, "reason": "checked"}), prompt_tokens=50, completion_tokens=8
    )


def test_the_answer_check_passes_a_right_answer_on_the_cheap_model() -> None:
    weak, big, routing, pricing = _pair(
        [R(content="1901", confidence=0.9, prompt_tokens=40, completion_tokens=2), _verdict("SUCCESS")], []
    )
    gw = _gateway(routing, pricing)
    out = gw.complete(gw.entry, MSG, node="act", max_tokens=64)
    assert out.content == "1901" and out.model == weak.model
    assert big.requests == [] and gw.state.records == []
    _answer, check = weak.requests
    assert check.messages[: len(MSG)] == MSG and check.tool_names == []
    assert check.messages[-1]["content"].startswith("Proposed answer: 1901\n")
    assert check.params["response_format"]["json_schema"]["name"] == "verdict"
    assert check.max_tokens == 64
    # both calls charged at the cheap model's price, the check under its own node
    assert [(e.name, e.node) for e in gw.ledger.events] == [(weak.model, "act"), (weak.model, "answer_check")]
    assert gw.ledger.events[1].usd == pytest.approx(50 * 1e-6 + 8 * 2e-6)


def test_a_rejected_answer_escalates_and_the_record_says_what_was_set_aside() -> None:
    weak, big, routing, pricing = _pair(
        [R(content="1850", confidence=0.9, prompt_tokens=40, completion_tokens=2), _verdict("FAIL")],
        [reply("1901", prompt_tokens=40, completion_tokens=2)],
    )
    gw = _gateway(routing, pricing)
    out = gw.complete(gw.entry, MSG, node="act")
    assert out.content == "1901" and out.model == big.model
    [record] = gw.state.records
    assert (record.reason, record.from_model, record.to_model) == (
        Trigger.ANSWER_REJECTED,
        weak.model,
        big.model,
    )
    assert record.detail == "check said FAIL: checked"
    assert record.discarded_usd == pytest.approx(
        (40 + 50) * 1e-6 + (2 + 8) * 2e-6
    )  # the answer and its check
    assert record.usd == pytest.approx(40 * 20e-6 + 2 * 40e-6)
    assert len(big.requests) == 1  # the top model's answer is not checked


def test_the_answer_check_is_not_made_when_off_or_for_a_move_or_when_the_budget_cannot_pay_it() -> None:
    weak, _big, routing, pricing = _pair([R(content="1850", confidence=0.9)], [], answer_check=False)
    gw = _gateway(routing, pricing)
    gw.complete(gw.entry, MSG, node="act")
    assert len(weak.requests) == 1
    weak, _big, routing, pricing = _pair([_move(0.9)], [])
    gw = _gateway(routing, pricing)
    gw.complete(gw.entry, MSG, node="act")
    assert len(weak.requests) == 1
    # answer_rejected left out of `on`: no check
    weak, _big, routing, pricing = _pair([R(content="1850", confidence=0.9)], [], on=["low_confidence"])
    gw = _gateway(routing, pricing)
    gw.complete(gw.entry, MSG, node="act")
    assert len(weak.requests) == 1
    # the budget pays the answer but not a check after it: the answer stands, nothing is overspent
    weak, _big, routing, pricing = _pair(
        [R(content="1850", confidence=0.9, prompt_tokens=10, completion_tokens=2)], []
    )
    gw = _gateway(routing, pricing, Budget(usd=1.0, total_tokens=60))
    assert gw.complete(gw.entry, MSG, node="act", max_tokens=8).content == "1850"
    assert len(weak.requests) == 1 and gw.ledger.spent["total_tokens"] <= 60


def test_a_rejected_answer_stays_when_the_budget_cannot_pay_the_stronger_model() -> None:
    weak, big, routing, pricing = _pair(
        [R(content="1850", confidence=0.9, prompt_tokens=40, completion_tokens=2), _verdict("FAIL")], []
    )
    # the cheap answer and its check cost ~1.1e-4; the strong model needs >= 32 completion tokens at 4e-5
    gw = _gateway(routing, pricing, Budget(usd=0.0012))
    out = gw.complete(gw.entry, MSG, node="act", max_tokens=64)
    assert out.content == "1850" and out.model == weak.model and big.requests == []
    [record] = gw.state.records
    assert record.refused and record.reason == Trigger.ANSWER_REJECTED
    assert gw.ledger.spent["usd"] <= 0.0012


def test_an_unreadable_or_failed_check_leaves_the_answer() -> None:
    weak, big, routing, pricing = _pair([R(content="1850", confidence=0.9), reply("I think so")], [])
    gw = _gateway(routing, pricing)
    assert gw.complete(gw.entry, MSG, node="act").content == "1850" and big.requests == []
    assert len(weak.requests) == 2  # the answer and its check, whose verdict holds no JSON
    _weak, big, routing, pricing = _pair([R(content="1850", confidence=0.9), ValueError("down")], [])
    gw = _gateway(routing, pricing)
    assert gw.complete(gw.entry, MSG, node="act").content == "1850" and big.requests == []
    assert gw.state.records == []


def test_the_answer_check_in_async_calls() -> None:
    _weak, big, routing, pricing = _pair(
        [R(content="1850", confidence=0.9), _verdict("FAIL")], [reply("1901")]
    )
    gw = _gateway(routing, pricing)
    out = asyncio.run(gw.acomplete(gw.entry, MSG, node="act"))
    assert out.content == "1901" and out.model == big.model
    assert [r.reason for r in gw.state.records] == [Trigger.ANSWER_REJECTED]


def test_the_prompt_setting_is_checked_and_the_defaults_are_the_measured_policy() -> None:
    with pytest.raises(ValidationError):
        EscalationPolicy.model_validate({"prompt": "short"})
    policy = EscalationPolicy()
    assert (policy.prompt, policy.answer_check, policy.min_confidence, policy.resample) == (
        "compact",
        True,
        0.6,
        2,
    )


@pytest.mark.parametrize("prompt", ["compact", "full"])
def test_the_check_is_sent_the_compact_prompt_whatever_the_setting(prompt: str) -> None:
    from thrifty.budget import POLICY

    weak, _big, routing, pricing = _pair(
        [R(content="1901", confidence=0.9), _verdict("SUCCESS")], [], prompt=prompt
    )
    gw = _gateway(routing, pricing)
    gw.complete(gw.entry, _trajectory(), node="act")
    answer, check = weak.requests
    assert POLICY in answer.messages[0]["content"] and POLICY not in check.messages[0]["content"]
    assert sum(str(m.get("content")).count("<budget>") for m in check.messages) == 1


def test_a_doubtful_reply_is_resampled_on_the_same_model_before_it_escalates() -> None:
    # the second sample of the cheap model is sure: it stands, and the strong model is never called
    weak, big, routing, pricing = _pair([_move(0.3), _move(0.9)], [], resample=1, min_confidence=0.5)
    gw = _gateway(routing, pricing)
    out = gw.complete(gw.entry, MSG, node="act", temperature=0.0, seed=7)
    assert out.model == weak.model and out.confidence == pytest.approx(0.9) and big.requests == []
    first, second = weak.requests
    assert first.params.get("temperature") == 0.0 and first.params.get("seed") == 7
    assert second.params.get("temperature") == pytest.approx(0.7) and second.params.get("seed") == 8
    [record] = gw.state.records
    assert record.resample and (record.from_model, record.to_model) == (weak.model, weak.model)
    assert record.reason == Trigger.LOW_CONFIDENCE and "resample 1 of 1" in record.detail
    assert record.usd > 0 and record.discarded_usd > 0
    assert [e.name for e in gw.ledger.events] == [weak.model, weak.model]  # each sample charged


def test_when_no_sample_is_sure_the_call_escalates_and_the_top_model_is_never_resampled() -> None:
    weak, big, routing, pricing = _pair(
        [_move(0.3), _move(0.2), _move(0.1)], [_move(0.2)], resample=2, min_confidence=0.5
    )
    gw = _gateway(routing, pricing)
    out = gw.complete(gw.entry, MSG, node="act")
    assert out.model == big.model and len(weak.requests) == 3 and len(big.requests) == 1
    assert [(r.resample, r.to_model) for r in gw.state.records] == [
        (True, weak.model),
        (True, weak.model),
        (False, big.model),
    ]
    # another trigger (an "unknown") escalates at once: a fresh sample is for doubt, not for refusal
    weak, big, routing, pricing = _pair([reply("unknown")], [reply("1901")], resample=2)
    gw = _gateway(routing, pricing)
    assert gw.complete(gw.entry, MSG, node="act").content == "1901" and len(weak.requests) == 1


def test_a_resample_the_budget_cannot_pay_is_not_asked() -> None:
    weak, big, routing, pricing = _pair(
        [R(tool_calls=[("search", {"query": "x"})], confidence=0.3, prompt_tokens=100)],
        [],
        resample=1,
    )
    # the cheap call spends ~1e-4 of 1.5e-4: neither another cheap sample nor the strong model fits
    gw = _gateway(routing, pricing, Budget(usd=0.00015))
    out = gw.complete(gw.entry, MSG, node="act", max_tokens=64)
    assert out.model == weak.model and len(weak.requests) == 1 and big.requests == []
    assert not any(r.resample for r in gw.state.records)
    assert (gw.state.records[-1].reason, gw.state.records[-1].refused) == (Trigger.LOW_CONFIDENCE, True)
    assert gw.ledger.spent["usd"] <= 0.00015


def test_resamples_in_async_calls_and_the_setting_is_checked() -> None:
    weak, _big, routing, pricing = _pair([_move(0.3), _move(0.8)], [], resample=1)
    gw = _gateway(routing, pricing)
    assert asyncio.run(gw.acomplete(gw.entry, MSG, node="act")).model == weak.model
    assert [r.resample for r in gw.state.records] == [True]
    with pytest.raises(ValidationError):
        EscalationPolicy.model_validate({"resample": -1})
