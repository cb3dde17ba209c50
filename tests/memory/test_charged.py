"""The charged entry point: reserve the worst case, run, settle what was spent; refuse or release otherwise.

Includes a HIGH tier whose recall asks a model (the scripted one, through the real Gateway) to rewrite the
query: its model calls are charged by the Gateway as model calls, within the same caps, and it passes the
same conformance suite as the LOW tier.
"""

from __future__ import annotations

import doctest

import pytest

import thrifty.memory.charged
from thrifty.budget import Budget, BudgetExceeded, Ledger
from thrifty.memory import (
    ChargedMemory,
    Estimate,
    ForgetRequest,
    Forgotten,
    LexicalTier,
    MemoryContext,
    MemoryItem,
    MemoryRequest,
    MemoryTier,
    MemoryTierError,
    Recalled,
    RecallRequest,
    Scope,
    WriteRequest,
    Written,
    charge,
)
from thrifty.models import Gateway
from thrifty.testing import ScriptedModel, ScriptedReply, ScriptedRequest, reply
from thrifty.testing.memory import MemoryTierContract

from .reference import WordTier

ALICE = Scope(user_id="alice")
PREFIX = "Rewrite as search keywords: "
WORST_PROMPT = 400  # tokens the rewrite prompt may take, at most
MAX_OUT = 32


class RewriteTier(MemoryTier):
    """HIGH: a model rewrites the query, then the lexical tier recalls with it. Writes and forgets are
    the lexical tier's (no model call, so their estimate has no model part)."""

    level = "high"

    def __init__(self, model: str, inner: MemoryTier | None = None) -> None:
        self.name = "rewrite"
        self.model = model
        self.inner = inner or LexicalTier()

    def estimate(self, request: MemoryRequest) -> Estimate:
        if isinstance(request, RecallRequest):
            worst = {
                "model_requests": 1,
                "input_tokens": WORST_PROMPT,
                "output_tokens": MAX_OUT,
                "total_tokens": WORST_PROMPT + MAX_OUT,
            }
            return Estimate.ops(1, models=worst)
        return Estimate.ops(1)

    def write(self, request: WriteRequest, ctx: MemoryContext) -> Written:
        return self.inner.write(request, ctx)

    def recall(self, request: RecallRequest, ctx: MemoryContext) -> Recalled:
        messages = [{"role": "user", "content": PREFIX + request.query[:1000]}]
        rewritten = Gateway(ctx.ledger).complete(self.model, messages, max_tokens=MAX_OUT, node=ctx.node)
        query = rewritten.content or request.query
        return self.inner.recall(request.model_copy(update={"query": query}), ctx)

    def forget(self, request: ForgetRequest, ctx: MemoryContext) -> Forgotten:
        return self.inner.forget(request, ctx)

    def close(self) -> None:
        self.inner.close()


def _echo(request: ScriptedRequest) -> ScriptedReply:
    """The model's rewrite: the query itself (a real model would drop the filler words)."""
    return reply(request.last_text.removeprefix(PREFIX), prompt_tokens=40, completion_tokens=8)


class TestRewriteTier(MemoryTierContract):
    def make_tier(self) -> MemoryTier:
        return RewriteTier(ScriptedModel(default=_echo).model)


def test_an_llm_tier_s_model_calls_are_charged_by_the_gateway_as_model_calls() -> None:
    script = ScriptedModel(default=_echo)
    ledger = Ledger(Budget(total_tokens=1000, memory_ops=5))
    memory = ChargedMemory(RewriteTier(script.model), ledger)
    memory.remember("Alice plays the cello.", ALICE)
    recalled = memory.recall("What instrument does Alice play? cello", ALICE)
    assert [i.text for i in recalled.items] == ["Alice plays the cello."]
    assert [(e.kind, e.name, e.node) for e in ledger.events] == [
        ("memory", "write:rewrite", "memory"),  # a write is named as one, not as the tier's recall
        ("model", script.model, "memory"),
        ("memory", "rewrite", "memory"),
    ]
    assert ledger.spent["total_tokens"] == 48 and ledger.spent["memory_ops"] == 2
    assert script.requests[0].max_tokens == MAX_OUT


