"""Strategies are graph builders: ``build(options) -> compiled LangGraph graph`` over a SolverState-like
state, run with a RunContext. Built-ins are registered by name; a task file may also name
``package.module:function``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from thrifty.workflows.bats import build_bats
from thrifty.workflows.imports import import_object
from thrifty.workflows.react import build_react
from thrifty.workflows.self_consistency import build_self_consistency
from thrifty.workflows.value_tree import build_value_tree

GraphBuilder = Callable[[dict[str, Any]], Any]

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
    per run."""

    def build(options: dict[str, Any] | None = None) -> Any:
        key = (name, json.dumps(options or {}, sort_keys=True, default=str))
        if key not in _compiled:
            _compiled[key] = builder(options or {})
        return _compiled[key]

    return build


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
