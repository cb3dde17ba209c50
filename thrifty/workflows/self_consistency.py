"""The ``self_consistency`` strategy: N independent solver runs, then a majority vote.

Budget-matched by construction: each sample runs on a child ledger *carved* from what the run has left,
in equal slices (integer limits round down), so no sample can starve another and the total can never
exceed the run's budget; each child hands back what it did not use when it closes. This is the baseline
of the BAVT paper (parallel sampling with majority vote).

Options: see :class:`SelfConsistencyOptions`.
Votes are over normalised answers; non-answers ("unknown") do not vote; ties go to the earliest sample.
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pydantic import Field, PositiveInt

from thrifty.agents.answers import majority_vote
from thrifty.agents.context import RunContext
from thrifty.agents.events import VoteEvent
from thrifty.agents.solver import SolverState, snapshot, solve
from thrifty.budget import Budget, BudgetExceeded, Ledger, StopKind, WorkerBudgetStops, stop_reason
from thrifty.workflows.graph import END, Workflow
from thrifty.workflows.options import StrategyOptions, takes_options


class SelfConsistencyOptions(StrategyOptions):
    """Options of the ``self_consistency`` strategy."""

    samples: PositiveInt = Field(
        default=3, le=100, description="Independent solver runs, each on an equal carved slice of the budget."
    )
    parallel: bool = Field(
        default=False,
        description="Run the samples in threads (off by default, which keeps scripted runs deterministic; "
        "a local llama.cpp model is serialised anyway).",
    )


def affordable_samples(ctx: RunContext, samples: int, left: dict[str, float] | None = None) -> int:
    """How many of ``samples`` the run's budget can give a slice to: every integer limit left must pay at
    least one unit per sample (``samples=3`` with two tool calls left runs two samples, not none). At least
    1; :func:`split_budget` still refuses a budget that cannot pay for one. ``left``: what the run had left
    (default: what it has left now)."""
    left = ctx.ledger.remaining() if left is None else left
    whole = [value for dim, value in left.items() if dim not in ("usd", "seconds")]
    return max(1, min([samples, *(int(value) for value in whole)]))


def split_budget(ctx: RunContext, samples: int, left: dict[str, float] | None = None) -> Budget | None:
    """An equal slice of what the run has left (None when the run is unlimited); ``left``: what the run
    had left (default: what it has left now)."""
    remaining = ctx.ledger.remaining() if left is None else left
    if not remaining:
        return None
    slice_: dict[str, float] = {}
    for dim, value in remaining.items():
        share = value / samples
        slice_[dim] = share if dim in ("usd", "seconds") else float(int(share))
    if any(v < (1 if d not in ("usd", "seconds") else 1e-12) for d, v in slice_.items()):
        raise BudgetExceeded(min(slice_, key=slice_.__getitem__), 1, 0, ctx.ledger.path)
    return Budget.from_limits(slice_)


def spent_before(ctx: RunContext) -> dict[int, dict[str, float]]:
    """What each sample had spent when this node starts (sample number -> dimension -> amount): nothing in
    a run that starts, and in a resumed durable run what the samples this node ran before the interruption
    had spent (charges the resume took back with the run's; a sample's completed calls are replayed free
    when it runs again)."""
    journal = ctx.ledger.journal
    prefix = f"{ctx.ledger.path}/sample-"
    out: dict[int, dict[str, float]] = {}
    for event in journal.taken_back if journal is not None else []:
        if not event.ledger.startswith(prefix):
            continue
        number = event.ledger[len(prefix) :].split("/", 1)[0]
        if not number.isdigit():
            continue
        spent = out.setdefault(int(number), {})
        for dim, value in [*event.units.items(), ("usd", event.usd)]:
            if dim != "seconds" and value:
                spent[dim] = spent.get(dim, 0.0) + value
    return out


def _left_at_start(ctx: RunContext, before: dict[int, dict[str, float]]) -> dict[str, float]:
    """What the run had left when this node first started: what is left now plus what its samples spent
    before an interruption (time excepted: it has passed)."""
    left = ctx.ledger.remaining()
    for spent in before.values():
        for dim, value in spent.items():
            if dim in left and dim != "seconds":
                left[dim] += value
    return left


def _sample_ledger(
    ctx: RunContext, slice_budget: Budget | None, number: int, before: dict[int, dict[str, float]]
) -> Ledger:
    """Sample ``number``'s ledger: its slice carved from the run's.

    Resumed after an interruption in this node, each sample gets the slice it had (the run's budget as it
    was when the node first started, in equal slices), of which it had spent ``before[number]``: what is
    left of it is carved (the carves add up to no more than the run has left, so no sample can starve
    another and the run's limits hold), and the ledger counts the rest as spent, so that the sample sees
    its slice as it did (what is used and left of it) and stops where it stopped."""
    name = f"sample-{number}"
    if not before or slice_budget is None:
        return ctx.ledger.child(slice_budget, name=name, carve=slice_budget is not None)
    limits = slice_budget.limits()
    spent = before.get(number, {})
    rest = {dim: value - spent.get(dim, 0.0) for dim, value in limits.items()}
    # Budget limits are positive: a dimension of the slice already spent is not carved; its limit (set
    # below, with what was spent) stops the sample there, and the run's own limit holds above it.
    carved = {d: v for d, v in rest.items() if d == "seconds" or v >= (1e-12 if d == "usd" else 1)}
    child = ctx.ledger.child(Budget.from_limits(carved) if carved else None, name=name, carve=bool(carved))
    for dim, value in limits.items():
        if dim == "seconds":
            continue
        # set before anything reads or charges the new ledger: its limit is the slice (or what was spent
        # plus what could be carved, if the run had less left), and what the sample spent is its own
        used = spent.get(dim, 0.0)
        child.limits[dim] = used + child.limits[dim] if dim in child.limits else value
        child.spent[dim] += used
    return child


@takes_options(SelfConsistencyOptions)
def build_self_consistency(options: SelfConsistencyOptions | Mapping[str, Any] | None = None) -> Any:
    opts = SelfConsistencyOptions.of(options)
    samples, parallel = opts.samples, opts.parallel

    def sample_and_vote(state: SolverState, ctx: RunContext) -> dict[str, Any]:
        before = spent_before(ctx)  # resumed after an interruption here: the slices it had
        left = _left_at_start(ctx, before)
        count = affordable_samples(ctx, samples, left)  # fewer samples when the budget cannot slice for all
        try:
            slice_budget = split_budget(ctx, count, left)
        except BudgetExceeded as exc:
            return {"answer": None, "stop_reason": exc.stop_reason}
        children = []
        for i in range(count):
            child = _sample_ledger(ctx, slice_budget, i + 1, before)
            children.append((i, child, ctx.fork(child, seed_offset=i)))

        def run_one(item: tuple[int, Any, RunContext]) -> dict[str, Any]:
            i, child, sub = item
            try:
                start = SolverState(question=state.get("question", ""), messages=[], trace=[], step=0)
                out = solve(start, sub)
            finally:
                child.close()  # unused slice returns to the run
            for entry in out.get("trace", []):
                entry.sample = i + 1
            return out

        try:
            if parallel and count > 1:
                stops = (
                    WorkerBudgetStops()
                )  # a sample's budget stop pauses a pausing run here, not in a thread
                with ThreadPoolExecutor(max_workers=count) as pool:
                    outs = list(pool.map(stops.worker(run_one), children))
                stops.declare()
            else:
                outs = [run_one(c) for c in children]
        finally:  # a run cancelled (or failed) in one sample: the later samples' slices go back to the run
            for _i, child, _sub in children:
                child.close()

        answers = [o.get("answer") for o in outs]
        winner, votes = majority_vote(answers)
        trace = [entry for o in outs for entry in o.get("trace", [])]
        reasons = [o.get("stop_reason") or stop_reason(StopKind.COMPLETED) for o in outs]
        if winner is not None:
            reason = stop_reason(StopKind.COMPLETED)
        else:
            reason = next((r for r in reasons if r != StopKind.COMPLETED.value), reasons[-1])
        trace.append(
            ctx.emit(
                VoteEvent(
                    step=sum(int(o.get("step") or 0) for o in outs),
                    answers=answers,
                    answer=winner,
                    votes=votes,
                    sample_stops=reasons,
                    **snapshot(ctx),
                )
            )
        )
        errors = [str(o["error"]) for o in outs if o.get("error")]
        return {
            "answer": winner,
            "candidate": winner,
            "stop_reason": reason,
            # every sample failed: say why (the first sample's error), not just that it did
            "error": errors[0]
            if winner is None and reason == stop_reason(StopKind.ERROR) and errors
            else None,
            "step": sum(int(o.get("step") or 0) for o in outs),
            "trace": trace,
            "candidates": [
                {"answer": a, "decision": "SAMPLE", "attempt": i + 1} for i, a in enumerate(answers)
            ],
        }

    wf = Workflow("self_consistency")
    wf.node("sample_and_vote", sample_and_vote).edge("sample_and_vote", END)
    return wf.compile()
