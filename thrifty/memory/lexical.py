"""A LOW memory tier: items in a database (SQLAlchemy), recalled by BM25 (bm25s). No model, no embedder.

Why it is the LOW tier: BM25 needs nothing but the text, answers in well under a millisecond once the index
is built, and is the strongest single retriever measured on LoCoMo (MEMORY.md), so it is the floor every
richer tier must beat. Each operation costs one ``memory_ops`` (plus ``usd_per_op`` if the store is priced).

Storage: one table of items (``memory_items``) and one version counter (``memory_state``) bumped by every
write or forget that changes something. Indexes are built per recall scope and kept until the version moves,
so a recall after another process wrote sees its items. The tables can live in the run store's database.

Words are stemmed (Snowball English, PyStemmer) unless ``stem=False``: "painted" finds "painting", "kids"
finds "kid". On LoCoMo's 1,531 questions with gold evidence (categories 1-4) stemming raised the evidence
recall of five 320-token chunks from 0.757 to 0.792. The index also scores single lines (a chunk's turns,
:meth:`LexicalTier.line_scores`) for the LOW turn filter (:mod:`thrifty.memory.turns`).
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from datetime import datetime
from pathlib import Path
from typing import Any

import bm25s
import numpy as np
from bm25s.tokenization import Tokenized
from sqlalchemy import JSON, DateTime, Integer, String, Text, delete, func, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
from sqlalchemy.pool import StaticPool
from sqlalchemy.sql.elements import ColumnElement

from thrifty.memory.records import (
    ForgetRequest,
    Forgotten,
    MemoryItem,
    MemoryRequest,
    Recalled,
    RecallRequest,
    Scope,
    WriteRequest,
    Written,
    _utc,
    masked,
)
from thrifty.memory.tier import Estimate, MemoryContext, MemoryTier
from thrifty.store import make_engine
from thrifty.store.db import IN_MEMORY

__all__ = ["LexicalTier", "item_lines"]

_STOPWORDS = "en"
_CACHED_SCOPES = 32
_IN_CHUNK = 500  # ids per IN (...) clause, well under any database's parameter limit


class _Base(DeclarativeBase):
    pass


class _ItemRow(_Base):
    __tablename__ = "memory_items"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[str | None] = mapped_column(String(200), nullable=True, index=True)
    agent_id: Mapped[str | None] = mapped_column(String(200), nullable=True, index=True)
    run_id: Mapped[str | None] = mapped_column(String(200), nullable=True, index=True)
    text: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(500), default="")
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    valid_from: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    valid_to: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    meta: Mapped[dict[str, Any]] = mapped_column(JSON)


class _StateRow(_Base):
    __tablename__ = "memory_state"

    key: Mapped[str] = mapped_column(String(40), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, default=0)


_VERSION = "version"


def _row(item: MemoryItem) -> _ItemRow:
    return _ItemRow(
        id=item.id,
        **item.scope.fields(),
        text=item.text,
        source=item.source,
        created=item.created,
        valid_from=item.valid_from,
        valid_to=item.valid_to,
        meta=dict(item.meta),
    )


def _item(row: _ItemRow) -> MemoryItem:
    """A stored row as an item, masked (:func:`masked`): a row written by a version that stored keys as
    written never shows them."""
    return masked(
        MemoryItem(
            text=row.text,
            scope=Scope(user_id=row.user_id, agent_id=row.agent_id, run_id=row.run_id),
            source=row.source,
            created=row.created,
            valid_from=row.valid_from,
            valid_to=row.valid_to,
            meta=dict(row.meta or {}),
        )
    )


def _within(scope: Scope) -> list[ColumnElement[bool]]:
    return [getattr(_ItemRow, name) == value for name, value in scope.fields().items()]


_STEMMER: Any = None
_STEMMER_LOCK = threading.Lock()


def _stemmer() -> Any:
    """The Snowball English stemmer (PyStemmer, a dependency of thrifty), made once."""
    global _STEMMER
    with _STEMMER_LOCK:
        if _STEMMER is None:
            import Stemmer  # PyStemmer

            _STEMMER = Stemmer.Stemmer("english")
        return _STEMMER


def item_lines(item: MemoryItem) -> tuple[str, list[str]]:
    """An item as (header, lines): a chunk of turns is its dated header and one line per turn (or piece of
    a turn); any other item is one line with no header."""
    if item.kind == "turns":
        header, _, rest = item.text.partition("\n")
        return header, rest.split("\n") if rest else []
    return "", [item.text]


class _BM25:
    """bm25s over documents tokenized by :func:`_tokenize` (token ids and their vocabulary)."""

    def __init__(self, ids: list[list[int]], vocab: dict[str, int], stem: bool) -> None:
        self.stem = stem
        self.retriever: bm25s.BM25 | None = None
        if ids and vocab:  # texts made only of stopwords have nothing to index
            self.retriever = bm25s.BM25()
            self.retriever.index(Tokenized(ids=ids, vocab=dict(vocab)), show_progress=False)

    def _stemmer(self) -> Any:
        return _stemmer() if self.stem else None

    def scores(self, query: str, size: int) -> np.ndarray:
        """The BM25 score of every text for ``query`` (zeros when nothing can match)."""
        if self.retriever is None:
            return np.zeros(size)
        terms = _query_terms(query, self.stem)
        if not terms:
            return np.zeros(size)
        return np.asarray(self.retriever.get_scores(list(terms)), dtype=float)


def _tokenize(texts: Sequence[str], stem: bool) -> tuple[list[list[int]], dict[str, int]]:
    """Each text's token ids (lower case, English stop words out, stemmed if asked) and the vocabulary."""
    if not texts:
        return [], {}
    tokens = bm25s.tokenize(
        list(texts),
        stopwords=_STOPWORDS,
        stemmer=_stemmer() if stem else None,
        allow_empty=True,
        show_progress=False,
    )
    assert isinstance(tokens, Tokenized)
    return [list(doc) for doc in tokens.ids], dict(tokens.vocab)


