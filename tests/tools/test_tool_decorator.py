"""The @tool decorator: schemas come from signatures and docstrings, and the function stays callable."""

from __future__ import annotations

import asyncio
from typing import Literal

import pytest
from pydantic import ValidationError

from thrifty.tools import Tool, tool


@tool
def lookup(
    query: str, k: int = 3, mode: Literal["fast", "exact"] = "fast", tags: list[str] | None = None
) -> str:
    """Look something up in the index.

    This second paragraph is not part of the description.

    Args:
        query: What to look for.
        k (int): How many hits to return,
            at most ten.
        mode: Matching mode.

    Returns:
        The hits, one per line.
    """
    return f"{query}:{k}:{mode}:{tags}"


def test_bare_decorator_builds_a_tool_with_the_docstring_summary() -> None:
    assert isinstance(lookup, Tool)
    assert lookup.name == "lookup"
    assert lookup.description == "Look something up in the index."
    assert lookup.price is None
    assert lookup.timeout == 30.0
    assert lookup.retries == 1
    assert lookup.batch_arg is None


def test_schema_has_types_defaults_descriptions_and_no_titles() -> None:
    schema = lookup.openai_schema()
    assert schema["type"] == "function"
    fn = schema["function"]
    assert fn["name"] == "lookup"
    assert fn["description"] == "Look something up in the index."
    params = fn["parameters"]
    assert params["type"] == "object"
    assert params["required"] == ["query"]
    props = params["properties"]
    assert props["query"] == {"type": "string", "description": "What to look for."}
    assert props["k"] == {
        "type": "integer",
        "default": 3,
        "description": "How many hits to return, at most ten.",
    }
    assert props["mode"]["enum"] == ["fast", "exact"]
    assert props["mode"]["default"] == "fast"
    assert props["mode"]["description"] == "Matching mode."
    assert "description" not in props["tags"]
    assert "title" not in str(params)


def test_a_parameter_named_title_survives_title_cleaning() -> None:
    @tool
    def read(title: str) -> str:
        """Read a page.

        Args:
            title: The page title.
        """
        return title

    props = read.openai_schema()["function"]["parameters"]["properties"]
    assert props == {"title": {"type": "string", "description": "The page title."}}


def test_calling_the_tool_calls_the_function() -> None:
    assert lookup("x") == "x:3:fast:None"
    assert lookup("x", k=5, tags=["a"]) == "x:5:fast:['a']"


def test_args_model_validates_and_rejects_unknown_arguments() -> None:
    ok = lookup.validate({"query": "q", "k": "4"})
    assert lookup.kwargs(ok) == {"query": "q", "k": 4, "mode": "fast", "tags": None}
    with pytest.raises(ValidationError):
        lookup.validate({"query": "q", "kk": 1})
    with pytest.raises(ValidationError):
        lookup.validate({"k": 1})


def test_decorator_options_and_async_functions() -> None:
    @tool(name="fetch_many", description="Fetch pages.", price=0.01, timeout=2, retries=0, batch_arg="urls")
    async def fetch(urls: list[str], verbose: bool = False) -> list[str]:
        """Ignored docstring."""
        return [u.upper() for u in urls]

    assert fetch.name == "fetch_many"
    assert fetch.description == "Fetch pages."
    assert (fetch.price, fetch.timeout, fetch.retries, fetch.batch_arg) == (0.01, 2, 0, "urls")
    assert fetch.is_async
    props = fetch.openai_schema()["function"]["parameters"]["properties"]
    assert props["urls"] == {"type": "array", "items": {"type": "string"}}
    assert asyncio.run(fetch(["a", "b"])) == ["A", "B"]
    assert fetch.units({"urls": ["a", "b", "c"]}) == 3
    assert fetch.units(fetch.validate({"urls": ["a", "b"]})) == 2
    assert fetch.units({"urls": []}) == 1  # a call always costs at least one unit
    assert lookup.units({"query": "x"}) == 1


def test_parameter_names_that_clash_with_pydantic_keep_their_name() -> None:
    @tool
    def dump(json: str, schema: int = 1) -> str:
        """Dump."""
        return f"{json}{schema}"

    props = dump.openai_schema()["function"]["parameters"]["properties"]
    assert set(props) == {"json", "schema"}
    validated = dump.validate({"json": "x", "schema": 2})
    assert dump.kwargs(validated) == {"json": "x", "schema": 2}
    assert dump.signature_hint() == "dump(json: str, schema: int = 1)"


def test_bad_definitions_are_refused() -> None:
    with pytest.raises(TypeError):

        @tool
        def star(*args: int) -> int:
            return 0

    with pytest.raises(ValueError, match="batch_arg"):

        @tool(batch_arg="missing")
        def f(x: int) -> int:
            return x

    with pytest.raises(ValueError, match="tool name"):

        @tool(name="has space")
        def g(x: int) -> int:
            return x


def test_undocumented_function_gets_a_fallback_description() -> None:
    @tool
    def add_numbers(a: int, b: int = 2) -> int:
        return a + b

    assert add_numbers.description == "add numbers"
    assert add_numbers.signature_hint() == "add_numbers(a: int, b: int = 2)"
