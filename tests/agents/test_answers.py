"""Turning model output into a short answer."""

from __future__ import annotations

import pytest

from thrifty.agents.answers import is_non_answer, majority_vote, strip_preamble, usable_answer
from thrifty.agents.planner import Plan, same_clue
from thrifty.agents.solver import clean_answer


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Paris", "Paris"),
        ("Answer: Paris.", "Paris"),
        ("Final answer - 'Paris'", "Paris"),
        ('{"answer": "Paris"}', "Paris"),
        ('{"answer": "Morgan Llywelyn (born Dec', "Morgan Llywelyn (born Dec"),  # cut off by max_tokens
        ('{"tool": "search", "arguments": {"query": "x"}}', ""),  # a tool call is not an answer
        ('{"tool": "sea', ""),
        ("\n\n  Paris\nbecause it is the capital", "Paris"),
        ("", ""),
        (None, ""),
        ("The answer to the question is:", ""),  # a preamble alone holds no answer
        ("The answer to the question is:\nSteven Spielberg", "Steven Spielberg"),
        ("The answer is Paris.", "Paris"),
        ("Based on the search results, the answer is Paris", "Paris"),
        ("Sure! Here is the answer: 'Paris'", "Paris"),
        ('{"answer": "The answer to the question is:"}', ""),
        ("Answerable Records", "Answerable Records"),  # a word that starts like "answer" is kept
        ("- The Goetheanum", "The Goetheanum"),  # a list marker
        ("-5", "-5"),
    ],
)
def test_clean_answer(raw: str | None, expected: str) -> None:
    assert clean_answer(raw) == expected


QUESTION = "Who directed the film Jaws?"


@pytest.mark.parametrize(
    "text",
    ["", None, "   ", "...", "?!", "Answer:", "The answer to the question is:", "The final answer is",
     "Here is my answer:", "The director of Jaws:", "unknown", "I don't know", "Who directed the film Jaws?",
     "directed the film Jaws", "what directed the film Jaws?", "Question: Who directed the film Jaws?",
     "Q - who directed the film jaws"],
)  # fmt: skip
def test_non_answers_are_never_usable(text: str | None) -> None:
    assert not usable_answer(text, QUESTION)


@pytest.mark.parametrize(
    ("text", "question"),
    [
        ("Steven Spielberg", QUESTION),
        ("Jaws", "Which film came first, Jaws or Alien?"),  # an option of the question is an answer
        ("The Old Man and the Sea", "Which came first, The Old Man and the Sea or The Sun Also Rises?"),
        ("yes", "Are Jaws and Alien both films?"),
        ("1975", QUESTION),
    ],
)
def test_real_answers_are_usable(text: str, question: str) -> None:
    assert usable_answer(text, question)


def test_preambles_are_stripped_and_do_not_vote() -> None:
    assert strip_preamble("The answer to the question is: Steven Spielberg") == "Steven Spielberg"
    assert strip_preamble("I think that Paris") == "Paris"
    assert is_non_answer("The answer to the question is:") and not is_non_answer("Paris")
    answers = ["The answer to the question is:", "The answer to the question is:", "Paris"]
    assert majority_vote(answers) == ("Paris", 1)


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("Jaws director", "director of Jaws?", True),
        ("Jaws director", "JAWS  Director", True),
        ("Jaws director", "Jaws director (new angle 2)", True),  # the old numbered fallback was a repeat
        ("Who directed the film Jaws", "directed film Jaws", True),
        ("Jaws director", "Jaws", False),
        ("Jaws director", "Steven Spielberg birthplace", False),
        ("Arthur's Magazine founding year", "First for Women founding year", False),
    ],
)
def test_same_clue_ignores_case_punctuation_filler_and_order(a: str, b: str, same: bool) -> None:
    assert same_clue(a, b) is same


def test_a_clue_without_a_word_is_not_kept() -> None:
    plan = Plan.model_validate(
        {"exploration": ["...", "] }", " Tinted\n Windows ", ""], "verification": ["?"]}
    )
    assert (plan.exploration, plan.verification) == (["Tinted Windows"], [])
