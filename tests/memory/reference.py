"""A minimal tier for testing the seam and the contract: a dict of items scored by shared words.

Each ``broken`` setting breaks one promise of the interface, so the tests can show that the conformance
suite catches it.
"""

from __future__ import annotations

import re

from thrifty.memory import (
    Estimate,
    ForgetRequest,
    Forgotten,
    MemoryContext,
    MemoryItem,
    MemoryRequest,
    MemoryTier,
    Recalled,
    RecallRequest,
    WriteRequest,
    Written,
)

_STOP = set(
    ["the", "a", "an", "of", "and", "in", "on", "to", "is", "did", "does", "which", "what", "who", "where"]
)


def words(text: str) -> set[str]:
    return {w for w in re.findall(r"\w+", text.lower()) if w not in _STOP}


class WordTier(MemoryTier):
    level = "low"

    def __init__(self, *, name: str = "words", broken: str | None = None) -> None:
        self.name = name
        self.broken = broken
        self.items: dict[str, MemoryItem] = {}

    def estimate(self, request: MemoryRequest) -> Estimate:
        return Estimate.ops(1)

    def write(self, request: WriteRequest, ctx: MemoryContext) -> Written:
        added = 0
        for item in request.items:
            key = f"{item.id}-{len(self.items)}" if self.broken == "duplicates" else item.id
            if key not in self.items:
                self.items[key] = item
                added += 1
        cost = {"memory_ops": 2.0} if self.broken == "overcharge" else None
        return Written(added=added, skipped=len(request.items) - added, cost=cost)

    def recall(self, request: RecallRequest, ctx: MemoryContext) -> Recalled:
        query = words(request.query)
        scored = [
            (len(query & words(item.text)), n, item)
            for n, item in enumerate(self.items.values())
            if self.broken == "scope" or request.scope.covers(item.scope)
            if self.broken == "kinds" or request.kinds is None or item.kind in request.kinds
        ]
        ranked = sorted((s for s in scored if s[0] > 0), key=lambda s: (-s[0], s[1]))
        if self.broken != "k":
            ranked = ranked[: request.k]
        if self.broken == "unscored":
            return Recalled(items=[item for _, _, item in ranked])
        return Recalled(items=[item.model_copy(update={"score": float(s)}) for s, _, item in ranked])

    def forget(self, request: ForgetRequest, ctx: MemoryContext) -> Forgotten:
        doomed = [
            k
            for k, item in self.items.items()
            if self.broken == "forget-all" or request.scope.covers(item.scope)
        ]
        for key in doomed:
            del self.items[key]
        return Forgotten(removed=len(doomed))