@functools.lru_cache(maxsize=64)
def _query_terms(query: str, stem: bool) -> tuple[str, ...]:
    """A query's BM25 terms (kept for the next lookups of the same query: retrieve, then the turn filter)."""
    tokens = bm25s.tokenize(
        [query],
        stopwords=_STOPWORDS,
        stemmer=_stemmer() if stem else None,
        return_ids=False,
        show_progress=False,
    )
    return tuple(t for t in tokens[0] if isinstance(t, str) and t) if tokens else ()


class _Index:
    """BM25 over the items of one scope, as they were at one version of the store; and, built on first
    use, BM25 over their lines (:func:`item_lines`) for the turn filter."""

    def __init__(self, items: list[MemoryItem], stem: bool = True) -> None:
        self.items = items
        self.stem = stem
        self.kinds = np.array([i.kind for i in items], dtype=object)
        # Every header and line is tokenized once; an item's tokens are its header's and lines' (its text
        # is them joined by newlines), so the item index and the line index share one tokenization.
        split = [item_lines(item) for item in items]
        ids, self._vocab = _tokenize([t for header, lines in split for t in (header, *lines)], stem)
        self._line_ids: list[list[int]] = []
        self._spans: dict[str, tuple[int, int]] = {}  # by text: unique within a scope, as the item id
        docs: list[list[int]] = []
        at = 0
        for item, (_, lines) in zip(items, split, strict=True):
            own = ids[at : at + 1 + len(lines)]
            docs.append([t for doc in own for t in doc])
            self._spans[item.text] = (len(self._line_ids), len(self._line_ids) + len(lines))
            self._line_ids.extend(own[1:])
            at += 1 + len(lines)
        self._bm25 = _BM25(docs, self._vocab, stem)
        self._retriever = self._bm25.retriever
        self._lines: _BM25 | None = None
        self._lines_lock = threading.Lock()

    def _line_index(self) -> _BM25:
        with self._lines_lock:
            if self._lines is None:
                self._lines = _BM25(self._line_ids, self._vocab, self.stem)
            return self._lines

    def line_scores(self, query: str, items: Sequence[MemoryItem]) -> list[list[float]]:
        """BM25 scores of the lines of each of ``items`` (scored among all the scope's lines), in their
        order; an item not in this index scores zero on every line."""
        scores = self._line_index().scores(query, len(self._line_ids))
        out: list[list[float]] = []
        for item in items:
            start, end = self._spans.get(item.text, (0, 0))
            out.append([float(x) for x in scores[start:end]] or [0.0] * len(item_lines(item)[1]))
        return out

    def allowed(self, kinds: frozenset[str] | None) -> np.ndarray:
        """A mask of the items of the given layers (all when ``kinds`` is None)."""
        if kinds is None:
            return np.ones(len(self.items), dtype=bool)
        return np.isin(self.kinds, list(kinds))

    def search(self, query: str, k: int, kinds: frozenset[str] | None = None) -> list[MemoryItem]:
        if self._retriever is None:
            return []
        scores = self._bm25.scores(query, len(self.items))
        if kinds is not None:
            scores = np.where(self.allowed(kinds), scores, 0.0)
        order = np.argsort(-scores, kind="stable")[:k]
        return [
            self.items[int(i)].model_copy(update={"score": float(scores[i])}) for i in order if scores[i] > 0
        ]


