"""Framework overhead: what thrifty's accounting costs per agent step, against bare LangGraph and a loop.

One 20-step react run (19 tool calls, then an answer) with an instant scripted model and an instant
in-memory tool, timed in one process, interleaved:

* **thrifty** — ``execute(...)`` with the react strategy: Gateway (count, cap, reserve, call, settle),
  ToolRunner (validate, reserve, run, settle, cache), the Budget Tracker block and trace, the RunResult;
  once with the tracker off; once more with the tool declared with a timeout (``timeout=30``, the
  ``@tool`` default), which runs it on a worker thread so that it can be abandoned — the instant tool of
  the main variant is declared ``timeout=None`` like thrifty's in-memory tools and runs on the caller's
  thread, as the baselines call it;
* **bare LangGraph** — the same ``litellm.completion`` calls on the same scripted provider and direct calls
  of the tool function from LangGraph graphs compiled once, with no Ledger and no ToolRunner: the
  classic two-node agent/tools graph with a conditional edge, and a one-node graph routing itself with
  ``Command`` (the shape thrifty's react uses);
* **plain loop** — the same calls from a Python ``for`` loop: the floor, LiteLLM's own cost.

Each timing lasts until LiteLLM's background logging of that run's calls has finished (see
:func:`_drain_litellm_logging`), so no variant pays for another's.

Reported: the median over repeats of microseconds per step (one model call and its tool call), the
ratios, thrifty's added time per step over the loop, and a tight-loop timing of ``Ledger.reserve`` +
``Ledger.settle``. Goals: thrifty adds under 1 ms per step, and stays within 1.5x bare LangGraph (judged
against the faster of the two bare graphs).

The scripted model reports its prompt size, so no tokenizer runs; with an API model the Gateway also
counts prompt tokens with LiteLLM's counter, timed separately here for reference.
"""

from __future__ import annotations

import gc
import json
import operator
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from typing import Annotated, Any, TypedDict

__all__ = ["OverheadResult", "ledger_us_per_call", "run_overhead"]

QUESTION = "What does the lookup tool say about item 19?"
SYSTEM = "You answer questions by looking things up with tools."


_BARE = ("langgraph", "langgraph_one_node")


class _BareState(TypedDict):
    messages: Annotated[list[dict[str, Any]], operator.add]


