"""Ledger unit tests: reserve / settle / release, limits, children, carving, events and ratios."""

from __future__ import annotations

import math

import pytest

from tests.clocks import FakeClock
from thrifty.budget import Budget, BudgetExceeded, ChargeEvent, Ledger, stop_reason


def tool(ledger: Ledger, n: float = 1, name: str = "search", **extra: float):
    """Reserve ``n`` tool calls of ``name`` (plus any extra dimensions)."""
    return ledger.reserve({"tool_calls": n, f"tool:{name}": n, **extra}, kind="tool", name=name)


def approx_dict(d: dict[str, float]) -> dict[str, float]:
    return {k: pytest.approx(v) for k, v in d.items()}


def nonzero(d: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in d.items() if abs(v) > 1e-12}


# ----------------------------------------------------------------------------------- arithmetic
def test_reserve_holds_and_settle_spends() -> None:
    ledger = Ledger(Budget(tool_calls=10, total_tokens=1000))
    res = ledger.reserve({"tool_calls": 2, "total_tokens": 300}, kind="model", name="m")
    assert ledger.reserved["tool_calls"] == 2
    assert ledger.reserved["total_tokens"] == 300
    assert ledger.spent["tool_calls"] == 0
    assert ledger.remaining() == {"tool_calls": 8.0, "total_tokens": 700.0}
    assert res.open
    ledger.settle(res)
    assert not res.open
    assert ledger.reserved["tool_calls"] == 0
    assert ledger.spent["tool_calls"] == 2
    assert ledger.spent["total_tokens"] == 300
    assert ledger.remaining() == {"tool_calls": 8.0, "total_tokens": 700.0}


def test_settle_with_lower_actual_releases_the_rest() -> None:
    ledger = Ledger(Budget(total_tokens=1000, usd=1.0))
    res = ledger.reserve({"total_tokens": 600, "usd": 0.5}, kind="model", name="m")
    assert ledger.available("total_tokens") == 400
    ledger.settle(res, {"total_tokens": 150, "usd": 0.1})
    assert ledger.spent["total_tokens"] == 150
    assert ledger.reserved["total_tokens"] == 0
    assert ledger.available("total_tokens") == 850
    assert ledger.available("usd") == pytest.approx(0.9)


def test_settle_without_a_reserved_dimension_releases_it() -> None:
    ledger = Ledger(Budget(total_tokens=1000, model_requests=5))
    res = ledger.reserve({"total_tokens": 600, "model_requests": 1}, kind="model", name="m")
    ledger.settle(res, {"model_requests": 1})
    assert ledger.spent["total_tokens"] == 0
    assert ledger.reserved["total_tokens"] == 0
    assert ledger.remaining() == {"model_requests": 4.0, "total_tokens": 1000.0}


def test_settle_records_more_than_reserved() -> None:
    ledger = Ledger(Budget(total_tokens=1000))
    res = ledger.reserve({"total_tokens": 100}, kind="model", name="m")
    ledger.settle(res, {"total_tokens": 130, "input_tokens": 100})
    assert ledger.spent["total_tokens"] == 130
    assert ledger.spent["input_tokens"] == 100  # an unreserved, unlimited dimension is still recorded
    assert ledger.reserved["total_tokens"] == 0
    assert ledger.available("total_tokens") == 870


def test_release_gives_everything_back_and_records_nothing() -> None:
    ledger = Ledger(Budget(tool_calls=3))
    res = tool(ledger, 2)
    ledger.release(res)
    assert not res.open
    assert ledger.reserved["tool_calls"] == 0
    assert ledger.spent["tool_calls"] == 0
    assert ledger.events == []
    assert ledger.remaining()["tool_calls"] == 3


def test_release_is_idempotent_and_settle_twice_fails() -> None:
    ledger = Ledger(Budget(tool_calls=3))
    res = tool(ledger)
    ledger.release(res)
    ledger.release(res)
    assert ledger.reserved["tool_calls"] == 0
    with pytest.raises(RuntimeError):
        ledger.settle(res)
    res2 = tool(ledger)
    ledger.settle(res2)
    with pytest.raises(RuntimeError):
        ledger.settle(res2)
    ledger.release(res2)  # no-op after settle
    assert ledger.spent["tool_calls"] == 1
    assert ledger.reserved["tool_calls"] == 0


