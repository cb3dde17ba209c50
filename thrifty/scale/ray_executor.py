"""The Ray executor: a grid's or a batch's runs spread over Ray workers, results streamed back to the caller.

Each worker is a Ray actor that builds its worker object once (tools, a loaded local model, the simulated
model's questions) and then serves every run placed on it; the caller's process keeps the queue, receives
each finished run and writes it, so the results file and the run store are written exactly as by the local
executor. A worker that dies (its process killed, its node lost) has the leases of its unfinished runs
abandoned (charged at their worst case to the shared budget) and those runs are queued again for the others;
a replacement worker is started in its place.

Ray is an optional dependency (the ``ray`` extra): nothing here imports it before it is asked for.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from thrifty.budget import Budget
from thrifty.budget.pool import BudgetPool
from thrifty.extras import pip_install
from thrifty.scale.executors import Dispatch, OnDone, OnLost, Refused, ScaleError, Worker

__all__ = [
    "RayExecutor",
    "RemotePool",
    "check_address",
    "cluster_cpus",
    "import_ray",
    "release_workers",
    "start_ray",
]

J = TypeVar("J")
#: Runs sent ahead to each worker, so that it never waits on the caller between two runs.
DEPTH = 2
#: At most this many jobs go to a worker in one Ray task (fewer when the queue is short, so every worker
#: gets a share): one task per run costs the driver and Ray's own processes a few milliseconds a run, which
#: on a small machine competes with the workers for the same cores.
CHUNK = 8
#: How many times one run may lose its worker before the grid gives up on it (a run that kills its worker).
MAX_ATTEMPTS = 3


def import_ray() -> Any:
    """The ``ray`` module, or a ScaleError that says how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise ScaleError(
            f"--executor ray needs Ray, which is not installed ({exc}): install it with: {pip_install('ray')}"
        ) from None
    return ray


def check_address(address: str, timeout: float = 3.0) -> None:
    """Refuse an address no Ray cluster answers on, in seconds (Ray itself waits a minute or more).

    ``auto`` (the cluster started on this machine by ``ray start``) is left to Ray.
    """
    if address == "auto":
        return
    hostport = address.removeprefix("ray://")
    host, sep, port = hostport.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ScaleError(
            f"--ray-address {address!r} is not host:port (e.g. 10.0.0.5:6379) or ray://host:port"
        )
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise ScaleError(
            f"--ray-address {address}: no Ray cluster answers there ({exc}); start one with "
            "`ray start --head`, or drop --ray-address to start a local Ray"
        ) from None


def start_ray(workers: int | None, address: str | None) -> bool:
    """Connect to ``address``, or start a local Ray with ``workers`` CPUs (default: this machine's); reuse a
    Ray already started in this process. True when this call started or connected it (the caller then
    shuts it down)."""
    ray = import_ray()
    if ray.is_initialized():
        return False
    quiet = {"log_to_driver": False, "configure_logging": False, "include_dashboard": False}
    if address:
        check_address(address)
        try:
            ray.init(address=address, **quiet)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ScaleError(f"--ray-address {address}: cannot connect to Ray: {exc}") from None
        return True
    cpus = workers or os.cpu_count() or 1
    ray.init(num_cpus=cpus, _node_ip_address="127.0.0.1", **quiet)
    return True


def cluster_cpus() -> int:
    """The CPUs of the Ray cluster this process is connected to (at least 1)."""
    ray = import_ray()
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


