"""Budget: validation, limits(), from_limits, scaled and merged."""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from thrifty.budget import DIMENSIONS, Budget, ModelPrice, Pricing, tool_dimension

INT_FIELDS = ("input_tokens", "output_tokens", "total_tokens", "model_requests", "tool_calls")
FLOAT_FIELDS = ("usd", "seconds")


def test_default_budget_is_unlimited() -> None:
    budget = Budget()
    assert budget.limits() == {}
    assert budget.is_unlimited()
    assert budget.per_tool == {}


@pytest.mark.parametrize("field", INT_FIELDS + FLOAT_FIELDS)
@pytest.mark.parametrize("value", [0, -1, -0.5])
def test_zero_or_negative_limit_is_rejected(field: str, value: float) -> None:
    with pytest.raises(ValidationError):
        Budget(**{field: value})


@pytest.mark.parametrize("field", [*INT_FIELDS, *FLOAT_FIELDS, "memory_ops"])
def test_true_or_false_is_not_a_limit(field: str) -> None:
    # `tool_calls: true` in a task file was read as a limit of 1
    with pytest.raises(ValidationError, match="not true or false"):
        Budget(**{field: True})
    with pytest.raises(ValidationError, match="not true or false"):
        Budget(per_tool={"search": True})


def test_a_per_tool_limit_written_as_a_whole_float_is_that_number() -> None:
    # `per_tool: {search: 2.0}` was refused though `tool_calls: 2.0` is 2; 2.5 is still no whole number of calls
    assert Budget(per_tool={"search": 2.0}).per_tool == {"search": 2}
    assert Budget(tool_calls=2.0).tool_calls == 2
    with pytest.raises(ValidationError):
        Budget(per_tool={"search": 2.5})
    with pytest.raises(ValidationError):
        Budget(per_tool={"search": 0})


@pytest.mark.parametrize("field", FLOAT_FIELDS)
@pytest.mark.parametrize("value", [math.inf, math.nan])
def test_an_infinite_or_nan_limit_is_rejected(field: str, value: float) -> None:
    # unlimited is an unset field; Budget(usd=inf) was accepted and the run then failed (OverflowError)
    with pytest.raises(ValidationError, match="finite"):
        Budget(**{field: value})


@pytest.mark.parametrize("field", [*INT_FIELDS, "memory_ops"])
def test_a_whole_number_limit_too_large_for_the_ledger_is_rejected(field: str) -> None:
    # 10 ** 400 was accepted, then limits() raised OverflowError (agent validate: "internal error")
    assert Budget(**{field: 10**15}).limits()[field] == 1e15
    for budget in ({field: 10**400}, {"per_tool": {"search": 10**16}}):
        with pytest.raises(ValidationError, match="a whole-number limit is at most 1,000,000,000,000,000"):
            Budget.model_validate(budget)


@pytest.mark.parametrize("value", [math.inf, math.nan])
def test_an_infinite_or_nan_price_is_rejected(value: float) -> None:
    with pytest.raises(ValidationError, match="finite"):
        Pricing(tools={"search": value})
    with pytest.raises(ValidationError, match="finite"):
        ModelPrice(input_per_token=value)


@pytest.mark.parametrize("value", [0, -3])
def test_zero_or_negative_per_tool_limit_is_rejected(value: int) -> None:
    with pytest.raises(ValidationError):
        Budget(per_tool={"search": value})


@pytest.mark.parametrize("field", INT_FIELDS)
def test_integer_limits_reject_fractions(field: str) -> None:
    with pytest.raises(ValidationError):
        Budget(**{field: 2.5})


def test_unknown_field_is_rejected() -> None:
    with pytest.raises(ValidationError):
        Budget(tokens=100)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        Budget(**{"tool:search": 3})


@pytest.mark.parametrize("name", ["", "tool:search", "a:b"])
def test_per_tool_names_must_be_plain_tool_names(name: str) -> None:
    with pytest.raises(ValidationError):
        Budget(per_tool={name: 3})


def test_per_tool_accepts_plain_names() -> None:
    budget = Budget(per_tool={"search": 5, "read": 3, "web_fetch": 1})
    assert budget.per_tool == {"search": 5, "read": 3, "web_fetch": 1}


def test_budget_is_frozen() -> None:
    budget = Budget(tool_calls=3)
    with pytest.raises(ValidationError):
        budget.tool_calls = 4  # type: ignore[misc]