@dataclass
class OverheadResult:
    """Per-variant timings (µs per step, one sample per round) and the figures derived from them.

    The machine's speed drifts while the benchmark runs (other processes, LiteLLM's logging threads), so
    differences and ratios are *paired*: computed within each round, whose variants ran back to back, and
    then the median is taken over rounds. The minimums (each variant's least disturbed round) are shown too.
    """

    steps: int
    repeats: int
    samples: dict[str, list[float]]  # variant -> µs per step, one per round (rounds aligned across variants)
    ledger_us: float  # one reserve + settle
    compile_us: float  # building thrifty's react graph once
    token_counter_us: float | None = None  # LiteLLM token counting of the last prompt, for reference
    load_average: tuple[float, float] = (0.0, 0.0)  # 1-minute load before and after (other processes)
    notes: list[str] = field(default_factory=list)
    with_litellm: bool = True  # False: the framework-only reading (model calls bypass LiteLLM everywhere)

    @property
    def us_per_step(self) -> dict[str, float]:
        """Median µs per step of each variant."""
        return {k: statistics.median(v) for k, v in self.samples.items()}

    @property
    def spread(self) -> dict[str, tuple[float, float]]:
        """(min, max) µs per step of each variant."""
        return {k: (min(v), max(v)) for k, v in self.samples.items()}

    def _paired(self, fn: Callable[[int], float]) -> float:
        return statistics.median(fn(i) for i in range(len(self.samples["thrifty"])))

    @property
    def bare_langgraph(self) -> str:
        """The faster bare LangGraph variant (the stricter baseline for the ratio goal)."""
        medians = self.us_per_step
        return min((k for k in _BARE if k in medians), key=medians.__getitem__)

    @property
    def added_us_per_step(self) -> float:
        """thrifty's time per step above the plain loop (paired median)."""
        s = self.samples
        return self._paired(lambda i: s["thrifty"][i] - s["loop"][i])

    @property
    def store_added_us_per_step(self) -> float | None:
        """What recording the run in a SQLite run store adds per step over the same run without one
        (paired median; None when that variant was not timed)."""
        s = self.samples
        if not s.get("thrifty_store"):
            return None
        return self._paired(lambda i: s["thrifty_store"][i] - s["thrifty"][i])

    @property
    def bare_added_us_per_step(self) -> float:
        """The faster bare LangGraph graph's time per step above the plain loop (paired median): what
        LangGraph's superstep costs on this machine, with no accounting at all."""
        s, bare = self.samples, self.bare_langgraph
        return self._paired(lambda i: s[bare][i] - s["loop"][i])

    @property
    def ratio_vs_langgraph(self) -> float:
        """thrifty / the faster bare LangGraph graph (paired median)."""
        s, bare = self.samples, self.bare_langgraph
        return self._paired(lambda i: s["thrifty"][i] / s[bare][i])

    @property
    def ratio_vs_loop(self) -> float:
        s = self.samples
        return self._paired(lambda i: s["thrifty"][i] / s["loop"][i])

    def _on_minimums(self) -> tuple[float, float]:
        lo = {k: v[0] for k, v in self.spread.items()}
        return lo["thrifty"] - lo["loop"], lo["thrifty"] / min(lo[k] for k in _BARE if k in lo)

    @property
    def goals(self) -> dict[str, bool]:
        """The goals judged on the paired medians."""
        return {
            "adds < 1 ms/step": self.added_us_per_step < 1000.0,
            "<= 1.5x bare LangGraph": self.ratio_vs_langgraph <= 1.5,
        }

    @property
    def goals_on_minimums(self) -> dict[str, bool]:
        """The goals judged on the fastest round of each variant (least disturbed by other processes)."""
        added, ratio = self._on_minimums()
        return {"adds < 1 ms/step": added < 1000.0, "<= 1.5x bare LangGraph": ratio <= 1.5}

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(
            us_per_step=self.us_per_step,
            spread=self.spread,
            added_us_per_step=self.added_us_per_step,
            bare_added_us_per_step=self.bare_added_us_per_step,
            store_added_us_per_step=self.store_added_us_per_step,
            bare_langgraph=self.bare_langgraph,
            ratio_vs_langgraph=self.ratio_vs_langgraph,
            ratio_vs_loop=self.ratio_vs_loop,
            goals=self.goals,
            goals_on_minimums=self.goals_on_minimums,
        )
        return data

    def lines(self) -> list[str]:
        names = {
            "thrifty": "thrifty react (Budget Tracker on)",
            "thrifty_no_tracker": "thrifty react (tracker off)",
            "thrifty_tool_timeout": "thrifty react, tool with a timeout",
            "thrifty_store": "thrifty react, recorded in a run store",
            "langgraph": "bare LangGraph, agent/tools nodes",
            "langgraph_one_node": "bare LangGraph, one node",
            "loop": "plain Python loop (floor)",
        }
        out = [f"framework overhead: {self.steps}-step react run, {self.repeats} rounds (median, min, max)"]
        if not self.with_litellm:
            out.append(
                "  FRAMEWORK ONLY: every variant's model call bypasses LiteLLM (scripted provider called directly)"
            )
        medians, spread = self.us_per_step, self.spread
        for key, label in names.items():
            if key in medians:
                fastest, slowest = spread[key]
                out.append(f"  {label:<36} {medians[key]:7.0f} µs/step  ({fastest:.0f} .. {slowest:.0f})")
        out.append(
            f"  thrifty adds over the loop           {self.added_us_per_step:7.0f} µs/step  (paired median)"
        )
        if self.store_added_us_per_step is not None:
            out.append(
                f"  the run store adds                   {self.store_added_us_per_step:7.0f} µs/step  "
                "(paired median, SQLite file)"
            )
        out.append(
            f"  bare LangGraph adds over the loop    {self.bare_added_us_per_step:7.0f} µs/step  "
            f"(paired median, {self.bare_langgraph})"
        )
        out.append(
            f"  thrifty / bare LangGraph             {self.ratio_vs_langgraph:7.2f}x        "
            f"(paired median, vs {self.bare_langgraph})"
        )
        out.append(f"  thrifty / plain loop                 {self.ratio_vs_loop:7.2f}x")
        out.append(f"  Ledger reserve + settle              {self.ledger_us:7.1f} µs/call")
        out.append(f"  react graph compile (once a process) {self.compile_us:7.0f} µs")
        if self.token_counter_us is not None:
            out.append(
                f"  LiteLLM token count, last prompt     {self.token_counter_us:7.0f} µs  (API models only)"
            )
        added, ratio = self._on_minimums()
        out.append(f"  on minimums: thrifty adds {added:.0f} µs/step, {ratio:.2f}x bare LangGraph")
        for goal, ok in self.goals.items():
            on_min = self.goals_on_minimums[goal]
            out.append(
                f"  goal {goal}: {'PASS' if ok else 'FAIL'} (paired medians), "
                f"{'PASS' if on_min else 'FAIL'} (minimums)"
            )
        out.append(
            f"  machine load average {self.load_average[0]:.2f} before, {self.load_average[1]:.2f} after"
        )
        out.extend(f"  note: {n}" for n in self.notes)
        return out