def test_charge_reserves_and_settles_at_once() -> None:
    ledger = Ledger(Budget(tool_calls=2))
    event = ledger.charge({"tool_calls": 1}, kind="tool", name="read", detail="d")
    assert event.units == {"tool_calls": 1.0}
    assert event.detail == "d"
    assert ledger.spent["tool_calls"] == 1
    assert ledger.reserved["tool_calls"] == 0
    ledger.charge({"tool_calls": 1}, kind="tool", name="read")
    with pytest.raises(BudgetExceeded):
        ledger.charge({"tool_calls": 1}, kind="tool", name="read")
    assert ledger.spent["tool_calls"] == 2
    assert len(ledger.events) == 2


def test_reserving_context_releases_unless_settled() -> None:
    ledger = Ledger(Budget(tool_calls=3))
    with pytest.raises(KeyError), ledger.reserving({"tool_calls": 2}, kind="tool", name="x"):
        assert ledger.reserved["tool_calls"] == 2
        raise KeyError("boom")
    assert ledger.reserved["tool_calls"] == 0
    with ledger.reserving({"tool_calls": 2}, kind="tool", name="x") as res:
        ledger.settle(res, {"tool_calls": 1})
    assert ledger.spent["tool_calls"] == 1
    assert ledger.reserved["tool_calls"] == 0


def test_zero_amounts_are_ignored_and_negative_or_nan_rejected() -> None:
    ledger = Ledger(Budget(tool_calls=1))
    res = ledger.reserve({"tool_calls": 0, "usd": 0.0}, kind="tool", name="x")
    assert res.amounts == {}
    with pytest.raises(ValueError):
        ledger.reserve({"tool_calls": -1}, kind="tool", name="x")
    with pytest.raises(ValueError):
        ledger.reserve({"tool_calls": math.nan}, kind="tool", name="x")
    assert ledger.reserved["tool_calls"] == 0
    # the limit still holds after the refused NaN
    tool(ledger)
    with pytest.raises(BudgetExceeded):
        tool(ledger)


def test_unlimited_ledger_accepts_anything() -> None:
    ledger = Ledger()
    ledger.charge({"total_tokens": 1e9, "usd": 1e6}, kind="model", name="m")
    assert ledger.remaining() == {}
    assert ledger.remaining_ratio() == 1.0
    assert ledger.available("usd") == math.inf
    assert ledger.limit("usd") is None


def test_exact_fit_is_allowed() -> None:
    ledger = Ledger(Budget(usd=0.3))
    for _ in range(3):
        ledger.charge({"usd": 0.1}, kind="tool", name="search")  # 0.1 * 3 > 0.3 in floats; eps absorbs it
    assert ledger.spent["usd"] == pytest.approx(0.3)
    assert not ledger.can_afford({"usd": 0.01})


# --------------------------------------------------------------------------------- BudgetExceeded
def test_budget_exceeded_carries_dimension_and_stop_reason() -> None:
    ledger = Ledger(Budget(tool_calls=5, per_tool={"search": 2}))
    tool(ledger, 2)
    with pytest.raises(BudgetExceeded) as info:
        tool(ledger, 1)
    exc = info.value
    assert exc.dimension == "tool:search"
    assert exc.stop_reason == "budget_exhausted:tool:search"
    assert exc.requested == 1
    assert exc.available == 0
    assert exc.ledger == "run"
    assert "tool:search" in str(exc)


def test_stop_reason_helper() -> None:
    assert stop_reason("budget_exhausted", "usd") == "budget_exhausted:usd"
    assert stop_reason("completed") == "completed"
    assert stop_reason("budget_exhausted") == "budget_exhausted:unknown"


def test_failed_reservation_holds_nothing() -> None:
    ledger = Ledger(Budget(tool_calls=10, total_tokens=100))
    ledger.charge({"total_tokens": 90}, kind="model", name="m")
    before_reserved = nonzero(ledger.reserved)
    # tool_calls (first) would fit; total_tokens (second) does not: nothing may be held.
    with pytest.raises(BudgetExceeded) as info:
        ledger.reserve({"tool_calls": 3, "total_tokens": 20}, kind="model", name="m")
    assert info.value.dimension == "total_tokens"
    assert nonzero(ledger.reserved) == before_reserved == {}
    assert ledger.reserved["tool_calls"] == 0
    assert ledger.available("tool_calls") == 10


