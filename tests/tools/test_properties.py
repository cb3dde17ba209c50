"""Property tests: whatever a model sends, the calculator and the runner answer instead of crashing."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from thrifty.budget import Ledger
from thrifty.tools import Observation, ToolError, ToolRunner, calculator, tool

_ARITH = st.text(alphabet="0123456789+-*/%().^ e", max_size=40)


@settings(max_examples=300, deadline=None)
@given(st.one_of(_ARITH, st.text(max_size=40)))
def test_calculator_returns_text_or_refuses(expression: str) -> None:
    try:
        result = calculator(expression)
    except ToolError:
        return
    assert isinstance(result, str) and result


@tool
def pair(a: int, b: str = "x") -> str:
    """Join."""
    return f"{a}{b}"


_RUNNER = ToolRunner([pair], Ledger())


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(st.text(max_size=30), st.dictionaries(st.text(max_size=3), st.integers() | st.text(max_size=3)))
)
def test_runner_never_raises_for_bad_arguments(arguments: str | dict[str, object]) -> None:
    obs = _RUNNER.run("pair", arguments)
    assert isinstance(obs, Observation)
    assert obs.ok or obs.content.startswith("error:")
