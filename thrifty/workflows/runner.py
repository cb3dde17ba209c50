"""Running a task: build the Ledger, Gateway, tools and graph; stream the graph; always return a RunResult.

The graph is *streamed* (not invoked) so that the latest state is in hand whatever happens: an exception
inside a node, a Ctrl-C, or a budget stop still yields the best answer so far and every charge made.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from thrifty.agents.context import ModelSettings, RunContext
from thrifty.agents.events import EscalationEvent, TraceEvent
from thrifty.budget import Budget, BudgetExceeded, Ledger, Pricing, StopKind, UnpricedModelError, stop_reason
from thrifty.models._litellm import get_litellm
from thrifty.models.gateway import ModelError
from thrifty.models.routing import Escalation, RoutedGateway, Routing, checked_entry, make_gateway
from thrifty.redact import redact
from thrifty.tools import Tool, ToolRunner
from thrifty.workflows.graph import Workflow
from thrifty.workflows.imports import import_object
from thrifty.workflows.memory import MemorySetup, MemoryUse, memory_tool_names, setup_from_spec
from thrifty.workflows.options import parse_options
from thrifty.workflows.result import Cost, Overrun, RunResult, Usage
from thrifty.workflows.spec import WEB_TOOLS, StrategySpec, TaskSpec, web_tool
from thrifty.workflows.strategies import get_builder

TraceCallback = Callable[[TraceEvent], None]
#: Told when the run store fails (the run goes on, and its result is still returned): the error's message
#: says what is wrong and how to fix it. By default a ``thrifty.store.StoreWarning`` is issued.
StoreErrorCallback = Callable[[Exception], None]


class SetupError(ValueError):
    """The run cannot start (unknown model, unpriced model under a USD budget, bad tool...)."""


def resolve_tools(spec: TaskSpec) -> tuple[list[Tool], Pricing]:
    """Tools named in a task file, and the pricing with any per-tool price from the file applied."""
    from thrifty.tools import builtin_tools, load_corpus

    corpus_path = spec.corpus_path()
    corpus = load_corpus(corpus_path) if corpus_path else None
    tools: list[Tool] = []
    prices = dict(spec.pricing.tools)
    for ts in spec.tools:
        if ":" in ts.name:
            obj = import_object(ts.name, spec.base_dir)
            if not isinstance(obj, Tool):
                raise SetupError(f"tool '{ts.name}' is not a @tool-decorated function")
            tools.append(obj)
        elif ts.name in WEB_TOOLS:
            tools.append(web_tool(ts))
        else:
            options = {"k": ts.k} if ts.k else {}
            registry = builtin_tools(corpus, **options)
            tools.append(registry[ts.name])
        if ts.price is not None:
            prices[tools[-1].name] = ts.price
    return tools, spec.pricing.model_copy(update={"tools": prices})


class TraceCallbackError(RuntimeError):
    """An ``on_trace`` callback raised: the run ends ``error``, its error naming the callback."""


def run_ledger(budget: Budget | None) -> Ledger:
    """A run's Ledger. Its clock (the ``seconds`` limit) starts here, so LiteLLM's one-off import (2-3 s,
    otherwise made at the run's first model check) is made first: it is not the run's time. Every place
    that opens a run's Ledger (runs, streams, the CLI, batch workers) opens it here."""
    get_litellm()
    return Ledger(budget or Budget(), name="run")


def execute(
    question: str,
    *,
    model: str,
    tools: Sequence[Tool] = (),
    budget: Budget | None = None,
    pricing: Pricing | None = None,
    strategy: StrategySpec | None = None,
    settings: ModelSettings | None = None,
    retries: int | None = None,
    system_prompt: str | None = None,
    task: str = "",
    expected_answer: str | None = None,
    on_trace: TraceCallback | None = None,
    ledger: Ledger | None = None,
    store: str | Path | None = None,
    keep_trace: bool = True,
    builder: Callable[[dict[str, Any]], Any] | None = None,
    on_store_error: StoreErrorCallback | None = None,
    run_id: str | None = None,
    checkpoint: str | Path | None = None,
    resume: bool = False,
    checkpoint_meta: dict[str, Any] | None = None,
    on_limit: str = "stop",
    memory: MemorySetup | None = None,
    routing: Routing | None = None,
) -> RunResult:
    """Run one question with one strategy under one budget, and return its RunResult.

    ``memory``: recall before the first call and/or a ``recall`` tool (:mod:`thrifty.workflows.memory`),
    charged to a capped child ledger of the run's; what it did is in ``RunResult.memory``.

    ``retries`` overrides ``settings.retries``. Raises SetupError before spending anything if the model,
    the tools or the strategy's options cannot be used. With a ``store`` the run is recorded as it goes
    (its row at the start, each charge as it settles); a store that fails never costs the run: it is
    reported to ``on_store_error`` and the result is returned all the same.

    ``checkpoint``: a SQLite file for a durable run (:mod:`thrifty.workflows.durable`): its graph state and
    Ledger are saved at every step; with ``resume`` the run ``run_id`` continues from there (SetupError, and
    nothing changed, when it cannot).

    ``on_limit``: what happens when a limit binds: ``stop`` (the run stops with its best answer), or
    ``pause`` (a durable run, checkpointed in ``checkpoint`` or ``.thrifty/checkpoints.db``, pauses: the
    result's ``stop_reason`` is ``paused:<dimension>``, and resuming it with a raised budget continues it).
    ``routing``: several models (a cascade and/or a model per role, :mod:`thrifty.models.routing`); the run
    then starts on the cheapest, ``model`` is ignored, and each escalation is an ``escalation`` trace event.

    A key pasted into ``question`` (the shapes and values :func:`thrifty.redact.redact` knows) is masked
    before anything reads it: the model (often a third party), memory recall, the checkpoint, the run store,
    the trace and the result all get the masked question.
    """
    question = redact(question)
    checkpoint = _checkpoint_for(on_limit, checkpoint)
    strategy = strategy or StrategySpec()
    settings = settings or ModelSettings()
    ledger = ledger or run_ledger(budget)
    pricing = pricing or Pricing()
    gateway = make_gateway(
        ledger,
        pricing,
        retries=settings.retries if retries is None else retries,
        api_base=settings.api_base,
        routing=routing,
    )
    memory_use = None
    try:
        model = checked_entry(gateway, model)
        builder = builder or get_builder(strategy.name)
        options = parse_options(strategy.name, builder, strategy.options)
        recall = memory_tool_names(memory.mode) if memory is not None else []
        _check_per_tool(ledger.budget, [*(t.name for t in tools), *recall])
        # Memory recalls after the checks: nothing is spent on a run that cannot start.
        memory_use, system_prompt, tools = _start_memory(memory, question, ledger, system_prompt, tools)
        runner = ToolRunner(list(tools), ledger, pricing)  # refuses duplicate tool names
    except (ModelError, UnpricedModelError, ValueError, ImportError, AttributeError) as exc:
        raise SetupError(str(exc)) from None
    try:
        graph = builder(options)
        if isinstance(graph, Workflow):
            graph = graph.compile()
    except (Exception, SystemExit) as exc:  # a custom builder's own failure: bad input, not a crash
        runner.close()
        raise SetupError(
            f"strategy '{strategy.name}' failed to build its graph: {type(exc).__name__}: {exc}"
        ) from None
    run_id = run_id or new_run_id()
    durable, graph, saved = _open_durable(
        checkpoint,
        run_id,
        ledger,
        graph,
        runner,
        resume=resume,
        meta={
            "question": question,
            "task": task,
            "model": model,
            "strategy": strategy.name,
            "tools": sorted(t.name for t in tools),  # a resume with other tools is refused
            **(checkpoint_meta or {}),
        },
    )
    emitted: list[TraceEvent] = []  # the order events were told in, to place escalations in the trace

    def told(event: TraceEvent) -> None:
        emitted.append(event)
        if on_trace is not None:
            try:
                on_trace(event)
            except Exception as exc:  # the caller's callback, not the strategy: say so in the run's error
                raise TraceCallbackError(f"the on_trace callback raised {type(exc).__name__}: {exc}") from exc

    restored = (
        _listen_escalations(gateway, durable, ledger, saved, emitted, told)
        if isinstance(gateway, RoutedGateway)
        else []
    )
    ctx = RunContext(
        ledger=ledger,
        gateway=gateway,
        runner=runner,
        model=model,
        tools=list(tools),
        settings=settings,
        tracker=strategy.tracker,
        max_steps=strategy.max_steps,
        keep_observations=strategy.keep_observations,
        system_extra=system_prompt,
        on_trace=told,
    )
    strategy_label = strategy.name + ("" if strategy.tracker or strategy.name != "react" else "(no tracker)")
    recorder = _start_recording(
        store,
        run_id,
        ledger,
        on_store_error,
        task=task,
        question=question,
        strategy=strategy_label,
        model=routing.label() if routing is not None else model,
        resume=durable is not None and durable.resuming,
    )
    state: dict[str, Any] = {"question": question, "messages": [], "trace": [], "step": 0}
    error: str | None = None
    reason: str | None = None
    from thrifty.workflows.telemetry import RunTelemetry

    telemetry = RunTelemetry(ledger, run_id=run_id, strategy=strategy_label, model=model)
    telemetry.start()
    latest: dict[str, Any] = {"state": state}  # the last state streamed: kept when a node crashes
    try:
        _drive(
            graph,
            state,
            ctx,
            strategy,
            durable,
            saved,
            pause=on_limit == "pause",
            telemetry=telemetry,
            latest=latest,
        )
    except KeyboardInterrupt:
        reason = stop_reason(StopKind.CANCELLED)
    except BudgetExceeded as exc:
        reason = exc.stop_reason
    except Exception as exc:  # a node crashed: keep what was found, report the error
        error = redact(f"{type(exc).__name__}: {exc}")[:1000]
        reason = stop_reason(StopKind.ERROR)
    finally:
        runner.close()
    state = latest["state"]

    reason = reason or _paused_reason(durable, graph, on_limit)
    if reason is None:
        reason = state.get("stop_reason") or stop_reason(StopKind.COMPLETED)
    answer = state.get("answer") or state.get("candidate")
    result = RunResult(
        run_id=run_id,
        task=task,
        question=question,
        answer=answer,
        stop_reason=reason or stop_reason(StopKind.COMPLETED),
        strategy=strategy_label,
        model=routing.label() if routing is not None else model,
        budget=ledger.budget.limits(),
        usage=Usage.from_ledger(ledger),
        cost=Cost.from_ledger(ledger),
        steps=int(state.get("step") or 0),
        error=_scrubbed_error(error or state.get("error")),
        expected_answer=expected_answer,
        trace=_with_escalations(_with_restored(list(state.get("trace") or []), restored), emitted)
        if keep_trace
        else [],
        events=[e.to_dict() for e in ledger.events],
        overruns=Overrun.from_ledger(ledger),
        memory=memory_use.all_reports() if memory_use is not None else [],
    )
    telemetry.finish(result)
    if recorder is not None:
        _finish_recording(recorder, ledger, result, on_store_error)
    if durable is not None:
        durable.finish(ledger, result)
    return result


def _checkpoint_for(on_limit: str, checkpoint: str | Path | None) -> str | Path | None:
    """The checkpoint file of a run: a run that pauses at its budget is durable, by default in
    ``.thrifty/checkpoints.db``."""
    if on_limit not in ("stop", "pause"):
        raise SetupError(f"on_limit must be 'stop' or 'pause', not {on_limit!r}")
    if on_limit == "pause" and checkpoint is None:
        from thrifty.store.durable import DEFAULT_CHECKPOINTS

        return DEFAULT_CHECKPOINTS
    return checkpoint


def _paused_reason(durable: Any, graph: Any, on_limit: str) -> str | None:
    """``paused:<dimension>`` when the run stopped at a budget pause."""
    paused = None if durable is None or on_limit != "pause" else durable.paused(graph)
    return None if paused is None else f"paused:{paused['dimension']}"


def _drive(
    graph: Any,
    state: dict[str, Any],
    ctx: RunContext,
    strategy: StrategySpec,
    durable: Any,
    saved: dict[str, Any] | None,
    *,
    pause: bool,
    latest: dict[str, Any],
    telemetry: Any = None,
) -> None:
    """Stream the graph to its end (a durable run: checkpointed at each step, resumed from ``saved``, a
    budget pause answered with the budget it is resumed with), keeping each state in ``latest["state"]`` as
    it comes, so that the caller has the answer and trace found before a node crashed or the run was
    interrupted."""
    import contextlib

    inputs: Any = state
    config: dict[str, Any] = {"recursion_limit": strategy.max_steps * 4 + 20}
    extra: dict[str, Any] = {}
    guard: Any = contextlib.nullcontext()
    if durable is not None:
        from thrifty.workflows.durable import pausing_at_budget

        config.update(durable.config)
        extra["durability"] = "sync"  # each step's checkpoint is written before the next step starts
        if pause:
            guard = pausing_at_budget(ctx.ledger)
        if saved:
            state, inputs = saved, durable.resume_input(graph)  # continue from the last checkpoint
    latest["state"] = state
    traced = telemetry is not None and telemetry.enabled
    modes = ["values", "tasks"] if traced else ["values"]  # tasks: the node spans' starts and ends
    with guard:
        for mode, values in graph.stream(inputs, context=ctx, stream_mode=modes, config=config, **extra):
            if mode == "tasks":
                if telemetry is not None:
                    telemetry.on_task(values)
                continue
            if "__interrupt__" in values:  # a pause: the state is the checkpoint's
                continue
            latest["state"] = values
            if durable is not None:
                durable.step(ctx.ledger)


def _open_durable(
    checkpoint: str | Path | None,
    run_id: str,
    ledger: Ledger,
    graph: Any,
    runner: ToolRunner,
    *,
    resume: bool,
    meta: dict[str, Any],
) -> tuple[Any, Any, dict[str, Any] | None]:
    """A durable run's journal, the graph on its checkpointer and (resuming) the state saved last; the
    graph unchanged when the run is not durable. SetupError (the tools closed, the stored run unchanged)
    when it cannot start or resume."""
    if checkpoint is None:
        return None, graph, None
    from thrifty.workflows.durable import CheckpointError, open_durable

    durable = None
    try:
        durable = open_durable(
            checkpoint, run_id, ledger, resume=resume, meta={**meta, "budget": ledger.budget.limits()}
        )
        graph = durable.attach(graph)
        saved = durable.saved_state(graph) if durable.resuming else None
        durable.begin(ledger)
        return durable, graph, saved
    except CheckpointError as exc:
        runner.close()
        if durable is not None:
            durable.abandon(ledger)
        raise SetupError(str(exc)) from None


def new_run_id() -> str:
    """A fresh run id (12 hex digits)."""
    return uuid.uuid4().hex[:12]


def _listen_escalations(
    gateway: RoutedGateway,
    durable: Any,
    ledger: Ledger,
    saved: dict[str, Any] | None,
    emitted: list[TraceEvent],
    told: Callable[[TraceEvent], None],
) -> list[EscalationEvent]:
    """Tell each escalation as a trace event (kept by a durable run); resuming, the escalations made before
    the interruption, as trace events."""
    restored = _routing_journal(gateway, durable, ledger, _last_step(saved))

    def escalated(record: Escalation) -> None:
        step = next((e.step for e in reversed(emitted) if not isinstance(e, EscalationEvent)), None)
        if step is None:  # nothing told yet in this process: the last step of the resumed trace
            step = _last_step(saved)
        event = EscalationEvent(step=step, **record.to_dict())
        if durable is not None:
            durable.routed(ledger, {"kind": "escalation", **event.model_dump(mode="json")})
        told(event)

    gateway.state.listeners.append(escalated)
    return restored


def _last_step(saved: dict[str, Any] | None) -> int:
    """The step of the last entry of a saved trace (0: none)."""
    steps = [
        e.get("step") if isinstance(e, dict) else getattr(e, "step", None)
        for e in (saved or {}).get("trace") or []
    ]
    return max((step for step in steps if isinstance(step, int)), default=0)


def _routing_journal(
    gateway: RoutedGateway, durable: Any, ledger: Ledger, last_step: int
) -> list[EscalationEvent]:
    """A durable run with several models: keep each one-call escalation used up (its escalations are kept
    as they are told); resuming, take back the escalations made before the interruption (their scope
    holds again; those the node run again will make again are told once) and return their trace events."""
    if durable is None:
        return []
    restored: list[EscalationEvent] = []
    if durable.resuming:
        entries = durable.routing()
        gateway.restore(entries, durable.checkpoint_seq, last_step)
        names = set(EscalationEvent.model_fields)
        restored = [
            EscalationEvent.model_validate({k: v for k, v in e.items() if k in names})
            for _, e in entries
            if e.get("kind") == "escalation"
        ]
    gateway.state.consumed.append(lambda role: durable.routed(ledger, {"kind": "consumed", "role": role}))
    return restored


def _with_restored(trace: list[Any], restored: list[EscalationEvent]) -> list[Any]:
    """The checkpointed trace with the escalations made before a resume, each before the first entry of a
    later step (where it was when the run was told it)."""
    if not restored:
        return trace
    merged: list[Any] = []
    waiting = list(restored)
    for entry in trace:
        step = getattr(entry, "step", None)
        while waiting and isinstance(step, int) and step > waiting[0].step:
            merged.append(waiting.pop(0))
        merged.append(entry)
    merged.extend(waiting)
    return merged


def _with_escalations(trace: list[Any], emitted: list[TraceEvent]) -> list[Any]:
    """The state's trace with each escalation event placed before the first entry told after it."""
    escalations = [(i, e) for i, e in enumerate(emitted) if isinstance(e, EscalationEvent)]
    if not escalations:
        return trace
    position = {id(e): i for i, e in enumerate(emitted)}
    merged: list[Any] = []
    waiting = list(escalations)
    for entry in trace:
        told_at = position.get(id(entry))
        if told_at is None:
            told_at = next((i for i, e in enumerate(emitted) if e == entry), None)
        while waiting and told_at is not None and waiting[0][0] < told_at:
            merged.append(waiting.pop(0)[1])
        merged.append(entry)
    merged.extend(e for _, e in waiting)
    return merged


def _check_per_tool(budget: Budget, tools: Sequence[str]) -> None:
    """A ``per_tool`` limit must name a tool of the run: a misspelt name would never bind."""
    names = sorted(tools)
    unknown = sorted(set(budget.per_tool) - set(names))
    if unknown:
        raise ValueError(
            f"budget per_tool names {', '.join(repr(u) for u in unknown)}, which the run has no tool called "
            f"(its tools: {', '.join(names) or 'none'}); fix: use one of those names, or drop the limit"
        )


def _start_memory(
    memory: MemorySetup | None,
    question: str,
    ledger: Ledger,
    system_prompt: str | None,
    tools: Sequence[Tool],
) -> tuple[MemoryUse | None, str | None, Sequence[Tool]]:
    """The run's memory (recalled now in context mode), the system prompt with its block, the tools with
    the ``recall`` tool in tool mode; unchanged without memory."""
    if memory is None:
        return None, system_prompt, tools
    use = memory.start(question, ledger)
    return use, use.system_prompt(system_prompt), [*tools, *use.tools()]


def _store_failed(on_error: StoreErrorCallback | None, exc: Exception) -> None:
    if on_error is not None:
        on_error(exc)
        return
    import warnings

    from thrifty.store import StoreWarning

    warnings.warn(str(exc), StoreWarning, stacklevel=4)


def _start_recording(
    store: str | Path | None,
    run_id: str,
    ledger: Ledger,
    on_error: StoreErrorCallback | None,
    resume: bool = False,
    **fields: str,
) -> Any:
    """Open the run store and write the run's row; every charge is then written as the Ledger settles it.
    None (and the failure reported) when there is no store or it cannot be opened."""
    if store is None:
        return None
    from thrifty.store import RunStore, StoreError

    try:
        recorder = RunStore(store).start(
            run_id,
            budget=ledger.budget.limits(),
            on_error=lambda exc: _store_failed(on_error, exc),
            resume=resume,
            **fields,
        )
    except StoreError as exc:
        _store_failed(on_error, exc)
        return None
    for event in list(ledger.events):  # charges made on this ledger before the run began
        recorder.on_charge(event)
    ledger.listeners.append(recorder.on_charge)
    return recorder


def _finish_recording(
    recorder: Any, ledger: Ledger, result: RunResult, on_error: StoreErrorCallback | None
) -> None:
    from thrifty.store import StoreError

    if recorder.on_charge in ledger.listeners:
        ledger.listeners.remove(recorder.on_charge)
    try:
        recorder.finish(result)
    except StoreError as exc:
        _store_failed(on_error, exc)


def _scrubbed_error(error: str | None) -> str | None:
    """A node's error as the result reports it: scrubbed, whoever wrote it (a custom node or strategy may
    put a tool's or a provider's raw text in ``state["error"]``)."""
    return None if error is None else redact(str(error))[:1000]


def run_task(
    spec: TaskSpec,
    *,
    on_trace: TraceCallback | None = None,
    store: bool = True,
    ledger: Ledger | None = None,
    on_store_error: StoreErrorCallback | None = None,
    run_id: str | None = None,
    checkpoint: str | Path | None = None,
    resume: bool = False,
    checkpoint_meta: dict[str, Any] | None = None,
) -> RunResult:
    """Run a validated task file (on ``ledger`` if given, e.g. one a live view watches; ``on_store_error``,
    ``checkpoint`` and ``resume``: see :func:`execute`)."""
    try:
        tools, pricing = resolve_tools(spec)
        builder = get_builder(spec.strategy.name, spec.base_dir)
        memory = (
            setup_from_spec(spec.memory, spec.base_dir, pricing=pricing, run_budget=spec.budget)
            if spec.memory is not None
            else None
        )
    except (ValueError, ImportError, AttributeError) as exc:
        raise SetupError(str(exc)) from None
    try:
        with open_mcp_servers(spec) as mcp_tools:
            return _run_spec(
                spec,
                [*tools, *mcp_tools],
                pricing,
                builder,
                on_trace,
                store,
                ledger,
                on_store_error,
                run_id=run_id,
                checkpoint=checkpoint,
                resume=resume,
                checkpoint_meta=checkpoint_meta,
                memory=memory,
            )
    finally:
        if memory is not None:  # the task's own Memory, opened for this run: its store connection ends here
            memory.memory.close()


@contextlib.contextmanager
def open_mcp_servers(spec: TaskSpec) -> Iterator[list[Tool]]:
    """Start the task's MCP servers and yield their tools; stop them after. SetupError when one cannot
    start (a bad command, a timeout, a tool with an invalid schema)."""
    from thrifty.tools.mcp import MCPStartupError, connect_mcp

    connections: list[Any] = []
    try:
        for server in spec.mcp_servers:
            try:
                connections.append(connect_mcp(server.config(spec.base_dir)))
            except (MCPStartupError, ValueError, OSError) as exc:
                raise SetupError(f"mcp_servers: {exc}") from None
        yield [tool for connection in connections for tool in connection.tools]
    finally:
        for connection in connections:
            connection.close()


def _run_spec(
    spec: TaskSpec,
    tools: list[Tool],
    pricing: Pricing,
    builder: Any,
    on_trace: TraceCallback | None,
    store: bool,
    ledger: Ledger | None,
    on_store_error: StoreErrorCallback | None,
    memory: MemorySetup | None = None,
    **durable: Any,
) -> RunResult:
    target = spec.store_target() if store else None
    return execute(
        spec.rendered_question(),
        model=spec.model,
        tools=tools,
        budget=spec.budget,
        pricing=pricing,
        strategy=spec.strategy,
        settings=spec.model_settings,
        system_prompt=spec.system_prompt,
        task=spec.name or "",
        expected_answer=spec.expected_answer,
        on_trace=on_trace,
        store=target,
        keep_trace=spec.output.trace,
        ledger=ledger,
        builder=builder,
        on_store_error=on_store_error,
        on_limit=spec.on_limit,
        memory=memory,
        routing=spec.routing(),
        **durable,
    )
