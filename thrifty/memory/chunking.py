"""Turns grouped into chunks by a token budget; a turn longer than the budget cut on sentence boundaries.

Why by tokens and not by a count of turns: a chat turn is 20 tokens in LoCoMo and often 500-2,000 in
LongMemEval (an assistant's answer), so eight turns make a 200-token chunk in one and a 10,000-token chunk in
the other, which the memory block's cap then cuts, losing the evidence (before this module: evidence hit 0.817
even in LongMemEval's oracle setting). BudgetMem chunks at 256 tokens. So: consecutive turns of one session
are added to a chunk while it stays within ``chunk_tokens`` (and, if set, ``chunk_turns`` turns); a turn
longer than the budget on its own is cut into pieces on sentence boundaries (on word boundaries only when one
sentence is longer than the budget), each piece its own line ``Speaker: piece``, and the pieces are packed
like turns. Every chunk keeps its session's date and the refs of the turns it holds (a cut turn's ref is in
each chunk holding one of its pieces), so evidence stays measurable exactly: :func:`turn_pieces` gives the
lines a turn is stored as.

Tokens are counted model-free, 4 characters a token (:func:`thrifty.memory.memory.block_tokens`' rule),
the same count as the block cap uses.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass

from thrifty.memory.formats import ChatSession, ChatTurn
from thrifty.memory.temporal import resolve_relative

__all__ = [
    "Chunk",
    "Line",
    "chunk_session",
    "reached",
    "split_text",
    "text_tokens",
    "turn_lines",
    "turn_pieces",
]

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


def text_tokens(text: str) -> int:
    """A model-free token count: 4 characters a token (the memory block's rule)."""
    return math.ceil(len(text) / 4)


@dataclass(frozen=True)
class Line:
    """One stored line: a whole turn, or one piece of a turn cut on sentence boundaries."""

    text: str  # "Speaker: text" with relative dates made absolute
    ref: str
    has_answer: bool = False
    part: int = 1
    parts: int = 1


@dataclass(frozen=True)
class Chunk:
    lines: tuple[Line, ...]

    @property
    def refs(self) -> list[str]:
        """The refs of the turns this chunk holds (each once, in order)."""
        return list(dict.fromkeys(line.ref for line in self.lines))


def _words(text: str, budget_chars: int) -> Iterator[str]:
    """``text`` cut on spaces into pieces of at most ``budget_chars`` (a word longer than that, alone)."""
    piece = ""
    for word in text.split():
        if piece and len(piece) + 1 + len(word) > budget_chars:
            yield piece
            piece = word
        else:
            piece = f"{piece} {word}" if piece else word
    if piece:
        yield piece


def split_text(text: str, max_tokens: int) -> list[str]:
    """``text`` cut into pieces of at most ``max_tokens`` (4 characters a token), on sentence boundaries
    where it can, on spaces where a sentence alone is too long. Whitespace inside a piece is kept; pieces
    joined by a space give the text back (up to whitespace between them)."""
    budget = max(1, max_tokens) * 4
    if len(text) <= budget:
        return [text]
    sentences = [s for s in _SENTENCE_END.split(text) if s.strip()]
    pieces: list[str] = []
    current = ""
    for sentence in sentences:
        sentence = sentence.strip()
        if len(sentence) > budget:
            if current:
                pieces.append(current)
                current = ""
            pieces.extend(_words(sentence, budget))
        elif current and len(current) + 1 + len(sentence) > budget:
            pieces.append(current)
            current = sentence
        else:
            current = f"{current} {sentence}" if current else sentence
    if current:
        pieces.append(current)
    return pieces


def turn_lines(turn: ChatTurn, session: ChatSession, max_tokens: int | None) -> list[Line]:
    """The lines a turn is stored as (one, or its pieces when it is longer than ``max_tokens``)."""
    text = resolve_relative(turn.text, session.date)
    prefix = f"{turn.speaker}: "
    room = None if max_tokens is None else max(1, max_tokens - text_tokens(prefix))
    pieces = [text] if room is None else split_text(text, room)
    return [
        Line(f"{prefix}{piece}", turn.ref, turn.has_answer, i, len(pieces))
        for i, piece in enumerate(pieces, 1)
    ]


def turn_pieces(session: ChatSession, max_tokens: int | None) -> dict[str, tuple[str, ...]]:
    """Each turn's stored lines by its ref (for evidence scoring: which lines a gold turn became)."""
    return {
        t.ref: tuple(line.text for line in turn_lines(t, session, max_tokens)) for t in session.turns if t.ref
    }


def chunk_session(session: ChatSession, chunk_tokens: int | None, chunk_turns: int | None) -> list[Chunk]:
    """The session's turns packed into chunks (see the module docstring). ``chunk_tokens`` None: by turns
    only; ``chunk_turns`` None: by tokens only. A chunk always holds at least one line."""
    chunks: list[Chunk] = []
    current: list[Line] = []
    used = 0
    turns_in = 0
    for turn in session.turns:
        lines = turn_lines(turn, session, chunk_tokens)
        for line in lines:
            cost = text_tokens(line.text) + 1
            full_tokens = chunk_tokens is not None and used + cost > chunk_tokens
            full_turns = chunk_turns is not None and line.part == 1 and turns_in >= chunk_turns
            if current and (full_tokens or full_turns):
                chunks.append(Chunk(tuple(current)))
                current, used, turns_in = [], 0, 0
            current.append(line)
            used += cost
            turns_in += line.part == 1 or len(current) == 1
    if current:
        chunks.append(Chunk(tuple(current)))
    return chunks


def reached(block: str, pieces: tuple[str, ...] | list[str]) -> bool:
    """Whether a turn stored as ``pieces`` is in ``block``: the pieces found there hold at least half of its
    characters (a turn stored whole: its line is there). The evidence measure of the memory benchmarks."""
    total = sum(len(p) for p in pieces)
    return total > 0 and 2 * sum(len(p) for p in pieces if p in block) >= total
