"""BM25 search over a closed corpus, and the ``search`` / ``read`` tools built on it.

Why BM25 (via ``bm25s``): it needs no model, indexes a few thousand paragraphs in well under a second, and
is the standard sparse baseline for HotpotQA-style retrieval, so a budget study measures the agent's
choices rather than the retriever's quirks.

Why two tools: ``search`` shows only the beginning of each hit, which is cheap in prompt tokens; ``read``
fetches one passage in full when the agent decides it is worth it. Both cost a tool call, as in BATS.
"""

from __future__ import annotations

import difflib
import threading
import weakref
from collections import OrderedDict
from typing import Any

import bm25s
import numpy as np

from thrifty.tools.base import Tool, tool
from thrifty.tools.corpus import Corpus, Passage

__all__ = ["BM25Index", "make_search_tools"]

_STOPWORDS = "en"
_FILE_CACHE_SIZE = 8
_file_cache: OrderedDict[tuple[Any, ...], BM25Index] = OrderedDict()
_memory_cache: weakref.WeakKeyDictionary[Corpus, BM25Index] = weakref.WeakKeyDictionary()
_cache_lock = threading.Lock()


class BM25Index:
    """A BM25 index over the title and text of every passage of a corpus."""

    def __init__(self, corpus: Corpus) -> None:
        if len(corpus) == 0:
            raise ValueError("cannot index an empty corpus")
        self.corpus = corpus
        texts = [f"{p.title}\n{p.text}" for p in corpus]
        tokens = bm25s.tokenize(texts, stopwords=_STOPWORDS, show_progress=False)
        self._retriever: bm25s.BM25 | None = None
        if tokens.vocab:  # a corpus of stopwords and one-letter words has nothing to index
            self._retriever = bm25s.BM25()
            self._retriever.index(tokens, show_progress=False)

    @classmethod
    def for_corpus(cls, corpus: Corpus) -> BM25Index:
        """A shared index: one per corpus file (path, mtime, size), or per in-memory Corpus object."""
        key = corpus.fingerprint()
        with _cache_lock:
            cached = _file_cache.get(key) if key is not None else _memory_cache.get(corpus)
            if cached is not None:
                if key is not None:
                    _file_cache.move_to_end(key)
                return cached
        index = cls(corpus)  # built outside the lock: another corpus need not wait for this one
        with _cache_lock:
            if key is None:
                _memory_cache[corpus] = index
            else:
                _file_cache[key] = index
                while len(_file_cache) > _FILE_CACHE_SIZE:
                    _file_cache.popitem(last=False)
        return index

    def search(self, query: str, k: int = 3) -> list[tuple[Passage, float]]:
        """The best ``k`` passages with a positive score, best first (empty when nothing matches)."""
        if k < 1 or self._retriever is None:
            return []
        tokens = bm25s.tokenize([query], stopwords=_STOPWORDS, return_ids=False, show_progress=False)
        terms = [t for t in tokens[0] if t] if tokens else []
        if not terms:
            return []
        scores = np.asarray(self._retriever.get_scores(terms), dtype=float)
        order = np.argsort(-scores, kind="stable")[:k]
        return [(self.corpus[int(i)], float(scores[i])) for i in order if scores[i] > 0]


def _snippet(text: str, limit: int) -> str:
    """The start of a passage, cut at a word boundary."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[:limit]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:") + " ..."


def _closest_title(corpus: Corpus, wanted: str) -> tuple[str | None, list[str]]:
    """A fuzzy title match (near-certain, so a typo still reads the page), else up to 3 suggestions."""
    folded = {t.casefold(): t for t in reversed(corpus.titles)}  # first-seen title wins on collisions
    key = wanted.casefold()
    close = difflib.get_close_matches(key, list(folded), n=3, cutoff=0.6)
    if close and difflib.SequenceMatcher(None, key, close[0]).ratio() >= 0.85:
        return folded[close[0]], []
    suggestions = [folded[c] for c in close]
    if key and len(suggestions) < 3:  # a partial title ("Tinted") is a likely mistake too
        for folded_title, title in folded.items():
            if key in folded_title and title not in suggestions:
                suggestions.append(title)
                if len(suggestions) == 3:
                    break
    return None, suggestions


def make_search_tools(corpus: Corpus, k: int = 3, *, snippet_chars: int = 300) -> list[Tool]:
    """The ``search`` and ``read`` tools over ``corpus`` (priced by Pricing: $0.001 per call by default)."""
    if k < 1:
        raise ValueError("k must be >= 1")
    index = BM25Index.for_corpus(corpus)

    # In-memory and bounded (a BM25 lookup, a dict read): run on the caller's thread, with no hand-off.
    @tool(name="search", timeout=None)
    def search(query: str) -> str:
        """Search the document collection by keywords. Returns the best passages: each title and the
        beginning of its text. Use read(title) to get a passage in full.

        Args:
            query: Keywords to search for (names, dates, distinctive words).
        """
        if not query.strip():
            return "no results: the query is empty; send keywords."
        hits = index.search(query, k)
        if not hits:
            return f"no results for {query!r}; try different keywords."
        return "\n\n".join(f"Title: {p.title}\n{_snippet(p.text, snippet_chars)}" for p, _ in hits)

    @tool(name="read", timeout=None)
    def read(title: str) -> str:
        """Read the full text of one passage, by its title (as shown by search).

        Args:
            title: The passage title, e.g. as listed in search results.
        """
        wanted = title.strip()
        exact = wanted if wanted in corpus else corpus.casefold_title(wanted)
        if exact is None:
            exact, suggestions = _closest_title(corpus, wanted)
            if exact is None:
                if suggestions:
                    return f"not found: {wanted!r}. Did you mean: {'; '.join(suggestions)}?"
                return f"not found: {wanted!r}. Use search to find passage titles."
        return f"Title: {exact}\n{corpus.text_of(exact)}"

    return [search, read]
