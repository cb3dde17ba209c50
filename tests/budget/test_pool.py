"""The shared budget: leases of a run's worst case, settled back; never crossed, whatever order things end in."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from thrifty.budget import Budget
from thrifty.budget.pool import BudgetPool, lease_too_big


def test_lease_holds_the_worst_case_until_settled() -> None:
    pool = BudgetPool(Budget(usd=1.0, tool_calls=10))
    assert pool.lease("a", {"usd": 0.4, "tool_calls": 4})
    assert pool.lease("b", {"usd": 0.4, "tool_calls": 4})
    assert not pool.lease("c", {"usd": 0.4, "tool_calls": 1})  # 0.8 held: 0.2 left
    assert pool.refused == 1
    pool.settle("a", {"usd": 0.1, "tool_calls": 1})
    assert pool.lease("c", {"usd": 0.4, "tool_calls": 1})
    assert pool.spent() == {"usd": 0.1, "tool_calls": 1.0}
    assert pool.reserved() == pytest.approx({"usd": 0.8, "tool_calls": 5.0})


def test_abandon_charges_the_worst_case_and_closes_the_id() -> None:
    pool = BudgetPool(Budget(tool_calls=10))
    assert pool.lease("lost", {"tool_calls": 3})
    pool.abandon("lost")
    assert pool.spent() == {"tool_calls": 3.0}
    assert pool.abandoned == 1
    assert not pool.lease("lost", {"tool_calls": 1})  # a late message from the dead worker
    pool.abandon("lost")  # idempotent
    pool.settle("lost", {"tool_calls": 1})  # a settle after the abandon changes nothing
    assert pool.spent() == {"tool_calls": 3.0}
    assert pool.open_leases() == []


def test_release_gives_everything_back() -> None:
    pool = BudgetPool(Budget(total_tokens=100))
    assert pool.lease("a", {"total_tokens": 100})
    pool.release("a")
    assert pool.spent() == {}
    assert pool.lease("b", {"total_tokens": 100})


def test_a_run_that_spent_more_than_its_lease_is_an_overrun_not_hidden() -> None:
    pool = BudgetPool(Budget(usd=1.0))
    assert pool.lease("a", {"usd": 0.9})
    pool.settle("a", {"usd": 1.2})
    snap = pool.snapshot()
    assert snap["spent"] == {"usd": 1.2}
    assert [o["dimension"] for o in snap["overruns"]] == ["usd"]


def test_earlier_spend_counts_against_the_pool() -> None:
    pool = BudgetPool(Budget(usd=1.0))
    pool.record({"usd": 0.7, "tool_calls": 5})
    assert not pool.lease("a", {"usd": 0.5})
    assert pool.lease("a", {"usd": 0.3})


def test_lease_too_big_and_seconds_refused() -> None:
    assert lease_too_big(Budget(tool_calls=2), {"tool_calls": 3}) == (
        "tool_calls: one run may need 3 but the whole budget is 2"
    )
    assert lease_too_big(Budget(tool_calls=2), {"usd": 5.0}) is None
    with pytest.raises(ValueError, match="seconds"):
        BudgetPool(Budget(seconds=5))


# One step: a new run leases (worst case), or a run in flight ends: it settles some fraction of its lease
# (maybe more than all of it: a provider that reported more), or its worker dies (abandon), or it stopped
# before costing anything (release).
_step = st.tuples(
    st.sampled_from(["lease", "settle", "abandon", "release"]),
    st.integers(min_value=0, max_value=50),
    st.floats(min_value=0.0, max_value=1.0),
)


@settings(max_examples=150, deadline=None)
@given(
    cap=st.floats(min_value=0.5, max_value=20.0),
    calls=st.integers(min_value=1, max_value=30),
    steps=st.lists(_step, max_size=80),
)
def test_the_pool_is_never_crossed_by_runs_that_keep_to_their_lease(
    cap: float, calls: int, steps: list[tuple[str, int, float]]
) -> None:
    pool = BudgetPool(Budget(usd=cap, tool_calls=calls))
    open_: dict[str, dict[str, float]] = {}
    for n, (action, size, fraction) in enumerate(steps):
        if action == "lease":
            amounts = {"usd": size / 10, "tool_calls": float(size % 7)}
            if pool.lease(f"r{n}", amounts):
                open_[f"r{n}"] = amounts
        elif open_:
            lease_id = sorted(open_)[size % len(open_)]
            amounts = open_.pop(lease_id)
            if action == "settle":
                pool.settle(lease_id, {dim: v * fraction for dim, v in amounts.items()})
            elif action == "abandon":
                pool.abandon(lease_id)
            else:
                pool.release(lease_id)
        spent, held = pool.spent(), pool.reserved()
        assert spent.get("usd", 0) + held.get("usd", 0) <= cap + 1e-9
        assert spent.get("tool_calls", 0) + held.get("tool_calls", 0) <= calls + 1e-9
    assert pool.snapshot()["overruns"] == []
    assert sorted(pool.open_leases()) == sorted(open_)
