"""Tools an agent can call: the ``@tool`` decorator, the budget-charging runner, search and a calculator.

Every tool call goes through :class:`ToolRunner`, which validates the model's arguments, reserves the call
on the Ledger before running it, and turns whatever happens into an :class:`Observation` for the model.
"""

from __future__ import annotations

import os

from thrifty.tools.base import Tool, ToolError, TransientToolError, tool
from thrifty.tools.calculator import calculator
from thrifty.tools.corpus import Corpus, CorpusError, Passage, bundled_dataset_path, load_corpus
from thrifty.tools.runner import Observation, ToolRunner
from thrifty.tools.search import BM25Index, make_search_tools

__all__ = [
    "BM25Index",
    "Corpus",
    "CorpusError",
    "Observation",
    "Passage",
    "Tool",
    "ToolError",
    "ToolRunner",
    "TransientToolError",
    "builtin_tools",
    "bundled_dataset_path",
    "calculator",
    "load_corpus",
    "make_search_tools",
    "tool",
]


def builtin_tools(corpus: Corpus | str | os.PathLike[str] | None = None, *, k: int = 3) -> dict[str, Tool]:
    """The built-in tools by name: ``calculator`` always; ``search`` and ``read`` when a corpus is given
    (a Corpus, or a path that :func:`load_corpus` reads)."""
    tools: dict[str, Tool] = {calculator.name: calculator}
    if corpus is not None:
        if not isinstance(corpus, Corpus):
            corpus = load_corpus(corpus)
        tools.update({t.name: t for t in make_search_tools(corpus, k=k)})
    return tools