def test_failed_reservation_in_a_child_holds_nothing_anywhere() -> None:
    root = Ledger(Budget(tool_calls=10, usd=1.0))
    kid = root.child(Budget(tool_calls=3), name="kid")
    with pytest.raises(BudgetExceeded) as info:
        kid.reserve({"usd": 0.5, "tool_calls": 4}, kind="tool", name="x")
    assert info.value.dimension == "tool_calls"
    assert info.value.ledger == "run/kid"
    for lg in (root, kid):
        assert nonzero(lg.reserved) == {}
        assert nonzero(lg.spent) == {}


def test_can_afford() -> None:
    ledger = Ledger(Budget(tool_calls=2, usd=0.01))
    assert ledger.can_afford({"tool_calls": 2, "usd": 0.01})
    assert not ledger.can_afford({"tool_calls": 3})
    assert ledger.can_afford({"total_tokens": 1e12})  # unlimited dimension
    tool(ledger, 2)
    assert not ledger.can_afford({"tool_calls": 1})
    assert ledger.can_afford({"tool_calls": 0})


# ----------------------------------------------------------------------------------------- seconds
def test_seconds_limit_with_fake_clock() -> None:
    clock = FakeClock()
    ledger = Ledger(Budget(seconds=10, tool_calls=100), clock=clock)
    tool(ledger)
    assert ledger.remaining()["seconds"] == 10
    clock.advance(4)
    assert ledger.elapsed() == 4
    assert ledger.remaining()["seconds"] == 6
    assert ledger.ratios()["seconds"] == pytest.approx(0.6)
    assert ledger.used()["seconds"] == 4
    tool(ledger)
    clock.advance(6)
    with pytest.raises(BudgetExceeded) as info:
        tool(ledger)
    assert info.value.dimension == "seconds"
    assert info.value.stop_reason == "budget_exhausted:seconds"
    assert ledger.reserved["tool_calls"] == 2  # the refused reservation held nothing
    assert ledger.remaining()["seconds"] == 0
    with pytest.raises(BudgetExceeded):
        ledger.check_time()
    assert "seconds" not in ledger.limits  # seconds is checked, never reserved
    assert ledger.limit("seconds") == 10


def test_seconds_limit_of_an_ancestor_applies_to_children() -> None:
    clock = FakeClock()
    root = Ledger(Budget(seconds=5), clock=clock)
    clock.advance(3)
    kid = root.child(Budget(seconds=10), name="kid")  # its own clock starts now
    assert kid.remaining()["seconds"] == 2
    kid.charge({"tool_calls": 1}, kind="tool", name="x")
    clock.advance(2)
    with pytest.raises(BudgetExceeded) as info:
        kid.charge({"tool_calls": 1}, kind="tool", name="x")
    assert info.value.dimension == "seconds"
    assert info.value.ledger == "run"


def test_event_time_is_relative_to_the_root() -> None:
    clock = FakeClock(50)
    root = Ledger(clock=clock)
    clock.advance(2)
    kid = root.child(name="kid")
    clock.advance(1.5)
    event = kid.charge({"tool_calls": 1}, kind="tool", name="x")
    assert event.time == pytest.approx(3.5)


# ---------------------------------------------------------------------------------------- children
def test_non_carved_child_spend_shows_in_parent() -> None:
    root = Ledger(Budget(tool_calls=10, usd=1.0))
    kid = root.child(Budget(tool_calls=5), name="kid")
    assert kid.path == "run/kid"
    assert kid.root is root
    res = tool(kid, 2, usd=0.1)
    assert root.reserved["tool_calls"] == 2
    assert root.reserved["usd"] == pytest.approx(0.1)
    assert root.remaining()["tool_calls"] == 8
    kid.settle(res, {"tool_calls": 1, "tool:search": 1, "usd": 0.05})
    assert root.spent["tool_calls"] == 1
    assert kid.spent["tool_calls"] == 1
    assert root.usd_spent == pytest.approx(0.05)
    assert nonzero(root.reserved) == {}
    assert kid.remaining() == {"tool_calls": 4.0, "usd": pytest.approx(0.95)}
    assert root.remaining() == {"tool_calls": 9.0, "usd": pytest.approx(0.95)}
    # a non-carved child holds nothing when opened or closed
    kid.close()
    assert root.remaining() == {"tool_calls": 9.0, "usd": pytest.approx(0.95)}


