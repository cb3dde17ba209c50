"""Memory: what an agent remembers across runs, kept in tiers and charged through the Ledger.

The seam: a tier implements :class:`MemoryTier` (``estimate``, ``write``, ``recall``, ``forget``) over the
typed records of :mod:`thrifty.memory.records`; every operation runs through :func:`charge` /
:class:`ChargedMemory`, which reserves the tier's worst case on the Ledger (``kind="memory"``, one
``memory_ops`` at least) before it runs, settles after, releases on error and refuses with BudgetExceeded
what the budget cannot pay. :class:`LexicalTier` is the LOW tier (BM25 over a SQLAlchemy store). Any tier
can be checked with :class:`thrifty.testing.memory.MemoryTierContract`.

(The run store, which lived here, is :mod:`thrifty.store`.)
"""

from thrifty.memory.charged import ChargedMemory, MemoryTierError, charge
from thrifty.memory.lexical import LexicalTier
from thrifty.memory.records import (
    ForgetRequest,
    Forgotten,
    Level,
    MemoryItem,
    MemoryRequest,
    Op,
    Outcome,
    Recalled,
    RecallRequest,
    Scope,
    WriteRequest,
    Written,
    content_id,
)
from thrifty.memory.tier import Estimate, MemoryContext, MemoryTier

__all__ = [
    "ChargedMemory",
    "Estimate",
    "ForgetRequest",
    "Forgotten",
    "Level",
    "LexicalTier",
    "MemoryContext",
    "MemoryItem",
    "MemoryRequest",
    "MemoryTier",
    "MemoryTierError",
    "Op",
    "Outcome",
    "RecallRequest",
    "Recalled",
    "Scope",
    "WriteRequest",
    "Written",
    "charge",
    "content_id",
]
