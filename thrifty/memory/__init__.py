"""Memory: what an agent remembers across runs, kept in tiers and charged through the Ledger.

The seam: a tier implements :class:`MemoryTier` (``estimate``, ``write``, ``recall``, ``forget``) over the
typed records of :mod:`thrifty.memory.records`; every operation runs through :func:`charge` /
:class:`ChargedMemory`, which reserves the tier's worst case on the Ledger (``kind="memory"``, one
``memory_ops`` at least) before it runs, settles after, releases on error and refuses with BudgetExceeded
what the budget cannot pay. :class:`LexicalTier` is the LOW tier (BM25 over a SQLAlchemy store),
:class:`DenseTier` MID (BM25 + offline embeddings), :class:`LLMTier` HIGH (model-written queries through the
Gateway). Any tier can be checked with :class:`thrifty.testing.memory.MemoryTierContract`.

:class:`Memory` is the API on top: ``ingest`` chat sessions (LoCoMo, LongMemEval, JSONL; stored as chunks
of at most ``chunk_tokens`` tokens, :mod:`thrifty.memory.chunking`, and, as configured, facts with validity
times and session summaries, :mod:`thrifty.memory.facts`), ``remember``,
``recall`` (routed per query, stepped down to what the budget can pay, never raising BudgetExceeded) and
``forget``.

(The run store, which lived here, is :mod:`thrifty.store`.)
"""

from thrifty.memory.charged import ChargedMemory, MemoryTierError, charge
from thrifty.memory.formats import (
    ChatSession,
    ChatTurn,
    MemoryFormatError,
    load_jsonl_sessions,
    load_locomo,
    load_longmemeval,
    load_sessions,
)
from thrifty.memory.lexical import LexicalTier
from thrifty.memory.memory import Ingested, Memory, MemoryRecall, MemoryReport, MemoryStoreError
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
from thrifty.memory.router import Decision, FixedRouter, RouteView, RuleRouter, make_router
from thrifty.memory.tier import Estimate, MemoryContext, MemoryTier
from thrifty.memory.tiers import DenseTier, LLMTier

__all__ = [
    "ChargedMemory",
    "ChatSession",
    "ChatTurn",
    "Decision",
    "DenseTier",
    "Estimate",
    "FixedRouter",
    "ForgetRequest",
    "Forgotten",
    "Ingested",
    "LLMTier",
    "Level",
    "LexicalTier",
    "Memory",
    "MemoryContext",
    "MemoryFormatError",
    "MemoryItem",
    "MemoryRecall",
    "MemoryReport",
    "MemoryRequest",
    "MemoryStoreError",
    "MemoryTier",
    "MemoryTierError",
    "Op",
    "Outcome",
    "RecallRequest",
    "Recalled",
    "RouteView",
    "RuleRouter",
    "Scope",
    "WriteRequest",
    "Written",
    "charge",
    "content_id",
    "load_jsonl_sessions",
    "load_locomo",
    "load_longmemeval",
    "load_sessions",
    "make_router",
]
