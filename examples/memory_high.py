"""HIGH facts and summaries written by a model at ingest, charged to a ledger, with the fallbacks to LOW.

Run: python examples/memory_high.py   (the embedded local model; a few minutes on a CPU)
The 135M model is not a usable fact writer (expect invented facts): this shows the charging and the
fallbacks. Use a real model for HIGH (model="openai/gpt-4o-mini" with OPENAI_API_KEY set).
"""

from pathlib import Path

from thrifty import Budget
from thrifty.budget import Ledger
from thrifty.memory import Memory

HERE = Path(__file__).parent
SCOPE = {"user_id": "caroline"}

ledger = Ledger(Budget(total_tokens=3000, memory_ops=2))  # the ingest's own budget
with Memory(model="local/smollm2", facts="high", summaries="high") as memory:
    stored = memory.ingest(HERE / "data" / "caroline_chats.jsonl", scope=SCOPE, ledger=ledger)
    print("tiers:", stored.tiers)
    print("notes:", stored.notes)
    print("layers:", stored.layers, "added", stored.added)
    for event in ledger.events:
        print(f"  {event.kind:6} {event.name:20} node={event.node} units={dict(event.units)}")
    for item in [*memory.facts_of(SCOPE), *memory.summaries_of(SCOPE)]:
        print(f"  {item.kind}: {item.meta.get('tier', '?')} {item.text[:100]}")
