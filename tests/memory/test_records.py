"""Scopes, items and requests: the typed records every tier reads and returns."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from thrifty.memory import Estimate, MemoryItem, RecallRequest, Scope, WriteRequest, content_id

ALICE = Scope(user_id="alice")


def test_a_scope_names_someone_and_matches_as_a_filter() -> None:
    with pytest.raises(ValidationError, match="at least one"):
        Scope()
    with pytest.raises(ValidationError):
        Scope(user_id="")
    with pytest.raises(ValidationError):
        Scope.of({"user": "alice"})  # a misspelt field is refused, not ignored
    item_scope = Scope(user_id="alice", agent_id="helper", run_id="r1")
    assert ALICE.covers(item_scope) and Scope(run_id="r1").covers(item_scope)
    assert not Scope(user_id="alice", run_id="r2").covers(item_scope)
    assert not item_scope.covers(ALICE)
    assert Scope.of({"user_id": "alice"}) == ALICE and Scope.of(ALICE) is ALICE
    assert item_scope.key == '{"agent_id":"helper","run_id":"r1","user_id":"alice"}'


def test_an_item_is_identified_by_its_scope_and_its_words() -> None:
    a = MemoryItem(text="Alice keeps bees.", scope=ALICE, source="note")
    assert a.id == MemoryItem(text="  Alice keeps\n bees. ", scope=ALICE, source="other").id
    assert a.id != MemoryItem(text="Alice keeps bees.", scope=Scope(user_id="bob")).id
    assert a.id != MemoryItem(text="Alice keeps wasps.", scope=ALICE).id
    assert a.id == content_id(ALICE, "Alice keeps bees.") and len(a.id) == 32


def test_an_item_is_checked_and_its_times_are_utc() -> None:
    with pytest.raises(ValidationError):
        MemoryItem(text="   ", scope=ALICE)
    with pytest.raises(ValidationError, match="valid_to is before valid_from"):
        MemoryItem(text="x", scope=ALICE, valid_from=datetime(2024, 1, 2), valid_to=datetime(2024, 1, 1))
    paris = timezone(timedelta(hours=1))
    item = MemoryItem(text="x", scope=ALICE, valid_from=datetime(2024, 1, 1, 13, tzinfo=paris))
    assert item.valid_from is not None and item.valid_from.tzinfo is UTC
    assert item.valid_from == datetime(2024, 1, 1, 12, tzinfo=UTC)
    naive = MemoryItem(text="x", scope=ALICE, created=datetime(2024, 1, 1))
    assert naive.created == datetime(2024, 1, 1, tzinfo=UTC)
    with pytest.raises(ValidationError):
        item.text = "y"  # type: ignore[misc]


def test_requests_check_their_fields_and_a_write_drops_repeats() -> None:
    first = MemoryItem(text="Alice keeps bees.", scope=ALICE, source="first")
    again = MemoryItem(text="Alice keeps bees. ", scope=ALICE, source="again")
    other = MemoryItem(text="Alice keeps wasps.", scope=ALICE)
    assert WriteRequest(items=(first, again, other)).items == (first, other)
    with pytest.raises(ValidationError):
        RecallRequest(query="bees", k=0, scope=ALICE)
    assert RecallRequest(query="bees", scope=ALICE).k == 5


def test_an_estimate_keeps_only_what_costs_and_adds_up() -> None:
    estimate = Estimate.ops(1, usd=0.0, models={"total_tokens": 300, "usd": 0.002})
    assert dict(estimate.memory) == {"memory_ops": 1.0}
    assert estimate.total() == {"memory_ops": 1.0, "total_tokens": 300.0, "usd": 0.002}
    with pytest.raises(TypeError):
        estimate.memory["usd"] = 1.0  # type: ignore[index]
