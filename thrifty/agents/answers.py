"""Answer normalisation and voting, shared by the judge, self-consistency and the benchmark metrics, and
the one test of what counts as an answer at all (:func:`usable_answer`): an empty phrase, punctuation, a
preamble ("The answer to the question is:"), "unknown" or the question said back is never accepted as
one, on any provider and in every strategy."""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)
NON_ANSWERS = {"", "unknown", "i don t know", "i do not know", "none", "n a"}
_WH_WORDS = {"who", "whom", "whose", "what", "which", "when", "where", "why", "how"}
#: Lead-ins a model writes before (or instead of) its answer; :func:`strip_preamble` removes them.
_LEAD_INS = (
    re.compile(
        r"^(?:here\s+is\s+|here's\s+)?(?:the\s+|my\s+)?(?:final\s+|short\s+|correct\s+)?answer\b"
        r"(?:\s+(?:to|for)\s+(?:the|this|your|that)\s+question)?"
        r"(?:\s*(?:is|was|would\s+be|should\s+be|will\s+be)\b\s*[:\-–]?|\s*[:\-–])\s*",
        re.IGNORECASE,
    ),
    re.compile(r"^(?:sure|okay|ok|certainly|well)\s*[!,.:]\s*", re.IGNORECASE),
    re.compile(r"^(?:based\s+on|according\s+to)\b[^,:]{0,80}[,:]\s*", re.IGNORECASE),
    re.compile(r"^(?:i\s+(?:think|believe)|it\s+(?:seems|appears))(?:\s+that)?\b\s*[:,]?\s*", re.IGNORECASE),
)


def normalize_answer(text: str | None) -> str:
    """The usual QA normalisation (SQuAD / HotpotQA): lower-case, drop punctuation and articles, squeeze spaces."""
    if not text:
        return ""
    text = text.lower().translate(_PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def strip_preamble(text: str | None) -> str:
    """``text`` without the lead-ins a model writes before its answer ("The answer to the question is:",
    "Answer -", "Based on the results,", "I think"); "" when nothing is left."""
    text = (text or "").strip()
    changed = True
    while changed and text:
        changed = False
        for lead in _LEAD_INS:
            cut = lead.sub("", text, count=1)
            if cut != text:
                text, changed = cut.strip(), True
    return text


def is_non_answer(text: str | None) -> bool:
    """Empty, punctuation or control characters only, "unknown" and the like, a preamble with nothing after
    it, or a phrase that ends in a colon (the start of an answer that never came)."""
    rest = strip_preamble(text)
    if not any(ch.isprintable() and not ch.isspace() for ch in rest):
        return True  # nothing visible: control characters (NUL, escapes) and blanks only
    return normalize_answer(rest.replace("'", " ")) in NON_ANSWERS or rest.rstrip().endswith(":")


def restates_question(text: str | None, question: str | None) -> bool:
    """Whether ``text`` only says the question back: two or more words, all of them the question's, and at
    least 60% of the question's words (question words such as "which" / "what" aside) (an either-or question's option is a fair answer, the question is not)."""
    if not text or not question:
        return False
    text = re.sub(r"^\s*(?:question|q)\s*[:.-]\s*", "", text, flags=re.IGNORECASE)  # "Question: <it>"
    words = set(normalize_answer(text.replace("'", " ")).split()) - _WH_WORDS
    asked = set(normalize_answer(question.replace("'", " ")).split()) - _WH_WORDS
    return len(words) >= 2 and bool(asked) and words <= asked and len(words) >= 0.6 * len(asked)


def usable_answer(text: str | None, question: str | None = None) -> bool:
    """Whether ``text`` may be accepted as an answer: not a non-answer (:func:`is_non_answer`) and not the
    question said back (:func:`restates_question`)."""
    return bool(text) and not is_non_answer(text) and not restates_question(text, question)


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
