"""The Python API: an Agent is a model, tools, a budget and a strategy; ``run`` returns a RunResult.

from thrifty import Agent, Budget
from thrifty.tools import load_corpus, make_search_tools

agent = Agent(tools=make_search_tools(load_corpus("passages.jsonl")), budget=Budget(tool_calls=5))
result = agent.run("Which magazine was started first, Arthur's Magazine or First for Women?")
print(result.answer, result.stop_reason, result.usage.usd)
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar, cast

from pydantic import BaseModel, ValidationError

from thrifty.agents.context import DEFAULT_MAX_STEPS
from thrifty.budget import Budget, Ledger, Pricing
from thrifty.memory import Memory, Scope
from thrifty.models import NamedModel, model_name
from thrifty.models.routing import EscalationPolicy, Routing
from thrifty.models.settings import (
    DEFAULT_ANSWER_CHOICE,
    DEFAULT_ANSWER_CONTEXT,
    DEFAULT_MODEL,
    DEFAULT_REPLY_TOKENS,
    DEFAULT_RETRIES,
    DEFAULT_TEMPERATURE,
    AnswerChoice,
    AnswerContext,
    ModelSettings,
    ResponseFormatMode,
)
from thrifty.tools import Tool
from thrifty.workflows.memory import MemoryMode, MemorySetup
from thrifty.workflows.options import parse_options
from thrifty.workflows.result import RunResult
from thrifty.workflows.runner import TraceCallback, execute, new_run_id, run_ledger
from thrifty.workflows.spec import StrategySpec
from thrifty.workflows.strategies import STRATEGIES, get_builder
from thrifty.workflows.stream import RunCancelled, RunStream, stop_on


class Agent:
    """A reusable agent configuration. Each :meth:`run` gets a fresh Ledger for its budget.

    ``models``: several models, cheapest first (the run starts on the cheapest and escalates as
    ``escalation`` says); ``roles``: a model or a cascade per role (``{"verifier": "openai/gpt-4o"}``); see
    :mod:`thrifty.models.routing`. A role name that does not exist is a ValueError here.

    ``grounded``: keep tool arguments and answers tied to the question and the observations
    (:mod:`thrifty.agents.grounding`; None: on for grammar-constrained providers such as the embedded model,
    True also for a small model served over HTTP). ``answer_choice``: how a grounded answer is picked among
    the observed spans on a provider that can score them (``likelihood``: the span the model is likeliest
    to write, scored whole; ``grammar``: the grammar's token-by-token pick); ``answer_context``: what it is
    asked from once no tool is left (``focused``: the observed sentences closest to the question;
    ``conversation``: the whole run). ``response_format``: how
    structured calls ask for JSON (``auto``, ``json_schema``, ``json_object`` or ``none``).

    ``api_base``: the OpenAI-compatible server a remote model is called at (``model="openai/<name>"``, the key
    from ``OPENAI_API_KEY``).

    Extra keyword arguments are the strategy's options (``Agent(strategy="bats", max_attempts=2)``); a
    built-in strategy refuses one it does not have, here, with a ValueError that names the valid ones.
    """

    def __init__(
        self,
        model: str | NamedModel = DEFAULT_MODEL,
        *,
        tools: Sequence[Tool] | None = (),
        budget: Budget | Mapping[str, Any] | None = None,
        strategy: str | StrategySpec | Callable[[Any], Any] = "react",
        tracker: bool = True,
        max_steps: int = DEFAULT_MAX_STEPS,
        keep_observations: int | None = None,
        pricing: Pricing | Mapping[str, Any] | None = None,
        temperature: float | None = DEFAULT_TEMPERATURE,
        max_tokens: int = DEFAULT_REPLY_TOKENS,
        seed: int | None = None,
        retries: int = DEFAULT_RETRIES,
        api_base: str | None = None,
        system_prompt: str | None = None,
        store: str | Path | None = None,
        memory: Memory | MemorySetup | None = None,
        memory_scope: Scope | Mapping[str, str] | None = None,
        memory_budget: Budget | Mapping[str, Any] | None = None,
        memory_mode: MemoryMode = "context",
        models: Sequence[str | NamedModel] | None = None,
        roles: dict[str, str | NamedModel | Sequence[str | NamedModel]] | None = None,
        escalation: EscalationPolicy | dict[str, Any] | None = None,
        grounded: bool | None = None,
        answer_choice: AnswerChoice = DEFAULT_ANSWER_CHOICE,
        answer_context: AnswerContext = DEFAULT_ANSWER_CONTEXT,
        response_format: ResponseFormatMode = "auto",
        **strategy_options: Any,
    ) -> None:
        self.model = model_name(model)  # a name, or a model object such as a ScriptedModel
        self.routing: Routing | None = None
        cascade = _model_names(models, "models") if models is not None else None
        named = _role_models(roles)
        if cascade is not None or named:
            self.routing = Routing(
                models=cascade if cascade is not None else [self.model],
                roles=named,
                escalation=EscalationPolicy.model_validate(escalation or {})
                if not isinstance(escalation, EscalationPolicy)
                else escalation,
            )
        self.tools = _checked_tools(tools)
        self.budget = _as_budget(budget, "budget") or Budget()
        self.builder: Callable[[Any], Any] | None = None
        if callable(strategy) and not isinstance(strategy, StrategySpec):
            # A Workflow, or any function building a graph: run it like a built-in strategy.
            self.builder = strategy
            strategy = getattr(strategy, "name", getattr(strategy, "__name__", "custom"))
        spec: StrategySpec
        if isinstance(strategy, str):
            spec = StrategySpec(
                name=strategy,
                tracker=tracker,
                max_steps=max_steps,
                keep_observations=keep_observations,
                options=strategy_options,
            )
        elif isinstance(strategy, StrategySpec):
            # keyword options add to (and override) the StrategySpec's own
            update: dict[str, Any] = {"options": {**strategy.options, **strategy_options}}
            if keep_observations is not None:
                update["keep_observations"] = keep_observations
            spec = strategy.model_copy(update=update)
        else:
            raise TypeError(f"strategy must be a name, a StrategySpec or a graph builder, got {strategy!r}")
        self.strategy = spec
        # Check the options now (a custom 'module:function' strategy is imported, and checked, by run).
        known = self.builder or STRATEGIES.get(spec.name)
        if known is not None:
            parse_options(spec.name, known, spec.options)
        elif ":" not in spec.name:
            get_builder(spec.name)  # an unknown name: UnknownStrategy, naming the registered ones
        self.pricing = _as_pricing(pricing)
        self.settings = _model_settings(
            temperature=temperature,
            max_tokens=max_tokens,
            seed=seed,
            retries=retries,
            api_base=api_base,
            grounded=grounded,
            answer_choice=answer_choice,
            answer_context=answer_context,
            response_format=response_format,
        )
        if system_prompt is not None and not isinstance(system_prompt, str):
            raise TypeError(f"system_prompt must be a str, got {type(system_prompt).__name__}")
        self.system_prompt = system_prompt
        if store is not None and not isinstance(store, str | os.PathLike):
            raise TypeError(
                f"store must be a path or URL of the run store (e.g. '.thrifty/runs.db'), got {type(store).__name__}"
            )
        self.store = store
        self.memory = _memory_setup(
            memory, memory_scope, _as_budget(memory_budget, "memory_budget"), memory_mode
        )

    def run(
        self,
        question: str,
        *,
        budget: Budget | Mapping[str, Any] | None = None,
        on_trace: TraceCallback | None = None,
        run_id: str | None = None,
        checkpoint: str | Path | None = None,
        on_limit: str = "stop",
        memory_scope: Scope | Mapping[str, str] | None = None,
    ) -> RunResult:
        """Answer ``question`` within the budget (``budget`` here overrides the agent's for this run).

        ``on_limit="pause"``: when a limit binds, the run pauses instead of stopping (``result.paused``,
        ``result.stop_reason == "paused:<dimension>"``); ``agent.run(question, run_id=result.run_id,
        budget=<raised>)`` continues the same run.

        With ``run_id`` (or ``checkpoint``) the run is durable: checkpointed at every step in ``checkpoint``
        (default ``.thrifty/checkpoints.db``). Given the id of a run that was interrupted, it resumes that
        run where it was, paying nothing twice (SetupError if it has finished, or cannot be resumed).
        ``memory_scope``: the memory's scope for this run (default: the agent's).

        An Agent holds no run's state: any number of runs may go on at once on one Agent, from threads or
        asyncio tasks, each on its own Ledger, trace and result."""
        self._check_run(
            question, run_id=run_id, checkpoint=checkpoint, on_trace=on_trace, memory_scope=memory_scope
        )
        durable = _run_options(run_id, checkpoint, on_limit)
        return self._execute(
            question, budget=budget, on_trace=on_trace, run_id=run_id, memory_scope=memory_scope, **durable
        )

    def _check_run(
        self,
        question: object,
        *,
        run_id: object = None,
        checkpoint: object = None,
        on_trace: object = None,
        memory_scope: object = None,
    ) -> None:
        """Refuse a run's bad arguments before anything is spent, each named with its fix."""
        if not isinstance(question, str):
            raise TypeError(f"question must be a str (the question to answer), got {type(question).__name__}")
        if not question.strip():
            raise ValueError("question is empty: give the question to answer")
        if run_id is not None and not isinstance(run_id, str):
            raise TypeError(
                f"run_id must be a str (the id of a durable run, e.g. result.run_id), got {type(run_id).__name__}"
            )
        if isinstance(run_id, str) and not run_id.strip():
            raise ValueError(
                "run_id is empty: give the id of a durable run (e.g. result.run_id), or leave run_id out"
            )
        _check_checkpoint(checkpoint)
        _check_on_trace(on_trace)
        if memory_scope is not None and self.memory is None:
            raise ValueError(
                "memory_scope is given but this Agent has no memory (fix: Agent(..., memory=Memory(...)), "
                "or drop memory_scope)"
            )
        if memory_scope is not None:
            _scope(memory_scope)

    def _execute(
        self,
        question: str,
        *,
        budget: Budget | Mapping[str, Any] | None = None,
        on_trace: TraceCallback | None = None,
        ledger: Ledger | None = None,
        run_id: str | None = None,
        memory_scope: Scope | Mapping[str, str] | None = None,
        **durable: Any,
    ) -> RunResult:
        memory = self.memory
        if memory is not None and memory_scope is not None:
            memory = replace(memory, scope=_scope(memory_scope))
        return execute(
            question,
            ledger=ledger,
            run_id=run_id,
            **durable,
            model=self.model,
            tools=self.tools,
            budget=_as_budget(budget, "budget") or self.budget,
            pricing=self.pricing,
            strategy=self.strategy,
            settings=self.settings,
            system_prompt=self.system_prompt,
            on_trace=on_trace,
            store=self.store,
            builder=self.builder,
            memory=memory,
            routing=self.routing,
        )

    @property
    def retries(self) -> int:
        return self.settings.retries

    def stream(
        self,
        question: str,
        *,
        budget: Budget | Mapping[str, Any] | None = None,
        run_id: str | None = None,
        checkpoint: str | Path | None = None,
        on_limit: str = "stop",
        memory_scope: Scope | Mapping[str, str] | None = None,
    ) -> RunStream:
        """Run ``question`` and yield its events as they happen (:mod:`thrifty.workflows.stream`): ``start``,
        then each ``trace`` and ``charge`` with the budget left at that moment, and last ``result`` with the
        RunResult. Stopping early (``break``) cancels the run at its next step. The other arguments are
        :meth:`run`'s."""
        self._check_run(question, run_id=run_id, checkpoint=checkpoint, memory_scope=memory_scope)
        limits = _as_budget(budget, "budget") or self.budget
        ledger = run_ledger(limits)
        durable = _run_options(run_id, checkpoint, on_limit)
        run_id = run_id or new_run_id()

        def start(on_trace: TraceCallback) -> RunResult:
            return self._execute(
                question,
                budget=limits,
                on_trace=on_trace,
                ledger=ledger,
                run_id=run_id,
                memory_scope=memory_scope,
                **durable,
            )

        head = {
            "question": question,
            "strategy": self.strategy.name,
            "model": self.model,
            "budget": limits.limits(),
            "resumed": bool(durable.get("resume")),
        }
        return RunStream(ledger, run_id, start, head=head)

    def astream(
        self,
        question: str,
        *,
        budget: Budget | Mapping[str, Any] | None = None,
        run_id: str | None = None,
        checkpoint: str | Path | None = None,
        on_limit: str = "stop",
        memory_scope: Scope | Mapping[str, str] | None = None,
    ) -> RunStream:
        """:meth:`stream` for asyncio: ``async for event in agent.astream(...)`` (the run goes on in a worker
        thread; the event loop is never blocked)."""
        return self.stream(
            question,
            budget=budget,
            run_id=run_id,
            checkpoint=checkpoint,
            on_limit=on_limit,
            memory_scope=memory_scope,
        )

    async def arun(
        self,
        question: str,
        *,
        budget: Budget | Mapping[str, Any] | None = None,
        on_trace: TraceCallback | None = None,
        run_id: str | None = None,
        checkpoint: str | Path | None = None,
        on_limit: str = "stop",
        memory_scope: Scope | Mapping[str, str] | None = None,
    ) -> RunResult:
        """:meth:`run` for asyncio, in a thread of its own, so an asyncio application is never blocked by a
        local model (and no executor's worker limit queues its runs).

        Cancelling the task that awaits it stops the run at its next step, as a stream's reader that stops
        early does: the cancellation waits for the run to end (its charges settled, nothing reserved), then
        raises CancelledError; nothing is spent after that."""
        self._check_run(
            question, run_id=run_id, checkpoint=checkpoint, on_trace=on_trace, memory_scope=memory_scope
        )
        loop = asyncio.get_running_loop()
        done: asyncio.Future[RunResult] = loop.create_future()
        stop = threading.Event()

        def traced(event: Any) -> None:
            if on_trace is not None:
                on_trace(event)
            if stop.is_set():
                raise RunCancelled("run cancelled: the task awaiting Agent.arun was cancelled")

        # The run's own Ledger refuses every charge once cancelled: the run stops at its next model or tool
        # call, not only at its next trace event.
        limits = _as_budget(budget, "budget") or self.budget
        ledger = run_ledger(limits)
        stop_on(ledger, stop)
        durable = _run_options(run_id, checkpoint, on_limit)

        def work() -> None:
            outcome: RunResult | BaseException
            try:
                outcome = self._execute(
                    question,
                    budget=limits,
                    on_trace=traced,
                    ledger=ledger,
                    run_id=run_id,
                    memory_scope=memory_scope,
                    **durable,
                )
            except Exception as exc:  # handed to the awaiting task, raised there
                outcome = exc
            except BaseException as exc:  # never a KeyboardInterrupt or SystemExit into the event loop
                outcome = RuntimeError(f"the run ended with {type(exc).__name__}: {exc}")
            with contextlib.suppress(RuntimeError):  # the event loop has closed: no one is waiting
                loop.call_soon_threadsafe(_settle, done, outcome)

        threading.Thread(target=work, name="thrifty-arun", daemon=True).start()
        try:
            return await asyncio.shield(done)
        except asyncio.CancelledError:
            stop.set()  # the run stops at its next step; wait for it, so nothing is spent after this
            with contextlib.suppress(BaseException):  # the run's outcome, or a second cancellation
                await asyncio.shield(done)
            raise  # the first cancellation


def _settle(done: asyncio.Future[RunResult], outcome: RunResult | BaseException) -> None:
    """Hand a worker thread's outcome to the future an ``arun`` awaits."""
    if done.done():
        return
    if isinstance(outcome, BaseException):
        done.set_exception(outcome)
    else:
        done.set_result(outcome)


def _run_options(run_id: str | None, checkpoint: str | Path | None, on_limit: str) -> dict[str, Any]:
    """execute()'s durable-run arguments (:func:`_durable`) and ``on_limit`` when it is not the default."""
    return {**_durable(run_id, checkpoint), **({"on_limit": on_limit} if on_limit != "stop" else {})}


def _durable(run_id: str | None, checkpoint: str | Path | None) -> dict[str, Any]:
    """execute()'s durable-run arguments: none without a run id or checkpoint; a resume when the checkpoint
    file already holds the run."""
    if run_id is None and checkpoint is None:
        return {}
    from thrifty.store.durable import (
        DEFAULT_CHECKPOINTS,
        CheckpointError,
        DurableStore,
        checkpoint_target,
        checkpoints_missing,
    )
    from thrifty.workflows.runner import SetupError

    path = checkpoint_target(checkpoint or DEFAULT_CHECKPOINTS)  # a file, or a postgresql:// URL
    if run_id is None or checkpoints_missing(path):
        return {"checkpoint": path}
    try:
        store = DurableStore(path)
        try:
            known = store.get(run_id) is not None
        finally:
            store.close()
    except CheckpointError as exc:
        raise SetupError(str(exc)) from None
    return {"checkpoint": path, "resume": known}


def _memory_setup(
    memory: Memory | MemorySetup | None,
    scope: Scope | Mapping[str, str] | None,
    budget: Budget | None,
    mode: MemoryMode,
) -> MemorySetup | None:
    """``Agent(memory=...)``: a Memory needs a scope (here or per run); a MemorySetup is used as it is."""
    if memory is None:
        for given, value in (("memory_scope", scope), ("memory_budget", budget)):
            if value is not None:
                raise ValueError(
                    f"{given} is given but memory is not (fix: Agent(..., memory=Memory(...)), or drop {given})"
                )
        return None
    if isinstance(memory, MemorySetup):
        return memory
    if not isinstance(memory, Memory):
        raise TypeError(
            f"memory must be a thrifty.memory.Memory (e.g. Memory('.thrifty/memory.db')) or a MemorySetup, "
            f"got {type(memory).__name__}"
        )
    # An empty scope is refused, never taken for the shared default (whose memories any user could recall).
    chosen = _scope(scope) if scope is not None else Scope(agent_id="default")
    return MemorySetup(memory=memory, scope=chosen, budget=budget, mode=mode)


def _scope(value: object) -> Scope:
    """A ``memory_scope`` as a Scope; an empty or bad one is a ValueError naming memory_scope and its fix
    (``{}`` would otherwise read as "no scope given")."""
    try:
        return Scope.of(cast("Scope | Mapping[str, str]", value))
    except ValidationError as exc:
        problems = "; ".join(
            (".".join(str(part) for part in err["loc"]) + ": " if err["loc"] else "")
            + str(err["msg"]).removeprefix("Value error, ")
            for err in exc.errors(include_url=False)
        )
        raise ValueError(
            f"memory_scope: {problems} (fix: e.g. memory_scope={{'user_id': 'caroline'}})"
        ) from None


def _model_names(value: object, where: str) -> list[str]:
    """``models=[...]`` (or a role's list) as model names; a str, a single model or a bad item is a TypeError
    naming ``where`` and the shape expected."""
    if isinstance(value, str | bytes | NamedModel | Mapping) or not isinstance(value, Iterable):
        hint = f" (for one model write {where}=[{value!r}])" if isinstance(value, str) else ""
        raise TypeError(
            f"{where} must be a list of models, cheapest first (e.g. {where}=['ollama/qwen2.5', "
            f"'openai/gpt-4o']), got {type(value).__name__}{hint}"
        )
    names: list[str] = []
    for i, item in enumerate(cast("Iterable[object]", value)):
        if not isinstance(item, str | NamedModel):
            raise TypeError(
                f"{where}[{i}] must be a model name such as 'openai/gpt-4o' or a model object, "
                f"got {type(item).__name__}"
            )
        names.append(model_name(item))
    return names


def _role_models(roles: object) -> dict[str, str | list[str]]:
    """``roles=`` as role -> a model name or a cascade of names; a wrong shape is a TypeError naming it."""
    if roles is None:
        return {}
    if not isinstance(roles, Mapping):
        raise TypeError(
            "roles must be a dict of role -> model or list of models (e.g. roles={'verifier': "
            f"'openai/gpt-4o'}}), got {type(roles).__name__}"
        )
    named: dict[str, str | list[str]] = {}
    for role, chosen in cast("Mapping[object, object]", roles).items():
        if not isinstance(role, str):
            raise TypeError(f"roles: a role is named by a str such as 'verifier', got {type(role).__name__}")
        if isinstance(chosen, str | NamedModel):
            named[role] = model_name(chosen)
        elif isinstance(chosen, Iterable) and not isinstance(chosen, bytes | Mapping):
            named[role] = _model_names(chosen, f"roles[{role!r}]")
        else:
            raise TypeError(
                f"roles[{role!r}] must be a model name, a model object or a list of them (e.g. "
                f"roles={{{role!r}: 'openai/gpt-4o'}}), got {type(chosen).__name__}"
            )
    return named


def _check_checkpoint(checkpoint: object) -> None:
    """A durable run's ``checkpoint``: a file path or a database URL (bytes or a number would be taken as a
    file name of their text)."""
    if checkpoint is None:
        return
    if not isinstance(checkpoint, str | os.PathLike):
        raise TypeError(
            "checkpoint must be a path or URL of the checkpoint store (e.g. '.thrifty/checkpoints.db' or "
            f"'postgresql://...'), got {type(checkpoint).__name__}"
        )
    if not str(checkpoint).strip():
        raise ValueError(
            "checkpoint is empty: give a path or URL, or leave it out for .thrifty/checkpoints.db"
        )


def _check_on_trace(on_trace: object) -> None:
    """``on_trace``: a plain function the run calls with each event, in its own thread (so never awaited)."""
    if on_trace is None:
        return
    if not callable(on_trace):
        raise TypeError(f"on_trace must be a function taking each trace event, got {type(on_trace).__name__}")
    if inspect.iscoroutinefunction(on_trace) or inspect.iscoroutinefunction(type(on_trace).__call__):
        raise TypeError(
            "on_trace must be a plain function (def), not an async def: the run calls it with each event and "
            "never awaits it (fix: a def; in asyncio, iterate agent.astream(...) for the events instead)"
        )
    try:
        signature = inspect.signature(on_trace)
    except (TypeError, ValueError):  # a builtin with no signature (print): let it be
        return
    try:
        signature.bind(None)
    except TypeError:
        raise TypeError(
            f"on_trace must take one argument (the trace event), but its signature is {signature} "
            "(fix: def on_trace(event): ...)"
        ) from None


def _checked_tools(tools: Iterable[Tool] | None) -> list[Tool]:
    """The agent's tools, each a :class:`~thrifty.tools.Tool` (a plain function has no schema or price)."""
    if tools is None:
        return []
    if isinstance(tools, Tool):
        raise TypeError(f"tools must be a list of tools: write tools=[{tools.name}], not tools={tools.name}")
    if isinstance(tools, str | bytes | Mapping) or not isinstance(tools, Iterable):
        raise TypeError(
            f"tools must be a list of tools (e.g. tools=[calculator]), got {type(tools).__name__}"
        )
    out = list(tools)
    for i, item in enumerate(out):
        if not isinstance(item, Tool):
            what = f"the function {item.__name__!r}" if callable(item) else repr(item)[:60]
            raise TypeError(
                f"tools[{i}] is {what}, not a Tool: decorate a function with @tool (from thrifty.tools "
                "import tool), or pass tools made by make_search_tools, make_web_search, make_read_url or connect_mcp"
            )
    return out


def _as_pricing(value: Pricing | Mapping[str, Any] | None) -> Pricing:
    """A Pricing, or a mapping of its fields (``{"tools": {"search": 0.001}}``)."""
    return _as_model(Pricing, value, "pricing") or Pricing()


def _model_settings(**fields: Any) -> ModelSettings:
    """The run's ModelSettings from Agent's keywords; a bad one is a ValidationError naming the keyword,
    without the value given (an ``api_base`` may hold a key)."""
    try:
        return ModelSettings(**fields)
    except ValidationError as exc:
        details: list[Any] = [
            {"type": e["type"], "loc": e["loc"], "input": None, **({"ctx": e["ctx"]} if "ctx" in e else {})}
            for e in exc.errors(include_url=False)
        ]
        raise ValidationError.from_exception_data("Agent", details, hide_input=True) from None


def _as_budget(value: Budget | Mapping[str, Any] | None, name: str) -> Budget | None:
    """A Budget, or a mapping of its fields (``{"tool_calls": 3}``); a ValueError names a bad field."""
    return _as_model(Budget, value, name)


_M = TypeVar("_M", bound=BaseModel)


def _as_model(cls: type[_M], value: _M | Mapping[str, Any] | None, name: str) -> _M | None:
    """``value`` as a ``cls`` (given one, or a mapping of its fields); None stays None; a TypeError names
    ``name`` for anything else."""
    if value is None or isinstance(value, cls):
        return value
    if isinstance(value, Mapping):
        return cls.model_validate(dict(value))
    raise TypeError(f"{name} must be a {cls.__name__} (or a dict of its fields), got {type(value).__name__}")