def _exact(scope_key: str) -> list[ColumnElement[bool]]:
    """The rows written under exactly this scope (fields it does not set are NULL)."""
    scope = Scope.model_validate_json(scope_key)
    fields = scope.fields()
    return [
        getattr(_ItemRow, name) == fields[name] if name in fields else getattr(_ItemRow, name).is_(None)
        for name in ("user_id", "agent_id", "run_id")
    ]


def _chain_facts(session: Session, new: list[MemoryItem]) -> int:
    """Keep each fact key's validity chain in order, within the write's transaction: sorted by when they
    hold, each fact holds until the next one's ``valid_from`` (Zep-style invalidation, nothing deleted);
    the latest is open. Order-independent, so two writers, or sessions ingested out of order, end the same.
    How many facts were closed (or re-closed) by this write."""
    wanted: dict[str, set[str]] = {}
    for item in new:
        if item.kind == "fact" and item.meta.get("key"):
            wanted.setdefault(item.scope.key, set()).add(str(item.meta["key"]))
    closed = 0
    for scope_key, keys in wanted.items():
        rows = [
            r
            for r in session.scalars(
                select(_ItemRow).where(*_exact(scope_key), _ItemRow.valid_from.is_not(None))
            )
            if (r.meta or {}).get("kind") == "fact" and (r.meta or {}).get("key") in keys
        ]
        chains: dict[str, list[_ItemRow]] = {}
        for r in rows:
            chains.setdefault(str(r.meta["key"]), []).append(r)
        for chain in chains.values():
            chain.sort(key=lambda r: (_utc(r.valid_from), _utc(r.created), int(r.meta.get("order", 0)), r.id))
            for row, after in zip(chain, [*chain[1:], None], strict=True):
                end = None if after is None else _utc(after.valid_from)
                if _utc(row.valid_to) != end:
                    row.valid_to = end
                    row.meta = {**row.meta, "superseded_by": None if after is None else after.id}
                    closed += end is not None
    return closed


def _create_tables(engine: Engine, attempts: int = 3) -> None:
    """Create the memory tables that are missing. Another writer opening the same new store at once (a
    batch's tasks, two processes) may create one between the check and the CREATE, which then fails
    ("table memory_items already exists"): checking again finds it and creates only what is still missing;
    an error that stays is raised."""
    for attempt in range(attempts):
        try:
            _Base.metadata.create_all(engine)
            return
        except (OperationalError, ProgrammingError) as exc:
            if attempt == attempts - 1 or "already exists" not in str(exc.orig):  # e.g. locked: not retried
                raise


