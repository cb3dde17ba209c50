"""The LOW recall: stemmed BM25 and the turn filter (thrifty.memory.turns), on small conversations."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from thrifty.budget import Budget, Ledger
from thrifty.memory import Memory, MemoryItem, Scope, WriteRequest, charge
from thrifty.memory.lexical import LexicalTier, item_lines
from thrifty.memory.memory import block_tokens
from thrifty.memory.turns import select_turns
from thrifty.workflows.spec import MemorySpec

SCOPE = {"user_id": "u"}
_FILLER = [
    "Anna: Did you sleep well after the long trip home?",
    "Ben: Yes, though the neighbours were loud again.",
    "Anna: We should plan the garden before spring comes.",
    "Ben: I will buy seeds and a new rake this weekend.",
    "Anna: The weather report promised sunshine all week.",
    "Ben: My brother called about his new apartment downtown.",
]


def _sessions(n: int = 6) -> list[dict[str, Any]]:
    """``n`` sessions a week apart; in each, one question about the violin and its answer (the gold turn,
    which shares no word with the question but the name), among filler turns."""
    out: list[dict[str, Any]] = []
    start = datetime(2023, 1, 2, 10, tzinfo=UTC)
    for s in range(n):
        turns = [{"speaker": "Anna", "text": f"Filler number {s}{i}: {_FILLER[i % 6]}"} for i in range(10)]
        turns.insert(4, {"speaker": "Anna", "text": f"How are Ben's violin lessons going in week {s}?"})
        turns.insert(5, {"speaker": "Ben", "text": f"Great, I learned piece number {s} by heart, Mozart."})
        for i, turn in enumerate(turns):
            turn["id"] = f"D{s + 1}:{i + 1}"
        out.append({"id": f"s{s}", "date": (start + timedelta(days=7 * s)).isoformat(), "turns": turns})
    return out


def _memory(**options: Any) -> Memory:
    mem = Memory(embedder="none", chunk_tokens=80, max_context_tokens=300, k=2, **options)
    mem.ingest(_sessions(), scope=SCOPE)
    return mem


def _answers(block: str) -> int:
    return sum(f"piece number {s} by heart" in block for s in range(6))


def test_stemming_finds_other_forms_of_a_word() -> None:
    session = [{"date": "2023-05-08", "turns": [{"speaker": "Mel", "text": "I painted two sunsets."}]}]
    with Memory(embedder="none") as stemmed, Memory(embedder="none", stem=False) as exact:
        for mem in (stemmed, exact):
            mem.ingest(session, scope=SCOPE)
        assert "sunsets" in stemmed.recall("Who paints a sunset?", scope=SCOPE).block
        assert exact.recall("Who paints a sunset?", scope=SCOPE).block == ""  # no word in common
        assert "sunsets" in exact.recall("Who painted sunsets?", scope=SCOPE).block


def test_the_turn_filter_reaches_turns_past_the_chunks_that_fit_whole() -> None:
    query = "What did Ben tell Anna about his violin lessons?"
    with _memory() as turns, _memory(low_filter="none") as whole:
        filtered = turns.recall(query, scope=SCOPE, router="low")
        chunks = whole.recall(query, scope=SCOPE, router="low")
    # The same cap: two ~80-token chunks fill it whole; the filter keeps every session's question and the
    # reply after it (the gold turn, which matches no word of the query but its neighbour does).
    assert filtered.report.block_tokens <= 300 + block_tokens("<memory></memory>") + 20
    assert _answers(chunks.block) <= 2
    assert _answers(filtered.block) == 6
    assert filtered.report.ran == {"retrieve": "low", "condense": "low"}


def test_the_block_keeps_time_order_a_dated_header_per_chunk_and_stored_lines() -> None:
    with _memory() as mem:
        got = mem.recall("violin lessons", scope=SCOPE, router="low")
        stored = {line for item in mem.low.items(Scope.of(SCOPE)) for line in item_lines(item)[1]}
    text = got.text
    headers = [line for line in text.split("\n") if line.startswith("[")]
    days = [datetime.strptime(h[1:].split(",")[0], "%d %B %Y") for h in headers]
    assert days == sorted(days) and len(headers) == len(got.items)
    body = [ln for ln in text.split("\n") if ln and not ln.startswith("[")]
    assert body and all(line in stored for line in body)  # word for word the stored lines
    positions = [text.index(f"piece number {s} by heart") for s in range(6)]
    assert positions == sorted(positions)


def test_the_recall_is_charged_as_before_and_mid_condense_reads_the_first_k() -> None:
    with _memory() as mem:
        ledger = Ledger(Budget(memory_ops=5))
        mem.recall("violin lessons", scope=SCOPE, ledger=ledger, router="low")
        names = [e.name for e in ledger.events if e.kind == "memory"]
        assert names == ["retrieve:low", "condense:low"]
        assert ledger.spent["memory_ops"] == 2
        mid = mem.recall("violin lessons", scope=SCOPE, router={"retrieve": "low", "condense": "mid"})
        assert mid.report.ran["condense"] == "mid" and len(mid.items) <= mem.k
        # One memory_ops left: the retrieve runs, the condense cannot be paid (nothing half-done).
        poor = mem.recall("violin lessons", scope=SCOPE, ledger=Ledger(Budget(memory_ops=1)), router="low")
        assert poor.block == "" and poor.report.ran["condense"] == "skipped"


def _item(text: str, day: int, score: float, session: str = "s") -> MemoryItem:
    when = datetime(2023, 1, 1, tzinfo=UTC) + timedelta(days=day)
    return MemoryItem(
        text=text,
        scope=Scope(user_id="u"),
        created=when,
        valid_from=when,
        meta={"kind": "turns", "session": session, "refs": [f"D{day}:1"]},
        score=score,
    )


@pytest.mark.parametrize("seed", range(20))
def test_select_turns_never_exceeds_the_cap(seed: int) -> None:
    rng = random.Random(seed)
    items = [
        _item(
            "\n".join(
                [f"[{d} Jan 2023, s{d}]"]
                + [f"P{j}: " + "word " * rng.randint(1, 60) for j in range(rng.randint(1, 8))]
            ),
            d,
            rng.random() * 10,
            f"s{d}",
        )
        for d in range(1, rng.randint(2, 15))
    ]
    scores = [[rng.random() * 5 for _ in item_lines(it)[1]] for it in items]
    cap = rng.randint(1, 400)
    text, drawn = select_turns(items, scores, cap, neighbours=rng.choice(["next", "both", "none"]))
    assert block_tokens(text) <= cap
    assert [i.valid_from for i in drawn] == sorted(i.valid_from for i in drawn)  # pyright: ignore[reportArgumentType]


def test_select_turns_keeps_the_neighbour_it_is_asked_for() -> None:
    item = _item("[1 Jan 2023, s]\nA: zero\nB: one\nA: two\nB: three", 1, 1.0)
    line = [0.0, 0.0, 5.0, 0.0]  # "A: two" matches
    cap = block_tokens("[1 Jan 2023, s]\nB: one\nA: two\nB: three")
    assert select_turns([item], [line], cap, weight=0.0, neighbours="next")[0].endswith("A: two\nB: three")
    both = select_turns([item], [line], cap, weight=0.0, neighbours="both")[0]
    assert both == "[1 Jan 2023, s]\nB: one\nA: two\nB: three"
    alone = select_turns([item], [line], block_tokens("[1 Jan 2023, s]\nA: two"), weight=0.0)[0]
    assert alone == "[1 Jan 2023, s]\nA: two"  # the neighbour does not fit: the line alone


def test_select_turns_cuts_one_line_longer_than_the_cap_and_checks_its_options() -> None:
    note = MemoryItem(text="x" * 5000, scope=Scope(user_id="u"), score=1.0)
    text, drawn = select_turns([note], [[1.0]], 100)
    assert 80 < len(text) <= 400 and drawn == [note]
    assert select_turns([], [], 100) == ("", [])
    with pytest.raises(ValueError, match="weight"):
        select_turns([note], [[1.0]], 100, weight=2.0)
    with pytest.raises(ValueError, match="neighbours"):
        select_turns([note], [[1.0]], 100, neighbours="all")  # pyright: ignore[reportArgumentType]


def test_line_scores_follow_the_items_and_the_stemmer() -> None:
    tier = LexicalTier(stem=True)
    items = [_item("[1 Jan 2023, s]\nA: I love painting\nB: dogs bark", 1, 1.0)]
    charge(tier, WriteRequest(items=tuple(items)), Ledger())
    scope = Scope(user_id="u")
    [scores] = tier.line_scores(scope, "who painted?", items)
    assert scores[0] > 0 and scores[1] == 0
    stranger = _item("[2 Jan 2023, s]\nA: not stored", 2, 1.0)
    assert tier.line_scores(scope, "stored", [stranger]) == [[0.0]]


def test_options_are_checked_and_reach_the_task_file() -> None:
    with pytest.raises(ValueError, match="low_filter"):
        Memory(low_filter="some")  # pyright: ignore[reportArgumentType]
    with pytest.raises(ValueError, match="filter_k"):
        Memory(filter_k=0)
    spec = MemorySpec.model_validate({"scope": {"user_id": "u"}})
    assert (spec.low_filter, spec.filter_k, spec.stem) == ("turns", 15, True)
    with pytest.raises(ValueError):
        MemorySpec.model_validate({"scope": {"user_id": "u"}, "low_filter": "some"})
