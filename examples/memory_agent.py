"""Long-term memory with an agent: store chats once, recall per question within a memory budget.

Run: python examples/memory_agent.py   (offline: the embedded local model, BM25 / MiniLM memory tiers)
"""

from pathlib import Path

from thrifty import Agent, Budget
from thrifty.memory import Memory

HERE = Path(__file__).parent
SCOPE = {"user_id": "caroline"}

with Memory(router="rules", lam=0.3, k=3) as memory:  # in memory; Memory(".thrifty/memory.db") keeps it
    memory.ingest(HERE / "data" / "caroline_chats.jsonl", scope=SCOPE)
    memory.remember("Caroline's favourite colour is teal.", scope=SCOPE, source="note")

    # Memory alone: a recall on its own ledger, and what it did.
    got = memory.recall("What is the name of Caroline's cat?", scope=SCOPE, budget=Budget(memory_ops=4))
    print(got.block)
    print("tiers run:", got.report.ran, f"| router ms: {got.report.router_ms:.3f}")

    # An agent that recalls before answering, memory capped within the run's budget.
    agent = Agent(
        "local/smollm2",
        memory=memory,
        memory_scope=SCOPE,
        memory_budget=Budget(memory_ops=4),
        budget=Budget(total_tokens=4000, seconds=120),
        max_tokens=48,
    )
    result = agent.run("When did Caroline go to the LGBTQ support group?")
    print("answer:", result.answer, "| stop:", result.stop_reason)
    for report in result.memory:
        print("memory:", report.ran, "ops:", report.memory_ops, "block tokens:", report.block_tokens)
