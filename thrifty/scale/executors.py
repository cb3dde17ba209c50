"""Executors: where a grid's or a batch's runs execute (threads here, or Ray workers), one protocol for both.

An executor takes a list of jobs and a worker (an object with ``run(job, lease_id)``) and calls
``on_done(job, outcome)`` in the calling thread for each finished job, in the order they finish: the caller
writes results there, so one process owns the results file whatever runs the jobs.

A worker returns :class:`Refused` when the shared budget cannot hold the run's worst case now. The job then
goes back to the front of the queue and nothing new starts until a run in flight ends (and settles, handing
back what it did not use); a job refused while nothing is in flight can never be paid for, and the executor
stops there, returning the jobs it did not run.

Interrupted (Ctrl-C) or failing, the local executor starts nothing more and stops the runs in flight before it
raises: a worker that has a ``stop()`` method (:class:`RunStopper`) is told, and each of its runs ends
``cancelled`` at its next charge (a model or tool call already in flight ends first; nothing is spent after
it). The executor waits for them, saying so; a second Ctrl-C stops the waiting.
"""

from __future__ import annotations

import contextlib
import itertools
import sys
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

if TYPE_CHECKING:
    from thrifty.budget import Budget, Ledger
    from thrifty.budget.pool import LeaseClient

__all__ = [
    "Dispatch",
    "LocalExecutor",
    "Placement",
    "Refused",
    "RunStopper",
    "ScaleError",
    "Worker",
    "execute_pooled",
    "run_leased",
]

J = TypeVar("J")
R = TypeVar("R")


class ScaleError(ValueError):
    """An executor that cannot be used as asked (Ray missing, an unreachable address, a bad worker count)."""


@dataclass(frozen=True)
class Refused:
    """A run not started: the shared budget cannot hold its worst case now (nothing was spent)."""

    reason: str = ""


class Worker(Protocol):
    def run(self, job: Any, lease_id: str) -> Any: ...


class RunStopper:
    """What lets an executor stop a worker's runs in flight: each run's Ledger (from :meth:`ledger`) refuses
    every charge after :meth:`stop`, so the run ends ``cancelled`` at its next model or tool call (the call
    already in flight ends first and is charged; nothing is spent after it)."""

    def __init__(self) -> None:
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def ledger(self, budget: Budget) -> Ledger:
        """A run's Ledger, refusing every charge once the runs are stopped."""
        from thrifty.workflows.runner import run_ledger
        from thrifty.workflows.stream import stop_on

        ledger = run_ledger(budget)
        stop_on(ledger, self._stop)
        return ledger


def run_leased(
    pool: LeaseClient | None,
    lease_id: str,
    amounts: Mapping[str, float],
    refusal: str,
    run: Callable[[], R],
    spent: Callable[[R], Mapping[str, float]],
) -> R | Refused:
    """``run()`` under a lease of the shared budget (``pool``; none: just run it). Refused, with nothing run,
    when the pool cannot hold ``amounts`` now; the lease is released when the run is refused before it spent
    anything (SetupError), charged at its worst case when the run fails otherwise, and settled with
    ``spent(result)`` when it ends."""
    if pool is None:
        return run()
    from thrifty.workflows.runner import SetupError

    if not pool.lease(lease_id, amounts):
        return Refused(refusal)
    try:
        result = run()
    except SetupError:
        pool.release(lease_id)
        raise
    except BaseException:
        pool.abandon(lease_id)
        raise
    pool.settle(lease_id, spent(result))
    return result


OnDone = Callable[[Any, Any], None]
OnLost = Callable[[str], None]


class Dispatch(Generic[J]):
    """The queue both executors share: jobs in order, each dispatch under a fresh lease id; a refused job
    goes back to the front and holds the queue until a run in flight ends."""

    def __init__(self, jobs: Sequence[J]) -> None:
        self.queue: deque[J] = deque(jobs)
        self._ids = itertools.count(1)
        self.blocked = False
        self.stopped = False

    def take(self) -> tuple[J, str] | None:
        if self.blocked or self.stopped or not self.queue:
            return None
        return self.queue.popleft(), f"lease-{next(self._ids)}"

    def put_back(self, job: J) -> None:
        self.queue.appendleft(job)

    def refused(self, job: J, in_flight: int) -> None:
        """``job`` was refused with ``in_flight`` other runs still going."""
        self.queue.appendleft(job)
        if in_flight:
            self.blocked = True
        else:
            self.stopped = True

    def ended(self) -> None:
        """A run ended (and settled): what it did not use is back, so a refused job may fit now."""
        self.blocked = False

    @property
    def done(self) -> bool:
        return self.stopped or not self.queue

    def left(self) -> list[J]:
        return list(self.queue) if self.stopped else []