def test_non_carved_child_cannot_exceed_parent_remaining() -> None:
    root = Ledger(Budget(tool_calls=5))
    root.charge({"tool_calls": 3}, kind="tool", name="x")
    kid = root.child(Budget(tool_calls=100), name="kid")
    assert kid.available("tool_calls") == 2
    assert kid.limit("tool_calls") == 5
    assert kid.remaining() == {"tool_calls": 2.0}
    with pytest.raises(BudgetExceeded) as info:
        kid.reserve({"tool_calls": 3}, kind="tool", name="x")
    assert info.value.ledger == "run"
    tool(kid, 2)
    with pytest.raises(BudgetExceeded):
        tool(kid, 1)


def test_siblings_share_the_parent() -> None:
    root = Ledger(Budget(tool_calls=4))
    a = root.child(Budget(tool_calls=3), name="a")
    b = root.child(Budget(tool_calls=3), name="b")
    tool(a, 3)
    assert b.available("tool_calls") == 1
    with pytest.raises(BudgetExceeded):
        tool(b, 2)
    tool(b, 1)


def test_grandchild_charges_the_whole_chain() -> None:
    root = Ledger(Budget(usd=1.0))
    mid = root.child(Budget(usd=0.5), name="mid")
    leaf = mid.child(name="leaf")
    assert leaf.path == "run/mid/leaf"
    leaf.charge({"usd": 0.25}, kind="model", name="m")
    assert [lg.usd_spent for lg in (leaf, mid, root)] == [0.25, 0.25, 0.25]
    with pytest.raises(BudgetExceeded) as info:
        leaf.reserve({"usd": 0.3}, kind="model", name="m")
    assert info.value.ledger == "run/mid"


# ----------------------------------------------------------------------------------------- carving
def test_carved_child_holds_its_slice_at_once() -> None:
    root = Ledger(Budget(tool_calls=10, usd=1.0))
    kid = root.child(Budget(tool_calls=4), name="kid", carve=True)
    assert root.reserved["tool_calls"] == 4
    assert root.remaining()["tool_calls"] == 6
    assert kid.remaining()["tool_calls"] == 4
    assert kid.limit("tool_calls") == 4
    # the slice is the child's, so siblings cannot take it
    sibling = root.child(name="sib")
    with pytest.raises(BudgetExceeded):
        sibling.reserve({"tool_calls": 7}, kind="tool", name="x")
    tool(sibling, 6)
    tool(kid, 4)  # still fits, although the root has nothing left for anyone else
    assert root.available("tool_calls") == 0
    # dimensions the child did not carve come straight from the parent
    kid.charge({"usd": 0.5}, kind="model", name="m")
    assert root.usd_spent == 0.5


def test_carved_spend_is_not_double_counted() -> None:
    root = Ledger(Budget(tool_calls=10))
    kid = root.child(Budget(tool_calls=4), name="kid", carve=True)
    res = tool(kid, 3)
    assert root.reserved["tool_calls"] == 4  # still just the slice
    assert kid.reserved["tool_calls"] == 3
    kid.settle(res, {"tool_calls": 2})
    assert kid.spent["tool_calls"] == 2
    assert root.spent["tool_calls"] == 2
    assert root.reserved["tool_calls"] == 2  # the rest of the slice is still held
    assert root.spent["tool_calls"] + root.reserved["tool_calls"] == 4
    assert kid.remaining()["tool_calls"] == 2
    assert root.remaining()["tool_calls"] == 6


def test_carved_close_refunds_exactly_the_unused_part() -> None:
    root = Ledger(Budget(tool_calls=10, usd=1.0))
    kid = root.child(Budget(tool_calls=4, usd=0.4), name="kid", carve=True)
    assert root.remaining() == {"tool_calls": 6.0, "usd": pytest.approx(0.6)}
    kid.charge({"tool_calls": 1, "usd": 0.15}, kind="tool", name="x")
    kid.settle(kid.reserve({"tool_calls": 2, "usd": 0.2}, kind="tool", name="x"), {"tool_calls": 1})
    kid.close()
    assert kid.closed
    assert root.spent["tool_calls"] == 2
    assert root.usd_spent == pytest.approx(0.15)
    assert nonzero(root.reserved) == {}
    assert root.remaining() == {"tool_calls": 8.0, "usd": pytest.approx(0.85)}
    kid.close()  # idempotent
    assert root.remaining() == {"tool_calls": 8.0, "usd": pytest.approx(0.85)}


