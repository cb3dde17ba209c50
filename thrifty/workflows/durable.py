"""Checkpointed runs: a run's graph on LangGraph's SQLite checkpointer, its Ledger journaled beside it.

``execute(..., checkpoint=path)`` starts a durable run; ``execute(..., checkpoint=path, run_id=ID,
resume=True)`` resumes one. What a resume does:

1. refuses a run that is unknown, finished, still running in a live process, whose record or checkpoint is
   corrupt, or whose spend already passes the budget it is resumed with (a :class:`CheckpointError` that
   says why and how to fix it: nothing is changed);
2. rebuilds the Ledger from the run's persisted charges and charges every call that was in flight when the
   process died at its reserved worst case (marked so in its event);
3. continues the graph from its last checkpoint; a node that LangGraph runs again replays the model and tool
   calls it had completed (their results were written with their charges) instead of paying twice. A node
   that is a whole attempt (bats' ``solve``, self_consistency's samples) runs again from its start: each
   tool result is given back as it was (not as a repeat of the same call), its budget checks count the
   calls still to be replayed as not yet made (it shows the tools it showed then, so it asks what it asked
   and gets the recorded replies), and self_consistency gives each sample the slice it had. From the first
   call that is not replayed on, everything is decided and reserved on the whole spend.
"""

from __future__ import annotations

import contextlib
import warnings
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from thrifty.budget import Ledger
from thrifty.budget.errors import ON_BUDGET_STOP
from thrifty.redact import redact
from thrifty.store.check import StoreWarning
from thrifty.store.durable import (
    FINISHED,
    CheckpointError,
    DurableStore,
    RunJournal,
    charge_from_dict,
)
from thrifty.store.durable import (
    PAUSED as PAUSED_STATUS,
)

__all__ = ["CheckpointError", "DurableRun", "open_durable"]


@dataclass
class DurableRun:
    store: DurableStore
    run_id: str
    journal: RunJournal
    resuming: bool
    meta: dict[str, Any] = field(default_factory=dict)
    _seen_seq: int = 0
    _routing_failed: bool = False

    @property
    def checkpoint_seq(self) -> int:
        """The last charge before the last step known saved: calls after it may be made again."""
        return self._seen_seq

    @property
    def config(self) -> dict[str, Any]:
        return {"configurable": {"thread_id": self.run_id}}

    def attach(self, graph: Any) -> Any:
        """The compiled graph with this run's checkpointer."""
        return graph.copy(update={"checkpointer": self.store.saver(state_types())})

    def saved_state(self, graph: Any) -> dict[str, Any] | None:
        """The graph state of the last checkpoint (None: the run died before its first step ended)."""
        try:
            snapshot = graph.get_state(self.config)
        except Exception as exc:
            raise CheckpointError(
                f"run '{self.run_id}' in {self.store.path}: its checkpoint cannot be read "
                f"({type(exc).__name__}); fix: start the run again"
            ) from None
        values = getattr(snapshot, "values", None)
        return dict(values) if values else None

    def begin(self, ledger: Ledger) -> None:
        """Resuming, once the checkpoint has been read: charge the calls a dead process left in flight and
        take the run over."""
        if self.resuming:
            self.journal.settle_inflight(ledger)
            self.store.claim(self.run_id)

    def paused(self, graph: Any) -> dict[str, Any] | None:
        """The budget pause the run stopped at (None: it did not pause)."""
        return pending_pause(graph, self.config)

    def resume_input(self, graph: Any) -> Any:
        """What the graph is resumed with: nothing, or the answer to the budget pause it waits on."""
        waiting = pending_pause(graph, self.config)
        if waiting is None:
            return None
        from langgraph.types import Command

        return Command(resume={"approved": True, "limits": waiting.get("limits")})

    def step(self, ledger: Ledger) -> None:
        """A graph step ended (and LangGraph saved it): calls charged before the previous step's end can no
        longer be asked again. One step behind, as the checkpoint may be written after this is told."""
        last = max((e.seq for e in ledger.events), default=0)
        self.store.mark_step(self.run_id, self._seen_seq, ledger.elapsed())
        self._seen_seq = last

    def routed(self, ledger: Ledger, entry: dict[str, Any]) -> None:
        """Keep one routing entry (an escalation's trace event, or a one-call escalation used up) with the
        last charge seen; a write that fails is reported once and the run goes on (as the journal's)."""
        if self._routing_failed:
            return
        at_seq = max((e.seq for e in ledger.events), default=0)
        try:
            self.store.add_routing(self.run_id, at_seq, entry)
        except Exception as exc:
            self._routing_failed = True
            warnings.warn(
                f"{self.store.path}: the run's escalations are no longer kept ({redact(str(exc))}); the run "
                "goes on, and a resume would start its escalations over",
                StoreWarning,
                stacklevel=2,
            )

    def routing(self) -> list[tuple[int, dict[str, Any]]]:
        """The routing entries kept so far, in order, each with the last charge seen when it was kept."""
        return self.store.routing(self.run_id)

    def finish(self, ledger: Ledger, result: Any) -> None:
        self.journal.detach(ledger)
        status = PAUSED_STATUS if result.stop_reason.startswith(PAUSED + ":") else FINISHED
        self.store.set_status(
            self.run_id, status, stop_reason=result.stop_reason, result=result.model_dump(mode="json")
        )
        self.store.close()

    def abandon(self, ledger: Ledger) -> None:
        """The run could not start: leave the stored run as it was."""
        self.journal.detach(ledger)
        self.store.close()


