"""Strategies are graph builders: ``build(options) -> compiled LangGraph graph`` over a SolverState-like
state, run with a RunContext. Built-ins are registered by name; a task file may also name
``package.module:function``.

A builder that declares an options model (:func:`~thrifty.workflows.options.takes_options`) is called with
a validated instance of it; every built-in does, so an unknown or bad option fails before the run starts.
Other builders get the options as a plain dict.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from thrifty.workflows.bats import build_bats
from thrifty.workflows.imports import import_object
from thrifty.workflows.options import StrategyOptions, options_model, parse_options
from thrifty.workflows.react import build_react
from thrifty.workflows.self_consistency import build_self_consistency
from thrifty.workflows.value_tree import build_value_tree

GraphBuilder = Callable[[Any], Any]

STRATEGIES: dict[str, GraphBuilder] = {
    "react": build_react,
    "bats": build_bats,
    "self_consistency": build_self_consistency,
    "value_tree": build_value_tree,
}


class UnknownStrategy(ValueError):
    pass


_compiled: dict[tuple[str, str], Any] = {}


def _cached(name: str, builder: GraphBuilder) -> GraphBuilder:
    """Built-in graphs are compiled once per options: a compiled LangGraph graph holds no run state (the
    run's Ledger, Gateway and tools travel in its context), so runs can share it; this saves milliseconds
    per run. The wrapper validates the options like the builder it wraps (and declares the same model)."""

    def build(options: Mapping[str, Any] | BaseModel | None = None) -> Any:
        options = parse_options(name, builder, options)
        dumped = options.model_dump(mode="json") if isinstance(options, BaseModel) else options
        key = (name, json.dumps(dumped, sort_keys=True, default=str))
        if key not in _compiled:
            _compiled[key] = builder(options)
        return _compiled[key]

    build.options_model = options_model(builder)  # type: ignore[attr-defined]
    return build


def register_strategy(name: str, builder: GraphBuilder, *, replace: bool = False) -> GraphBuilder:
    """Make ``builder`` a named strategy: ``Agent(strategy=name)``, ``strategy: {name: ...}`` in a task file
    and ``agent bench --strategies name`` then find it (with its options model, if it declares one).

    Registering a taken name is refused unless ``replace=True``.
    """
    if not name or ":" in name or "," in name or name == "react_tracker":
        raise ValueError(
            f"strategy name {name!r} must be a plain word (no ':' or ','; react_tracker is taken)"
        )
    if not callable(builder):
        raise TypeError(
            f"strategy '{name}' must be a graph builder (a callable), got {type(builder).__name__}"
        )
    if name in STRATEGIES and STRATEGIES[name] is not builder and not replace:
        raise ValueError(f"strategy '{name}' is already registered (pass replace=True to swap it)")
    STRATEGIES[name] = builder
    for key in [k for k in _compiled if k[0] == name]:
        del _compiled[key]  # graphs compiled by a builder this name no longer means
    return builder


def get_builder(name: str, search_path: Path | None = None) -> GraphBuilder:
    if name in STRATEGIES:
        return _cached(name, STRATEGIES[name])
    if ":" in name:
        builder = import_object(name, search_path)
        if not callable(builder):
            raise UnknownStrategy(f"strategy '{name}' is not callable")
        return builder  # type: ignore[no-any-return]
    raise UnknownStrategy(
        f"unknown strategy '{name}': use one of {', '.join(STRATEGIES)} or 'module:function'"
    )


def builtin_options() -> dict[str, type[StrategyOptions]]:
    """The options model of each registered strategy that declares one (for the schema and the docs)."""
    out: dict[str, type[StrategyOptions]] = {}
    for name, builder in STRATEGIES.items():
        model = options_model(builder)
        if model is not None and issubclass(model, StrategyOptions):
            out[name] = model
    return out