def test_carved_child_context_manager_closes() -> None:
    root = Ledger(Budget(tool_calls=10))
    with root.child(Budget(tool_calls=5), name="kid", carve=True) as kid:
        kid.charge({"tool_calls": 2}, kind="tool", name="x")
        assert root.remaining()["tool_calls"] == 5
    assert kid.closed
    assert root.remaining()["tool_calls"] == 8


def test_carve_is_clamped_to_what_is_left() -> None:
    root = Ledger(Budget(tool_calls=10))
    root.charge({"tool_calls": 7}, kind="tool", name="x")
    kid = root.child(Budget(tool_calls=5), name="kid", carve=True)
    assert kid.limits == {"tool_calls": 3.0}
    assert root.available("tool_calls") == 0
    kid.close()
    assert root.available("tool_calls") == 3


def test_carve_raises_when_nothing_is_left() -> None:
    root = Ledger(Budget(tool_calls=2))
    root.charge({"tool_calls": 2}, kind="tool", name="x")
    with pytest.raises(BudgetExceeded) as info:
        root.child(Budget(tool_calls=1), name="kid", carve=True)
    assert info.value.dimension == "tool_calls"
    assert nonzero(root.reserved) == {}


def test_carve_of_unlimited_parent_dimension() -> None:
    root = Ledger(Budget(usd=1.0))
    kid = root.child(Budget(tool_calls=3), name="kid", carve=True)
    tool(kid, 3)
    with pytest.raises(BudgetExceeded):
        tool(kid, 1)
    kid.close()
    assert root.remaining() == {"usd": 1.0}


def test_nested_carve_inside_carve() -> None:
    root = Ledger(Budget(tool_calls=20))
    mid = root.child(Budget(tool_calls=10), name="mid", carve=True)
    leaf = mid.child(Budget(tool_calls=4), name="leaf", carve=True)
    assert root.reserved["tool_calls"] == 10
    assert mid.reserved["tool_calls"] == 4
    assert mid.remaining()["tool_calls"] == 6
    assert root.remaining()["tool_calls"] == 10
    assert leaf.remaining()["tool_calls"] == 4

    leaf.settle(tool(leaf, 3), {"tool_calls": 1})
    assert [lg.spent["tool_calls"] for lg in (leaf, mid, root)] == [1, 1, 1]
    assert mid.reserved["tool_calls"] == 3  # the leaf's slice, less what it spent
    assert root.reserved["tool_calls"] == 9

    mid.charge({"tool_calls": 2}, kind="tool", name="x")
    assert root.spent["tool_calls"] == 3
    leaf.close()
    assert mid.reserved["tool_calls"] == 0
    assert mid.remaining()["tool_calls"] == 7
    assert root.reserved["tool_calls"] == 7
    mid.close()
    assert root.reserved["tool_calls"] == 0
    assert root.remaining()["tool_calls"] == 17
    assert len(root.events) == 2


def test_non_carved_child_of_a_carved_child_draws_from_the_slice() -> None:
    root = Ledger(Budget(tool_calls=10))
    carved = root.child(Budget(tool_calls=4), name="carved", carve=True)
    inner = carved.child(Budget(tool_calls=100), name="inner")
    assert inner.available("tool_calls") == 4
    inner.settle(tool(inner, 3), {"tool_calls": 2})
    assert carved.spent["tool_calls"] == 2
    assert root.spent["tool_calls"] == 2
    assert root.reserved["tool_calls"] == 2
    with pytest.raises(BudgetExceeded) as info:
        tool(inner, 3)
    assert info.value.ledger == "run/carved"
    carved.close()
    assert root.reserved["tool_calls"] == 0
    assert root.remaining()["tool_calls"] == 8


