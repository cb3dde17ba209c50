"""The fault suite behind the README's budget promise (issue 14): runs through the real Gateway, Ledger and
ToolRunner with faults everywhere, counting the limits crossed, and whether each crossing was an explicit
overrun event.

Each run (seeded, so a count can be reproduced) is a ReAct agent over a scripted model and one tool:

* 30% of tool calls are faulted: the tool raises, hangs past the time left (its own timeout is 30 s, longer
  than any run's time budget), or floods (a megabyte of text);
* the provider reports 0.8-1.6x the prompt tokens the Gateway counted;
* half the runs price the model per second of compute (on top of its token prices);
* each run has a dollar limit, a time limit of 0.3-1.5 s, and some a token or tool-call limit.

A limit is *crossed* when the run's spend in that dimension ends above it (seconds: above it by more than
SECONDS_GRACE, the time a run takes to notice and stop). Run ``python benchmarks/fault_suite.py [runs]``;
tests/test_fault_suite.py runs a small version in CI.
"""

from __future__ import annotations

import gc
import random
import sys
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from thrifty import Agent, Budget
from thrifty.budget import ModelPrice, Pricing
from thrifty.budget import ledger as ledger_module
from thrifty.models._litellm import get_litellm
from thrifty.testing import ScriptedModel, ScriptedReply, ScriptedRequest
from thrifty.tools import Tool, tool
from thrifty.workflows.result import RunResult

FAULT_RATE = 0.30
SECONDS_GRACE = ledger_module.SECONDS_GRACE
_MARK = "[fault-suite run "


@dataclass
class _Run:
    """One run's dice: what its provider over-reports, and which of its tool calls fail how."""

    rng: random.Random
    release: threading.Event = field(default_factory=threading.Event)
    faults: Counter[str] = field(default_factory=Counter)


_RUNS: dict[int, _Run] = {}
_LOCK = threading.Lock()


def _run_of(text: str) -> _Run:
    start = text.index(_MARK) + len(_MARK)
    return _RUNS[int(text[start : text.index("]", start)])]


def _counted(request: ScriptedRequest) -> int:
    """The prompt tokens as the Gateway counts them for this model (LiteLLM's counter)."""
    tools = request.params.get("tools")
    return int(get_litellm().token_counter(model="gpt-4o", messages=request.messages, tools=tools or None))


def _provider(request: ScriptedRequest) -> ScriptedReply:
    """The scripted provider: a tool call or two, then an answer; usage over-reported by 0.8-1.6x."""
    question = str(request.messages[0].get("content") or "") + str(request.messages[-1].get("content") or "")
    text = " ".join(str(m.get("content") or "") for m in request.messages)
    run = _run_of(text if _MARK in text else question)
    with _LOCK:
        factor = run.rng.uniform(0.8, 1.6)
        calls = sum(1 for m in request.messages if m.get("role") == "tool")
        answer = calls >= run.rng.randint(1, 4)
        query = f"q{run.rng.randint(0, 10**6)}"
    prompt = max(1, round(_counted(request) * factor))
    completion = 12
    if answer or "lookup" not in request.tool_names:
        return ScriptedReply(content="Paris", prompt_tokens=prompt, completion_tokens=completion)
    return ScriptedReply(
        tool_calls=[("lookup", {"query": query})], prompt_tokens=prompt, completion_tokens=completion
    )


def make_lookup(state: _Run) -> Tool:
    """One run's tool: 30% of its calls fail (raise, hang past the time left, flood)."""

    @tool(timeout=30, price=0.0005)  # longer than any run's time budget: the time left must bound the wait
    def lookup(query: str) -> str:
        """Look something up.

        Args:
            query: What to look up.
        """
        with _LOCK:
            roll = state.rng.random()
            kind = "ok" if roll >= FAULT_RATE else ("raise", "hang", "flood")[int(roll / FAULT_RATE * 3)]
            state.faults[kind] += 1
        if kind == "raise":
            raise ConnectionError("upstream said no")
        if kind == "hang":
            state.release.wait(30)
            return "too late"
        if kind == "flood":
            return "x" * 1_000_000
        return f"{query}: Paris is the capital of France."

    return lookup


@dataclass
class Outcome:
    run: int
    limits: dict[str, float]
    spent: dict[str, float]
    crossed: list[str]
    explicit: list[str]
    overruns: list[str]
    per_second: bool
    stop_reason: str
    faults: Counter[str]


def _spent(result: RunResult) -> dict[str, float]:
    u = result.usage
    return {
        "usd": u.usd,
        "total_tokens": u.total_tokens,
        "input_tokens": u.input_tokens,
        "output_tokens": u.output_tokens,
        "tool_calls": u.tool_calls,
        "model_requests": u.model_requests,
        "seconds": u.seconds,
    }


