"""``@tool`` misuse is refused at decoration, naming the argument or parameter and the fix, never left to fail
deep inside a run after a paid model call; and a result that cannot be turned into text is an error
observation like any tool exception."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any

import pytest

from thrifty import Agent, Budget, tool
from thrifty.agents.events import ObservationEvent
from thrifty.budget import Ledger
from thrifty.testing import ScriptedModel, call, reply
from thrifty.tools import ToolRunner


def _add(x: int, y: int = 1) -> int:
    """Add two numbers."""
    return x + y


# ------------------------------------------------------------------------------------- what is wrapped
def test_a_name_given_where_the_function_goes_is_told_to_use_name() -> None:
    with pytest.raises(
        TypeError,
        match=r"tool\(\) takes the function to wrap, got the str 'weather': .*"
        r"@tool\(name='weather'\)",
    ):
        tool("weather")  # pyright: ignore[reportArgumentType]


def test_a_non_callable_is_refused() -> None:
    with pytest.raises(TypeError, match=r"tool\(\) takes the function to wrap .*got int"):
        tool(123)  # pyright: ignore[reportArgumentType]


def test_a_partial_needs_a_name_and_gets_its_functions_docstring() -> None:
    with pytest.raises(TypeError, match=r"a functools.partial has no __name__ .*tool\(name='my_tool'\)"):
        tool(functools.partial(_add, y=2))
    named = tool(name="add_two")(functools.partial(_add, y=2))
    assert named.name == "add_two" and named.description == "Add two numbers."
    assert named.parameters_schema()["properties"]["y"]["default"] == 2
    assert named(x=1) == 3


def test_a_tool_given_to_tool_again_is_returned_or_refused_with_options() -> None:
    once = tool(_add)
    assert tool(once) is once
    assert tool()(once) is once
    with pytest.raises(TypeError, match=r"'_add' is already a Tool: set its options in its own @tool"):
        tool(price=0.01)(once)


# ------------------------------------------------------------------------------------- price, timeout
@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"price": "0.01"}, TypeError, r"tool '_add': price must be a finite number >= 0 .*got str '0.01'"),
        ({"price": True}, TypeError, r"tool '_add': price must be a finite number >= 0 .*got bool True"),
        ({"price": float("nan")}, ValueError, r"tool '_add': price must be a finite number >= 0 .*got nan"),
        ({"price": float("inf")}, ValueError, r"tool '_add': price must be a finite number >= 0 .*got inf"),
        (
            {"timeout": float("nan")},
            ValueError,
            r"tool '_add': timeout must be a finite number > 0 .*or None",
        ),
        ({"timeout": "5"}, TypeError, r"tool '_add': timeout must be a finite number > 0 .*got str"),
        ({"retries": 1.5}, TypeError, r"tool '_add': retries must be an int >= 0 .*got float"),
        ({"name": 5}, TypeError, r"tool\(name=...\) must be a str, got int"),
    ],
)
def test_a_bad_option_is_refused_at_decoration(
    options: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        tool(**options)(_add)


def test_a_nan_price_never_reaches_a_run() -> None:
    """Before the fix it was accepted, then every call failed "cannot reserve nan of usd"."""
    with pytest.raises(ValueError, match="price"):

        @tool(price=float("nan"))
        def priced(x: str) -> str:
            """Priced."""
            return x


def test_good_options_are_kept() -> None:
    made = tool(price=0, timeout=None, retries=0)(_add)
    assert (made.price, made.timeout, made.retries) == (0, None, 0)
    assert tool(price=1, timeout=2)(_add).price == 1


# ------------------------------------------------------------------------------ parameters and JSON
def test_a_default_that_cannot_be_written_as_json_is_refused_naming_the_parameter() -> None:
    """Before the fix the run ended 'error' (PydanticSerializationError) after a paid model call."""
    sentinel = object()

    with pytest.raises(
        TypeError,
        match=r"tool 'dflt': the default of parameter 'y' \(object\) cannot be written as JSON \(fix:",
    ):

        @tool
        def dflt(x: str, y: object = sentinel) -> str:
            """Default not JSON."""
            return x


def test_a_parameter_type_with_no_json_schema_is_refused_naming_it() -> None:
    with pytest.raises(
        TypeError,
        match=r"tool 'apply': parameter 'fn' has type Callable\[\[int\], int\], which cannot be described",
    ):

        @tool
        def apply(x: int, fn: Callable[[int], int]) -> int:
            """Apply."""
            return fn(x)


def test_json_parameters_and_defaults_still_work() -> None:
    @tool
    def fine(x: str, n: int = 3, tags: list[str] | None = None, mode: str = "fast") -> str:
        """Fine."""
        return x

    assert fine.parameters_schema()["properties"]["n"]["default"] == 3


# --------------------------------------------------------------------------------------- results
class _Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no text for you")


def test_a_result_whose_str_raises_is_an_error_observation_not_a_failed_run() -> None:
    """Before the fix the whole run ended 'error'."""

    @tool(retries=0)
    def weird(x: str) -> object:
        """Weird."""
        return _Unprintable()

    script = ScriptedModel([call("weird", x="a"), reply("ok")])
    result = Agent(script.model, tools=[weird], budget=Budget(tool_calls=5)).run("q")
    assert result.stop_reason == "completed" and result.answer == "ok"
    observations = [e for e in result.trace if isinstance(e, ObservationEvent)]
    assert len(observations) == 1 and not observations[0].ok
    assert "error: RuntimeError: no text for you" in observations[0].observation


@pytest.mark.parametrize("use_async", [False, True])
def test_the_runner_reports_an_unprintable_result_as_a_failed_attempt(use_async: bool) -> None:
    @tool(retries=1, timeout=5)
    def weird(x: str) -> object:
        """Weird."""
        return _Unprintable()

    ledger = Ledger(Budget(tool_calls=5))
    runner = ToolRunner([weird], ledger)
    obs = asyncio.run(runner.arun("weird", {"x": "a"})) if use_async else runner.run("weird", {"x": "a"})
    assert not obs.ok and obs.attempts == 2
    assert obs.content.startswith("error: RuntimeError: no text for you")


def test_a_method_decorated_in_its_class_is_refused_and_a_bound_one_works() -> None:
    """The model was shown `meth(self: Any, x: str)` and every call failed "self: Field required"."""

    with pytest.raises(
        TypeError, match=r"first parameter 'self' would be asked of the model.*tool\(obj\.meth\)"
    ):

        class Weather:
            @tool
            def meth(self, city: str) -> str:
                return city

    class Forecast:
        def __init__(self, prefix: str) -> None:
            self.prefix = prefix

        def lookup(self, city: str) -> str:
            """Forecast for a city."""
            return self.prefix + city

    bound = tool(Forecast("sunny in ").lookup)
    assert bound.name == "lookup" and list(bound.parameters_schema()["properties"]) == ["city"]
    assert bound.fn(city="Paris") == "sunny in Paris"