def test_closing_a_carved_child_with_an_open_reservation() -> None:
    """What is still reserved inside stays held until it settles; then its unused part comes back."""
    root = Ledger(Budget(tool_calls=10))
    kid = root.child(Budget(tool_calls=4), name="kid", carve=True)
    res = tool(kid, 2)
    kid.close()
    assert root.reserved["tool_calls"] == 2
    assert root.available("tool_calls") == 8
    kid.settle(res, {"tool_calls": 1})
    assert root.spent["tool_calls"] == 1
    assert root.reserved["tool_calls"] == pytest.approx(0)
    assert root.available("tool_calls") == 9

    res = tool(kid2 := root.child(Budget(tool_calls=3), name="kid2", carve=True), 3)
    kid2.close()
    kid2.release(res)
    assert root.reserved["tool_calls"] == pytest.approx(0)
    assert root.available("tool_calls") == 9


def test_closing_outer_carve_before_inner() -> None:
    root = Ledger(Budget(tool_calls=20))
    mid = root.child(Budget(tool_calls=10), name="mid", carve=True)
    leaf = mid.child(Budget(tool_calls=4), name="leaf", carve=True)
    res = tool(leaf, 2)
    mid.close()
    assert root.reserved["tool_calls"] == 4  # the leaf's slice stays held while the leaf is open
    with pytest.raises(RuntimeError, match="closed"):
        tool(leaf)  # nothing new under a closed ledger
    leaf.settle(res, {"tool_calls": 1})
    assert [lg.spent["tool_calls"] for lg in (leaf, mid, root)] == [1, 1, 1]
    assert root.reserved["tool_calls"] == 3
    leaf.close()
    assert root.reserved["tool_calls"] == pytest.approx(0)
    assert mid.reserved["tool_calls"] == pytest.approx(0)
    assert root.available("tool_calls") == 19


def test_closed_ledger_refuses_reserve_and_child() -> None:
    root = Ledger(Budget(tool_calls=10))
    kid = root.child(name="kid")
    grandkid = kid.child(name="gk")
    kid.close()
    with pytest.raises(RuntimeError, match="closed"):
        tool(kid)
    with pytest.raises(RuntimeError, match="closed"):
        kid.child(name="x")
    with pytest.raises(RuntimeError, match="closed"):
        tool(grandkid)  # under a closed ledger
    tool(root)  # the parent is still open


def test_settle_after_close_of_a_non_carved_child() -> None:
    root = Ledger(Budget(tool_calls=10))
    kid = root.child(name="kid")
    res = tool(kid)
    kid.close()
    kid.settle(res)
    assert root.spent["tool_calls"] == 1
    assert root.reserved["tool_calls"] == 0


# ------------------------------------------------------------------------------------------ events
def test_one_event_per_settle_with_path_kind_name_units_usd() -> None:
    root = Ledger(Budget(usd=1.0))
    kid = root.child(name="sample-2")
    seen: list[ChargeEvent] = []
    kid_seen: list[ChargeEvent] = []
    root.listeners.append(seen.append)
    kid.listeners.append(kid_seen.append)

    res = kid.reserve({"total_tokens": 100, "usd": 0.02}, kind="model", name="gpt-x", node="plan")
    assert root.events == []  # nothing until it settles
    e1 = kid.settle(
        res, {"total_tokens": 40, "input_tokens": 30, "output_tokens": 10, "usd": 0.01}, detail="ok"
    )
    e2 = root.charge({"tool_calls": 1, "tool:search": 1, "usd": 0.001}, kind="tool", name="search")
    failed = kid.reserve({"total_tokens": 10}, kind="model", name="gpt-x")
    e3 = kid.settle(failed, ok=False)
    kid.release(kid.reserve({"total_tokens": 10}, kind="model", name="gpt-x"))  # no event

    assert e1.ledger == "run/sample-2"
    assert e1.kind == "model"
    assert e1.name == "gpt-x"
    assert e1.node == "plan"
    assert e1.units == {"total_tokens": 40, "input_tokens": 30, "output_tokens": 10}
    assert "usd" not in e1.units
    assert e1.usd == 0.01
    assert e1.ok
    assert e1.detail == "ok"
    assert e2.ledger == "run"
    assert e2.kind == "tool"
    assert e2.usd == 0.001
    assert e3.ok is False
    assert e3.usd == 0.0
    assert e3.units == {"total_tokens": 10}
    assert e1.seq < e2.seq < e3.seq

    assert root.events == [e1, e2, e3]
    assert kid.events == [e1, e3]
    assert seen == [e1, e2, e3]
    assert kid_seen == [e1, e3]
    d = e1.to_dict()
    assert d["ledger"] == "run/sample-2"
    assert d["units"] == e1.units
    assert d["usd"] == 0.01