def one_run(index: int, model: str, seed: int) -> Outcome:
    rng = random.Random(seed * 1_000_003 + index)
    state = _Run(random.Random(rng.random()))
    with _LOCK:
        _RUNS[index] = state
    per_second = rng.random() < 0.5
    price = ModelPrice(
        input_per_token=2e-6,
        output_per_token=8e-6,
        per_second=rng.uniform(0.0005, 0.003) if per_second else 0.0,
    )
    limits: dict[str, float] = {
        "usd": round(rng.uniform(0.004, 0.03), 6),
        "seconds": round(rng.uniform(0.3, 1.5), 2),
    }
    if rng.random() < 0.3:
        limits["total_tokens"] = rng.randint(400, 3000)
    if rng.random() < 0.3:
        limits["tool_calls"] = rng.randint(1, 4)
    agent = Agent(
        model,
        tools=[make_lookup(state)],
        budget=Budget.model_validate(limits),
        pricing=Pricing(models={model: price}),
        max_tokens=64,
        retries=0,
    )
    try:
        result = agent.run(f"{_MARK}{index}] What is the capital of France?")
    finally:
        state.release.set()
    spent = _spent(result)
    crossed = [
        dim
        for dim, limit in limits.items()
        if spent[dim] > limit + (SECONDS_GRACE if dim == "seconds" else 1e-9 * max(1.0, limit))
    ]
    overruns = sorted({o.dimension for o in result.overruns})
    explicit = [dim for dim in crossed if dim in overruns]
    with _LOCK:
        del _RUNS[index]
    return Outcome(
        index, limits, spent, crossed, explicit, overruns, per_second, result.stop_reason, state.faults
    )


@dataclass
class Summary:
    runs: int = 0
    tool_calls: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    crossed: Counter[str] = field(default_factory=Counter)
    silent: Counter[str] = field(default_factory=Counter)
    overrun_runs: int = 0
    overruns: Counter[str] = field(default_factory=Counter)
    stops: Counter[str] = field(default_factory=Counter)
    per_second_runs: int = 0
    seconds: float = 0.0
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def silent_total(self) -> int:
        return sum(self.silent.values())

    def lines(self) -> list[str]:
        faulted = sum(v for k, v in self.faults.items() if k != "ok")
        share = faulted / max(1, self.tool_calls)
        by_dim = ", ".join(f"{d} {n}" for d, n in sorted(self.overruns.items())) or "none"
        crossed = ", ".join(f"{d} {n}" for d, n in sorted(self.crossed.items())) or "none"
        return [
            f"runs: {self.runs} ({self.per_second_runs} priced per second), {self.seconds:.1f}s",
            f"tool calls: {self.tool_calls}, faulted {faulted} ({share:.0%}: "
            + ", ".join(f"{k} {self.faults[k]}" for k in ("raise", "hang", "flood"))
            + ")",
            "provider reports: 0.8-1.6x the counted prompt tokens",
            f"limits crossed: {sum(self.crossed.values())} (by dimension: {crossed})",
            f"limits crossed without an overrun event: {self.silent_total}",
            f"runs with an overrun event: {self.overrun_runs} ({self.overrun_runs / max(1, self.runs):.2%}; "
            f"by dimension: {by_dim})",
            "stop reasons: " + ", ".join(f"{k} {v}" for k, v in self.stops.most_common()),
        ]


def run_suite(runs: int = 1000, *, seed: int = 14, workers: int = 4) -> Summary:
    """Run the suite; runs go in parallel threads (a hung tool only waits, it does not compute)."""
    script = ScriptedModel(name=f"fault-suite-{uuid.uuid4().hex[:6]}", default=_provider)
    summary = Summary()
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        # warm every worker up (imports, LiteLLM's tokenizer and clients) outside any run's budget; not counted
        warm = threading.Barrier(workers)

        warm_state = _Run(random.Random(0))
        warm_state.release.set()  # a hang in the warm-up returns at once
        _RUNS[-1] = warm_state

        def warm_up(_: int) -> None:
            # the same code paths as a run: every kind of limit, per-second pricing
            budget = Budget(model_requests=2, usd=1, seconds=60, total_tokens=10**5, tool_calls=2)
            price = ModelPrice(input_per_token=2e-6, output_per_token=8e-6, per_second=0.001)
            agent = Agent(
                script.model,
                tools=[make_lookup(warm_state)],
                budget=budget,
                pricing=Pricing(models={script.model: price}),
                max_tokens=64,
                retries=0,
            )
            agent.run(f"{_MARK}-1] warm up")
            warm.wait(timeout=120)

        list(pool.map(warm_up, range(workers)))
        gc.collect()  # the imports' garbage: a full collection in a run's first second would be billed to it
        gc.freeze()
        outcomes = list(pool.map(lambda i: one_run(i, script.model, seed), range(runs)))
    summary.seconds = time.monotonic() - started
    for o in outcomes:
        summary.runs += 1
        summary.per_second_runs += o.per_second
        summary.tool_calls += sum(o.faults.values())
        summary.faults.update(o.faults)
        summary.crossed.update(o.crossed)
        summary.silent.update(d for d in o.crossed if d not in o.explicit)
        if o.overruns:
            summary.overrun_runs += 1
            summary.overruns.update(o.overruns)
        summary.stops[o.stop_reason] += 1
    summary.outcomes = outcomes
    return summary


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    print("\n".join(run_suite(count).lines()))
