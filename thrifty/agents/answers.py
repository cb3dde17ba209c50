"""Answer normalisation and voting, shared by the judge, self-consistency and the benchmark metrics."""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)
NON_ANSWERS = {"", "unknown", "i don t know", "i do not know", "none", "n a"}


def normalize_answer(text: str | None) -> str:
    """The usual QA normalisation (SQuAD / HotpotQA): lower-case, drop punctuation and articles, squeeze spaces."""
    if not text:
        return ""
    text = text.lower().translate(_PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def is_non_answer(text: str | None) -> bool:
    return normalize_answer((text or "").replace("'", " ")) in NON_ANSWERS


def majority_vote(answers: Sequence[str | None]) -> tuple[str | None, int]:
    """The most common answer after normalisation, and its count. Non-answers do not vote.

    Ties go to the answer that appeared first, so the result is deterministic for a given order.
    Returns the first original spelling of the winning answer.
    """
    votes = [(i, a) for i, a in enumerate(answers) if a and not is_non_answer(a)]
    if not votes:
        return None, 0
    counts = Counter(normalize_answer(a) for _, a in votes)
    first_seen: dict[str, int] = {}
    for i, a in votes:
        first_seen.setdefault(normalize_answer(a), i)
    winner = max(counts, key=lambda k: (counts[k], -first_seen[k]))
    return answers[first_seen[winner]], counts[winner]
