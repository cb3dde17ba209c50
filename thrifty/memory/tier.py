"""The interface a memory tier implements.

A tier is one way of keeping and finding memories at one cost level (BudgetMem's axis: LOW rules or BM25,
MID embeddings, HIGH an LLM). It never charges anything itself and is never called directly by an agent:
every operation goes through :func:`thrifty.memory.charge` (or :class:`~thrifty.memory.ChargedMemory`),
which reserves the tier's :meth:`~MemoryTier.estimate` on the Ledger before the operation runs.

What a tier promises (checked by :class:`thrifty.testing.memory.MemoryTierContract`):

* ``estimate(request)`` is cheap, has no side effects, and is an upper bound: it includes at least one
  ``memory_ops``, and the cost an operation reports afterwards never exceeds it;
* ``write`` is all or nothing, and idempotent by :attr:`MemoryItem.id` (same text, same scope): items already
  stored are skipped and counted as such;
* ``recall`` returns at most ``k`` items, all within the request's scope, best first, each with a score;
  an empty memory gives an empty list;
* ``forget`` removes exactly the items within the scope and says how many;
* model calls (an LLM tier) go through a :class:`thrifty.models.Gateway` on ``ctx.ledger``, labelled with
  ``ctx.node``: the Gateway charges them as model calls within the same limits (a memory cap included), and
  their worst case goes in :attr:`Estimate.models` so that an operation the budget cannot pay never starts.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Self

from thrifty.budget import Ledger
from thrifty.memory.records import (
    ForgetRequest,
    Forgotten,
    Level,
    MemoryRequest,
    Recalled,
    RecallRequest,
    WriteRequest,
    Written,
)

__all__ = ["Estimate", "MemoryContext", "MemoryTier"]


def _frozen(amounts: Mapping[str, float]) -> Mapping[str, float]:
    return MappingProxyType({dim: float(v) for dim, v in amounts.items() if v})


@dataclass(frozen=True)
class Estimate:
    """The worst-case cost of one operation, in Ledger amounts.

    ``memory`` is reserved as the operation's own charge (``kind="memory"``) and settled with what the
    operation reports; it must hold at least one ``memory_ops``. ``models`` is the worst case of the model
    calls the operation will make through the Gateway: checked against the budget before the operation
    starts, but not reserved here, since the Gateway reserves and charges each call itself.
    """

    memory: Mapping[str, float]
    models: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "memory", _frozen(self.memory))
        object.__setattr__(self, "models", _frozen(self.models))

    @classmethod
    def ops(cls, n: int = 1, *, usd: float = 0.0, models: Mapping[str, float] | None = None) -> Estimate:
        """``n`` memory operations (plus their dollars, and the worst case of the model calls if any)."""
        return cls({"memory_ops": n, "usd": usd}, models or {})

    def total(self) -> dict[str, float]:
        """Everything the operation may spend, memory charge and model calls together."""
        out = dict(self.memory)
        for dim, amount in self.models.items():
            out[dim] = out.get(dim, 0.0) + amount
        return out


@dataclass(frozen=True)
class MemoryContext:
    """What an operation runs against: the ledger it is charged to (the run's, or a capped child) and the
    node that labels its charges. An LLM tier builds its Gateway on ``ledger``."""

    ledger: Ledger
    node: str | None = "memory"


class MemoryTier(ABC):
    """One memory tier. Subclasses set ``name`` (labels its charges; unique among the tiers of a run) and
    ``level``, and implement the four methods below; see the module docstring for what each promises."""

    name: str = ""
    level: Level = "low"

    @abstractmethod
    def estimate(self, request: MemoryRequest) -> Estimate:
        """The worst-case cost of running ``request`` on this tier."""

    @abstractmethod
    def write(self, request: WriteRequest, ctx: MemoryContext) -> Written:
        """Store the request's items (all or nothing; items already stored are skipped)."""

    @abstractmethod
    def recall(self, request: RecallRequest, ctx: MemoryContext) -> Recalled:
        """At most ``request.k`` items within ``request.scope``, best first, each with a score."""

    @abstractmethod
    def forget(self, request: ForgetRequest, ctx: MemoryContext) -> Forgotten:
        """Remove every item within ``request.scope``."""

    def close(self) -> None:  # noqa: B027  (optional: most tiers hold nothing to release)
        """Release what the tier holds (connections, caches)."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, level={self.level!r})"
