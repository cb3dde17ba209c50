"""A batch: many task files run as one job, on threads or Ray workers, optionally under one global budget.

Every file is read and validated first (a bad one stops the batch before anything runs). Each task then runs
as ``agent run`` would run it; the calling process writes one JSON line per finished task to the results file
and saves the run in the task's run store (so ``agent runs`` lists it), whatever executed it. A rerun on the
same results file skips the files already there: an interrupted batch resumes where it stopped.

With a global budget each task leases its worst case (its own budget's limits; dollars computed from its
token and tool-call limits at its prices when it sets none) before it starts, and settles what it spent.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from thrifty.budget import Budget, Ledger
from thrifty.budget.pool import LeaseClient, lease_too_big, usage_spent
from thrifty.scale.executors import Placement, execute_pooled, run_leased

__all__ = [
    "BatchError",
    "BatchJob",
    "BatchOutcome",
    "BatchWorker",
    "load_batch",
    "run_batch",
    "task_reservation",
]


class BatchError(ValueError):
    """A batch that cannot run as asked (no files, a bad task file, a global budget too small for a task)."""


@dataclass(frozen=True)
class BatchJob:
    """One task file of a batch: its path (as the results file keys it) and its validated spec."""

    file: str
    spec: Any  # a TaskSpec


@dataclass
class BatchOutcome:
    records: list[dict[str, Any]]  # every finished task's line (earlier ones included)
    ran: int  # tasks run by this call
    not_run: list[str]  # files the global budget left unrun
    snapshot: dict[str, Any]  # the global budget's reading ({} without one)


def _key(path: str | Path) -> str:
    return str(Path(path).resolve())


def load_batch(files: Sequence[str | Path]) -> list[BatchJob]:
    """Read and validate every task file (TaskFileError for the first bad one; BatchError for none or a
    repeat)."""
    from thrifty.workflows.spec import load_task

    if not files:
        raise BatchError("no task files given (example: agent batch tasks/*.yaml)")
    jobs: list[BatchJob] = []
    seen: set[str] = set()
    for file in files:
        key = _key(file)
        if key in seen:
            raise BatchError(f"{file}: given twice")
        seen.add(key)
        jobs.append(BatchJob(key, load_task(file, import_references=True)))
    return jobs


def task_reservation(job: BatchJob, global_budget: Budget) -> dict[str, float]:
    """The most ``job`` can spend in each dimension ``global_budget`` limits. BatchError (naming the file and
    the fix) when its budget does not bound one of them."""
    from thrifty.models.gateway import Gateway, ModelError
    from thrifty.workflows.runner import resolve_tools

    spec = job.spec
    limits = spec.budget.limits()
    seconds = limits.pop("seconds", None)
    out = dict(limits)
    wanted = set(global_budget.limits())
    if "usd" in wanted and "usd" not in out:
        try:
            tools, pricing = resolve_tools(spec)
            price = Gateway(Ledger(), pricing).price(spec.model)
        except (ModelError, ValueError, ImportError) as exc:
            raise BatchError(f"{job.file}: {exc}") from None
        per_token = max(price.input_per_token, price.output_per_token)
        tool_usd = max((pricing.tool_price(t.name, t.price) for t in tools), default=0.0)
        tokens, calls = out.get("total_tokens"), out.get("tool_calls")
        if (
            (per_token and tokens is None)
            or (tool_usd and calls is None)
            or (price.per_second and not seconds)
        ):
            raise BatchError(
                f"{job.file}: field 'budget': a global USD budget needs each task's worst case; "
                "set budget.usd (or budget.total_tokens and budget.tool_calls) in the task"
            )
        out["usd"] = (
            (tokens or 0.0) * per_token + (calls or 0.0) * tool_usd + price.per_second * (seconds or 0.0)
        )
    missing = sorted(wanted - set(out))
    if missing:
        raise BatchError(
            f"{job.file}: field 'budget': the global budget limits {', '.join(missing)}, which this task does "
            "not: set them in its budget"
        )
    why = lease_too_big(global_budget, out)
    if why is not None:
        raise BatchError(
            f"{job.file}: the global budget is smaller than this task's reservation ({why}): raise the global "
            "budget or lower the task's budget"
        )
    return out


class BatchWorker:
    """Runs a batch's tasks in one process: lease, run (without the store: the caller saves), settle."""

    def __init__(
        self,
        pool: LeaseClient | None = None,
        reservations: dict[str, dict[str, float]] | None = None,
        setup: Callable[[], object] | None = None,
    ) -> None:
        self.pool = pool
        self.reservations = reservations or {}
        if setup is not None:  # e.g. register a custom provider in each worker process
            setup()

    def run(self, job: BatchJob, lease_id: str) -> Any:
        from thrifty.workflows.runner import run_task

        return run_leased(
            self.pool,
            lease_id,
            self.reservations[job.file] if self.pool is not None else {},
            f"global budget: no room for {job.file} now",
            lambda: run_task(job.spec, store=False),
            lambda result: usage_spent(result.usage.model_dump()),
        )


