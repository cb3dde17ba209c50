"""Property tests of the Ledger: random operation sequences, threads and asyncio tasks.

Invariants checked:

* no ledger ever has ``spent + reserved`` above a limit (for carved children: above their slice);
* nothing is ever reserved below zero;
* every ledger's ``spent`` equals the sum of the events it saw (units, and ``usd`` from ``event.usd``);
* once every reservation has ended and every child has closed, nothing is reserved anywhere.
"""

from __future__ import annotations

import asyncio
import random
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from thrifty.budget import Budget, BudgetExceeded, Ledger, Reservation

DIMS = ("tool_calls", "total_tokens", "usd")
TOL = 1e-6


# ------------------------------------------------------------------------------------------- helpers
def budgets(small: bool = False) -> st.SearchStrategy[Budget]:
    """A Budget over tool_calls / total_tokens / usd, each dimension limited or not (children: at least one)."""
    scale = 0.5 if small else 1.0
    strategy = st.builds(
        Budget,
        tool_calls=st.none() | st.integers(1, int(20 * scale)),
        total_tokens=st.none() | st.integers(50, int(2000 * scale)),
        usd=st.none() | st.floats(0.01, 2.0 * scale, allow_nan=False, allow_infinity=False),
    )
    return strategy.filter(lambda b: not b.is_unlimited()) if small else strategy


amounts_st = st.fixed_dictionaries(
    {},
    optional={
        "tool_calls": st.integers(1, 3),
        "total_tokens": st.integers(1, 400),
        "usd": st.floats(0.0005, 0.4, allow_nan=False, allow_infinity=False),
    },
)


def event_sums(ledger: Ledger) -> dict[str, float]:
    sums: defaultdict[str, float] = defaultdict(float)
    for event in ledger.events:
        for dim, value in event.units.items():
            sums[dim] += value
        sums["usd"] += event.usd
    return sums


def check_invariants(ledgers: list[Ledger]) -> None:
    for lg in ledgers:
        for dim, limit in lg.limits.items():
            # 1e-9: the ledger's own tolerance for an exact fit; 1e-12: float rounding of the running sums
            assert lg.spent[dim] + lg.reserved[dim] <= limit + 1e-9 + 1e-12, (lg.path, dim)
        for dim in DIMS:
            assert lg.reserved[dim] >= -TOL, (lg.path, dim, lg.reserved[dim])
        sums = event_sums(lg)
        for dim in set(sums) | {d for d, v in lg.spent.items() if v}:
            assert lg.spent[dim] == pytest.approx(sums[dim], abs=TOL), (lg.path, dim)


def check_drained(ledgers: list[Ledger]) -> None:
    for lg in ledgers:
        for dim in DIMS:
            assert lg.reserved[dim] == pytest.approx(0, abs=TOL), (lg.path, dim)
    root = ledgers[0].root
    for dim, limit in root.limits.items():
        assert root.available(dim) == pytest.approx(limit - root.spent[dim], abs=TOL)


