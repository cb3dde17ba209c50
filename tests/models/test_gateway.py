"""The Gateway with the scripted model: counting, capping, reserving, retrying, settling — exact numbers."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from thrifty.budget import Budget, BudgetExceeded, Ledger, ModelPrice, Pricing, UnpricedModelError
from thrifty.models import Gateway, ModelError
from thrifty.models._litellm import get_litellm
from thrifty.testing import ScriptedModel, call, reply

MSG = [{"role": "user", "content": "hello"}]


def test_max_tokens_capped_to_what_the_budget_can_pay() -> None:
    script = ScriptedModel([reply("hi", prompt_tokens=20, completion_tokens=500)])
    ledger = Ledger(Budget(total_tokens=100))
    out = Gateway(ledger).complete(script.model, MSG, max_tokens=1000)
    assert script.requests[0].max_tokens == 80  # 100 total - 20 prompt
    assert out.usage.completion_tokens == 80  # the model stops at the cap
    assert ledger.spent["total_tokens"] == 100
    assert ledger.reserved["total_tokens"] == 0


def test_a_prompt_count_the_caller_already_made_is_used_as_is() -> None:
    script = ScriptedModel([reply("hi", prompt_tokens=20, completion_tokens=5)] * 2)
    ledger = Ledger(Budget(total_tokens=100))
    Gateway(ledger).complete(script.model, MSG, max_tokens=1000, prompt_tokens=60)
    assert script.requests[0].max_tokens == 40  # capped by the caller's count (100 - 60), not the model's 20
    assert ledger.spent["total_tokens"] == 25  # the provider's usage is what is charged
    with pytest.raises(BudgetExceeded) as info:
        Gateway(Ledger(Budget(input_tokens=50))).complete(script.model, MSG, prompt_tokens=60)
    assert info.value.dimension == "input_tokens" and len(script.requests) == 1


def test_output_and_usd_limits_cap_too() -> None:
    script = ScriptedModel([reply("a", prompt_tokens=10, completion_tokens=3)] * 2)
    pricing = Pricing(models={script.model: ModelPrice(input_per_token=0.001, output_per_token=0.01)})
    ledger = Ledger(Budget(usd=0.06, output_tokens=1000))
    gw = Gateway(ledger, pricing)
    out = gw.complete(script.model, MSG, max_tokens=100)
    # (0.06 - 10 * 0.001) / 0.01 = 5 completion tokens at most
    assert script.requests[0].max_tokens == 5
    assert out.usd == pytest.approx(10 * 0.001 + 3 * 0.01)
    assert ledger.spent["usd"] == pytest.approx(0.04)
    ledger2 = Ledger(Budget(output_tokens=7))
    Gateway(ledger2).complete(script.model, MSG, max_tokens=100)
    assert script.requests[1].max_tokens == 7


def test_budget_that_cannot_pay_one_token_refuses_before_calling() -> None:
    script = ScriptedModel([reply("never", prompt_tokens=50)])
    ledger = Ledger(Budget(total_tokens=50))
    with pytest.raises(BudgetExceeded) as info:
        Gateway(ledger).complete(script.model, MSG)
    assert info.value.dimension == "total_tokens"
    assert script.requests == []
    assert not ledger.events


def test_input_and_request_limits() -> None:
    script = ScriptedModel([reply("x", prompt_tokens=30), reply("y", prompt_tokens=30)])
    with pytest.raises(BudgetExceeded) as info:
        Gateway(Ledger(Budget(input_tokens=29))).complete(script.model, MSG)
    assert info.value.dimension == "input_tokens"
    ledger = Ledger(Budget(model_requests=1))
    Gateway(ledger).complete(script.model, MSG)
    with pytest.raises(BudgetExceeded) as info:
        Gateway(ledger).complete(script.model, MSG)
    assert info.value.stop_reason == "budget_exhausted:model_requests"


def test_transient_errors_are_retried_and_every_attempt_charged() -> None:
    litellm = get_litellm()
    err = litellm.RateLimitError("slow down", llm_provider="scripted", model="x")
    script = ScriptedModel([err, err, reply("ok", prompt_tokens=12, completion_tokens=4)])
    ledger = Ledger(Budget(model_requests=10))
    out = Gateway(ledger, retries=2, backoff=0).complete(script.model, MSG)
    assert out.content == "ok" and out.attempts == 3
    assert ledger.spent["model_requests"] == 3
    assert [e.ok for e in ledger.events] == [False, False, True]
    assert ledger.spent["total_tokens"] == 16
    assert ledger.reserved["total_tokens"] == 0


def test_retries_stop_when_the_budget_cannot_pay_another_attempt() -> None:
    litellm = get_litellm()
    err = litellm.InternalServerError("boom", llm_provider="scripted", model="x")
    script = ScriptedModel([err, err, reply("late")])
    ledger = Ledger(Budget(model_requests=2))
    with pytest.raises(BudgetExceeded):
        Gateway(ledger, retries=5, backoff=0).complete(script.model, MSG)
    assert ledger.spent["model_requests"] == 2


def test_non_transient_error_is_a_model_error_and_still_counted() -> None:
    script = ScriptedModel([ValueError("malformed request")])
    ledger = Ledger(Budget(model_requests=5))
    with pytest.raises(ModelError, match="malformed request"):
        Gateway(ledger, backoff=0).complete(script.model, MSG)
    assert ledger.spent["model_requests"] == 1


def test_tool_calls_come_back_parsed() -> None:
    script = ScriptedModel([call("search", query="Paris", prompt_tokens=8, completion_tokens=6)])
    out = Gateway(Ledger()).complete(
        script.model,
        MSG,
        tools=[{"type": "function", "function": {"name": "search", "parameters": {"type": "object"}}}],
    )
    assert out.tool_calls[0].name == "search"
    assert out.tool_calls[0].arguments == '{"query": "Paris"}'
    assert script.requests[0].tool_names == ["search"]
    assert out.assistant_message()["tool_calls"][0]["function"]["name"] == "search"


def test_unknown_models_are_refused_clearly() -> None:
    gw = Gateway(Ledger())
    with pytest.raises(ModelError, match="provider prefix"):
        gw.check_model("gpt-4o-mini")
    with pytest.raises(ModelError, match="unknown provider"):
        gw.check_model("nosuchprovider/model")
    with pytest.raises(ModelError, match="no scripted model"):
        gw.check_model("scripted/never-registered")


def test_remote_models_are_blocked_in_tests() -> None:
    with pytest.raises(ModelError, match="blocked"):
        Gateway(Ledger()).check_model("openai/gpt-4o-mini")


@pytest.mark.usefixtures("fake_openai_key")
def test_usd_budget_with_unpriced_model_is_refused_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("THRIFTY_BLOCK_REMOTE")
    with pytest.raises(UnpricedModelError, match="no known price"):
        Gateway(Ledger(Budget(usd=1.0))).check_model("openai/some-model-nobody-priced")
    # the same model is fine without a USD limit, and a priced one is fine with it
    Gateway(Ledger(Budget(total_tokens=10))).check_model("openai/some-model-nobody-priced")
    price = Gateway(Ledger(Budget(usd=1.0))).check_model("openai/gpt-4o-mini")
    assert price.input_per_token > 0


def test_async_calls_in_parallel_never_overspend() -> None:
    script = ScriptedModel(default=reply("x", prompt_tokens=10, completion_tokens=10))
    ledger = Ledger(Budget(total_tokens=200))
    gw = Gateway(ledger)

    async def one() -> str:
        try:
            await gw.acomplete(script.model, MSG, max_tokens=10)
            return "ok"
        except BudgetExceeded:
            return "refused"

    async def main() -> list[str]:
        return await asyncio.gather(*(one() for _ in range(25)))

    results = asyncio.run(main())
    assert results.count("ok") == 10
    assert ledger.spent["total_tokens"] == 200
    assert sum(e.units.get("total_tokens", 0) for e in ledger.events) == 200


def test_cached_tokens_are_priced_at_the_cached_rate() -> None:
    from thrifty.models.scripted import ScriptedReply

    script = ScriptedModel(
        [ScriptedReply(content="x", prompt_tokens=100, completion_tokens=0, cached_tokens=60)]
    )
    price = ModelPrice(input_per_token=0.01, output_per_token=0.0, cached_input_per_token=0.001)
    ledger = Ledger()
    out = Gateway(ledger, Pricing(models={script.model: price})).complete(script.model, MSG)
    assert out.usd == pytest.approx(40 * 0.01 + 60 * 0.001)
    assert ledger.spent["cached_tokens"] == 60


def test_a_call_the_time_left_cannot_pay_for_is_not_started() -> None:
    now = [0.0]
    script = ScriptedModel()

    def slow(request: object) -> object:
        now[0] += 5.0  # each call takes five seconds
        return reply("x")

    script.add(slow, slow, slow)
    ledger = Ledger(Budget(seconds=12), clock=lambda: now[0])
    gw = Gateway(ledger)
    gw.complete(script.model, MSG)
    gw.complete(script.model, MSG)  # 7 s left, calls take 5: fine
    with pytest.raises(BudgetExceeded) as info:
        gw.complete(script.model, MSG)  # 2 s left: refused before starting
    assert info.value.dimension == "seconds"
    assert script.remaining == 1


def test_a_reply_without_usage_is_charged_the_reserved_worst_case() -> None:
    # LiteLLM reports 0 and 0 when a provider sends no usage; charging that would let spend pass unseen.
    script = ScriptedModel([reply("hi", prompt_tokens=0, completion_tokens=0)])
    pricing = Pricing(models={script.model: ModelPrice(input_per_token=0.001, output_per_token=0.002)})
    ledger = Ledger(Budget(usd=1, total_tokens=100))
    out = Gateway(ledger, pricing).complete(script.model, MSG, max_tokens=7, prompt_tokens=20)
    assert (out.usage.prompt_tokens, out.usage.completion_tokens) == (20, 7)
    assert ledger.spent["total_tokens"] == 27 and ledger.reserved["total_tokens"] == 0
    assert out.usd == pytest.approx(20 * 0.001 + 7 * 0.002) == ledger.spent["usd"]
    assert "no usage reported" in ledger.events[0].detail


def test_a_reply_without_choices_is_a_model_error_and_charges_only_what_was_reported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    script = ScriptedModel([reply("hi", prompt_tokens=0, completion_tokens=0)])
    ledger = Ledger(Budget(model_requests=3, total_tokens=1000))
    litellm = get_litellm()
    real = litellm.completion

    def no_choices(**kwargs: object) -> object:
        response = real(**kwargs)
        response.choices = []
        return response

    monkeypatch.setattr(litellm, "completion", no_choices)
    with pytest.raises(ModelError, match="no choices"):
        Gateway(ledger, retries=0).complete(script.model, MSG, max_tokens=5)
    # no usage reported: the worst case, as for any reply without usage; the rest of the hold released
    assert ledger.spent["model_requests"] == 1 and 0 < ledger.spent["total_tokens"] <= 5 + 20
    assert all(v == 0 for v in ledger.reserved.values())


@pytest.mark.parametrize(
    "keyword",
    [
        {"num_retries": 2},  # LiteLLM's own retries: requests no attempt reserved
        {"max_retries": 2},
        {"fallbacks": ["scripted/other"]},
        {"n": 3},  # three completions for a reservation of one
        {"best_of": 2},
        {"max_completion_tokens": 10_000},  # a second cap, above the capped max_tokens
        {"stream": True},
    ],
)
def test_a_keyword_that_would_cost_more_than_the_reservation_is_refused(keyword: dict[str, Any]) -> None:
    litellm = get_litellm()
    script = ScriptedModel([litellm.RateLimitError("429", llm_provider="scripted", model="x"), reply("hi")])
    ledger = Ledger(Budget(model_requests=1))
    with pytest.raises(ModelError, match=next(iter(keyword))):
        Gateway(ledger, retries=0, backoff=0).complete(script.model, MSG, max_tokens=10, **keyword)
    with pytest.raises(ModelError, match=next(iter(keyword))):
        asyncio.run(Gateway(ledger, retries=0, backoff=0).acomplete(script.model, MSG, **keyword))
    assert script.requests == [] and ledger.spent["model_requests"] == 0  # refused before any call
    # the harmless values pass
    harmless: dict[str, Any] = {"num_retries": 0, "n": 1, "stream": False}
    wide = Ledger(Budget(model_requests=2))
    reply_ = Gateway(wide, retries=1, backoff=0).complete(script.model, MSG, max_tokens=10, **harmless)
    assert reply_.content == "hi" and wide.spent["model_requests"] == 2  # the failed attempt is charged


@pytest.mark.parametrize("max_tokens", [0, -1, 2.5, True, "10"])
def test_a_bad_max_tokens_is_refused_by_name_before_anything_is_reserved(max_tokens: Any) -> None:
    # 0 silently meant the default cap; -1 ended in a budget stop naming no dimension
    script = ScriptedModel([reply("hi")])
    ledger = Ledger(Budget(model_requests=1))
    with pytest.raises(ModelError, match=r"max_tokens must be a whole number of at least 1"):
        Gateway(ledger, retries=0).complete(script.model, MSG, max_tokens=max_tokens)
    with pytest.raises(ModelError, match=r"max_tokens must be a whole number of at least 1"):
        asyncio.run(Gateway(ledger, retries=0).acomplete(script.model, MSG, max_tokens=max_tokens))
    assert script.requests == [] and not ledger.events


def test_a_callers_timeout_never_outlasts_the_time_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    litellm = get_litellm()
    script = ScriptedModel([reply("hi")] * 2)
    sent: list[object] = []
    real = litellm.completion

    def spy(**request: object) -> object:
        sent.append(request.get("timeout"))
        return real(**request)

    monkeypatch.setattr(litellm, "completion", spy)
    gateway = Gateway(Ledger(Budget(seconds=30)))
    gateway.complete(script.model, MSG, max_tokens=10, timeout=600)
    gateway.complete(script.model, MSG, max_tokens=10, timeout=5)
    assert isinstance(sent[0], float) and sent[0] <= 30  # not the 600 s the budget cannot pay for
    assert sent[1] == 5  # a shorter one stands


def test_a_reply_that_cannot_be_read_is_still_charged_what_the_provider_reported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    litellm = get_litellm()
    script = ScriptedModel([reply("x")] * 2)
    real = litellm.completion

    def no_choices(**request: object) -> object:
        response = real(**request)
        response.choices = []  # billed (usage reported) but nothing to read
        response.usage = litellm.Usage(prompt_tokens=40, completion_tokens=60, total_tokens=100)
        return response

    monkeypatch.setattr(litellm, "completion", no_choices)
    ledger = Ledger(Budget(total_tokens=1000))
    with pytest.raises(ModelError, match="no choices"):
        Gateway(ledger, retries=0).complete(script.model, MSG, max_tokens=100)
    assert ledger.spent["total_tokens"] == 100 and ledger.spent["model_requests"] == 1
    assert ledger.reserved["total_tokens"] == 0
    [event] = ledger.events
    assert not event.ok and "no choices" in event.detail
