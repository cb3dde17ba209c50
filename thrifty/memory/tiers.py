"""The MID and HIGH retrieval tiers, over the same store as the LOW :class:`LexicalTier`.

* :class:`DenseTier` (MID): BM25 and an offline embedder together: BM25's best items and the embedder's
  best items fused by reciprocal rank (MEMORY.md: on LoCoMo BM25 over chunks is the strongest single
  retriever, and the union with dense matches adds what BM25 misses on paraphrases). Without an embedder it
  runs BM25 alone and says so in its charge's detail (``fallback=lexical``).
* :class:`LLMTier` (HIGH): a model, through the Gateway on the operation's ledger, rewrites the question
  into up to three search queries; each is run at MID (or LOW without an embedder) and the lists are fused
  by reciprocal rank. The model call's worst case is in the estimate, so a budget that cannot pay it never
  starts the operation.

Each costs one ``memory_ops`` per operation, as LOW does; MID's embeddings are local compute (time only),
HIGH's model call is charged by the Gateway as a model call labelled with the memory node.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy.engine import Engine

from thrifty.budget import Ledger, Pricing
from thrifty.memory.embed import TextEmbedder, load_embedder
from thrifty.memory.lexical import LexicalTier
from thrifty.memory.records import MemoryItem, MemoryRequest, Recalled, RecallRequest
from thrifty.memory.tier import Estimate, MemoryContext

__all__ = ["MAX_QUERY_CHARS", "DenseTier", "LLMTier", "fuse"]

MAX_QUERY_CHARS = 2000  # a longer query is cut: retrieval needs its words, not a whole document
_RRF_K = 60.0
_REWRITE_TOKENS = 64
_REWRITE_PROMPT = (
    "You search a person's chat history. Rewrite the question into 2 or 3 short keyword search queries, "
    "one per line: name the people, things and events, and turn relative times into words to look for. "
    "Reply with the queries only, no numbering."
)


def fuse(lists: Sequence[Sequence[MemoryItem]], k: int) -> list[MemoryItem]:
    """Reciprocal rank fusion of ranked lists; the fused score is set on each item, best first."""
    scores: dict[str, float] = {}
    first: dict[str, MemoryItem] = {}
    for ranked in lists:
        for rank, item in enumerate(ranked):
            scores[item.id] = scores.get(item.id, 0.0) + 1.0 / (_RRF_K + rank + 1)
            first.setdefault(item.id, item)
    order = sorted(scores, key=lambda i: -scores[i])[:k]
    return [first[i].model_copy(update={"score": scores[i]}) for i in order]


class DenseTier(LexicalTier):
    """MID: BM25 fused with embedding similarity (see the module docstring)."""

    level = "mid"

    def __init__(
        self,
        store: str | Path | Engine | None = None,
        *,
        embedder: str | TextEmbedder | None = "auto",
        name: str = "dense",
        usd_per_op: float = 0.0,
        stem: bool = True,
    ) -> None:
        super().__init__(store, name=name, usd_per_op=usd_per_op, stem=stem)
        self.embedder = load_embedder(embedder)
        self._vectors: dict[str, np.ndarray] = {}
        self._vec_lock = threading.Lock()

    @property
    def fallback(self) -> bool:
        """True when there is no embedder and recall is lexical only."""
        return self.embedder is None

    def share_vectors(self, other: DenseTier) -> None:
        """Use ``other``'s embedding cache (same embedder, same store): each item is embedded once."""
        self._vectors = other._vectors
        self._vec_lock = other._vec_lock

    def vectors(self, items: Sequence[MemoryItem]) -> np.ndarray:
        """Embeddings of ``items`` (computed once per item and kept for the life of the tier)."""
        assert self.embedder is not None
        with self._vec_lock:
            missing = [i for i in items if i.id not in self._vectors]
        if missing:
            encoded = self.embedder.encode([i.text for i in missing])
            with self._vec_lock:
                for item, vec in zip(missing, encoded, strict=True):
                    self._vectors[item.id] = vec
        with self._vec_lock:
            return np.stack([self._vectors[i.id] for i in items])

    def ranked(self, query: str, request: RecallRequest) -> list[MemoryItem]:
        """MID's ranking for one query (no charge: the caller's operation is charged)."""
        query = query[:MAX_QUERY_CHARS]
        with self._turn:
            index = self._index(request.scope)
        lexical = index.search(query, request.k, request.kinds)
        pool = [item for item, ok in zip(index.items, index.allowed(request.kinds), strict=True) if ok]
        if self.embedder is None or not pool or not query.strip():
            return lexical
        matrix = self.vectors(pool)
        sims = matrix @ self.embedder.encode([query])[0]
        order = np.argsort(-sims, kind="stable")[: request.k]
        dense = [pool[int(i)] for i in order]
        # BM25 keeps most of the places (the stronger retriever on chat memory); dense fills the rest.
        keep = lexical[: max(1, math.ceil(0.7 * request.k))]
        extra = [i for i in dense if i.id not in {x.id for x in keep}][: request.k - len(keep)]
        return fuse([keep, [*keep, *extra], dense], request.k)

    def recall(self, request: RecallRequest, ctx: MemoryContext) -> Recalled:
        items = self.ranked(request.query, request)
        return Recalled(items=items, detail="fallback=lexical (no embedder)" if self.fallback else "")


class LLMTier(DenseTier):
    """HIGH: model-written search queries, each run at MID, fused (see the module docstring)."""

    level = "high"

    def __init__(
        self,
        store: str | Path | Engine | None = None,
        *,
        model: str,
        pricing: Pricing | None = None,
        embedder: str | TextEmbedder | None = "auto",
        name: str = "llm",
        usd_per_op: float = 0.0,
        stem: bool = True,
    ) -> None:
        super().__init__(store, embedder=embedder, name=name, usd_per_op=usd_per_op, stem=stem)
        self.model = model
        self.pricing = pricing or Pricing()

    def _messages(self, query: str) -> list[dict[str, Any]]:
        return [
            {"role": "system", "content": _REWRITE_PROMPT},
            {"role": "user", "content": query[:MAX_QUERY_CHARS]},
        ]

    def model_estimate(self, query: str) -> dict[str, float]:
        """Worst case of the rewrite call, as the Gateway would reserve it on an unlimited ledger."""
        from thrifty.models.gateway import Gateway

        gateway = Gateway(Ledger(), self.pricing, retries=0)
        messages = self._messages(query)
        prompt = gateway.count_prompt_tokens(self.model, messages, None)
        return gateway.plan_call(self.model, prompt, _REWRITE_TOKENS).amounts

    def estimate(self, request: MemoryRequest) -> Estimate:
        if isinstance(request, RecallRequest):
            return Estimate.ops(1, usd=self.usd_per_op, models=self.model_estimate(request.query))
        return super().estimate(request)

    def recall(self, request: RecallRequest, ctx: MemoryContext) -> Recalled:
        from thrifty.models.gateway import Gateway

        with self._turn:
            empty = not self._index(request.scope).items
        if empty:  # nothing to search: no model call either
            return Recalled(items=[], detail="empty")
        gateway = Gateway(ctx.ledger, self.pricing, retries=0)
        reply = gateway.complete(
            self.model, self._messages(request.query), max_tokens=_REWRITE_TOKENS, node=ctx.node
        )
        queries = [request.query]
        for line in (reply.content or "").splitlines():
            line = line.strip(" -*\t0123456789.").strip()
            if line and line not in queries:
                queries.append(line)
        lists = [self.ranked(q, request) for q in queries[:4]]
        return Recalled(items=fuse(lists, request.k), detail=f"queries={len(lists)}")
