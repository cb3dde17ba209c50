"""Issue 14 items 4 and 6: limits that hold when a model is priced per second, and when a provider reports
more tokens than the Gateway counted."""

from __future__ import annotations

import pytest

from thrifty.budget import Budget, BudgetExceeded, Ledger, ModelPrice, Pricing
from thrifty.models import Gateway
from thrifty.models.gateway import UsageRatios
from thrifty.testing import ScriptedModel, ScriptedReply, ScriptedRequest, reply

MSG = [{"role": "user", "content": "hello"}]


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _slow(clock: FakeClock, seconds: float, **kwargs: int):
    def answer(request: ScriptedRequest) -> ScriptedReply:
        clock.now += seconds  # the call takes this long
        return ScriptedReply(content="ok", **kwargs)

    return answer


# ----------------------------------------------------------------------------------- item 4: per second
def test_a_per_second_price_the_usd_left_cannot_pay_is_refused_before_calling() -> None:
    """The reproduction: 0.0111 spent against 0.001 (a 1.1 s call at $0.01/s was reserved as free)."""
    clock = FakeClock()
    script = ScriptedModel([_slow(clock, 1.1)])
    pricing = Pricing(models={script.model: ModelPrice(per_second=0.01)})
    ledger = Ledger(Budget(usd=0.001), clock=clock)
    with pytest.raises(BudgetExceeded) as info:
        Gateway(ledger, pricing, ratios=UsageRatios()).complete(script.model, MSG)
    assert info.value.dimension == "usd"
    assert script.requests == [] and ledger.spent["usd"] == 0


def test_per_second_calls_are_reserved_for_their_time_and_stop_before_the_limit() -> None:
    clock = FakeClock()
    script = ScriptedModel(default=_slow(clock, 1.1))
    pricing = Pricing(models={script.model: ModelPrice(per_second=0.01)})
    ledger = Ledger(Budget(usd=0.05), clock=clock)
    gw = Gateway(ledger, pricing, ratios=UsageRatios())
    calls = 0
    with pytest.raises(BudgetExceeded) as info:
        for _ in range(10):
            plan = gw.plan_call(script.model, 10, None)
            assert plan.usd_seconds > 0 and plan.timeout is not None and plan.timeout <= plan.seconds
            gw.complete(script.model, MSG)
            calls += 1
    assert info.value.dimension == "usd"
    assert calls >= 2
    assert ledger.spent["usd"] <= 0.05 + 1e-12
    assert not ledger.overruns


def test_the_call_timeout_is_capped_to_the_seconds_reserved() -> None:
    clock = FakeClock()
    script = ScriptedModel(default=_slow(clock, 0.5))
    pricing = Pricing(models={script.model: ModelPrice(per_second=0.01)})
    gw = Gateway(Ledger(Budget(usd=0.02), clock=clock), pricing, ratios=UsageRatios())
    plan = gw.plan_call(script.model, 10, None)
    assert plan.seconds == pytest.approx(2.0, rel=1e-3)  # all the dollars can buy: $0.02 / $0.01 per second
    assert plan.amounts["usd"] == pytest.approx(0.02, rel=1e-3)
    assert plan.timeout is not None and plan.timeout < plan.seconds
    roomy = Gateway(Ledger(Budget(usd=1), clock=clock), pricing, ratios=UsageRatios())
    first = roomy.plan_call(script.model, 10, None)
    assert first.seconds == 60.0  # a model not yet timed: DEFAULT_CALL_SECONDS
    roomy.complete(script.model, MSG)
    later = roomy.plan_call(script.model, 10, None)  # a typical call is known now: reserve a margin of it
    assert later.seconds == pytest.approx(0.5 * 8 + 1)
    assert later.timeout is not None and later.timeout < later.seconds


def test_a_seconds_budget_bounds_the_per_second_reservation() -> None:
    clock = FakeClock()
    script = ScriptedModel(default=_slow(clock, 0.1))
    pricing = Pricing(models={script.model: ModelPrice(per_second=0.01)})
    gw = Gateway(Ledger(Budget(usd=10, seconds=3), clock=clock), pricing, ratios=UsageRatios())
    plan = gw.plan_call(script.model, 10, None)
    assert plan.seconds == pytest.approx(3.0) and plan.amounts["usd"] == pytest.approx(0.03)


# ------------------------------------------------------------------------- item 6: over-reported tokens
def _over(factor: float, completion: int = 0):
    def answer(request: ScriptedRequest) -> ScriptedReply:
        return ScriptedReply(content="ok", prompt_tokens=int(100 * factor), completion_tokens=completion)

    return answer


def test_a_provider_reporting_more_than_counted_no_longer_pushes_spend_past_the_limit() -> None:
    """The reproduction: the second call reserved the counted 100 prompt tokens, was told 150."""
    script = ScriptedModel(default=_over(1.5))
    pricing = Pricing(models={script.model: ModelPrice(input_per_token=0.001)})
    ledger = Ledger(Budget(usd=0.25))
    gw = Gateway(ledger, pricing, ratios=UsageRatios())
    gw.complete(script.model, MSG, prompt_tokens=100)
    assert gw.ratios.margin(script.model, "prompt") == pytest.approx(1.5)
    with pytest.raises(BudgetExceeded) as info:  # 150 at the learned margin: $0.15 > $0.10 left
        gw.complete(script.model, MSG, prompt_tokens=100)
    assert info.value.dimension == "usd"
    assert ledger.spent["usd"] == pytest.approx(0.15) and not ledger.overruns


def test_the_learned_margin_caps_tokens_too() -> None:
    script = ScriptedModel(default=_over(1.5, completion=5))
    ledger = Ledger(Budget(input_tokens=400))
    gw = Gateway(ledger, ratios=UsageRatios())
    gw.complete(script.model, MSG, prompt_tokens=100)
    assert gw.plan_call(script.model, 100, None).amounts["input_tokens"] == pytest.approx(150)
    gw.complete(script.model, MSG, prompt_tokens=100)
    with pytest.raises(BudgetExceeded) as info:  # 100 left, 150 expected
        gw.complete(script.model, MSG, prompt_tokens=100)
    assert info.value.dimension == "input_tokens" and ledger.spent["input_tokens"] == 300


def test_a_first_over_report_past_the_limit_is_an_explicit_overrun() -> None:
    script = ScriptedModel(default=_over(1.5))
    pricing = Pricing(models={script.model: ModelPrice(input_per_token=0.001)})
    ledger = Ledger(Budget(usd=0.12))
    Gateway(ledger, pricing, ratios=UsageRatios()).complete(script.model, MSG, prompt_tokens=100)
    assert [(o.dimension, o.limit, o.spent) for o in ledger.overruns] == [("usd", 0.12, pytest.approx(0.15))]


def test_ratios_are_learned_per_model_and_shared_by_the_gateways_of_a_process() -> None:
    script = ScriptedModel(default=_over(1.3))
    other = ScriptedModel([reply("x", prompt_tokens=100)])
    Gateway(Ledger()).complete(script.model, MSG, prompt_tokens=100)
    assert Gateway(Ledger()).ratios.margin(script.model, "prompt") == pytest.approx(1.3)
    assert Gateway(Ledger()).ratios.margin(other.model, "prompt") == 1.0  # never below what was counted
    ratios = UsageRatios()
    ratios.observe("m", "prompt", 0.5)
    assert ratios.margin("m", "prompt") == 1.0
    ratios.observe("m", "completion", 50.0)
    assert ratios.margin("m", "completion") == UsageRatios.MAX_MARGIN
