"""The calculator evaluates arithmetic exactly and refuses anything else, without ever calling eval."""

from __future__ import annotations

import pytest

from thrifty.budget import Ledger
from thrifty.tools import ToolError, ToolRunner, calculator


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("1 + 2 * 3", "7"),
        ("(1969 - 1912) * 2", "114"),
        ("7 / 2", "3.5"),
        ("8 / 2", "4"),
        ("7 // 2", "3"),
        ("-7 % 3", "2"),
        ("2 ** 10", "1024"),
        ("2 ^ 10", "1024"),
        ("-(3 - 5)", "2"),
        ("+4", "4"),
        ("sqrt(16) + abs(-2)", "6"),
        ("round(3.14159, 2)", "3.14"),
        ("round(2.5)", "2"),
        ("min(4, 2, 8) + max(1, 9)", "11"),
        ("log(100, 10)", "2"),
        ("log10(1000)", "3"),
        ("floor(2.7) + ceil(2.1)", "5"),
        ("factorial(5)", "120"),
        ("2 * pi", "6.28318530718"),
        ("0.1 + 0.2", "0.3"),
        ("10 ** 20", "100000000000000000000"),
        ("1e20 * 10", "1e+21"),
    ],
)
def test_correct_results(expression: str, expected: str) -> None:
    assert calculator(expression) == expected


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("__import__('os')", "not allowed"),
        ("__import__('os').system('echo hi')", "not allowed"),
        ("os", "unknown name 'os'"),
        ("x + 1", "unknown name 'x'"),
        ("(1).__class__", "Attribute is not allowed"),
        ("'a' * 3", "only numbers"),
        ("True + 1", "only numbers"),
        ("[1, 2]", "List is not allowed"),
        ("lambda: 1", "Lambda is not allowed"),
        ("9 ** 9 ** 9", "too large"),
        ("2 ** 100000", "too large"),
        ("10 ** 5000", "too large"),
        ("10.0 ** 400", "too large"),
        ("factorial(100000)", "too large"),
        ("1 / 0", "division by zero"),
        ("5 % 0", "division by zero"),
        ("sqrt(-1)", "math error"),
        ("1 +", "cannot parse"),
        ("", "empty"),
        ("1" + "+1" * 300, "too long"),
        ("1 << 10", "not allowed"),
        ("abs(x=1)", "keyword"),
        ("sqrt(1, 2, 3)", "sqrt()"),
    ],
)
def test_rejections_raise_tool_error(expression: str, message: str) -> None:
    with pytest.raises(ToolError, match=message.replace("(", r"\(").replace(")", r"\)")):
        calculator(expression)


def test_runner_reports_a_bad_expression_once_without_retrying() -> None:
    ledger = Ledger()
    runner = ToolRunner([calculator], ledger)
    obs = runner.run("calculator", {"expression": "__import__('os')"})
    assert not obs.ok
    assert obs.content.startswith("error: function '__import__' is not allowed")
    assert obs.attempts == 1
    assert runner.run("calculator", '{"expression": "6 * 7"}').content == "42"
    assert calculator.price == 0.0


# Issue 14 item 3: every operation is bounded, so the calculator (run on the caller's thread, with no timeout)
# can never hold a run past its time budget.
_HOSTILE = [
    "round(1, -10**9)",
    "round(1, -10**6)",
    "round(10**1000, -100000)",
    "round(1.5, -10**9)",
    "round(1, 10**9)",
    "9 ** 9 ** 9",
    "(10 ** 1000) ** 5",
    "factorial(500) * factorial(500)",
    "factorial(500) ** 2",
    "pow(2, 4000) * pow(2, 4000)",
    "exp(10 ** 1000)",
    "sqrt(10 ** 1000)",
    "10 ** 4000 / 3",
    "10 ** 1000 * 1.0",
    "ceil(1e309)",
    "floor(1e308) * floor(1e308) * floor(1e308) * floor(1e308) * floor(1e308)",
    "2 ** 2 ** 2 ** 2 ** 2 ** 2",
    "9" * 499,
    "9" * 499 + "!",
    "-" * 498 + "1",
    "(" * 200 + "1" + ")" * 200,
    "round(" * 60 + "1" + ", -1000)" * 60,
    "max(" + ", ".join(["10 ** 1200"] * 40) + ")",
    "10 ** 1200 % 7 ** 1000 // 3 ** 999",
    "x" * 10_000_000,
]


@pytest.mark.parametrize("expression", _HOSTILE, ids=lambda e: e[:40])
def test_hostile_expressions_end_at_once(expression: str) -> None:
    import time

    started = time.monotonic()
    try:
        result = calculator(expression)
    except ToolError:
        result = None
    assert time.monotonic() - started < 0.5, "every operation must be bounded"
    assert result is None or len(result) <= 1300


def test_round_refuses_digits_out_of_range() -> None:
    with pytest.raises(ToolError, match="digits"):
        calculator("round(1, -10**9)")
    assert calculator("round(123456, -3)") == "123000"
    assert calculator("round(10**1000, -999)") == str(10**1000)


@pytest.mark.parametrize("terms", [51, 60, 120, 240])
def test_flat_sums_and_products_of_many_terms(terms: int) -> None:
    """A flat chain is not nesting: ``1+1+...+1`` is one level deep however many terms it has."""
    assert calculator("+".join(["1"] * terms)) == str(terms)
    assert calculator("-".join(["1"] * terms)) == str(2 - terms)
    assert calculator("*".join(["2"] * min(terms, 200))) == str(2 ** min(terms, 200))


def test_real_nesting_is_still_bounded() -> None:
    with pytest.raises(ToolError, match="nested too deeply"):
        calculator("abs(" * 60 + "1" + ")" * 60)
