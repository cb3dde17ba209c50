"""Metric functions against hand-computed cases."""

from __future__ import annotations

import math

import pytest

from thrifty.bench.metrics import (
    budget_stop_share,
    cost_of_pass,
    e3,
    exact_match,
    f1_score,
    is_budget_stop,
    mean,
    normalize_answer,
    stderr,
    stdev,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The Eiffel Tower!", "eiffel tower"),
        ("  An apple,  a day ", "apple day"),
        ("Theatre of the Absurd", "theatre of absurd"),  # 'the' inside a word stays
        ("U.S.A.", "usa"),
        ("", ""),
        (None, ""),
    ],
)
def test_normalize_answer(text: str | None, expected: str) -> None:
    assert normalize_answer(text) == expected


def test_exact_match_normalises_and_takes_the_best_gold() -> None:
    assert exact_match("the Eiffel tower.", "Eiffel Tower") == 1.0
    assert exact_match("Paris", ["London", "paris"]) == 1.0
    assert exact_match("Paris, France", "Paris") == 0.0
    assert exact_match(None, "Paris") == 0.0


def test_f1_by_hand() -> None:
    # prediction tokens {barack, obama, jr}, gold {barack, obama}: P = 2/3, R = 1, F1 = 0.8
    assert f1_score("Barack Obama Jr.", "Barack Obama") == pytest.approx(0.8)
    # P = 1/1, R = 1/3: F1 = 2 * (1/3) / (4/3) = 0.5
    assert f1_score("Obama", "president Barack Obama") == pytest.approx(0.5)
    assert f1_score("Obama", ["Lincoln", "the Obama"]) == pytest.approx(
        1.0
    )  # max over golds, articles dropped
    assert f1_score("cat dog", "dog cat") == pytest.approx(1.0)
    assert f1_score("x", "y") == 0.0
    assert f1_score(None, "y") == 0.0


def test_f1_yes_no_is_all_or_nothing() -> None:
    assert f1_score("no way", "no") == 0.0
    assert f1_score("yes", "yes it is") == 0.0
    assert f1_score("Yes.", "yes") == 1.0


def test_statistics() -> None:
    values = [1.0, 0.0, 1.0, 0.0]
    assert mean(values) == 0.5
    assert stdev(values) == pytest.approx(math.sqrt(1 / 3))  # sum of squares 1, n - 1 = 3
    assert stderr(values) == pytest.approx(math.sqrt(1 / 3) / 2)
    assert stdev([3.0]) == 0.0 and stderr([3.0]) == 0.0
    assert math.isnan(mean([]))


def test_cost_metrics() -> None:
    assert cost_of_pass(0.01, 0.5) == pytest.approx(0.02)
    assert cost_of_pass(0.01, 0.0) == math.inf
    assert e3(0.5, 1000) == pytest.approx(0.00025)
    assert e3(0.5, 0) == 0.0


def test_budget_stops() -> None:
    assert is_budget_stop("budget_exhausted:tool_calls")
    assert not is_budget_stop("completed") and not is_budget_stop(None)
    reasons = ["completed", "budget_exhausted:tool_calls", "budget_exhausted:seconds", "max_steps"]
    assert budget_stop_share(reasons) == 0.5
