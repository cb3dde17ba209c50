"""Types for the part of bm25s that thrifty calls (bm25s 0.2-0.3 ships no stubs and no ``py.typed``).

pyright reads this file instead of the package (``stubPath`` in pyproject.toml). It declares only what
``thrifty/tools/search.py`` uses; add to it, from bm25s's own signatures, before calling anything else.
"""

from collections.abc import Callable, Iterable
from typing import Any, Literal, NamedTuple, overload

import numpy as np
import numpy.typing as npt

class Tokenized(NamedTuple):
    ids: list[list[int]]
    vocab: dict[str, int]

@overload
def tokenize(
    texts: str | list[str],
    lower: bool = True,
    token_pattern: str = ...,
    stopwords: str | list[str] = "english",
    stemmer: Callable[..., Any] | None = None,
    return_ids: Literal[True] = True,
    show_progress: bool = True,
    leave: bool = False,
    allow_empty: bool = True,
) -> Tokenized: ...
@overload
def tokenize(
    texts: str | list[str],
    lower: bool = True,
    token_pattern: str = ...,
    stopwords: str | list[str] = "english",
    stemmer: Callable[..., Any] | None = None,
    *,
    return_ids: Literal[False],
    show_progress: bool = True,
    leave: bool = False,
    allow_empty: bool = True,
) -> list[list[str]]: ...

class BM25:
    def __init__(
        self,
        k1: float = 1.5,
        b: float = 0.75,
        delta: float = 0.5,
        method: str = "lucene",
        idf_method: str | None = None,
        dtype: str = "float32",
        int_dtype: str = "int32",
        corpus: Any = None,
        backend: str = "numpy",
        csc_backend: str = "numpy",
        auto_compile: bool = True,
    ) -> None: ...
    def index(
        self,
        corpus: Iterable[Any] | tuple[Any, ...] | Tokenized,
        create_empty_token: bool = True,
        show_progress: bool = True,
        leave_progress: bool = False,
    ) -> None: ...
    def get_scores(
        self, query_tokens_single: list[str], weight_mask: Any = None
    ) -> npt.NDArray[np.floating[Any]]: ...
