"""The LOW lexical tier: the conformance suite, then what is particular to it (storage, caching, pricing)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from thrifty.budget import Budget, Ledger
from thrifty.memory import ChargedMemory, LexicalTier, MemoryItem, MemoryTier, Scope
from thrifty.store import RunStore, make_engine
from thrifty.testing.memory import FACTS, MemoryTierContract

ALICE = Scope(user_id="alice")


class TestLexicalInMemory(MemoryTierContract):
    def make_tier(self) -> MemoryTier:
        return LexicalTier()


class TestLexicalOnDisk(MemoryTierContract):
    @pytest.fixture
    def tier(self, tmp_path: Path) -> Iterator[MemoryTier]:
        with LexicalTier(tmp_path / "memory.db") as tier:
            yield tier


def test_memories_outlive_the_process_that_wrote_them(tmp_path: Path) -> None:
    db = tmp_path / "memory.db"
    with LexicalTier(db) as tier:
        ChargedMemory(tier, Ledger()).write(MemoryItem(text=t, scope=ALICE) for t in FACTS)
    with LexicalTier(str(db)) as again:
        recalled = ChargedMemory(again, Ledger()).recall("Where did Alice move from?", ALICE, k=1)
    assert [i.text for i in recalled.items] == [FACTS[0]]


def test_a_recall_sees_what_another_writer_stored_since_its_index_was_built(tmp_path: Path) -> None:
    db = tmp_path / "memory.db"
    reader, writer = LexicalTier(db), LexicalTier(db)
    try:
        memory = ChargedMemory(reader, Ledger())
        assert memory.recall("cello", ALICE).items == []  # builds (and caches) an empty index
        ChargedMemory(writer, Ledger()).remember(FACTS[1], ALICE)
        assert [i.text for i in memory.recall("cello", ALICE).items] == [FACTS[1]]
        ChargedMemory(writer, Ledger()).forget(ALICE)
        assert memory.recall("cello", ALICE).items == []
    finally:
        reader.close()
        writer.close()


def test_memory_and_the_run_store_can_share_one_database(tmp_path: Path) -> None:
    db = tmp_path / "thrifty.db"
    RunStore(db)
    with LexicalTier(db) as tier:
        ChargedMemory(tier, Ledger()).remember("Alice keeps bees.", ALICE)
        assert tier.count() == 1 and tier.count(Scope(user_id="bob")) == 0
    assert RunStore(db).recent() == []


def test_a_priced_tier_charges_its_dollars_and_an_engine_can_be_shared() -> None:
    engine = make_engine(":memory:")
    tier = LexicalTier(engine, name="lexical-paid", usd_per_op=0.001)
    ledger = Ledger(Budget(usd=0.0025))
    memory = ChargedMemory(tier, ledger)
    memory.remember("Alice keeps bees.", ALICE)
    memory.recall("bees", ALICE)
    with pytest.raises(Exception, match="usd"):
        memory.forget(ALICE)
    assert [(e.name, e.usd, e.detail) for e in ledger.events] == [
        ("write:lexical-paid", 0.001, "added=1 skipped=0"),
        ("lexical-paid", 0.001, "items=1"),
    ]
    tier.close()
    assert LexicalTier(engine).count() == 1  # closing a tier does not dispose an engine it was given


def test_items_of_stopwords_only_are_stored_but_never_match() -> None:
    memory = ChargedMemory(LexicalTier(), Ledger())
    assert memory.remember("the of and", ALICE).added == 1
    assert memory.recall("the of and", ALICE).items == []


def test_concurrent_writers_store_each_item_once() -> None:
    tier = LexicalTier()
    items = [MemoryItem(text=f"Alice visited city number {n}.", scope=ALICE) for n in range(30)]
    added: list[int] = []

    def write() -> None:
        added.append(ChargedMemory(tier, Ledger()).write(items).added)

    threads = [threading.Thread(target=write) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(added) == 30 and tier.count(ALICE) == 30
