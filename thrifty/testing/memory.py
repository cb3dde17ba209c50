"""The conformance suite every memory tier must pass (needs pytest).

Subclass it in your tests and give it a fresh, empty tier per test::

    import pytest
    from thrifty.testing.memory import MemoryTierContract

    class TestMyTier(MemoryTierContract):
        @pytest.fixture
        def tier(self, tmp_path):
            with MyTier(tmp_path / "memory.db") as tier:
                yield tier

(or override :meth:`MemoryTierContract.make_tier` when the tier needs no fixture). Every test runs the tier
through the charged entry point (:class:`thrifty.memory.ChargedMemory`), as an agent would, and checks what
the interface promises: what is written is recalled, within ``k`` and the scope; ``forget`` removes that
scope only; writes are idempotent by content; every operation is a ``kind="memory"`` charge within its
estimate; an operation the budget cannot pay is refused before it runs; a failing operation releases its
reservation. The texts are plain English facts that share their key words with the queries, so a lexical,
dense or LLM tier can pass alike.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, NoReturn

import pytest

from thrifty.budget import Budget, BudgetExceeded, ChargeEvent, Ledger
from thrifty.memory import (
    ChargedMemory,
    Estimate,
    ForgetRequest,
    Forgotten,
    MemoryContext,
    MemoryItem,
    MemoryRequest,
    MemoryTier,
    Recalled,
    RecallRequest,
    Scope,
    WriteRequest,
    Written,
)

__all__ = ["FACTS", "MemoryTierContract"]

ALICE = Scope(user_id="alice")
BOB = Scope(user_id="bob")
FACTS = (
    "Alice moved from Sweden to Lisbon four years ago.",
    "Alice plays the cello in a community orchestra every Thursday.",
    "Alice is allergic to peanuts and carries an epinephrine pen.",
    "Alice adopted a grey cat named Pixel last spring.",
    "Alice works as a marine biologist studying coral reefs.",
)
_EPS = 1e-9


class _Failing(MemoryTier):
    """Wraps a tier and raises during an operation: before the inner tier runs, or after it has run."""

    def __init__(self, inner: MemoryTier, *, after: bool) -> None:
        self.inner = inner
        self.after = after
        self.name = inner.name
        self.level = inner.level

    def estimate(self, request: MemoryRequest) -> Estimate:
        return self.inner.estimate(request)

    def _fail(self, run: Callable[[], object]) -> NoReturn:
        if self.after:
            run()
        raise RuntimeError("storage failed mid-operation")

    def write(self, request: WriteRequest, ctx: MemoryContext) -> Written:
        self._fail(lambda: self.inner.write(request, ctx))

    def recall(self, request: RecallRequest, ctx: MemoryContext) -> Recalled:
        self._fail(lambda: self.inner.recall(request, ctx))

    def forget(self, request: ForgetRequest, ctx: MemoryContext) -> Forgotten:
        self._fail(lambda: self.inner.forget(request, ctx))


def _item(text: str, scope: Scope = ALICE, **fields: Any) -> MemoryItem:
    return MemoryItem.model_validate({"text": text, "scope": scope, **fields})


def _texts(recalled: Recalled) -> list[str]:
    return [i.text for i in recalled.items]


def _memory_events(ledger: Ledger) -> list[ChargeEvent]:
    return [e for e in ledger.events if e.kind == "memory"]


def _nothing_held(ledger: Ledger) -> bool:
    return all(abs(v) < _EPS for v in ledger.reserved.values())


class MemoryTierContract:
    """Base class of a tier's conformance tests (not collected itself: its name does not start with Test)."""

    def make_tier(self) -> MemoryTier:
        """A fresh, empty tier. Override this, or the ``tier`` fixture."""
        raise NotImplementedError("override make_tier() or the `tier` fixture")

    @pytest.fixture
    def tier(self) -> Iterator[MemoryTier]:
        tier = self.make_tier()
        try:
            yield tier
        finally:
            tier.close()

    def memory(self, tier: MemoryTier, budget: Budget | None = None) -> ChargedMemory:
        """The tier behind the charged entry point, on a fresh ledger."""
        return ChargedMemory(tier, Ledger(budget))

    # ----------------------------------------------------------------------------------- identity
    def test_it_names_itself_and_its_level(self, tier: MemoryTier) -> None:
        assert isinstance(tier, MemoryTier)
        assert isinstance(tier.name, str) and tier.name.strip(), "a tier needs a name to label its charges"
        assert tier.level in ("low", "mid", "high")

    # ------------------------------------------------------------------------------ write / recall
    def test_recall_on_an_empty_memory_is_empty(self, tier: MemoryTier) -> None:
        assert self.memory(tier).recall("Where did Alice move from?", ALICE, k=5).items == []

    def test_write_then_recall_finds_it(self, tier: MemoryTier) -> None:
        memory = self.memory(tier)
        written = memory.write(_item(text, source="note") for text in FACTS)
        assert (written.added, written.skipped) == (len(FACTS), 0)
        recalled = memory.recall("Which instrument does Alice play in the orchestra?", ALICE, k=2)
        assert FACTS[1] in _texts(recalled)
        found = next(i for i in recalled.items if i.text == FACTS[1])
        assert found.scope == ALICE and found.source == "note" and found.id == _item(FACTS[1]).id
        scores = [i.score for i in recalled.items]
        assert all(isinstance(s, float) for s in scores), "recalled items carry their score"
        ranked = [s for s in scores if s is not None]
        assert ranked == sorted(ranked, reverse=True), "best first"

    def test_an_item_keeps_its_times_source_and_metadata(self, tier: MemoryTier) -> None:
        memory = self.memory(tier)
        since = datetime(2023, 5, 1, tzinfo=UTC)
        until = datetime(2024, 2, 1, tzinfo=UTC)
        item = _item(
            "Alice's café in Malmö served smörgåstårta on Sundays.",
            source="turn:D3:7",
            valid_from=since,
            valid_to=until,
            meta={"session": 3, "speaker": "Alice"},
        )
        memory.write([item])
        [got] = memory.recall("Which café did Alice run in Malmö?", ALICE, k=1).items
        assert got.model_dump(exclude={"score", "created"}) == item.model_dump(exclude={"score", "created"})

    def test_recall_returns_at_most_k(self, tier: MemoryTier) -> None:
        memory = self.memory(tier)
        memory.write(
            _item(f"Alice planted {plant} in the garden.") for plant in ("tulips", "basil", "roses", "kale")
        )
        for k in (1, 2, 3):
            items = memory.recall("What did Alice plant in the garden?", ALICE, k=k).items
            assert 1 <= len(items) <= k

    def test_recall_stays_within_its_scope(self, tier: MemoryTier) -> None:
        memory = self.memory(tier)
        in_run = Scope(user_id="alice", run_id="r1")
        memory.write([_item("Alice keeps bees on her roof."), _item("Bob keeps bees in his yard.", BOB)])
        memory.write([_item("Alice sold the honey from her bees at the market.", in_run)])
        for scope in (ALICE, BOB, in_run, Scope(run_id="r1"), Scope(user_id="alice", run_id="r2")):
            for item in memory.recall("Who keeps bees?", scope, k=5).items:
                assert scope.covers(item.scope), f"{item.scope} recalled for {scope}"
        assert "Bob keeps bees in his yard." not in _texts(memory.recall("Who keeps bees?", ALICE, k=5))
        assert "Alice keeps bees on her roof." not in _texts(memory.recall("Who keeps bees?", BOB, k=5))
        under_alice = _texts(memory.recall("honey from the bees", ALICE, k=5))  # a narrower scope is within
        assert "Alice sold the honey from her bees at the market." in under_alice
        assert memory.recall("honey from the bees", Scope(user_id="alice", run_id="r2"), k=5).items == []

    def test_recall_keeps_to_the_layers_asked(self, tier: MemoryTier) -> None:
        memory = self.memory(tier)
        memory.write(
            [
                _item("Alice: I keep bees on my roof.", meta={"kind": "turns"}),
                _item("Alice keeps bees on her roof.", meta={"kind": "fact"}),
                _item("Alice's bees made honey.", meta={"kind": "summary"}),
                _item("Alice keeps bees, a note."),
            ]
        )
        assert _texts(memory.recall("Who keeps bees?", ALICE, k=5, kinds={"fact"})) == [
            "Alice keeps bees on her roof."
        ]
        both = memory.recall("Who keeps bees?", ALICE, k=5, kinds={"turns", "note"}).items
        assert both and {i.kind for i in both} <= {"turns", "note"}  # an item without a kind is a note
        assert len(memory.recall("Who keeps bees?", ALICE, k=5).items) >= 3

    def test_queries_of_any_shape_recall_at_most_k_without_error(self, tier: MemoryTier) -> None:
        memory = self.memory(tier)
        memory.write(_item(text) for text in FACTS)
        for query in ("", "?!", "the of and", "Alice " * 1000):
            assert len(memory.recall(query, ALICE, k=2).items) <= 2

    # ------------------------------------------------------------------------------------- forget
    def test_forget_removes_only_that_scope(self, tier: MemoryTier) -> None:
        memory = self.memory(tier)
        in_run = Scope(user_id="alice", run_id="r1")
        memory.write([_item("Alice keeps bees on her roof."), _item("Alice grows lavender for her bees.")])
        memory.write([_item("Alice sold honey from her bees.", in_run), _item("Bob keeps bees.", BOB)])
        assert memory.forget(in_run).removed == 1
        assert _texts(memory.recall("honey bees", ALICE, k=5)).count("Alice sold honey from her bees.") == 0
        assert len(memory.recall("bees", ALICE, k=5).items) == 2
        assert memory.forget(ALICE).removed == 2
        assert memory.recall("bees", ALICE, k=5).items == []
        assert _texts(memory.recall("bees", BOB, k=5)) == ["Bob keeps bees."]
        assert memory.forget(ALICE).removed == 0

    # -------------------------------------------------------------------------------- idempotence
    def test_writes_are_idempotent_by_content(self, tier: MemoryTier) -> None:
        memory = self.memory(tier)
        text = "Alice is allergic to peanuts."
        first = memory.write([_item(text), _item(text)])  # a repeat within one batch counts once
        assert (first.added, first.skipped) == (1, 0)
        again = memory.write([_item(text, source="another run"), _item("  Alice is  allergic to peanuts. ")])
        assert (again.added, again.skipped) == (0, 1)
        assert _texts(memory.recall("Is Alice allergic to peanuts?", ALICE, k=5)) == [text]
        assert memory.write([_item(text, BOB)]).added == 1  # the same words in another scope are another item
        memory.forget(ALICE)
        assert _texts(memory.recall("Is Alice allergic to peanuts?", BOB, k=5)) == [text]

    # ------------------------------------------------------------------------------------ charges
    def test_every_operation_is_charged_as_memory_within_its_estimate(self, tier: MemoryTier) -> None:
        memory = self.memory(tier)
        ledger = memory.ledger
        requests: list[MemoryRequest] = [
            WriteRequest(items=tuple(_item(t) for t in FACTS)),
            RecallRequest(query="Where did Alice move from?", k=3, scope=ALICE),
            ForgetRequest(scope=ALICE),
        ]
        for request in requests:
            estimate = tier.estimate(request)
            before = len(ledger.events)
            memory.run(request)
            new = ledger.events[before:]
            charges = [e for e in new if e.kind == "memory"]
            assert len(charges) == 1, f"{request.op}: one memory charge per operation"
            event = charges[0]
            named = tier.name if isinstance(request, RecallRequest) else f"{request.op}:{tier.name}"
            assert event.name == named and event.ok  # a recall by its tier, a write or forget by what it does
            assert event.units.get("memory_ops", 0) >= 1
            spent = {**event.units, "usd": event.usd}
            for dim, amount in spent.items():
                assert amount <= estimate.memory.get(dim, 0.0) + _EPS, (
                    f"{request.op}: {dim} over its estimate"
                )
            models: dict[str, float] = {}
            for e in new:
                if e.kind == "model":
                    for dim, amount in {**e.units, "usd": e.usd}.items():
                        models[dim] = models.get(dim, 0.0) + amount
            for dim, amount in models.items():
                if dim in ("input_tokens", "output_tokens", "total_tokens", "model_requests", "usd"):
                    assert amount <= estimate.models.get(dim, 0.0) + _EPS, f"{request.op}: model {dim}"
            assert _nothing_held(ledger)
        assert len(_memory_events(ledger)) == 3

    def test_an_operation_the_budget_cannot_pay_is_refused_before_it_runs(self, tier: MemoryTier) -> None:
        memory = self.memory(tier, Budget(memory_ops=1))
        ledger = memory.ledger
        memory.write([_item(FACTS[0])])
        spent, events = dict(ledger.spent), len(ledger.events)
        with pytest.raises(BudgetExceeded) as refused:
            memory.write([_item(FACTS[1])])
        assert refused.value.dimension == "memory_ops"
        with pytest.raises(BudgetExceeded):
            memory.recall("Where did Alice move from?", ALICE)
        with pytest.raises(BudgetExceeded):
            memory.forget(ALICE)
        assert dict(ledger.spent) == spent and len(ledger.events) == events and _nothing_held(ledger)
        assert not memory.can_afford(ForgetRequest(scope=ALICE))
        unlimited = memory.on(Ledger())
        assert _texts(unlimited.recall("Where did Alice move from?", ALICE, k=5)) == [FACTS[0]]
        assert FACTS[1] not in _texts(unlimited.recall("Which instrument does Alice play?", ALICE, k=5))

    def test_memory_on_a_capped_child_ledger_stops_at_its_cap(self, tier: MemoryTier) -> None:
        run = Ledger(Budget(memory_ops=10))
        memory = ChargedMemory(tier, run).capped(Budget(memory_ops=2))
        memory.write([_item(FACTS[0])])
        memory.recall("Where did Alice move from?", ALICE)
        with pytest.raises(BudgetExceeded) as refused:
            memory.recall("Where did Alice move from?", ALICE)
        assert refused.value.ledger == memory.ledger.path
        assert run.spent["memory_ops"] == 2 and run.available("memory_ops") == 8
        assert [e.ledger for e in _memory_events(run)] == [memory.ledger.path] * 2

    @pytest.mark.parametrize("after", [False, True], ids=["before-running", "after-running"])
    def test_a_tier_that_raises_mid_operation_releases_its_reservation(
        self, tier: MemoryTier, after: bool
    ) -> None:
        memory = self.memory(tier)
        memory.write([_item(FACTS[0])])
        broken = ChargedMemory(_Failing(tier, after=after), Ledger(Budget(memory_ops=5)))
        for op in (
            lambda: broken.write([_item(FACTS[1])]),
            lambda: broken.recall("Where did Alice move from?", ALICE),
            lambda: broken.forget(BOB),
        ):
            with pytest.raises(RuntimeError, match="mid-operation"):
                op()
        ledger = broken.ledger
        assert _nothing_held(ledger), "a failed operation released its reservation"
        assert ledger.spent.get("memory_ops", 0) == 0 and _memory_events(ledger) == []
        assert ledger.available("memory_ops") == 5
        if not after:  # nothing ran: the store is as it was
            recalled = memory.recall("Which instrument does Alice play?", ALICE, k=5)
            assert FACTS[1] not in _texts(recalled)
