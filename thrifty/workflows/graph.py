"""Declare your own graph of nodes in Python and run it with the same budget guarantees.

A node is a plain function ``(state, ctx) -> update`` where ``state`` is the shared SolverState, ``ctx``
the RunContext (Ledger, Gateway, tools, settings) and ``update`` a dict of the state keys it changes.
Built-in nodes: :func:`~thrifty.agents.planner.plan`, :func:`~thrifty.agents.solver.solve`,
:func:`~thrifty.agents.verifier.verify`, :func:`~thrifty.agents.judge.judge` (and the finer-grained
``act`` / ``observe``). Every model and tool call inside them goes through the run's Ledger.

    wf = Workflow("plan-solve-verify")
    wf.node("plan", plan).node("solve", solve).node("verify", verify).node("judge", judge)
    wf.edge("plan", "solve").edge("solve", "verify")
    wf.route("verify", lambda s: {"SUCCESS": "judge", "CONTINUE": "solve"}.get(s["decision"], "plan"))
    wf.edge("judge", END)
    Agent(strategy=wf, ...).run("...")

A Workflow is itself a strategy builder (``wf(options) -> compiled graph``), so a task file can name a
``module:function`` that returns one.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import Send

from thrifty.agents.context import RunContext
from thrifty.agents.solver import SolverState

NodeFn = Callable[[SolverState, RunContext], dict[str, Any]]
Router = Callable[[SolverState], Hashable]

__all__ = ["END", "NodeFn", "Workflow"]


def _as_langgraph_node(fn: NodeFn) -> Callable[..., dict[str, Any]]:
    def node(state: SolverState, runtime: Runtime[RunContext]) -> dict[str, Any]:
        return fn(state, runtime.context)

    node.__name__ = getattr(fn, "__name__", "node")
    node.__doc__ = fn.__doc__
    return node


class WorkflowError(ValueError):
    """A workflow that cannot compile (unknown node in an edge, no nodes, ...)."""


#: The node a route that fails (its router raised, or chose no destination) goes to: it ends the run with
#: ``stop_reason`` "error" and the route's error, keeping the state the step before it wrote.
ROUTE_ERROR = "__route_error__"


def _route_error(state: Any) -> dict[str, Any]:
    """Its input is the failing route's Send payload, not the run's state."""
    return {"stop_reason": "error", "error": state["route_error"]}


class Workflow:
    """A graph of nodes with edges and conditional routes, compiled to LangGraph."""

    def __init__(self, name: str = "workflow") -> None:
        self.name = name
        self._nodes: dict[str, NodeFn] = {}
        self._edges: list[tuple[str, str]] = []
        self._routes: list[tuple[str, Router, dict[Hashable, str] | None]] = []
        self._entry: str | None = None

    def node(self, name: str, fn: NodeFn) -> Workflow:
        if name in self._nodes:
            raise WorkflowError(f"node '{name}' is declared twice")
        if name in (START, END, ROUTE_ERROR):
            raise WorkflowError(f"'{name}' is reserved")
        self._nodes[name] = fn
        if self._entry is None:
            self._entry = name
        return self

    def start(self, name: str) -> Workflow:
        """Set the entry node (default: the first node declared)."""
        self._entry = name
        return self

    def edge(self, source: str, target: str) -> Workflow:
        self._edges.append((source, target))
        return self

    def route(
        self, source: str, router: Router, paths: dict[Hashable, str] | Sequence[str] | None = None
    ) -> Workflow:
        """After ``source``, go where ``router(state)`` says (a node name or END, or a key of ``paths``)."""
        mapping: dict[Hashable, str] | None
        if paths is None or isinstance(paths, dict):
            mapping = paths
        elif isinstance(paths, str):
            mapping = {paths: paths}
        else:
            mapping = {p: p for p in paths}
        self._routes.append((source, router, mapping))
        return self

    def _check(self) -> None:
        if not self._nodes:
            raise WorkflowError(f"workflow '{self.name}' has no nodes")
        known = set(self._nodes) | {END}
        for source, target in self._edges:
            for n in (source, target):
                if n not in known:
                    raise WorkflowError(
                        f"edge {source} -> {target}: no node named '{n}' (declared: {', '.join(self._nodes)})"
                    )
        for source, _router, paths in self._routes:
            if source not in self._nodes:
                raise WorkflowError(f"route from '{source}': no such node")
            for target in (paths or {}).values():
                if target not in known:
                    raise WorkflowError(f"route from '{source}' to '{target}': no such node")
        if self._entry not in self._nodes:
            raise WorkflowError(f"entry node '{self._entry}' is not declared")

    def compile(self) -> Any:
        self._check()
        graph = StateGraph(SolverState, context_schema=RunContext)
        for name, fn in self._nodes.items():
            graph.add_node(name, _as_langgraph_node(fn))
        assert self._entry is not None  # _check() refused a workflow without an entry node
        graph.add_edge(START, self._entry)
        for source, target in self._edges:
            graph.add_edge(source, target)
        for source, router, paths in self._routes:
            graph.add_conditional_edges(source, self._checked(source, router, paths), paths)  # type: ignore[arg-type]
        if self._routes:
            graph.add_node(ROUTE_ERROR, _route_error)
            graph.add_edge(ROUTE_ERROR, END)
        return graph.compile(name=self.name)

    def _checked(self, source: str, router: Router, paths: dict[Hashable, str] | None) -> Router:
        """``router`` refusing a value that names no destination (LangGraph would end the run "completed" on
        a name it does not know, or raise a bare KeyError on a key missing from ``paths``), and a router
        that raises: either goes to :data:`ROUTE_ERROR`, which ends the run with ``stop_reason`` "error"
        naming the route. Raising here instead would drop what the step before it wrote (LangGraph commits a
        step's update only once its routes have run): a run whose solver answered would end with no answer."""
        allowed: list[Hashable] = list(paths) if paths is not None else [*self._nodes, END]

        def route(state: SolverState) -> Any:
            try:
                value = router(state)
            except Exception as exc:
                return Send(
                    ROUTE_ERROR, {"route_error": f"route from '{source}' raised {type(exc).__name__}: {exc}"}
                )
            chosen: list[Any] = list(value) if isinstance(value, list | tuple) else [value]
            for one in chosen:
                name = one.node if isinstance(one, Send) else one  # a Send names the node it runs
                if name not in (allowed if not isinstance(one, Send) else [*self._nodes]):
                    shown = ", ".join(repr(a) for a in allowed)
                    error = f"route from '{source}' returned {name!r}, which is not one of its destinations ({shown})"
                    return Send(ROUTE_ERROR, {"route_error": f"WorkflowError: {error}"})
            return value

        route.__name__ = getattr(router, "__name__", "route")
        return route

    def __call__(self, options: dict[str, Any] | None = None) -> Any:
        return self.compile()
