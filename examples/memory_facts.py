"""Facts with validity times and session summaries, written when chats are stored.

Run: python examples/memory_facts.py   (offline: LOW rules, no model; pass facts="high" and model=... to
have a model write them, one charged call per session)
"""

from pathlib import Path

from thrifty import Budget
from thrifty.memory import Memory

HERE = Path(__file__).parent
SCOPE = {"user_id": "caroline"}
LATER = {  # a later session that changes something Caroline said before
    "id": "2023-08-01",
    "date": "2023-08-01T09:00",
    "turns": [
        {"speaker": "Caroline", "text": "My favourite colour is blue now. I moved to Berlin last month!"},
        {"speaker": "Melanie", "text": "Wow, Berlin! What do you do there?"},
    ],
}
EARLIER = {
    "id": "2023-04-01",
    "date": "2023-04-01T09:00",
    "turns": [{"speaker": "Caroline", "text": "My favourite colour is teal. I live in Boston with my cat."}],
}

with Memory(facts="low", summaries="low") as memory:  # chunk_tokens=320 by default
    stored = memory.ingest(HERE / "data" / "caroline_chats.jsonl", scope=SCOPE)
    print("ingest:", stored.layers, "added", stored.added)
    later = memory.ingest([EARLIER, LATER], scope=SCOPE)
    print("second ingest:", later.layers, "added", later.added, "facts closed", later.closed)
    print("again:", memory.ingest([EARLIER, LATER], scope=SCOPE).added, "added")

    for fact in memory.facts_of(SCOPE):
        until = fact.valid_to.date() if fact.valid_to else "now"
        print(f"  {fact.valid_from.date() if fact.valid_from else '?'} .. {until}: {fact.text}")
    print(memory.summaries_of(SCOPE)[0].text)

    got = memory.recall(
        "What is Caroline's favourite colour?", scope=SCOPE, router="low", budget=Budget(memory_ops=4)
    )
    print(got.block)
    print("ops:", got.report.memory_ops, "facts:", got.report.facts, "block tokens:", got.report.block_tokens)
    print("forgotten:", memory.forget(SCOPE).removed, "items; left:", memory.count(SCOPE))