def test_tool_dimension() -> None:
    assert tool_dimension("search") == "tool:search"


def test_limits_lists_only_the_set_dimensions_as_floats() -> None:
    budget = Budget(total_tokens=1000, usd=0.5, tool_calls=7, seconds=30, per_tool={"search": 5, "read": 2})
    limits = budget.limits()
    assert limits == {
        "total_tokens": 1000.0,
        "usd": 0.5,
        "tool_calls": 7.0,
        "seconds": 30.0,
        "tool:search": 5.0,
        "tool:read": 2.0,
    }
    assert all(isinstance(v, float) for v in limits.values())
    assert not budget.is_unlimited()


def test_limits_covers_every_dimension() -> None:
    values = {dim: 3 for dim in DIMENSIONS}
    budget = Budget(**values, per_tool={"x": 1})
    assert set(budget.limits()) == {*DIMENSIONS, "tool:x"}


@pytest.mark.parametrize(
    "budget",
    [
        Budget(),
        Budget(tool_calls=3),
        Budget(usd=0.25, seconds=12.5),
        Budget(input_tokens=10, output_tokens=20, total_tokens=30, model_requests=4),
        Budget(per_tool={"search": 10, "read": 1}, tool_calls=11, usd=1e-3),
        Budget(**{dim: 7 for dim in DIMENSIONS}, per_tool={"a": 1, "b": 2}),
    ],
)
def test_from_limits_roundtrip(budget: Budget) -> None:
    again = Budget.from_limits(budget.limits())
    assert again == budget
    assert again.limits() == budget.limits()


def test_from_limits_rounds_integer_dimensions_down_but_not_below_one() -> None:
    budget = Budget.from_limits({"tool_calls": 2.9, "total_tokens": 0.4, "tool:search": 0.2, "usd": 0.0001})
    assert budget.tool_calls == 2
    assert budget.total_tokens == 1
    assert budget.per_tool == {"search": 1}
    assert budget.usd == pytest.approx(0.0001)


def test_from_limits_rejects_unknown_dimensions() -> None:
    with pytest.raises(ValidationError):
        Budget.from_limits({"bogus": 3})


def test_scaled() -> None:
    budget = Budget(total_tokens=1000, usd=1.0, tool_calls=5, seconds=60, per_tool={"search": 3, "read": 1})
    half = budget.scaled(0.5)
    assert half.total_tokens == 500
    assert half.usd == pytest.approx(0.5)
    assert half.tool_calls == 2  # 2.5 rounds down
    assert half.seconds == pytest.approx(30)
    assert half.per_tool == {"search": 1, "read": 1}  # 1.5 -> 1, 0.5 -> never below 1
    assert budget.scaled(1) == budget
    assert Budget().scaled(0.3) == Budget()


@pytest.mark.parametrize("fraction", [0, -0.5, 1.01, 2])
def test_scaled_rejects_fractions_outside_0_1(fraction: float) -> None:
    with pytest.raises(ValueError):
        Budget(tool_calls=3).scaled(fraction)


def test_merged_tighter_wins_per_dimension() -> None:
    a = Budget(total_tokens=1000, usd=2.0, tool_calls=5, per_tool={"search": 3})
    b = Budget(total_tokens=500, usd=3.0, seconds=20, per_tool={"search": 8, "read": 2})
    merged = a.merged(b)
    assert merged == Budget(
        total_tokens=500, usd=2.0, tool_calls=5, seconds=20, per_tool={"search": 3, "read": 2}
    )
    assert b.merged(a) == merged  # symmetric


def test_merged_with_unlimited_is_identity() -> None:
    a = Budget(tool_calls=4, usd=0.1)
    assert a.merged(Budget()) == a
    assert Budget().merged(a) == a
    assert Budget().merged(Budget()) == Budget()


def test_memory_operations_are_a_dimension_like_tool_calls() -> None:
    budget = Budget(memory_ops=2)
    assert budget.limits() == {"memory_ops": 2.0}
    assert Budget.from_limits({"memory_ops": 1.7}).memory_ops == 1
    assert budget.merged(Budget(memory_ops=5, tool_calls=3)) == Budget(memory_ops=2, tool_calls=3)
    with pytest.raises(ValidationError):
        Budget(memory_ops=0)