def _line(job: BatchJob, result: Any) -> dict[str, Any]:
    return {
        "file": job.file,
        "task": result.task,
        "run_id": result.run_id,
        "model": result.model,
        "strategy": result.strategy,
        "question": result.question,
        "answer": result.answer,
        "expected_answer": result.expected_answer,
        "stop_reason": result.stop_reason,
        "exit_code": result.exit_code,
        "error": result.error,
        "usage": result.usage.model_dump(),
        "cost": result.cost.model_dump(),
        "finished": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }


def load_lines(path: Path) -> list[dict[str, Any]]:
    """A batch results file's lines (cut or foreign lines skipped; a file run twice counts once)."""
    if not path.exists():
        return []
    lines: dict[str, dict[str, Any]] = {}
    for text in path.read_text(encoding="utf-8").splitlines():
        try:
            line = json.loads(text)
        except json.JSONDecodeError:
            continue
        if isinstance(line, dict) and isinstance(line.get("file"), str):
            lines[line["file"]] = line
    return list(lines.values())


def run_batch(
    jobs: Sequence[BatchJob],
    results_path: str | Path,
    *,
    executor: str = "local",
    concurrency: int = 1,
    workers: int | None = None,
    ray_address: str | None = None,
    global_budget: Budget | None = None,
    store: bool = True,
    on_result: Callable[[dict[str, Any]], None] | None = None,
    worker_setup: Callable[[], object] | None = None,
) -> BatchOutcome:
    """Run the tasks not yet in ``results_path``; return every finished task's line and what was left.

    Raises BatchError / ScaleError before anything runs when the batch cannot run as asked;
    KeyboardInterrupt after saving what finished (a task cancelled by Ctrl-C is not recorded).
    ``worker_setup`` runs once in each worker process before its first task (a picklable function).
    """
    from thrifty.store import RunStore, StoreError

    if executor not in ("local", "ray"):
        raise BatchError(f"unknown executor {executor!r}: use local or ray")
    path = Path(results_path)
    existing = load_lines(path)
    done = {line["file"] for line in existing}
    todo = [job for job in jobs if job.file not in done]
    reservations = {job.file: task_reservation(job, global_budget) for job in jobs} if global_budget else None
    earlier: dict[str, float] = {}
    for line in existing:
        for dim, value in usage_spent(line.get("usage") or {}).items():
            earlier[dim] = earlier.get(dim, 0.0) + value
    path.parent.mkdir(parents=True, exist_ok=True)
    records = list(existing)
    stores: dict[str, RunStore] = {}

    def on_done(job: BatchJob, result: Any) -> None:
        from thrifty.budget import StopKind

        if result.stop_reason == StopKind.CANCELLED.value:
            raise KeyboardInterrupt
        target = job.spec.store_target() if store else None
        if target:
            try:
                if target not in stores:
                    stores[target] = RunStore(target)
                stores[target].save(result)
            except StoreError as exc:
                raise BatchError(f"{job.file}: run store {target}: {exc}") from None
        line = _line(job, result)
        with path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(line, ensure_ascii=False, default=str) + "\n")
        records.append(line)
        if on_result is not None:
            on_result(line)

    left, snapshot = execute_pooled(
        todo,
        on_done,
        Placement(executor, concurrency, workers, ray_address),
        global_budget,
        earlier,
        lambda pool: partial(BatchWorker, pool, reservations, worker_setup),
    )
    return BatchOutcome(records, len(records) - len(existing), [job.file for job in left], snapshot)