def test_carve_holds_are_not_events() -> None:
    root = Ledger(Budget(tool_calls=10))
    kid = root.child(Budget(tool_calls=3), name="kid", carve=True)
    kid.close()
    assert root.events == []
    assert kid.events == []


# ------------------------------------------------------------------------------------------ ratios
def test_remaining_ratio_is_the_minimum_over_dimensions() -> None:
    ledger = Ledger(Budget(tool_calls=10, usd=1.0))
    assert ledger.remaining_ratio() == 1.0
    ledger.charge({"tool_calls": 2, "usd": 0.5}, kind="tool", name="x")
    assert ledger.ratios() == {"tool_calls": pytest.approx(0.8), "usd": pytest.approx(0.5)}
    assert ledger.remaining_ratio() == pytest.approx(0.5)
    tool(ledger, 7)  # reservations count as used
    assert ledger.remaining_ratio() == pytest.approx(0.1)


def test_remaining_ratio_includes_ancestors() -> None:
    root = Ledger(Budget(tool_calls=10))
    kid = root.child(Budget(usd=1.0), name="kid")
    root.charge({"tool_calls": 8}, kind="tool", name="x")
    assert kid.ratios() == {"tool_calls": pytest.approx(0.2), "usd": 1.0}
    assert kid.remaining_ratio() == pytest.approx(0.2)
    kid.charge({"usd": 0.9}, kind="model", name="m")
    assert kid.remaining_ratio() == pytest.approx(0.1)
    assert root.remaining_ratio() == pytest.approx(0.2)  # the child's own limit does not bind the root


def test_remaining_ratio_of_a_child_judges_each_ledger_by_its_own_limit() -> None:
    root = Ledger(Budget(tool_calls=100))
    kid = root.child(Budget(tool_calls=10), name="kid")
    tool(kid, 5)
    assert kid.remaining_ratio() == pytest.approx(0.5)
    assert root.remaining_ratio() == pytest.approx(0.95)


def test_fresh_carved_child_has_its_whole_slice() -> None:
    root = Ledger(Budget(tool_calls=10, usd=1.0))
    kid = root.child(Budget(tool_calls=8), name="kid", carve=True)
    assert root.remaining_ratio() == pytest.approx(0.2)  # the slice is held in the parent
    assert kid.ratios() == {"tool_calls": 1.0, "usd": 1.0}
    tool(kid, 2)
    assert kid.remaining_ratio() == pytest.approx(0.75)
    root.charge({"usd": 0.6}, kind="model", name="m")  # uncarved dimensions still follow the parent
    assert kid.remaining_ratio() == pytest.approx(0.4)


def test_used_and_remaining_helpers() -> None:
    clock = FakeClock()
    ledger = Ledger(Budget(tool_calls=3, per_tool={"search": 2}), clock=clock)
    ledger.charge({"tool_calls": 1, "tool:search": 1}, kind="tool", name="search")
    clock.advance(1)
    assert ledger.used() == {"tool_calls": 1, "tool:search": 1, "seconds": 1}
    assert ledger.remaining() == {"tool:search": 1.0, "tool_calls": 2.0}
    assert approx_dict(ledger.ratios()) == {"tool:search": 0.5, "tool_calls": pytest.approx(2 / 3)}


# Issue 14 item 6: a settle that takes a limit past its end is an explicit event, never silent.
def test_an_actual_amount_beyond_the_limit_is_recorded_as_an_overrun() -> None:
    run = Ledger(Budget(usd=1.0))
    branch = run.child(Budget(usd=0.12), name="branch")
    res = branch.reserve({"usd": 0.10}, kind="model", name="m")
    event = branch.settle(res, {"usd": 0.15})
    assert [(o.ledger, o.dimension, o.limit, o.spent) for o in branch.overruns] == [
        ("run/branch", "usd", 0.12, 0.15)
    ]
    assert run.overruns == branch.overruns  # seen from the run too
    assert branch.overruns[0].seq == event.seq and "overran run/branch usd limit 0.12" in event.detail
    # within the limit, or a dimension without one: nothing recorded
    res = run.reserve({"usd": 0.1}, kind="model", name="m")
    run.settle(res, {"usd": 0.2, "input_tokens": 5})
    assert len(run.overruns) == 1


