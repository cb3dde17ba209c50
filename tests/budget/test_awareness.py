"""Budget awareness: the regime by remaining fraction, the <budget> block and spent tools."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.clocks import FakeClock
from thrifty.budget import POLICY, Budget, Ledger, Regime, budget_block, regime, regime_for, spent_tools


def call(ledger: Ledger, tool: str = "search", n: int = 1) -> None:
    ledger.charge({"tool_calls": n, f"tool:{tool}": n}, kind="tool", name=tool)


@pytest.mark.parametrize(
    ("ratio", "expected"),
    [
        (1.0, Regime.HIGH),
        (0.7, Regime.HIGH),
        (0.69, Regime.MEDIUM),
        (0.5, Regime.MEDIUM),
        (0.3, Regime.MEDIUM),
        (0.29, Regime.LOW),
        (0.1, Regime.LOW),
        (0.09, Regime.CRITICAL),
        (0.0, Regime.CRITICAL),
    ],
)
def test_regime_for_boundaries(ratio: float, expected: Regime) -> None:
    assert regime_for(ratio) is expected


@pytest.mark.parametrize("ratio", [1.0, 0.7, 0.5, 0.2, 0.0])
def test_any_tool_spent_is_critical(ratio: float) -> None:
    assert regime_for(ratio, any_tool_spent=True) is Regime.CRITICAL


@settings(max_examples=200, deadline=None)
@given(a=st.floats(0, 1), b=st.floats(0, 1))
def test_regime_is_monotone_in_the_ratio(a: float, b: float) -> None:
    order = [Regime.CRITICAL, Regime.LOW, Regime.MEDIUM, Regime.HIGH]
    lo, hi = sorted((a, b))
    assert order.index(regime_for(lo)) <= order.index(regime_for(hi))


def test_policy_names_every_regime() -> None:
    for name in Regime:
        assert name.value in POLICY


def test_budget_block_as_search_is_spent_step_by_step() -> None:
    ledger = Ledger(Budget(per_tool={"search": 10}))
    expected = ["HIGH"] * 4 + ["MEDIUM"] * 4 + ["LOW"] * 2 + ["CRITICAL"]
    for used in range(11):
        block = budget_block(ledger, ["search"])
        assert block == (
            f"<budget>search used: {used}, search remaining: {10 - used}, regime: {expected[used]}</budget>"
        )
        assert regime(ledger, ["search"]).value == expected[used]
        if used < 10:
            call(ledger)
    assert spent_tools(ledger, ["search"]) == ["search"]


def test_budget_block_counts_in_flight_reservations_as_gone() -> None:
    ledger = Ledger(Budget(per_tool={"search": 10}))
    res = ledger.reserve({"tool:search": 8}, kind="tool", name="search")
    assert "search remaining: 2" in budget_block(ledger, ["search"])
    assert regime(ledger) is Regime.LOW
    ledger.release(res)
    assert regime(ledger) is Regime.HIGH


def test_budget_block_with_total_tool_calls_tokens_usd_and_seconds() -> None:
    clock = FakeClock(0.0)
    ledger = Ledger(
        Budget(tool_calls=4, per_tool={"search": 3}, total_tokens=1000, usd=0.5, seconds=60), clock=clock
    )
    call(ledger, "search")
    call(ledger, "read")
    ledger.charge({"total_tokens": 200, "usd": 0.1}, kind="model", name="m")
    clock.now = 10
    block = budget_block(ledger, ["search", "read", "calc"])
    assert block == (
        "<budget>search used: 1, search remaining: 2, "
        "read used: 1, read remaining: 2, "  # read has no own limit: the total tool_calls caps it
        "calc used: 0, calc remaining: 2, "
        "tokens used: 200, tokens remaining: 800, "
        "usd used: 0.1000, usd remaining: 0.4000, "
        "seconds remaining: 50, regime: MEDIUM</budget>"
    )


def test_budget_block_unlimited_tool() -> None:
    ledger = Ledger(Budget(usd=1.0))
    call(ledger, "read", 3)
    block = budget_block(ledger, ["read"])
    assert (
        block
        == "<budget>read used: 3, read remaining: unlimited, usd used: 0, usd remaining: 1, regime: HIGH</budget>"
    )
    assert spent_tools(ledger, ["read"]) == []


def test_budget_block_of_a_child_counts_use_against_the_limit_that_binds() -> None:
    root = Ledger(Budget(per_tool={"search": 10}, total_tokens=1000))
    kid = root.child(Budget(per_tool={"search": 5}), name="kid")
    call(root, "search", 2)
    call(kid, "search", 1)
    root.charge({"total_tokens": 300}, kind="model", name="m")
    # The kid's own cap binds (4 left of 5, the run has 7 of 10): its own call counts, so 1 + 4 = 5.
    # Tokens have no limit in the kid: the run's limit binds, and the run's spend is shown.
    assert budget_block(kid, ["search"]) == (
        "<budget>search used: 1, search remaining: 4, tokens used: 300, tokens remaining: 700, "
        "regime: HIGH</budget>"
    )
    assert budget_block(root, ["search"]) == (
        "<budget>search used: 3, search remaining: 7, tokens used: 300, tokens remaining: 700, "
        "regime: HIGH</budget>"
    )
    call(root, "search", 5)  # now the run's limit binds for the kid too (2 left of 10, the kid has 4)
    assert budget_block(kid, ["search"]).startswith("<budget>search used: 8, search remaining: 2,")


def test_budget_block_of_a_carved_branch_adds_up_to_its_slice() -> None:
    root = Ledger(Budget(tool_calls=10))
    call(root, "search", 4)
    branch = root.child(Budget(tool_calls=3), name="branch", carve=True)
    call(branch, "search", 1)
    assert budget_block(branch, ["search"]).startswith("<budget>search used: 1, search remaining: 2,")
    branch.close()
    assert budget_block(root, ["search"]).startswith("<budget>search used: 5, search remaining: 5,")


def test_spent_tools_lists_a_tool_at_zero() -> None:
    ledger = Ledger(Budget(per_tool={"search": 2, "read": 5}))
    tools = ["search", "read", "calc"]
    assert spent_tools(ledger, tools) == []
    call(ledger, "search", 2)
    assert spent_tools(ledger, tools) == ["search"]
    # a tool at zero is CRITICAL even when the overall ratio is not (read still has 100%)
    assert regime(ledger, ["read"]) is Regime.CRITICAL  # the ratio already counts tool:search at 0
    assert regime(ledger, tools) is Regime.CRITICAL


def test_spent_tools_when_only_the_total_is_left_short() -> None:
    ledger = Ledger(Budget(tool_calls=10, per_tool={"search": 5}))
    ledger.charge({"tool_calls": 9.5}, kind="tool", name="batch")
    assert spent_tools(ledger, ["search", "read"]) == ["search", "read"]  # less than one call left


def test_spent_tools_flags_a_tool_before_the_ratio_gets_critical() -> None:
    root = Ledger(Budget(tool_calls=100))
    kid = root.child(Budget(per_tool={"search": 1}), name="kid")
    assert regime(kid, ["search"]) is Regime.HIGH
    call(kid, "search")
    assert spent_tools(kid, ["search", "read"]) == ["search"]
    assert regime(kid, ["read"]) is Regime.CRITICAL  # the kid's own search limit is at 0 (ratio 0)
    assert regime(root, ["search"]) is Regime.HIGH  # the root does not know the kid's limit
