"""Token-based chunking: turns packed by a token budget, a long turn cut on sentences, evidence kept exact."""

from __future__ import annotations

import pytest

from thrifty.bench.memory import MemQuestion, evidence_pieces
from thrifty.memory import ChatSession, ChatTurn, Memory, Scope
from thrifty.memory.chunking import chunk_session, reached, split_text, text_tokens, turn_pieces
from thrifty.memory.temporal import parse_when

from .conversations import SESSIONS

SCOPE = {"user_id": "u"}
_FILLER = "The assistant listed one more option with its price, its pros and its cons in some detail."


def _long_session() -> ChatSession:
    """A LongMemEval-like session: a short user turn, then a ~700-token assistant answer whose evidence
    sentence sits in the middle, then a short user turn."""
    answer = " ".join(
        [_FILLER] * 14 + ["The Zephyr 300 tent weighs 1.2 kg and costs 240 dollars."] + [_FILLER] * 14
    )
    return ChatSession(
        id="lme-1",
        date=parse_when("2023/05/21 (Sun) 00:53"),
        turns=(
            ChatTurn("user", "Which light tent should I buy for hiking yesterday's trail?", ref="lme-1:0"),
            ChatTurn("assistant", answer, ref="lme-1:1", has_answer=True),
            ChatTurn("user", "Thanks, I will think about it.", ref="lme-1:2"),
        ),
    )


def test_split_text_cuts_on_sentences_within_the_budget() -> None:
    text = "One short sentence. " * 40 + "A last one!"
    pieces = split_text(text, 32)
    assert len(pieces) > 1 and all(text_tokens(p) <= 32 for p in pieces)
    assert all(p.endswith((".", "!")) for p in pieces)  # never cut inside a sentence here
    assert " ".join(pieces).split() == text.split()
    assert split_text("short", 32) == ["short"]


def test_a_sentence_longer_than_the_budget_is_cut_on_words() -> None:
    text = " ".join(f"word{i}" for i in range(200))  # no sentence end at all
    pieces = split_text(text, 40)
    assert len(pieces) > 1 and all(text_tokens(p) <= 40 for p in pieces)
    assert " ".join(pieces) == text


def test_short_turns_are_grouped_by_tokens_and_by_turns() -> None:
    session = ChatSession(
        "s", tuple(ChatTurn("A", f"Turn number {i} says a few words here.", ref=f"r{i}") for i in range(30))
    )
    by_tokens = chunk_session(session, 64, None)
    assert len(by_tokens) > 1
    assert all(sum(text_tokens(ln.text) + 1 for ln in c.lines) <= 64 for c in by_tokens)
    assert [r for c in by_tokens for r in c.refs] == [
        f"r{i}" for i in range(30)
    ]  # every turn, in order, once
    by_turns = chunk_session(session, None, 8)
    assert [len(c.lines) for c in by_turns] == [8, 8, 8, 6]
    both = chunk_session(session, 10_000, 8)
    assert [len(c.lines) for c in both] == [8, 8, 8, 6]


def test_a_long_turn_becomes_several_chunks_with_its_date_and_ref() -> None:
    mem = Memory(embedder="none", chunk_tokens=128)
    session = _long_session()
    scope = Scope(**SCOPE)
    chunks = mem.chunks([session], scope)
    long_ones = [c for c in chunks if "lme-1:1" in c.meta["refs"]]
    assert len(long_ones) >= 5
    for chunk in chunks:
        assert chunk.text.startswith("[21 May 2023, lme-1]\n") and chunk.scope == scope
        assert text_tokens(chunk.text) <= 128 + 10  # the budget plus the dated header
    assert all(c.meta["evidence"] == ["lme-1:1"] for c in long_ones)
    n = len(turn_pieces(session, 128)["lme-1:1"])
    assert n >= len(long_ones) and all(c.meta["parts"]["lme-1:1"].endswith(f"/{n}") for c in long_ones)
    assert "yesterday (20 May 2023)" in chunks[0].text  # dates resolved before cutting


def test_the_piece_with_the_evidence_is_recalled_and_evidence_stays_measurable() -> None:
    session = _long_session()
    for chunk_tokens, found in ((None, False), (256, True)):
        # By turns only, the whole ~700-token answer is one line; a 300-token block cuts it (before this
        # change); by tokens the piece holding the answer is its own chunk and fits.
        mem = Memory(embedder="none", chunk_tokens=chunk_tokens, chunk_turns=8, max_context_tokens=300)
        mem.ingest([session], scope=SCOPE)
        got = mem.recall("How much does the Zephyr 300 tent weigh?", scope=SCOPE, router="low", k=1)
        assert ("1.2 kg" in got.block) is found
        pieces = turn_pieces(session, chunk_tokens)
        assert len(pieces["lme-1:1"]) == (1 if chunk_tokens is None else 3)
        assert reached(got.block, pieces["lme-1:1"]) is False  # one piece of three is not half the turn
        mem.close()


def test_reached_counts_a_turn_when_half_its_text_is_in_the_block() -> None:
    pieces = ("A: " + "x" * 40, "A: " + "y" * 40, "A: " + "z" * 10)
    assert reached("\n".join(pieces[:2]), pieces) and not reached(pieces[2], pieces)
    assert reached("B: whole line", ("B: whole line",)) and not reached("B: whole", ("B: whole line",))
    q = MemQuestion(0, "q", "a", "1", ("A: line",), evidence_refs=("r1",))
    assert evidence_pieces(q, {"r1": pieces}) == [pieces]
    assert evidence_pieces(q, None) == [("A: line",)]


def test_chunking_options_are_checked() -> None:
    with pytest.raises(ValueError, match="chunk_tokens"):
        Memory(embedder="none", chunk_tokens=None, chunk_turns=None)
    with pytest.raises(ValueError, match="chunk_tokens >= 32"):
        Memory(embedder="none", chunk_tokens=8)
    mem = Memory(embedder="none")  # default: chunks of at most 320 tokens, any number of turns
    assert (mem.chunk_tokens, mem.chunk_turns) == (320, None)
    assert mem.ingest(SESSIONS, scope=SCOPE).added == 2  # short sessions: one chunk each, as before