def ledger_us_per_call(n: int = 20000) -> float:
    """Microseconds for one ``reserve`` + ``settle`` of a model call's amounts (tight loop)."""
    from thrifty.budget import Budget, Ledger

    ledger = Ledger(Budget(total_tokens=10**12, tool_calls=10**9, usd=1e9, model_requests=10**9))
    amounts = {
        "input_tokens": 120,
        "output_tokens": 256,
        "total_tokens": 376,
        "model_requests": 1,
        "usd": 0.001,
    }
    actual = {
        "input_tokens": 120,
        "output_tokens": 12,
        "total_tokens": 132,
        "model_requests": 1,
        "usd": 0.0005,
    }
    for _ in range(200):  # warm up
        ledger.settle(ledger.reserve(amounts, kind="model", name="m"), actual)
    started = time.perf_counter()
    for _ in range(n):
        ledger.settle(ledger.reserve(amounts, kind="model", name="m"), actual)
    return (time.perf_counter() - started) / n * 1e6


def _drain_litellm_logging(litellm: Any, limit: float = 5.0) -> None:
    """Wait until LiteLLM's background logging of the calls made so far has finished.

    LiteLLM hands every call's success logging (building its logging payload, pricing the response) to a
    thread pool. Left running, that work competes for the GIL with whatever is timed next, so each variant
    is timed until its own background work is done: the figures are the whole cost of the calls, and no
    variant pays for another's. (Reads the pool's private counter; without it, waits 20 ms.)
    """
    pool = getattr(getattr(litellm, "utils", None), "executor", None)
    slots = getattr(pool, "_pending_slots", None)
    most = getattr(pool, "_max_pending_tasks", None)
    if slots is None or most is None or not hasattr(slots, "_value"):
        time.sleep(0.02)
        return
    deadline = time.perf_counter() + limit
    while slots._value < most and time.perf_counter() < deadline:
        time.sleep(0.0002)


def _script_steps(steps: int) -> list[Any]:
    from thrifty.testing import call, reply

    return [call("lookup", query=f"item {i}") for i in range(steps - 1)] + [reply("fact 19")]


def _assistant(message: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"role": "assistant", "content": message.content}
    if message.tool_calls:
        out["tool_calls"] = [
            {
                "id": tc.id,
                "type": "function",
                "function": {"name": tc.function.name, "arguments": tc.function.arguments},
            }
            for tc in message.tool_calls
        ]
    return out