def test_an_llm_tier_the_memory_cap_cannot_pay_never_calls_its_model() -> None:
    script = ScriptedModel(default=_echo)
    run = Ledger(Budget(total_tokens=10_000))
    memory = ChargedMemory(RewriteTier(script.model), run).capped(Budget(total_tokens=WORST_PROMPT))
    memory.remember("Alice plays the cello.", ALICE)  # a write makes no model call: it fits
    with pytest.raises(BudgetExceeded) as refused:
        memory.recall("What does Alice play?", ALICE)
    assert refused.value.dimension == "total_tokens" and refused.value.ledger == "run/memory"
    assert script.requests == []
    assert not memory.can_afford(RecallRequest(query="x", scope=ALICE))
    assert [e.kind for e in run.events] == ["memory"] and run.spent["memory_ops"] == 1
    assert all(abs(v) < 1e-9 for v in run.reserved.values())


def test_a_budget_error_inside_the_tier_releases_the_memory_reservation() -> None:
    script = ScriptedModel([reply("cello", prompt_tokens=500, completion_tokens=8)])
    ledger = Ledger(Budget(input_tokens=100, memory_ops=3))
    tier = RewriteTier(script.model)
    # The estimate undershoots the real prompt here (the scripted model reports 500 prompt tokens), so the
    # Gateway itself refuses the call: the memory charge is released, nothing is counted.
    tier.estimate = lambda request: Estimate.ops(1)  # type: ignore[method-assign]
    with pytest.raises(BudgetExceeded) as refused:
        ChargedMemory(tier, ledger).recall("What does Alice play?", ALICE)
    assert refused.value.dimension == "input_tokens"
    assert ledger.events == [] and ledger.available("memory_ops") == 3


def test_what_the_tier_reports_is_settled_in_place_of_the_estimate() -> None:
    class Cheap(WordTier):
        def estimate(self, request: MemoryRequest) -> Estimate:
            return Estimate.ops(1, usd=0.002)

        def recall(self, request: RecallRequest, ctx: MemoryContext) -> Recalled:
            found = super().recall(request, ctx)
            return found.model_copy(update={"cost": {"memory_ops": 1, "usd": 0.0005}, "detail": "cache hit"})

    ledger = Ledger(Budget(usd=0.01))
    memory = ChargedMemory(Cheap(), ledger)
    memory.remember("Alice plays the cello.", ALICE)
    memory.recall("cello", ALICE)
    assert [(e.usd, e.detail) for e in ledger.events] == [(0.002, "added=1 skipped=0"), (0.0005, "cache hit")]
    assert ledger.usd_spent == pytest.approx(0.0025)


def test_an_interrupted_operation_releases_its_reservation() -> None:
    class Interrupted(WordTier):
        def recall(self, request: RecallRequest, ctx: MemoryContext) -> Recalled:
            raise KeyboardInterrupt

    ledger = Ledger(Budget(memory_ops=1))
    with pytest.raises(KeyboardInterrupt):
        charge(Interrupted(), RecallRequest(query="q", scope=ALICE), ledger)
    assert ledger.available("memory_ops") == 1 and ledger.events == []


@pytest.mark.parametrize(
    ("estimate", "message"),
    [
        (Estimate({"usd": 0.001}), "at least 1 memory_ops"),
        ({"memory_ops": 1}, "must return an Estimate"),
        (Estimate({"memory_ops": 1, "usd": -1.0}), "estimate of usd"),
    ],
)
def test_a_bad_estimate_is_a_broken_tier_and_nothing_runs(estimate: object, message: str) -> None:
    tier = WordTier()
    tier.estimate = lambda request: estimate  # type: ignore[method-assign,assignment,return-value]
    ledger = Ledger()
    with pytest.raises(MemoryTierError, match=message):
        ChargedMemory(tier, ledger).remember("Alice plays the cello.", ALICE)
    assert tier.items == {} and ledger.events == []


def test_a_recall_outside_its_scope_or_over_k_is_refused_and_not_charged() -> None:
    tier = WordTier(broken="scope")
    memory = ChargedMemory(tier, Ledger())
    memory.remember("Bob plays the cello.", {"user_id": "bob"})
    with pytest.raises(MemoryTierError, match="outside the requested scope"):
        memory.recall("cello", ALICE)
    tier.broken = "k"
    memory.write(MemoryItem(text=f"Alice plays cello piece {n}.", scope=ALICE) for n in range(3))
    with pytest.raises(MemoryTierError, match="3 items for k=2"):
        memory.recall("cello", ALICE, k=2)
    assert [e.detail for e in memory.ledger.events] == ["added=1 skipped=0", "added=3 skipped=0"]


def test_an_empty_write_is_no_operation() -> None:
    memory = ChargedMemory(WordTier(), Ledger(Budget(memory_ops=1)))
    assert memory.write([]) == Written()
    assert memory.ledger.events == []


def test_the_doctest_runs() -> None:
    assert doctest.testmod(thrifty.memory.charged).failed == 0