@contextmanager
def fast_switching() -> Iterator[None]:
    """Make threads switch often, so that unlocked code would interleave badly."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(old)


def actual_for(res: Reservation, fractions: list[float]) -> dict[str, float]:
    """What a call really spent: each reserved dimension times a fraction in [0, 1]."""
    out: dict[str, float] = {}
    for i, (dim, amount) in enumerate(sorted(res.amounts.items())):
        value = amount * fractions[i % len(fractions)]
        out[dim] = float(int(value)) if dim != "usd" else value
    return out


# ------------------------------------------------------------------------ (1) random operation sequences
class LedgerMachine(RuleBasedStateMachine):
    """Random trees of plain and carved children, with reservations settled, released or left open."""

    def __init__(self) -> None:
        super().__init__()
        self.root = Ledger()
        self.ledgers: list[Ledger] = []
        self.open_res: list[Reservation] = []

    def usable(self) -> list[Ledger]:
        """Ledgers that may still reserve or open children (no closed ledger on the way up)."""
        return [lg for lg in self.ledgers if not any(a.closed for a in lg._lineage)]

    @initialize(budget=budgets())
    def open_root(self, budget: Budget) -> None:
        self.root = Ledger(budget, name="run")
        self.ledgers.append(self.root)

    @precondition(lambda self: len(self.ledgers) < 8)
    @rule(data=st.data(), budget=budgets(small=True), carve=st.booleans())
    def open_child(self, data: st.DataObject, budget: Budget, carve: bool) -> None:
        parents = self.usable()
        parent = data.draw(st.sampled_from(parents))
        try:
            kid = parent.child(budget, name=f"c{len(self.ledgers)}", carve=carve)
        except BudgetExceeded:
            return
        self.ledgers.append(kid)

    @rule(data=st.data(), amounts=amounts_st)
    def reserve(self, data: st.DataObject, amounts: dict[str, float]) -> None:
        lg = data.draw(st.sampled_from(self.usable()))
        before = {(x.path, d): x.reserved[d] for x in self.ledgers for d in DIMS}
        try:
            res = lg.reserve(amounts, kind="tool", name="t")
        except BudgetExceeded as exc:
            assert exc.stop_reason == f"budget_exhausted:{exc.dimension}"
            # a refused reservation holds nothing, anywhere
            assert {(x.path, d): x.reserved[d] for x in self.ledgers for d in DIMS} == before
            return
        self.open_res.append(res)

    @precondition(lambda self: bool(self.open_res))
    @rule(data=st.data(), fractions=st.lists(st.floats(0, 1), min_size=1, max_size=3))
    def settle(self, data: st.DataObject, fractions: list[float]) -> None:
        res = self.open_res.pop(data.draw(st.integers(0, len(self.open_res) - 1)))
        n_events = len(self.root.events)
        event = res.ledger.settle(res, actual_for(res, fractions))
        assert len(self.root.events) == n_events + 1
        assert self.root.events[-1] is event
        assert event.ledger == res.ledger.path

    @precondition(lambda self: bool(self.open_res))
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        res = self.open_res.pop(data.draw(st.integers(0, len(self.open_res) - 1)))
        res.ledger.release(res)

    @precondition(lambda self: len(self.ledgers) > 1)
    @rule(data=st.data())
    def close(self, data: st.DataObject) -> None:
        lg = data.draw(st.sampled_from(self.ledgers[1:]))
        lg.close()

    @invariant()
    def limits_hold(self) -> None:
        check_invariants(self.ledgers)

    @invariant()
    def readings_are_current(self) -> None:
        # Readings are reused until the tree changes: one made now must equal one made from scratch, so
        # any change that forgot to invalidate them shows up here (the previous check read every ledger).
        for lg in self.ledgers:
            dims = sorted(set(lg.availability()) - {"seconds"})
            reused = (lg.availability(), lg.ratios(), [lg.binding(d) for d in dims])
            lg._reading = None
            assert reused == (lg.availability(), lg.ratios(), [lg.binding(d) for d in dims]), lg.path

    def teardown(self) -> None:
        if not self.ledgers:
            return
        # close every child (deepest first or not, it must not matter), then end every reservation
        for lg in reversed(self.ledgers[1:]):
            lg.close()
        check_invariants(self.ledgers)
        for i, res in enumerate(self.open_res):
            if i % 2:
                res.ledger.release(res)
            else:
                res.ledger.settle(res, actual_for(res, [0.5]))
            check_invariants(self.ledgers)
        check_drained(self.ledgers)


LedgerMachine.TestCase.settings = settings(
    max_examples=75,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestLedgerMachine = LedgerMachine.TestCase


# ------------------------------------------------------------------------------------------ (2) threads
@dataclass
class Op:
    target: int  # index into the ledgers the threads share
    amounts: dict[str, float]
    outcome: str  # "settle" | "release"
    fraction: float


ops_st = st.builds(
    Op,
    target=st.integers(0, 3),
    amounts=amounts_st,
    outcome=st.sampled_from(["settle", "settle", "release"]),
    fraction=st.floats(0, 1),
)


def shared_tree(root_budget: Budget, kid_budget: Budget, carved_budget: Budget) -> list[Ledger]:
    """A root, a plain child, a carved child (if the root can pay its slice) and a plain grandchild."""
    root = Ledger(root_budget)
    plain = root.child(kid_budget, name="plain")
    try:
        carved = root.child(carved_budget, name="carved", carve=True)
    except BudgetExceeded:
        carved = root.child(carved_budget, name="carved")
    grandkid = carved.child(kid_budget, name="grandkid")
    return [root, plain, carved, grandkid]


OPS_PER_THREAD = 150


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    root_budget=budgets(),
    kid_budget=budgets(small=True),
    carved_budget=budgets(small=True),
    plans=st.lists(st.lists(ops_st, min_size=1, max_size=25), min_size=8, max_size=8),
)
def test_threads_never_break_a_limit(
    root_budget: Budget, kid_budget: Budget, carved_budget: Budget, plans: list[list[Op]]
) -> None:
    ledgers = shared_tree(root_budget, kid_budget, carved_budget)
    root = ledgers[0]
    refused = [0] * len(plans)
    settled = [0] * len(plans)
    errors: list[BaseException] = []
    done = threading.Event()
    barrier = threading.Barrier(len(plans) + 1)

    def worker(i: int, plan: list[Op]) -> None:
        try:
            barrier.wait()
            for step in range(OPS_PER_THREAD):
                op = plan[step % len(plan)]
                lg = ledgers[op.target]
                try:
                    res = lg.reserve(op.amounts, kind="tool", name=f"t{i}")
                except BudgetExceeded as exc:
                    assert exc.stop_reason.startswith("budget_exhausted:")
                    refused[i] += 1
                    continue
                time.sleep(0)  # the call is "in flight": let the other threads in
                if op.outcome == "settle":
                    lg.settle(res, actual_for(res, [op.fraction]))
                    settled[i] += 1
                else:
                    lg.release(res)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    def monitor() -> None:
        """Check the invariants again and again while the workers run (a consistent view, under the lock)."""
        try:
            barrier.wait()
            while not done.is_set():
                with root._lock:
                    check_invariants(ledgers)
                time.sleep(0)
        except BaseException as exc:
            errors.append(exc)

    with fast_switching():
        threads = [threading.Thread(target=worker, args=(i, plan)) for i, plan in enumerate(plans)]
        watcher = threading.Thread(target=monitor)
        watcher.start()
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        done.set()
        watcher.join(timeout=30)
    assert not errors, errors[0]
    assert all(not t.is_alive() for t in [*threads, watcher])

    check_invariants(ledgers)
    assert len(root.events) == sum(settled)
    assert sum(settled) + sum(refused) <= OPS_PER_THREAD * len(plans)
    assert len({e.seq for e in root.events}) == len(root.events)  # sequence numbers never repeat
    # every reservation has ended: only the carved slice is still held (in the root)
    for lg in ledgers[1:]:
        for dim in DIMS:
            assert lg.reserved[dim] == pytest.approx(0, abs=TOL), (lg.path, dim)
    for lg in reversed(ledgers[1:]):
        lg.close()
    check_drained(ledgers)
    check_invariants(ledgers)


# ------------------------------------------------------------------------------------------ (3) asyncio
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    root_budget=budgets(),
    kid_budget=budgets(small=True),
    carved_budget=budgets(small=True),
    plans=st.lists(st.lists(ops_st, min_size=1, max_size=15), min_size=4, max_size=30),
    seed=st.integers(0, 2**16),
)
def test_asyncio_tasks_never_break_a_limit(
    root_budget: Budget, kid_budget: Budget, carved_budget: Budget, plans: list[list[Op]], seed: int
) -> None:
    ledgers = shared_tree(root_budget, kid_budget, carved_budget)
    root = ledgers[0]
    rng = random.Random(seed)
    settled = released = refused = 0

    async def task(i: int, plan: list[Op]) -> None:
        nonlocal settled, released, refused
        for op in plan:
            lg = ledgers[op.target]
            await asyncio.sleep(0)
            try:
                res = lg.reserve(op.amounts, kind="model", name=f"task{i}")
            except BudgetExceeded:
                refused += 1
                continue
            for _ in range(rng.randint(0, 3)):  # the "call" takes a few turns of the loop
                await asyncio.sleep(0)
                check_invariants(ledgers)
            if op.outcome == "settle":
                lg.settle(res, actual_for(res, [op.fraction]))
                settled += 1
            else:
                lg.release(res)
                released += 1

    async def main() -> None:
        await asyncio.gather(*(task(i, plan) for i, plan in enumerate(plans)))

    asyncio.run(main())
    check_invariants(ledgers)
    assert settled + released + refused == sum(len(plan) for plan in plans)
    assert len(root.events) == settled
    for lg in ledgers[1:]:
        for dim in DIMS:
            assert lg.reserved[dim] == pytest.approx(0, abs=TOL), (lg.path, dim)
    for lg in reversed(ledgers[1:]):
        lg.close()
    check_drained(ledgers)
    check_invariants(ledgers)
