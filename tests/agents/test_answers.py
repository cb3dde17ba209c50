"""Turning model output into a short answer."""

from __future__ import annotations

import pytest

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
    ],
)
def test_clean_answer(raw: str | None, expected: str) -> None:
    assert clean_answer(raw) == expected