def state_types() -> list[type]:
    """The classes a built-in strategy's state holds: a checkpoint reads back nothing else (with LangGraph's
    own safe types)."""
    from pydantic import BaseModel

    from thrifty.agents import events, records

    found: list[type] = []
    for module in (events, records):
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, BaseModel)
                and value.__module__ == module.__name__
            ):
                found.append(value)
    return found


def _spent(charges: list[dict[str, Any]], inflight: list[dict[str, Any]]) -> dict[str, float]:
    spent: dict[str, float] = defaultdict(float)
    for c in charges:
        for dim, value in c["units"].items():
            spent[dim] += value
        spent["usd"] += c["usd"]
    for row in inflight:
        for dim, value in row["amounts"].items():
            spent[dim] += value
    return spent


def open_durable(
    checkpoint: str | Path, run_id: str, ledger: Ledger, *, resume: bool, meta: dict[str, Any]
) -> DurableRun:
    """Start (or resume) the durable run ``run_id`` on ``ledger``; raises CheckpointError."""
    store = DurableStore(checkpoint)
    try:
        row = store.get(run_id)
        if not resume:
            store.create(run_id, meta)
            journal = RunJournal(store, run_id)
            journal.attach(ledger)
            return DurableRun(store, run_id, journal, resuming=False, meta=dict(meta))
        check_resumable(store, row, run_id, ledger)
        assert row is not None
        check_same_run(row, run_id, meta)
        events = [charge_from_dict(c) for c in store.charges(run_id)]
        ledger.restore(events, elapsed=float(row["elapsed"] or 0.0))
        seen = int(row["checkpoint_seq"] or 0)
        journal = RunJournal(store, run_id, store.recorded_calls(run_id, seen), events, seen)
        journal.attach(ledger)
        return DurableRun(store, run_id, journal, resuming=True, meta=row["meta"], _seen_seq=seen)
    except BaseException:
        store.close()
        raise


def check_resumable(store: DurableStore, row: dict[str, Any] | None, run_id: str, ledger: Ledger) -> None:
    """Refuse a resume that cannot continue the run (nothing is changed)."""
    check_row(store, row, run_id)
    assert row is not None
    spent = _spent(store.charges(run_id), store.inflight(run_id))
    spent["seconds"] = float(row.get("elapsed") or 0.0)
    for dim, limit in ledger.limits.items():
        if dim != "seconds" and spent.get(dim, 0.0) > limit + 1e-9:
            raise CheckpointError(
                f"run '{run_id}' has already spent {spent[dim]:g} {dim}, more than the budget it is resumed "
                f"with ({limit:g}); fix: resume with a {dim} limit above {spent[dim]:g}"
            )
    check_raised(row, run_id, spent, ledger.limits)


