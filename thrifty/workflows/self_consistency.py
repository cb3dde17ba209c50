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
from thrifty.budget import Budget, BudgetExceeded, StopKind, WorkerBudgetStops, stop_reason
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


def affordable_samples(ctx: RunContext, samples: int) -> int:
    """How many of ``samples`` the run's budget can give a slice to: every integer limit left must pay at
    least one unit per sample (``samples=3`` with two tool calls left runs two samples, not none). At least
    1; :func:`split_budget` still refuses a budget that cannot pay for one."""
    whole = [left for dim, left in ctx.ledger.remaining().items() if dim not in ("usd", "seconds")]
    return max(1, min([samples, *(int(left) for left in whole)]))


def split_budget(ctx: RunContext, samples: int) -> Budget | None:
    """An equal slice of what the run has left (None when the run is unlimited)."""
    remaining = ctx.ledger.remaining()
    if not remaining:
        return None
    slice_: dict[str, float] = {}
    for dim, left in remaining.items():
        share = left / samples
        slice_[dim] = share if dim in ("usd", "seconds") else float(int(share))
    if any(v < (1 if d not in ("usd", "seconds") else 1e-12) for d, v in slice_.items()):
        raise BudgetExceeded(min(slice_, key=slice_.__getitem__), 1, 0, ctx.ledger.path)
    return Budget.from_limits(slice_)


@takes_options(SelfConsistencyOptions)
def build_self_consistency(options: SelfConsistencyOptions | Mapping[str, Any] | None = None) -> Any:
    opts = SelfConsistencyOptions.of(options)
    samples, parallel = opts.samples, opts.parallel

    def sample_and_vote(state: SolverState, ctx: RunContext) -> dict[str, Any]:
        count = affordable_samples(ctx, samples)  # fewer samples when the budget cannot slice for all
        try:
            slice_budget = split_budget(ctx, count)
        except BudgetExceeded as exc:
            return {"answer": None, "stop_reason": exc.stop_reason}
        children = []
        for i in range(count):
            child = ctx.ledger.child(slice_budget, name=f"sample-{i + 1}", carve=slice_budget is not None)
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