class LexicalTier(MemoryTier):
    """LOW tier: SQLAlchemy storage (in-memory SQLite by default; a path or any URL), BM25 recall.

    ``LexicalTier(".thrifty/memory.db")`` keeps memories on disk; ``LexicalTier(engine)`` shares an engine.
    """

    level = "low"

    def __init__(
        self,
        store: str | Path | Engine | None = None,
        *,
        name: str = "lexical",
        usd_per_op: float = 0.0,
        stem: bool = True,
    ) -> None:
        if usd_per_op < 0:
            raise ValueError("usd_per_op must be >= 0")
        self.name = name
        self.stem = stem
        self.usd_per_op = usd_per_op
        self._own_engine = not isinstance(store, Engine)
        self.engine: Engine = store if isinstance(store, Engine) else make_engine(store or IN_MEMORY)
        # One shared connection (in-memory SQLite) has one transaction at a time: take turns on it.
        self._turn: AbstractContextManager[object] = (
            threading.RLock() if isinstance(self.engine.pool, StaticPool) else nullcontext()
        )
        _create_tables(self.engine)
        try:
            with Session(self.engine) as session, session.begin():
                if session.get(_StateRow, _VERSION) is None:
                    session.add(_StateRow(key=_VERSION, version=0))
        except IntegrityError:  # another process created it first
            pass
        self._indexes: OrderedDict[str, tuple[int, _Index]] = OrderedDict()
        self._lock = threading.Lock()

    # ----------------------------------------------------------------------------------- pricing
    def estimate(self, request: MemoryRequest) -> Estimate:
        return Estimate.ops(1, usd=self.usd_per_op)

    # ---------------------------------------------------------------------------------- operations
    def write(self, request: WriteRequest, ctx: MemoryContext) -> Written:
        rows = {item.id: item for item in request.items}
        with self._turn:
            try:
                added, closed = self._insert_new(rows)
            except IntegrityError:  # another writer stored some of them between our read and our insert
                added, closed = self._insert_new(rows)
        return Written(added=added, skipped=len(rows) - added, closed=closed)

    def _insert_new(self, items: dict[str, MemoryItem]) -> tuple[int, int]:
        """Insert the items not stored yet, in one transaction (facts' validity chains kept in order);
        how many were new, and how many facts they closed."""
        ids = list(items)
        with Session(self.engine) as session, session.begin():
            stored: set[str] = set()
            for start in range(0, len(ids), _IN_CHUNK):
                chunk = ids[start : start + _IN_CHUNK]
                stored.update(session.scalars(select(_ItemRow.id).where(_ItemRow.id.in_(chunk))))
            new = [_row(item) for id_, item in items.items() if id_ not in stored]
            closed = 0
            if new:
                session.add_all(new)
                closed = _chain_facts(session, [items[row.id] for row in new])
                self._bump(session)
            return len(new), closed

    def recall(self, request: RecallRequest, ctx: MemoryContext) -> Recalled:
        with self._turn:
            index = self._index(request.scope)
        return Recalled(items=index.search(request.query, request.k, request.kinds))

    def line_scores(self, scope: Scope, query: str, items: Sequence[MemoryItem]) -> list[list[float]]:
        """BM25 scores of each line of ``items`` (recalled from ``scope``) for ``query``, in their order: what
        the LOW turn filter keeps turns by. Part of the operation that asks (a condense), not charged apart.
        Reads the scope's cached index, as fresh as the recall that just retrieved ``items`` (built when
        there is none)."""
        with self._lock:  # the index the retrieve before it just checked against the store's version
            cached = self._indexes.get(scope.key)
        if cached is None:
            with self._turn:
                cached = (0, self._index(scope))
        return cached[1].line_scores(query, items)

    def has_kind(self, scope: Scope, kind: str) -> bool:
        """Whether ``scope`` holds an item of layer ``kind`` (free, from the cached index: as fresh as the
        last recall in that scope, which checked the store's version; built when there is none)."""
        with self._lock:
            cached = self._indexes.get(scope.key)
        if cached is None:
            with self._turn:
                cached = (0, self._index(scope))
        return bool((cached[1].kinds == kind).any())

    def items(self, scope: Scope) -> list[MemoryItem]:
        """Every item within ``scope``, oldest first, from the cached index. Free: a look at the store
        (as :meth:`count`), for the write path and condense, not a recall."""
        with self._turn:
            return list(self._index(scope).items)

    def forget(self, request: ForgetRequest, ctx: MemoryContext) -> Forgotten:
        with self._turn, Session(self.engine) as session, session.begin():
            result = session.execute(delete(_ItemRow).where(*_within(request.scope)))
            removed = int(getattr(result, "rowcount", 0) or 0)
            if removed:
                self._bump(session)
        return Forgotten(removed=removed)

    def close(self) -> None:
        with self._lock:
            self._indexes.clear()
        if self._own_engine:
            self.engine.dispose()

    # ------------------------------------------------------------------------------------ helpers
    @staticmethod
    def _bump(session: Session) -> None:
        session.execute(
            update(_StateRow).where(_StateRow.key == _VERSION).values(version=_StateRow.version + 1)
        )

    def _index(self, scope: Scope) -> _Index:
        """The scope's index at the store's current version (built again only after a change)."""
        key = scope.key
        with Session(self.engine) as session:
            version = session.scalar(select(_StateRow.version).where(_StateRow.key == _VERSION)) or 0
            with self._lock:
                cached = self._indexes.get(key)
                if cached is not None and cached[0] == version:
                    self._indexes.move_to_end(key)
                    return cached[1]
            # Read after the version: the rows are at least that new, so a later change always rebuilds.
            rows = session.scalars(
                select(_ItemRow).where(*_within(scope)).order_by(_ItemRow.created, _ItemRow.id)
            ).all()
            index = _Index([_item(row) for row in rows], self.stem)
        with self._lock:
            self._indexes[key] = (version, index)
            self._indexes.move_to_end(key)
            while len(self._indexes) > _CACHED_SCOPES:
                self._indexes.popitem(last=False)
        return index

    def count(self, scope: Scope | None = None) -> int:
        """How many items are stored (within ``scope`` if given). Free: a look at the store, not recall."""
        with self._turn, Session(self.engine) as session:
            query = select(func.count()).select_from(_ItemRow)
            if scope is not None:
                query = query.where(*_within(scope))
            return int(session.scalar(query) or 0)