class RemotePool:
    """A :class:`~thrifty.budget.pool.LeaseClient` for a BudgetPool held by a Ray actor: what a worker's runs
    lease from and settle into, from any process of the cluster."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle

    @classmethod
    def create(cls, budget: Budget, spent: Mapping[str, float] | None = None) -> RemotePool:
        ray = import_ray()
        actor = ray.remote(num_cpus=0, max_restarts=0)(BudgetPool)
        pool = cls(actor.remote(budget))
        if spent:
            ray.get(pool.handle.record.remote(dict(spent)))
        return pool

    def _call(self, method: str, *args: Any) -> Any:
        ray = import_ray()
        return ray.get(getattr(self.handle, method).remote(*args))

    def lease(self, lease_id: str, amounts: Mapping[str, float]) -> bool:
        return bool(self._call("lease", lease_id, dict(amounts)))

    def settle(self, lease_id: str, actual: Mapping[str, float]) -> None:
        self._call("settle", lease_id, dict(actual))

    def release(self, lease_id: str) -> None:
        self._call("release", lease_id)

    def abandon(self, lease_id: str) -> None:
        self._call("abandon", lease_id)

    def snapshot(self) -> dict[str, Any]:
        return dict(self._call("snapshot"))

    def close(self) -> None:
        ray = import_ray()
        with contextlib.suppress(Exception):
            ray.kill(self.handle)


class _Host:
    """The actor body: builds the worker once per grid or batch, then runs jobs on it."""

    def __init__(self) -> None:
        self.worker: Worker | None = None

    def setup(self, factory: Callable[[], Worker]) -> int:
        self.worker = None
        self.worker = factory()
        return os.getpid()

    def run(self, job: Any, lease_id: str) -> Any:
        if self.worker is None:
            raise RuntimeError("worker used before setup")
        return self.worker.run(job, lease_id)

    def run_many(self, jobs: Sequence[tuple[Any, str]]) -> list[Any]:
        """Run ``jobs`` in order and return their outcomes; stop after a Refused one (the jobs after it are
        not run: the driver puts them back in the queue)."""
        outcomes: list[Any] = []
        for job, lease_id in jobs:
            outcome = self.run(job, lease_id)
            outcomes.append(outcome)
            if isinstance(outcome, Refused):
                break
        return outcomes


# Workers kept up between grids of one process (``keep_workers=True``), per Ray session: a later grid only
# sends them its worker factory instead of starting processes again.
_kept: dict[str, Any] = {"session": None, "actors": []}


def _session() -> str:
    ray = import_ray()
    return str(ray.get_runtime_context().get_job_id())


def release_workers() -> None:
    """Stop the workers kept up by ``keep_workers=True`` (a Ray shutdown stops them too)."""
    ray = import_ray()
    for actor in _kept["actors"]:
        with contextlib.suppress(Exception):
            ray.kill(actor)
    _kept["actors"] = []


def _cause(exc: Any) -> BaseException:
    """What a worker raised (a RayTaskError's cause), its message as the local executor gives it: Ray's own
    form of it puts the worker's traceback into the message, which the command line then prints as the
    error (a task's setup error included). The worker's traceback is kept as a note, for a real bug."""
    from ray.exceptions import RayError

    cause = getattr(exc, "cause", None)
    if not isinstance(cause, Exception) or isinstance(cause, RayError):
        return exc.as_instanceof_cause()
    cause.add_note(f"raised in a Ray worker:\n{getattr(exc, 'traceback_str', None) or exc}")
    return cause


@dataclass
class _Slot:
    actor: Any
    pid: int
    in_flight: int = 0


@dataclass
class _Ticket:
    job: Any
    lease_id: str
    slot: _Slot
    attempts: int


@dataclass
class RayExecutor:
    """Runs jobs on ``workers`` Ray actors (one CPU each; ``gpus`` per worker for a GPU model).

    ``factory`` builds a worker inside each actor; it is pickled and sent to them, so it must not hold
    anything bound to this process (open files, locks). ``on_start``, given the worker process ids once they
    are up, is for tests and benchmarks that kill one.
    """

    factory: Callable[[], Worker]
    workers: int = 2
    gpus: float = 0.0
    on_start: Callable[[list[int]], None] | None = None
    #: Leave the workers up when the run ends, for the next grid in this process (they hold their CPUs
    #: until :func:`release_workers` or a Ray shutdown).
    keep_workers: bool = False
    replaced: int = 0
    lost_runs: int = 0
    _slots: list[_Slot] = field(default_factory=lambda: [])

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ScaleError("--workers must be >= 1")

    @property
    def pids(self) -> list[int]:
        return [s.pid for s in self._slots]

    def _check_resources(self) -> None:
        """Refuse, before any worker starts, GPUs the cluster does not have (an actor asking for them would
        wait for ever)."""
        if self.gpus <= 0:
            return
        ray = import_ray()
        have = float(ray.cluster_resources().get("GPU", 0.0))
        if have < self.gpus:
            raise ScaleError(
                f"--gpus-per-worker {self.gpus:g}: the Ray cluster has {have:g} GPUs; "
                "connect to a cluster with GPUs (--ray-address) or drop --gpus-per-worker"
            )

    def _spawn(self) -> _Slot:
        ray = import_ray()
        actor_cls = ray.remote(num_cpus=1, num_gpus=self.gpus, max_restarts=0, max_task_retries=0)(_Host)
        actor = actor_cls.remote()
        return _Slot(actor, int(ray.get(actor.setup.remote(self.factory))))

    def _start(self) -> list[_Slot]:
        """The workers: kept ones first (set up for this run), new ones for the rest."""
        from ray.exceptions import RayActorError

        ray = import_ray()
        kept: list[Any] = []
        if self.keep_workers and self.gpus == 0 and _kept["session"] == _session():
            kept, _kept["actors"] = _kept["actors"][: self.workers], _kept["actors"][self.workers :]
        slots: list[_Slot] = []
        refs = [(actor, actor.setup.remote(self.factory)) for actor in kept]
        for actor, ref in refs:
            with contextlib.suppress(RayActorError):  # one that died since is replaced below
                slots.append(_Slot(actor, int(ray.get(ref))))
        slots.extend(self._spawn() for _ in range(self.workers - len(slots)))
        return slots

    def run(self, jobs: Sequence[J], on_done: OnDone, on_lost: OnLost | None = None) -> list[J]:
        """Run ``jobs`` over the workers; return those not run because the shared budget refused them."""
        ray = import_ray()
        dispatch: Dispatch[J] = Dispatch(jobs)
        attempts: dict[int, int] = {}
        pending: dict[Any, list[_Ticket]] = {}
        finished = False
        self._check_resources()
        try:
            self._slots = self._start()
            if self.on_start is not None:
                self.on_start(self.pids)
            while not dispatch.done or pending:
                self._fill(dispatch, pending, attempts)
                if not pending:
                    break
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
                for ref in ready:
                    tickets = pending.pop(ref)
                    tickets[0].slot.in_flight -= 1
                    self._finished(ref, tickets, dispatch, pending, on_done, on_lost, attempts)
            finished = True
        finally:
            if finished and self.keep_workers and self.gpus == 0:
                _kept["session"] = _session()
                _kept["actors"] = [*_kept["actors"], *(slot.actor for slot in self._slots)]
            else:
                for slot in self._slots:
                    with contextlib.suppress(Exception):
                        ray.kill(slot.actor)
            for tickets in pending.values():  # interrupted: these runs did not finish
                for ticket in tickets:
                    if on_lost is not None:
                        with contextlib.suppress(Exception):
                            on_lost(ticket.lease_id)
        return dispatch.left()

    def _fill(
        self, dispatch: Dispatch[Any], pending: dict[Any, list[_Ticket]], attempts: dict[int, int]
    ) -> None:
        for slot in self._slots:
            while slot.in_flight < DEPTH:
                size = max(1, min(CHUNK, len(dispatch.queue) // (DEPTH * len(self._slots) * 2)))
                taken = [t for t in (dispatch.take() for _ in range(size)) if t is not None]
                if not taken:
                    break
                ref = slot.actor.run_many.remote(taken)
                slot.in_flight += 1
                pending[ref] = [
                    _Ticket(job, lease_id, slot, attempts.get(id(job), 0)) for job, lease_id in taken
                ]

    def _finished(
        self,
        ref: Any,
        tickets: list[_Ticket],
        dispatch: Dispatch[Any],
        pending: dict[Any, list[_Ticket]],
        on_done: OnDone,
        on_lost: OnLost | None,
        attempts: dict[int, int],
    ) -> None:
        ray = import_ray()
        from ray.exceptions import RayActorError, RayTaskError

        try:
            outcomes = ray.get(ref)
        except RayTaskError as exc:  # the worker raised: re-raised as the local executor re-raises it
            raise _cause(exc) from None
        except RayActorError:
            self._lost(tickets, dispatch, on_lost, attempts)
            return
        for ticket in reversed(tickets[len(outcomes) :]):  # after a refused one: not run, back in the queue
            dispatch.put_back(ticket.job)
        for ticket, outcome in zip(tickets, outcomes, strict=False):
            if isinstance(outcome, Refused):
                dispatch.refused(ticket.job, sum(len(t) for t in pending.values()))
                return
            dispatch.ended()
            on_done(ticket.job, outcome)

    def _lost(
        self,
        tickets: list[_Ticket],
        dispatch: Dispatch[Any],
        on_lost: OnLost | None,
        attempts: dict[int, int],
    ) -> None:
        """The runs' worker died: charge their leases at worst case, queue them again, replace the worker."""
        for ticket in reversed(tickets):
            self.lost_runs += 1
            if on_lost is not None:
                on_lost(ticket.lease_id)
            tries = attempts[id(ticket.job)] = ticket.attempts + 1
            if tries >= MAX_ATTEMPTS:
                raise ScaleError(
                    f"a run lost its worker {tries} times (it may be what kills it): {ticket.job!r:.200}"
                )
            dispatch.put_back(ticket.job)
            dispatch.ended()
        slot = tickets[0].slot
        if slot in self._slots:
            index = self._slots.index(slot)
            time.sleep(0.1)
            self._slots[index] = self._spawn()
            self.replaced += 1