def check_raised(row: dict[str, Any], run_id: str, spent: dict[str, float], limits: dict[str, float]) -> None:
    """Refuse to resume a run paused at a limit that is not raised: it would stop again at once, for good
    (as if its pause were answered "stop"), after paying for one more call."""
    reason = str(row.get("stop_reason") or "")
    if row["status"] != PAUSED_STATUS or not reason.startswith(PAUSED + ":"):
        return
    dim = reason.partition(":")[2]
    limit = limits.get(dim)
    if limit is None:
        return  # the limit is lifted
    paused_at = ((row.get("result") or {}).get("budget") or {}).get(dim)
    used = spent.get(dim, 0.0)
    if (paused_at is not None and limit <= float(paused_at) + 1e-9) or used >= limit - 1e-9:
        shown = max(used, float(paused_at or 0.0))
        raise CheckpointError(
            f"run '{run_id}' is paused at its {dim} limit ({shown:g}; spent {used:g}) and resumed with "
            f"{limit:g} it would stop there again at once; fix: resume with a {dim} limit above {shown:g} "
            "(the run stays paused)"
        )


#: What a resume must share with the run it continues (a run stored before a key was recorded is not checked
#: on it).
_SAME = {"question": "question", "strategy": "strategy", "tools": "tools"}


def check_same_run(row: dict[str, Any], run_id: str, meta: dict[str, Any]) -> None:
    """Refuse to continue a run with another question, strategy or set of tools (a changed task file): the
    saved steps would be replayed against a job they were not made for."""
    stored = row.get("meta") or {}
    for key, label in _SAME.items():
        if key not in stored or key not in meta:
            continue
        # A run saved before questions were masked (thrifty.workflows.runner.execute) holds its question as
        # typed: compared, and shown, masked.
        then = redact(stored[key]) if key == "question" and isinstance(stored[key], str) else stored[key]
        if then != meta[key]:
            raise CheckpointError(
                f"run '{run_id}' was started with {label} {then!r} and is resumed with {meta[key]!r}; "
                "fix: resume it with the task file (or arguments) it was started with, or start a new run "
                "(the stored run is unchanged)"
            )


def check_row(store: DurableStore, row: dict[str, Any] | None, run_id: str) -> None:
    """Refuse a run that is missing, finished or still running (the checks that need no budget, so that
    `agent resume` can make them before it shows anything)."""
    if row is None:
        raise CheckpointError(
            f"no run '{run_id}' in {store.path}; fix: `agent runs` lists the runs that can be resumed"
        )
    if row["status"] == FINISHED:
        raise CheckpointError(
            f"run '{run_id}' has finished ({row['stop_reason']}); nothing to resume (fix: start a new run)"
        )
    if row["alive"]:
        raise CheckpointError(
            f"run '{run_id}' is still running (process {row['pid']}); fix: wait for it, or stop it first"
        )


#: The stop reason of a run paused at its budget: ``paused:<dimension>`` (see :func:`pausing_at_budget`).
PAUSED = "paused"


@contextlib.contextmanager
def pausing_at_budget(ledger: Ledger) -> Iterator[None]:
    """While the graph runs: a budget stop declared inside a node pauses the run instead (a LangGraph
    interrupt carrying the binding dimension and what was spent). The run is resumed with a raised budget
    (``execute(..., resume=True)``): the interrupted node runs again, replaying its completed calls free.
    A node that stops for the budget again after that resume stops (it was asked once)."""

    def pause(dimension: str) -> None:
        try:
            from langgraph.config import get_config

            get_config()
        except RuntimeError:
            return  # not inside a node of the graph (e.g. the runner reading a stop reason)
        from langgraph.types import interrupt

        interrupt(
            {
                "kind": "budget",
                "dimension": dimension,
                "spent": {k: round(v, 8) for k, v in ledger.used().items()},
                "limits": ledger.budget.limits(),
            }
        )

    token = ON_BUDGET_STOP.set(pause)
    try:
        yield
    finally:
        ON_BUDGET_STOP.reset(token)


def pending_pause(graph: Any, config: dict[str, Any]) -> dict[str, Any] | None:
    """The budget pause the run's last checkpoint is waiting on (None: it is not paused)."""
    try:
        snapshot = graph.get_state(config)
    except Exception:
        return None
    for item in getattr(snapshot, "interrupts", ()) or ():
        value = getattr(item, "value", None)
        if isinstance(value, dict) and value.get("kind") == "budget":
            return dict(value)
    return None
