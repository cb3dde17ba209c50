"""What memory holds and what is asked of it: scopes, items, the three operations and their outcomes.

Why typed requests (``WriteRequest``, ``RecallRequest``, ``ForgetRequest``) rather than bare arguments: the
same request is first priced (:meth:`MemoryTier.estimate`), then run, and a later router will price one
request against several tiers before choosing; fields added later (a time of reference, a token cap for the
recalled block) then reach every tier without changing a signature.

Why scopes are filters: an item is written under one scope (``user_id``, ``agent_id``, ``run_id``, at least
one set); a scope used to recall or forget matches every item that agrees with it on the fields it sets, so
``Scope(user_id="caroline")`` reaches what Caroline's runs and agents stored, and nothing of another user.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from thrifty.redact import redact, redact_value

__all__ = [
    "ForgetRequest",
    "Forgotten",
    "Level",
    "MemoryItem",
    "MemoryRequest",
    "Op",
    "Outcome",
    "RecallRequest",
    "Recalled",
    "Scope",
    "WriteRequest",
    "Written",
    "content_id",
    "masked",
]

Level = Literal["low", "mid", "high"]  # BudgetMem's tiers: rules / BM25 -> embeddings -> an LLM
Op = Literal["write", "recall", "forget"]

_SCOPE_FIELDS = ("user_id", "agent_id", "run_id")
_Id = Field(default=None, min_length=1, max_length=200, pattern=r"\S")  # not blank


class Scope(BaseModel):
    """Whose memory: a user, an agent, a run, or any combination (at least one)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    user_id: str | None = _Id
    agent_id: str | None = _Id
    run_id: str | None = _Id

    @model_validator(mode="after")
    def _names_someone(self) -> Scope:
        if not self.fields():
            raise ValueError("a memory scope sets at least one of user_id, agent_id, run_id")
        return self

    @classmethod
    def of(cls, value: Scope | Mapping[str, str]) -> Scope:
        """A Scope from itself or from a mapping such as ``{"user_id": "caroline"}``."""
        if isinstance(value, Scope):
            return value
        if not isinstance(value, Mapping):
            raise TypeError(
                f"a memory scope is a mapping such as {{'user_id': 'caroline'}}, not {type(value).__name__} "
                f"{str(value)[:60]!r}"
            )
        return cls.model_validate(dict(value))

    def fields(self) -> dict[str, str]:
        """The fields that are set."""
        return {name: value for name in _SCOPE_FIELDS if (value := getattr(self, name)) is not None}

    @property
    def key(self) -> str:
        """A canonical text form, e.g. ``{"run_id":"r1","user_id":"caroline"}`` (stable across processes)."""
        return json.dumps(self.fields(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    def covers(self, other: Scope) -> bool:
        """Whether ``other`` (an item's scope) agrees with this one on every field this one sets."""
        return all(getattr(other, name) == value for name, value in self.fields().items())


def _utc(value: datetime | None) -> datetime | None:
    """Aware and in UTC (a naive time, as SQLite gives back, is taken to be UTC already)."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _now() -> datetime:
    return datetime.now(UTC)


def content_id(scope: Scope, text: str) -> str:
    """An item's identity: its scope and its text with whitespace runs folded. Writing the same text to the
    same scope again is a no-op; the same text in another scope is another item (forgetting one scope must
    not take it from the other)."""
    folded = " ".join(text.split())
    return hashlib.sha256(f"{scope.key}\x00{folded}".encode()).hexdigest()[:32]


class MemoryItem(BaseModel):
    """One remembered piece of text, with where it came from and when it holds.

    ``created`` is when memory first stored it; ``valid_from`` / ``valid_to`` say when what it states is true
    (e.g. a fact later replaced: Zep-style invalidation keeps it with a ``valid_to``). Tiers store the times
    and may use them; the seam prescribes nothing about them. ``score`` is set on recalled items only.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    text: str = Field(min_length=1)
    scope: Scope
    source: str = Field(
        default="", max_length=500, description="Provenance: 'note', 'turn:D1:3', a run id, ..."
    )
    created: datetime = Field(default_factory=_now)
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    meta: dict[str, Any] = Field(default_factory=dict)
    score: float | None = None

    @field_validator("text")
    @classmethod
    def _has_words(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("a memory item's text is blank")
        return value

    @field_validator("created", "valid_from", "valid_to")
    @classmethod
    def _in_utc(cls, value: datetime | None) -> datetime | None:
        return _utc(value)

    @model_validator(mode="after")
    def _validity_in_order(self) -> MemoryItem:
        if self.valid_from and self.valid_to and self.valid_to < self.valid_from:
            raise ValueError("valid_to is before valid_from")
        return self

    @property
    def id(self) -> str:
        return content_id(self.scope, self.text)

    @property
    def kind(self) -> str:
        """The layer the item belongs to: ``turns`` (a chunk), ``fact``, ``summary`` or ``note`` (default)."""
        return str(self.meta.get("kind") or "note")


def masked(item: MemoryItem) -> MemoryItem:
    """``item`` with any key or secret in its text, source and metadata (session ids, refs) masked by
    :func:`thrifty.redact.redact`: what every write stores (:class:`WriteRequest`) and every read gives back
    (items stored by a version that did not mask). The same item when there is nothing to mask."""
    text, source, meta = redact(item.text), redact(item.source), redact_value(item.meta)
    if text == item.text and source == item.source and meta == item.meta:
        return item
    return item.model_copy(update={"text": text, "source": source, "meta": meta})


# ------------------------------------------------------------------------------------------ requests
class WriteRequest(BaseModel):
    """Store ``items``. Every item is :func:`masked` first (no key is ever stored, whichever tier writes),
    then repeats within the request are dropped (first kept), so a tier sees each id once."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    op: Literal["write"] = "write"
    items: tuple[MemoryItem, ...]

    @field_validator("items")
    @classmethod
    def _distinct(cls, items: tuple[MemoryItem, ...]) -> tuple[MemoryItem, ...]:
        seen: dict[str, MemoryItem] = {}
        for item in map(masked, items):
            seen.setdefault(item.id, item)
        return tuple(seen.values())


class RecallRequest(BaseModel):
    """At most ``k`` items within ``scope``, the most relevant to ``query`` first."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    op: Literal["recall"] = "recall"
    query: str
    k: int = Field(default=5, ge=1)
    scope: Scope
    kinds: frozenset[str] | None = Field(
        default=None,
        description="Only items of these layers (``meta['kind']``: turns, note, fact, summary; an item "
        "without one is a note); None: every item.",
    )


class ForgetRequest(BaseModel):
    """Remove every item within ``scope`` (and nothing else)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    op: Literal["forget"] = "forget"
    scope: Scope


MemoryRequest = WriteRequest | RecallRequest | ForgetRequest


# ------------------------------------------------------------------------------------------ outcomes
class Outcome(BaseModel):
    """What an operation did and what it really cost.

    ``cost``: the Ledger amounts of the memory charge (``memory_ops``, a remote store's ``usd``, ...), settled
    in place of the estimate; None when the estimate was exact. Model calls are not in it: the Gateway has
    charged them already. ``detail`` labels the ledger event (never put recalled or queried text in it: events
    are stored with the run).
    """

    cost: dict[str, float] | None = None
    detail: str = ""


class Written(Outcome):
    added: int = 0
    skipped: int = 0  # already stored (same content in the same scope)
    closed: int = 0  # facts whose validity this write ended (a later fact on the same subject+attribute)


class Recalled(Outcome):
    items: list[MemoryItem] = Field(default_factory=list)


class Forgotten(Outcome):
    removed: int = 0