def test_an_overrun_through_a_carved_slice_is_recorded_for_the_slice() -> None:
    run = Ledger(Budget(total_tokens=100))
    carved = run.child(Budget(total_tokens=10), name="c", carve=True)
    res = carved.reserve({"total_tokens": 10}, kind="model", name="m")
    carved.settle(res, {"total_tokens": 14})
    assert [(o.ledger, o.spent) for o in carved.overruns] == [("run/c", 14.0)]
    assert run.spent["total_tokens"] == 14.0 and not [o for o in run.overruns if o.ledger == "run"]


def test_a_run_that_ends_past_its_time_limit_records_a_seconds_overrun() -> None:
    now = [0.0]
    ledger = Ledger(Budget(seconds=1.0, tool_calls=5), clock=lambda: now[0])
    res = ledger.reserve({"tool_calls": 1}, kind="tool", name="t")
    now[0] = 1.2  # within the grace: the time it takes to notice and stop
    ledger.settle(res)
    assert ledger.overruns == []
    now[0] = 3.0  # an in-process call that could not be interrupted ran on
    ledger.note_overtime()
    now[0] = 4.0
    ledger.note_overtime()
    assert [(o.dimension, o.limit, o.spent) for o in ledger.overruns] == [("seconds", 1.0, 4.0)]


def test_a_child_ledger_takes_back_its_charges_without_charging_its_parents_again() -> None:
    """A resumed run of `agent serve` restores its charges into a child of the server's budget: the child
    spends them again, its parents (which counted them when they were made) do not, and the tree's shared
    numbering moves past them."""
    first_root = Ledger(Budget(tool_calls=10))
    first = first_root.child(Budget(tool_calls=4), name="run")
    events = [first.charge({"tool_calls": 1}, kind="tool", name="t") for _ in range(3)]
    assert [e.seq for e in events] == [1, 2, 3]

    root = Ledger(Budget(tool_calls=10))  # a new process: a fresh server budget
    other = root.child(name="other")
    other.charge({"tool_calls": 1}, kind="tool", name="t")
    run = root.child(Budget(tool_calls=4), name="run")
    run.restore(events, elapsed=2.0)
    assert run.used()["tool_calls"] == 3 and run.available("tool_calls") == 1
    assert root.used()["tool_calls"] == 1  # only what was spent in this process
    nxt = run.charge({"tool_calls": 1}, kind="tool", name="t")
    assert nxt.seq > 3 and other.charge({"tool_calls": 1}, kind="tool", name="t").seq > nxt.seq
    with pytest.raises(BudgetExceeded):
        run.charge({"tool_calls": 1}, kind="tool", name="t")


def test_a_time_limit_that_has_passed_says_so() -> None:
    # a check of the clock said "cannot pay 0 seconds: only 0 left"; a reservation keeps its amounts
    clock = FakeClock()
    ledger = Ledger(Budget(seconds=2), clock=clock)
    clock.advance(3)
    with pytest.raises(BudgetExceeded) as info:
        ledger.check_time()
    assert str(info.value) == "budget 'run' is out of time: its seconds limit has passed"
    assert str(BudgetExceeded("seconds", 3, 1)) == "budget 'run' cannot pay 3 seconds: only 1 left"


def test_spent_lists_dimensions_in_the_order_they_were_charged_whatever_the_hash_seed() -> None:
    """``ledger.spent`` is shown to users (the README prints it): its key order must not follow set order,
    which changes with PYTHONHASHSEED from one process to the next."""
    import os
    import subprocess
    import sys

    script = (
        "from thrifty.budget import Budget, Ledger\n"
        "ledger = Ledger(Budget(tool_calls=5))\n"
        "for tool in ('add', 'echo'):\n"
        "    r = ledger.reserve({'tool_calls': 1, 'usd': 0.002, f'tool:calc_{tool}': 1}, kind='tool', name=tool)\n"
        "    ledger.settle(r)\n"
        "print(list(ledger.spent))\n"
    )
    orders = {
        subprocess.run(
            [sys.executable, "-c", script],
            env={**os.environ, "PYTHONHASHSEED": str(seed)},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for seed in range(8)
    }
    assert orders == {"['tool_calls', 'usd', 'tool:calc_add', 'tool:calc_echo']"}