@contextmanager
def _without_litellm(litellm: Any) -> Iterator[None]:
    """Replace ``litellm.completion`` by a direct call of the scripted provider, for every variant alike.

    The framework-only reading: LiteLLM's own per-call work (~2.5 ms here) and the background logging
    threads it starts for every call (which contend for the GIL with whatever runs next) are taken out.
    """
    handler = next(p["custom_handler"] for p in litellm.custom_provider_map if p["provider"] == "scripted")
    original = litellm.completion

    def direct(*, model: str, messages: list[dict[str, Any]], **params: Any) -> Any:
        return handler.completion(
            model.split("/", 1)[1],
            messages,
            model_response=litellm.ModelResponse(),
            optional_params={k: v for k, v in params.items() if k in ("max_tokens", "temperature", "tools")},
        )

    litellm.completion = direct
    try:
        yield
    finally:
        litellm.completion = original


def run_overhead(
    steps: int = 20, repeats: int = 30, warmup: int = 3, *, with_litellm: bool = True
) -> OverheadResult:
    """Time the variants (interleaved, ``repeats`` times each after ``warmup``) and the Ledger.

    ``with_litellm=False`` gives the framework-only reading (see :func:`_without_litellm`).
    """
    from langgraph.graph import END, START, StateGraph
    from langgraph.types import Command

    from thrifty.budget import Budget
    from thrifty.models._litellm import get_litellm
    from thrifty.testing import ScriptedModel
    from thrifty.tools import tool
    from thrifty.workflows.react import build_react
    from thrifty.workflows.runner import execute
    from thrifty.workflows.spec import StrategySpec

    if steps < 2:
        raise ValueError("steps must be >= 2")
    litellm = get_litellm()

    def lookup_fn(query: str) -> str:
        """Look something up (instant).

        Args:
            query: What to look up.
        """
        return f"fact about {query}"

    # In memory and instant, so declared like thrifty's own in-memory tools: run on the caller's thread.
    lookup = tool(name="lookup", timeout=None)(lookup_fn)
    lookup_with_timeout = tool(name="lookup")(lookup_fn)  # the @tool default: a worker thread, 30 s

    script = ScriptedModel(name="overhead-bench")
    schemas = [lookup.openai_schema()]

    def complete(messages: list[dict[str, Any]], with_tools: bool) -> Any:
        kwargs: dict[str, Any] = {"tools": schemas} if with_tools else {}
        return (
            litellm.completion(
                model=script.model,
                messages=messages,
                max_tokens=256,
                temperature=0.0,
                num_retries=0,
                **kwargs,
            )
            .choices[0]
            .message
        )

    store_dir = tempfile.mkdtemp(prefix="thrifty-overhead-")
    store = os.path.join(store_dir, "runs.db")

    def run_thrifty(tracker: bool, tool_: Any = lookup, store_: str | None = None) -> None:
        result = execute(
            QUESTION,
            model=script.model,
            tools=[tool_],
            budget=Budget(tool_calls=steps + 5),  # room for every step's call, however many steps
            strategy=StrategySpec(name="react", tracker=tracker, max_steps=steps + 5),
            settings=_settings(),
            keep_trace=True,
            store=store_,
        )
        assert result.usage.model_requests == steps, result.stop_reason

    def act(state: _BareState) -> dict[str, Any]:
        head = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION}]
        return {"messages": [_assistant(complete(head + state["messages"], True))]}

    def observe(state: _BareState) -> dict[str, Any]:
        out = []
        for tc in state["messages"][-1].get("tool_calls") or []:
            args = json.loads(tc["function"]["arguments"])
            content = lookup.fn(**args)
            out.append(
                {"role": "tool", "tool_call_id": tc["id"], "name": tc["function"]["name"], "content": content}
            )
        return {"messages": out}

    def route(state: _BareState) -> str:
        return "observe" if state["messages"][-1].get("tool_calls") else "end"

    graph = StateGraph(_BareState)
    graph.add_node("act", act)
    graph.add_node("observe", observe)
    graph.add_edge(START, "act")
    graph.add_conditional_edges("act", route, {"observe": "observe", "end": END})
    graph.add_edge("observe", "act")
    bare = graph.compile()

    def step(state: _BareState) -> Command[Any]:
        update = act(state)
        if not update["messages"][-1].get("tool_calls"):
            return Command(update=update, goto=END)
        seen: _BareState = {"messages": state["messages"] + update["messages"]}
        return Command(update={"messages": update["messages"] + observe(seen)["messages"]}, goto="step")

    one = StateGraph(_BareState)
    one.add_node("step", step, destinations=("step", END))
    one.add_edge(START, "step")
    bare_one_node = one.compile()

    def run_langgraph(compiled: Any = bare) -> None:
        final: dict[str, Any] = {}
        for values in compiled.stream(
            {"messages": []}, stream_mode="values", config={"recursion_limit": steps * 3}
        ):
            final = values
        assert len(final["messages"]) == 2 * steps - 1

    def run_loop() -> None:
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": QUESTION},
        ]
        for _ in range(steps):
            message = complete(messages, True)
            messages.append(_assistant(message))
            if not message.tool_calls:
                break
            for tc in message.tool_calls:
                content = lookup.fn(**json.loads(tc.function.arguments))
                messages.append(
                    {"role": "tool", "tool_call_id": tc.id, "name": tc.function.name, "content": content}
                )
        assert len(messages) == 2 * steps + 1

    variants: dict[str, Callable[[], None]] = {
        "thrifty": lambda: run_thrifty(True),
        "thrifty_no_tracker": lambda: run_thrifty(False),
        "thrifty_tool_timeout": lambda: run_thrifty(True, lookup_with_timeout),
        "thrifty_store": lambda: run_thrifty(True, store_=store),
        "langgraph": run_langgraph,
        "langgraph_one_node": lambda: run_langgraph(bare_one_node),
        "loop": run_loop,
    }
    times: dict[str, list[float]] = {k: [] for k in variants}
    load_before = os.getloadavg()[0]
    try:
        with nullcontext() if with_litellm else _without_litellm(litellm):
            _time_rounds(variants, times, script, steps, warmup + repeats, warmup, litellm)
    finally:
        shutil.rmtree(store_dir, ignore_errors=True)

    started = time.perf_counter()
    for _ in range(20):
        build_react({})
    compile_us = (time.perf_counter() - started) / 20 * 1e6

    token_us: float | None = None
    try:
        messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION}]
        messages += [{"role": "tool", "content": f"fact about item {i}"} for i in range(steps)]
        litellm.token_counter(model="gpt-4o-mini", messages=messages)
        started = time.perf_counter()
        for _ in range(50):
            litellm.token_counter(model="gpt-4o-mini", messages=messages)
        token_us = (time.perf_counter() - started) / 50 * 1e6
    except Exception:  # pragma: no cover - tokenizer unavailable offline
        token_us = None

    return OverheadResult(
        steps=steps,
        repeats=repeats,
        samples=times,
        ledger_us=ledger_us_per_call(),
        compile_us=compile_us,
        token_counter_us=token_us,
        load_average=(load_before, os.getloadavg()[0]),
        with_litellm=with_litellm,
        notes=[
            "per step = one model call and its tool call; thrifty's react graph is compiled once a process",
            "the scripted model is instant, so these figures are pure framework + LiteLLM time"
            if with_litellm
            else "the scripted model is instant and LiteLLM is bypassed: these figures are framework time only",
        ],
    )


def _time_rounds(
    variants: dict[str, Callable[[], None]],
    times: dict[str, list[float]],
    script: Any,
    steps: int,
    rounds: int,
    warmup: int,
    litellm: Any,
) -> None:
    """Run every variant once per round, in order, and record µs per step after the warm-up rounds."""
    for round_ in range(rounds):
        for name, fn in variants.items():
            script.add(*_script_steps(steps))
            gc.collect()
            started = time.perf_counter()
            fn()
            _drain_litellm_logging(litellm)
            elapsed = time.perf_counter() - started
            if script.remaining:
                raise RuntimeError(
                    f"{name}: {script.remaining} scripted replies left (expected {steps} calls)"
                )
            if round_ >= warmup:
                times[name].append(elapsed / steps * 1e6)


def _settings() -> Any:
    from thrifty.agents.context import ModelSettings

    return ModelSettings(temperature=0.0, max_tokens=256)
