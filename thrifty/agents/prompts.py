"""Prompts, one place per node. Short and explicit, so that small local models follow them too."""

from __future__ import annotations

from thrifty.budget import POLICY

REACT_SYSTEM = """You answer questions by looking things up with tools.
Call one tool at a time. Search with short keyword queries (names, titles), not whole questions.
When you know the answer, reply with only the answer: a short phrase (a name, a date, a number, yes or no), no explanation."""

REACT_TASK = "Question: {question}"

FINAL_ANSWER = (
    "{reason} You cannot use tools any more. Answer the question now from what you found: "
    "reply with only the answer (a few words), or 'unknown' if you cannot tell.\nQuestion: {question}"
)


def react_system(tracker: bool, extra: str | None = None) -> str:
    """The solver's system prompt; with the Budget Tracker it carries the BATS regime policy."""
    parts = [REACT_SYSTEM]
    if tracker:
        parts.append(POLICY)
    if extra:
        parts.append(extra.strip())
    return "\n\n".join(parts)
