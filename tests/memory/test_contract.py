"""The conformance suite passes for a second, unrelated tier, and fails a tier that breaks any promise."""

from __future__ import annotations

import pytest

from thrifty.memory import MemoryTier, MemoryTierError
from thrifty.testing.memory import MemoryTierContract

from .reference import WordTier


class TestWordTier(MemoryTierContract):
    def make_tier(self) -> MemoryTier:
        return WordTier()


@pytest.mark.parametrize(
    ("broken", "test"),
    [
        ("scope", "test_recall_stays_within_its_scope"),
        ("kinds", "test_recall_keeps_to_the_layers_asked"),
        ("k", "test_recall_returns_at_most_k"),
        ("duplicates", "test_writes_are_idempotent_by_content"),
        ("forget-all", "test_forget_removes_only_that_scope"),
        ("overcharge", "test_every_operation_is_charged_as_memory_within_its_estimate"),
        ("unscored", "test_write_then_recall_finds_it"),
    ],
)
def test_the_suite_fails_a_tier_that_breaks_a_promise(broken: str, test: str) -> None:
    with pytest.raises((AssertionError, MemoryTierError)):
        getattr(MemoryTierContract(), test)(WordTier(broken=broken))
    getattr(MemoryTierContract(), test)(WordTier())  # and the same test passes for the unbroken tier


def test_the_suite_itself_is_not_collected_and_asks_for_a_tier() -> None:
    assert not MemoryTierContract.__name__.startswith("Test")
    with pytest.raises(NotImplementedError, match="make_tier"):
        MemoryTierContract().make_tier()