class LocalExecutor:
    """Runs jobs on ``concurrency`` threads of this process, all sharing one worker."""

    def __init__(self, worker: Worker, concurrency: int = 1) -> None:
        if concurrency < 1:
            raise ScaleError("concurrency must be >= 1")
        self.worker = worker
        self.concurrency = concurrency

    def run(self, jobs: Sequence[J], on_done: OnDone, on_lost: OnLost | None = None) -> list[J]:
        """Run ``jobs``; return those not run because the shared budget refused them (else [])."""
        dispatch: Dispatch[J] = Dispatch(jobs)
        if self.concurrency == 1:
            while (taken := dispatch.take()) is not None:
                job, lease_id = taken
                outcome = self.worker.run(job, lease_id)
                if isinstance(outcome, Refused):
                    dispatch.refused(job, 0)
                else:
                    on_done(job, outcome)
            return dispatch.left()
        return self._run_threads(dispatch, on_done)

    def _run_threads(self, dispatch: Dispatch[J], on_done: OnDone) -> list[J]:
        pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="run")
        pending: dict[Future[Any], J] = {}
        lock = threading.Lock()

        def run_one(job: J, lease_id: str) -> Any:
            # The result is handed over in the run's own thread, so that runs still in flight when the
            # executor is interrupted are saved as they finish.
            outcome = self.worker.run(job, lease_id)
            if not isinstance(outcome, Refused):
                with lock:
                    on_done(job, outcome)
            return outcome

        try:
            while not dispatch.done or pending:
                while len(pending) < self.concurrency and (taken := dispatch.take()) is not None:
                    job, lease_id = taken
                    pending[pool.submit(run_one, job, lease_id)] = job
                if not pending:
                    break
                finished, _ = wait(list(pending), timeout=0.5, return_when=FIRST_COMPLETED)
                for fut in finished:
                    job = pending.pop(fut)
                    outcome = fut.result()  # re-raise a harness error
                    if isinstance(outcome, Refused):
                        dispatch.refused(job, len(pending))
                    else:
                        dispatch.ended()
        except BaseException as exc:
            # Ctrl-C or an error: schedule nothing more, stop the runs in flight and wait for them to end.
            dispatch.stopped = True
            self._stop_runs(pool, pending, interrupted=isinstance(exc, KeyboardInterrupt))
            raise
        pool.shutdown(wait=True)
        return dispatch.left()

    def _stop_runs(
        self, pool: ThreadPoolExecutor, pending: dict[Future[Any], J], *, interrupted: bool
    ) -> None:
        """Cancel the runs not started, stop those in flight at their next charge (when the worker can) and
        wait for them to end; a second Ctrl-C stops the waiting (they still stop at their next charge)."""
        stop = getattr(self.worker, "stop", None)
        if callable(stop):
            stop()
        running = [fut for fut in pending if not fut.cancel() and not fut.done()]
        if interrupted and running:
            what = "at their next call" if callable(stop) else "when they end"
            sys.stderr.write(
                f"interrupted: stopping {len(running)} run(s) in flight {what}; nothing new starts "
                "(Ctrl-C again to stop waiting)\n"
            )
            sys.stderr.flush()
        # Waits for every run the pool started (one submitted as Ctrl-C came included); a second Ctrl-C
        # stops the waiting. The runs' own futures too: a Ctrl-C landing inside ``submit`` (a worker thread
        # started but not yet in the pool's list, which ``shutdown`` joins) must not return before its run.
        with contextlib.suppress(KeyboardInterrupt):
            pool.shutdown(wait=True, cancel_futures=True)
            wait(running)


@dataclass(frozen=True)
class Placement:
    """Where runs execute: ``local`` threads (``concurrency`` of them) or ``ray`` workers (``workers``, at
    ``ray_address`` or a local Ray; ``gpus`` each; ``on_start``/``keep_workers`` as for RayExecutor)."""

    executor: str = "local"
    concurrency: int = 1
    workers: int | None = None
    ray_address: str | None = None
    gpus: float = 0.0
    on_start: Callable[[list[int]], None] | None = None
    keep_workers: bool = False


def execute_pooled(
    jobs: Sequence[J],
    on_done: OnDone,
    place: Placement,
    global_budget: Budget | None,
    earlier: Mapping[str, float],
    worker: Callable[[LeaseClient | None], Callable[[], Worker]],
) -> tuple[list[J], dict[str, Any]]:
    """Run ``jobs`` where ``place`` says, all under one shared budget (``global_budget``, of which
    ``earlier`` is already spent; none: no shared budget). ``worker(pool)`` gives a factory of the worker
    that leases from ``pool``; on Ray the factory is pickled to each actor. Returns the jobs the shared
    budget left unrun and its final reading (empty without one)."""
    if place.executor == "local":
        from thrifty.budget.pool import BudgetPool

        pool = BudgetPool(global_budget) if global_budget is not None else None
        if pool is not None and earlier:
            pool.record(dict(earlier))
        local = LocalExecutor(worker(pool)(), place.concurrency)
        left = local.run(jobs, on_done, pool.abandon if pool is not None else None)
        return left, pool.snapshot() if pool is not None else {}

    from thrifty.scale.ray_executor import RayExecutor, RemotePool, cluster_cpus, import_ray, start_ray

    started = start_ray(place.workers, place.ray_address)
    remote: RemotePool | None = None
    try:
        if global_budget is not None:
            remote = RemotePool.create(global_budget, earlier)
        ray_exec = RayExecutor(
            worker(remote),
            workers=place.workers or cluster_cpus(),
            gpus=place.gpus,
            on_start=place.on_start,
            keep_workers=place.keep_workers,
        )
        left = ray_exec.run(jobs, on_done, remote.abandon if remote is not None else None)
        return left, remote.snapshot() if remote is not None else {}
    finally:
        if remote is not None:
            remote.close()
        if started:
            import_ray().shutdown()
