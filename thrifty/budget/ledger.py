"""The Ledger: every model call, tool call and memory operation reserves before and settles after.

Why reserve-then-settle: a call's real cost is known only afterwards, but the decision to make it must be
taken before. Reserving the worst case (prompt tokens + the capped ``max_tokens``, one unit per tool item)
makes a hard limit impossible to cross, even with many calls in flight on parallel branches.

Ledgers nest (run -> node -> branch -> sub-agent). A child charges its parent chain as it spends, so it can
never spend more than its ancestors have left, and what it does not use was never taken from them. A child
opened with ``carve=True`` instead *holds* its slice in the parent from the start (so siblings cannot starve
it) and hands back what it did not use when it closes.

One re-entrant lock per ledger tree makes every operation atomic across threads; no operation awaits, so
the same lock is safe for asyncio tasks on one loop.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Generator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from thrifty.budget.errors import BudgetExceeded
from thrifty.budget.limits import Budget

_EPS = 1e-9
# How far past its time limit a run may end before that is an overrun: the time it takes to notice the limit
# at the next check and stop. More than this means something ran on that could not be stopped (an
# in-process model call cannot be interrupted half-way, a starved CPU).
SECONDS_GRACE = 0.25
_INF = float("inf")
_ids = itertools.count(1)


def _unhold(hold: Reservation | None, dim: str, amount: float) -> None:
    """Give ``amount`` of ``dim`` back through carve holds whose ledgers have closed.

    While a carved child is open its hold keeps the whole slice; once it has closed, the hold covers only
    the reservations that were still open, and each one hands its unused part on up as it ends.
    """
    while hold is not None and not hold.open and amount:
        hold.amounts[dim] = hold.amounts.get(dim, 0.0) - amount
        chain, up_hold = hold.routes[dim]
        for lg in chain:
            lg.reserved[dim] -= amount
        hold = up_hold


class _DimReading(NamedTuple):
    left: float  # what can still be reserved here (the least over the route's limits)
    ratio: float  # the least remaining fraction over the route's limits, each against its own limit
    binding: Ledger  # the ledger whose limit leaves ``left``


@dataclass(frozen=True)
class ChargeEvent:
    """One settled charge: what was spent, where in the run, on what."""

    seq: int
    time: float  # seconds since the root ledger opened
    ledger: str  # path of the ledger that spent, e.g. "run/sample-2"
    node: str | None  # graph node that made the call
    kind: str  # "model" | "tool" | "memory" | ...
    name: str  # model or tool name
    units: dict[str, float]
    usd: float
    ok: bool = True  # False when the call failed but still cost (e.g. a retried model attempt)
    detail: str = ""
    reservation: int = 0  # the Reservation's id this charge settled (0: none); not part of to_dict()

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "time": round(self.time, 6),
            "ledger": self.ledger,
            "node": self.node,
            "kind": self.kind,
            "name": self.name,
            "units": dict(self.units),
            "usd": self.usd,
            "ok": self.ok,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class Overrun:
    """A limit crossed: a settled charge whose actual amount went past what was reserved (a provider reported
    more tokens than were counted, a call ran longer than its priced seconds) took ``spent`` past ``limit``.

    Reservations make this impossible for every cost known in advance; what a provider reports afterwards is
    recorded truthfully, and a crossing is never silent: it is this event, in the run's result.
    """

    seq: int  # the ChargeEvent that crossed the limit
    ledger: str  # path of the ledger whose limit was crossed
    dimension: str
    limit: float
    spent: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "ledger": self.ledger,
            "dimension": self.dimension,
            "limit": self.limit,
            "spent": self.spent,
        }


def _no_routes() -> dict[str, tuple[list[Ledger], Reservation | None]]:
    return {}


@dataclass(eq=False)
class Reservation:
    """Amounts held against a ledger until settled or released."""

    ledger: Ledger
    amounts: dict[str, float]
    kind: str
    name: str
    node: str | None
    # dimension -> (ledgers whose `reserved` holds the amount, the carve hold it draws from or None)
    routes: dict[str, tuple[list[Ledger], Reservation | None]] = field(default_factory=_no_routes)
    open: bool = True
    id: int = field(default_factory=lambda: next(_ids))


class Ledger:
    """Budget accounting for a run or one part of it.

    >>> ledger = Ledger(Budget(tool_calls=3))
    >>> r = ledger.reserve({"tool_calls": 1, "tool:search": 1}, kind="tool", name="search")
    >>> event = ledger.settle(r)
    >>> ledger.remaining()["tool_calls"]
    2.0
    """

    def __init__(
        self,
        budget: Budget | None = None,
        *,
        name: str = "run",
        clock: Callable[[], float] = time.monotonic,
        _parent: Ledger | None = None,
    ) -> None:
        self.budget = budget or Budget()
        self.name = name
        self.parent = _parent
        self._clock = clock
        self._lock: threading.RLock = _parent._lock if _parent else threading.RLock()
        self._seq = _parent._seq if _parent else itertools.count(1)
        # Bumped (under the lock) by every change anywhere in the tree: readings made at the same version
        # are reused (an agent step reads the budget several times between two charges).
        self._version: list[int] = _parent._version if _parent else [0]
        self._reading: tuple[int, dict[str, _DimReading]] | None = None
        self._routes: dict[str, tuple[list[Ledger], Reservation | None]] = {}
        self.limits: dict[str, float] = self.budget.limits()
        self._seconds_limit = self.limits.pop("seconds", None)
        self.spent: defaultdict[str, float] = defaultdict(float)
        self.reserved: defaultdict[str, float] = defaultdict(float)
        self.events: list[ChargeEvent] = []
        self.overruns: list[Overrun] = []  # limits crossed by a settle (here or below), in order
        self.listeners: list[Callable[[ChargeEvent], None]] = []
        # Told of each reservation made (and each given back unspent) here or below: a durable run writes
        # the calls in flight, so that one interrupted by a crash is charged when the run resumes.
        self.reserve_listeners: list[Callable[[Reservation], None]] = []
        self.release_listeners: list[Callable[[Reservation], None]] = []
        # Set when the run is asked to stop (a cancelled stream, Ctrl-C, a server shutting down), besides the
        # reserve listener that then refuses every charge: a model generation under way in this process is
        # cut at its next token (see stopping()).
        self.stops: list[threading.Event] = []
        # Per tool, what each of its calls also charges at least and the ledger that pays it (a ``recall``
        # tool's memory_ops): see thrifty.budget.awareness.declare_tool_charge.
        self.tool_charges: dict[str, tuple[dict[str, float], Ledger]] = {}
        # A durable run's record of completed calls (thrifty.store.durable.RunJournal): the Gateway and the
        # ToolRunner replay a call it recorded before a resume instead of paying for it again.
        self.journal: Any = _parent.journal if _parent else None
        self.started = clock()
        self._hold: Reservation | None = None
        self.closed = False
        # The tree above never changes: this ledger and its ancestors, nearest first; the path; the root.
        self._lineage: tuple[Ledger, ...] = (self, *_parent._lineage) if _parent else (self,)
        self._path = f"{_parent.path}/{name}" if _parent else name
        self._timed = any(lg._seconds_limit is not None for lg in self._lineage)

    # ----------------------------------------------------------------------------------------- tree
    @property
    def path(self) -> str:
        return self._path

    @property
    def root(self) -> Ledger:
        return self._lineage[-1]

    def stopping(self) -> bool:
        """Whether a stop was asked of this ledger or one above it (an event of their ``stops`` is set)."""
        return any(event.is_set() for lg in self._lineage for event in lg.stops)

    @property
    def lock(self) -> threading.RLock:
        """The lock the whole tree shares (re-entrant): hold it to take several readings as one."""
        return self._lock

    def _route(self, dim: str) -> tuple[list[Ledger], Reservation | None]:
        """Ledgers that account ``dim`` for a charge made here, and the carve hold it draws from.

        Fixed once the ledger is open (its parent never changes and a carved child's hold is set before
        anything charges it), so computed once per dimension."""
        route = self._routes.get(dim)
        if route is None:
            chain: list[Ledger] = []
            cur: Ledger = self
            while True:
                chain.append(cur)
                if cur._hold is not None and dim in cur._hold.amounts:
                    route = (chain, cur._hold)
                    break
                if cur.parent is None:
                    route = (chain, None)
                    break
                cur = cur.parent
            self._routes[dim] = route
        return route

    def _changed(self) -> None:
        self._version[0] += 1

    def child(self, budget: Budget | None = None, *, name: str = "child", carve: bool = False) -> Ledger:
        """Open a child ledger for a node, branch or sub-agent.

        Without ``carve`` the child's limits are caps: it spends straight from its ancestors, and what it
        leaves unused was never taken. With ``carve`` its slice is held in this ledger at once (clamped to
        what is left here, and raising BudgetExceeded if nothing is), and returned on :meth:`close`.

        >>> run = Ledger(Budget(tool_calls=10))
        >>> branch = run.child(Budget(tool_calls=4), name="branch")
        >>> _ = branch.charge({"tool_calls": 3}, kind="tool", name="search")
        >>> branch.path, branch.available("tool_calls"), run.available("tool_calls")
        ('run/branch', 1.0, 7.0)
        >>> carved = run.child(Budget(tool_calls=5), name="carved", carve=True)
        >>> run.available("tool_calls")  # the slice is held in the parent at once
        2.0
        >>> carved.close()
        >>> run.available("tool_calls")  # and handed back, unused, when the child closes
        7.0
        """
        with self._lock:
            self._check_open()
            kid = Ledger(budget, name=name, clock=self._clock, _parent=self)
            if carve and kid.limits:
                slice_: dict[str, float] = {}
                for dim, want in kid.limits.items():
                    left = self.available(dim)
                    if left <= _EPS:
                        raise BudgetExceeded(dim, want, left, self.path)
                    slice_[dim] = min(want, left)
                kid.limits = dict(slice_)
                kid._hold = self.reserve(slice_, kind="carve", name=name)
            self._changed()
            return kid

    def close(self) -> None:
        """Close a child: give back what a carved slice did not use. Idempotent.

        Reservations still open in the child (or in its own children) stay held in the parent chain until
        they are settled or released; only the part of the slice that nothing holds goes back now.
        """
        with self._lock:
            if self.closed:
                return
            self.closed = True
            self._changed()
            hold = self._hold
            if hold is not None and hold.open:
                hold.open = False
                for dim, amount in hold.amounts.items():
                    outstanding = max(0.0, self.reserved[dim])
                    unused = amount - outstanding
                    hold.amounts[dim] = outstanding
                    if unused:
                        chain, up_hold = hold.routes[dim]
                        for lg in chain:
                            lg.reserved[dim] -= unused
                        _unhold(up_hold, dim, unused)

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------------------------- accounting
    def _check_open(self) -> None:
        if self.closed:
            raise RuntimeError(f"ledger '{self.path}' is closed")

    def clock(self) -> float:
        """The ledger's clock (monotonic seconds; injectable for tests)."""
        return self._clock()

    def elapsed(self) -> float:
        return self._clock() - self.started

    def check_time(self) -> None:
        """Raise BudgetExceeded('seconds') if this ledger or an ancestor is out of time."""
        if not self._timed:
            return
        for ledger in self._lineage:
            if ledger._seconds_limit is not None:
                left = ledger._seconds_limit - ledger.elapsed()
                if left <= 0:
                    raise BudgetExceeded("seconds", 0.0, left, ledger.path)

    def available(self, dim: str) -> float:
        """What can still be reserved in ``dim`` here (``inf`` if nothing limits it)."""
        with self._lock:
            if dim == "seconds":
                return self._seconds_left()
            reading = self._scan().get(dim)
            return _INF if reading is None else reading.left

    def _seconds_left(self) -> float:
        if not self._timed:
            return _INF
        return min(
            (lg._seconds_limit - lg.elapsed() for lg in self._lineage if lg._seconds_limit),
            default=_INF,
        )

    def _scan(self) -> dict[str, _DimReading]:
        """Every dimension limited here or above, read in one pass along its route (seconds excepted: they
        change without a charge). Reused until the tree next changes; call under the lock."""
        version = self._version[0]
        if self._reading is not None and self._reading[0] == version:
            return self._reading[1]
        dims: set[str] = set()
        for lg in self._lineage:
            dims.update(lg.limits)
        out: dict[str, _DimReading] = {}
        for dim in sorted(dims):
            best: _DimReading | None = None
            for lg in self._route(dim)[0]:
                lim = lg.limits.get(dim)
                if lim is None:
                    continue
                left = lim - lg.spent[dim] - lg.reserved[dim]
                ratio = min(1.0, max(0.0, left / lim))
                if best is None:
                    best = _DimReading(left, ratio, lg)
                else:
                    # A carved slice answers for its own dimensions: only its route's limits count.
                    best = _DimReading(
                        min(best.left, left),
                        min(best.ratio, ratio),
                        lg if left < best.left else best.binding,
                    )
            if best is not None:
                out[dim] = best
        self._reading = (version, out)
        return out

    def can_afford(self, amounts: Mapping[str, float], left: Mapping[str, float] | None = None) -> bool:
        """Whether ``amounts`` could be reserved now (``left``: an :meth:`availability` reading to judge by)."""
        if left is not None:
            return all(amount <= left.get(dim, _INF) + _EPS for dim, amount in amounts.items() if amount > 0)
        with self._lock:
            return all(amount <= self.available(dim) + _EPS for dim, amount in amounts.items() if amount > 0)

    def reserve(
        self,
        amounts: Mapping[str, float],
        *,
        kind: str,
        name: str,
        node: str | None = None,
    ) -> Reservation:
        """Hold ``amounts`` against every limit that applies, or raise BudgetExceeded and hold nothing.

        A model call reserves its worst case (prompt + ``max_tokens``); :meth:`settle` then charges what it
        really used and frees the rest.

        >>> ledger = Ledger(Budget(total_tokens=1000))
        >>> r = ledger.reserve({"total_tokens": 600}, kind="model", name="m")
        >>> ledger.available("total_tokens")
        400.0
        >>> event = ledger.settle(r, {"total_tokens": 250})
        >>> ledger.available("total_tokens"), event.units
        (750.0, {'total_tokens': 250.0})
        >>> ledger.reserve({"total_tokens": 800}, kind="model", name="m")
        Traceback (most recent call last):
        ...
        thrifty.budget.errors.BudgetExceeded: budget 'run' cannot pay 800 total_tokens: only 750 left
        """
        with self._lock:
            for lg in self._lineage:
                lg._check_open()
            self.check_time()
            clean = {dim: float(v) for dim, v in amounts.items() if v}
            for dim, amount in clean.items():
                if amount < 0 or math.isnan(amount):
                    raise ValueError(f"cannot reserve {amount} of {dim}")
                chain, _hold = self._route(dim)
                for lg in chain:
                    if dim in lg.limits:
                        left = lg.limits[dim] - lg.spent[dim] - lg.reserved[dim]
                        if amount > left + _EPS:
                            raise BudgetExceeded(dim, amount, left, lg.path)
            res = Reservation(self, clean, kind, name, node)
            self._changed()
            for dim, amount in clean.items():
                route = self._route(dim)
                res.routes[dim] = route
                for lg in route[0]:
                    lg.reserved[dim] += amount
            for lg in self._lineage:
                for listener in lg.reserve_listeners:
                    listener(res)
            return res

    def settle(
        self,
        reservation: Reservation,
        actual: Mapping[str, float] | None = None,
        *,
        ok: bool = True,
        detail: str = "",
    ) -> ChargeEvent:
        """Replace a reservation by what was really spent (``actual``, default: the reserved amounts).

        The actual amount is recorded even when it exceeds the reservation (a provider counted more prompt
        tokens than our estimate): the ledger reports the truth, and the next reservation sees it. If that
        takes a limit past its end, the crossing is recorded as an :class:`Overrun` (in :attr:`overruns` of
        this ledger and every ledger above it, and in the charge's ``detail``): never silent.

        >>> ledger = Ledger(Budget(usd=0.12))
        >>> r = ledger.reserve({"usd": 0.10}, kind="model", name="m")
        >>> event = ledger.settle(r, {"usd": 0.15})  # the provider reported more than was counted
        >>> [(o.dimension, o.limit, o.spent) for o in ledger.overruns]
        [('usd', 0.12, 0.15)]
        """
        with self._lock:
            if not reservation.open:
                raise RuntimeError("reservation already settled or released")
            reservation.open = False
            self._changed()
            spent = dict(reservation.amounts if actual is None else {k: float(v) for k, v in actual.items()})
            crossed: list[tuple[Ledger, str]] = []
            for dim in dict.fromkeys(
                [*reservation.amounts, *spent]
            ):  # in order: spent keeps a stable key order
                chain, hold = reservation.routes.get(dim) or reservation.ledger._route(dim)
                first_hold = hold
                held = reservation.amounts.get(dim, 0.0)
                used = spent.get(dim, 0.0)
                touched = list(chain)
                for lg in chain:
                    lg.reserved[dim] -= held
                    lg.spent[dim] += used
                while hold is not None and used:
                    # The carve hold paid for it: move that much of the hold from reserved to spent above.
                    hold.amounts[dim] = hold.amounts.get(dim, 0.0) - used
                    up_chain, up_hold = hold.routes[dim]
                    for lg in up_chain:
                        lg.reserved[dim] -= used
                        lg.spent[dim] += used
                    touched.extend(up_chain)
                    hold = up_hold
                # What was held but not used goes back past any carve hold whose ledger has closed.
                _unhold(first_hold, dim, held - used)
                if used > held + _EPS:
                    crossed.extend(
                        (lg, dim) for lg in touched if lg.spent[dim] > lg.limits.get(dim, _INF) + _EPS
                    )
            if crossed:
                shown = "; ".join(
                    f"overran {lg.path} {dim} limit {lg.limits[dim]:g} (spent {lg.spent[dim]:g})"
                    for lg, dim in crossed
                )
                detail = f"{detail}; {shown}" if detail else shown
            event = self._record(reservation, spent, ok, detail)
            for lg, dim in crossed:
                overrun = Overrun(event.seq, lg.path, dim, lg.limits[dim], lg.spent[dim])
                for above in reservation.ledger._lineage:
                    above.overruns.append(overrun)
            reservation.ledger.note_overtime(event.seq)
            return event

    def note_overtime(self, seq: int = 0) -> None:
        """Record a ``seconds`` :class:`Overrun` for every time limit here and above that has been passed by
        more than SECONDS_GRACE (one per ledger, brought up to date on each call). Called on every settle and
        when a run's result is built: time is the one dimension nothing reserves."""
        if not self._timed:
            return
        with self._lock:
            for lg in self._lineage:
                limit = lg._seconds_limit
                if limit is None or lg.elapsed() <= limit + SECONDS_GRACE:
                    continue
                overrun = Overrun(seq, lg.path, "seconds", limit, lg.elapsed())
                for above in self._lineage:
                    kept = [o for o in above.overruns if (o.ledger, o.dimension) != (lg.path, "seconds")]
                    above.overruns[:] = [*kept, overrun]

    def release(self, reservation: Reservation) -> None:
        """Give a reservation back unspent (the call failed before costing anything)."""
        with self._lock:
            if not reservation.open:
                return
            reservation.open = False
            self._changed()
            for dim, amount in reservation.amounts.items():
                chain, hold = reservation.routes[dim]
                for lg in chain:
                    lg.reserved[dim] -= amount
                _unhold(hold, dim, amount)
            for lg in reservation.ledger._lineage:
                for listener in lg.release_listeners:
                    listener(reservation)

    def charge(
        self,
        amounts: Mapping[str, float],
        *,
        kind: str,
        name: str,
        node: str | None = None,
        detail: str = "",
    ) -> ChargeEvent:
        """Reserve and settle at once, for a cost known in advance."""
        with self._lock:
            res = self.reserve(amounts, kind=kind, name=name, node=node)
            return self.settle(res, detail=detail)

    @contextmanager
    def reserving(
        self, amounts: Mapping[str, float], *, kind: str, name: str, node: str | None = None
    ) -> Generator[Reservation, None, None]:
        """Reserve for the ``with`` body; release if it raises and did not settle."""
        res = self.reserve(amounts, kind=kind, name=name, node=node)
        try:
            yield res
        finally:
            if res.open:
                self.release(res)

    def _record(self, res: Reservation, spent: dict[str, float], ok: bool, detail: str) -> ChargeEvent:
        event = ChargeEvent(
            seq=next(self._seq),
            time=self._clock() - self.root.started,
            ledger=res.ledger.path,
            node=res.node,
            kind=res.kind,
            name=res.name,
            units={k: v for k, v in spent.items() if k != "usd"},
            usd=spent.get("usd", 0.0),
            ok=ok,
            detail=detail,
            reservation=res.id,
        )
        for lg in res.ledger._lineage:
            lg.events.append(event)
            for listener in lg.listeners:
                listener(event)
        return event

    def restore(self, events: list[ChargeEvent], elapsed: float = 0.0) -> None:
        """Take back charges settled before (a resumed run): each adds to what this ledger has spent and to
        its events, and the next charge is numbered after them. ``elapsed``: the seconds the run had
        already used, counted against a time limit.

        A child ledger (a run of ``agent serve``, under the server's budget) takes them back as its own
        spend only: its parents counted them when they were made (or, in a new process, start from what
        is spent from then on)."""
        with self._lock:
            for event in events:
                for dim, value in event.units.items():
                    self.spent[dim] += value
                if event.usd:
                    self.spent["usd"] += event.usd
                self.events.append(event)
            last = max((e.seq for e in self.events), default=0)
            if self.parent is None:
                self._seq = itertools.count(last + 1)
            else:  # the tree shares one counter: move it past the charges taken back
                while next(self._seq) < last:
                    pass
            self.started -= max(elapsed, 0.0)
            self._changed()

    # ------------------------------------------------------------------------------------- reading
    def availability(self) -> dict[str, float]:
        """:meth:`available` for every dimension limited here or above, read at once (seconds included
        when limited; a dimension not in the dict is unlimited). May be negative after an overrun."""
        with self._lock:
            out = {dim: reading.left for dim, reading in self._scan().items()}
            seconds = self._seconds_left()
            if seconds != _INF:
                out["seconds"] = seconds
            return out

    def remaining(self) -> dict[str, float]:
        """What is left in every dimension limited here or above (seconds included)."""
        return {dim: max(0.0, left) for dim, left in self.availability().items()}

    def binding(self, dim: str) -> Ledger | None:
        """The ledger whose limit on ``dim`` leaves the least for a charge made here (None: unlimited).

        What "used" means next to :meth:`available`: that ledger's spend on ``dim`` plus what is
        available here make up its limit, so an agent shown both can tell how big its budget was.
        """
        with self._lock:
            reading = self._scan().get(dim)
            return None if reading is None else reading.binding

    def limit(self, dim: str) -> float | None:
        """The tightest limit on ``dim`` that applies here (own or an ancestor's)."""
        if dim == "seconds":
            return min((lg._seconds_limit for lg in self._lineage if lg._seconds_limit), default=None)
        chain, _ = self._route(dim)
        return min((lg.limits[dim] for lg in chain if dim in lg.limits), default=None)

    def ratios(self) -> dict[str, float]:
        """Remaining fraction per limited dimension, judged by each ledger against its own limit (along
        the same route as :meth:`available`: a carved slice answers for its own dimensions, its hold in the
        parent is not "used up" from the child's point of view)."""
        with self._lock:
            out = {dim: reading.ratio for dim, reading in self._scan().items()}
            seconds = self._seconds_ratio()
            if seconds is not None:
                out["seconds"] = seconds
            return out

    def _seconds_ratio(self) -> float | None:
        """The least remaining fraction of time over the limits here and above (None: no time limit)."""
        if not self._timed:
            return None
        return min(
            max(0.0, (lg._seconds_limit - lg.elapsed()) / lg._seconds_limit)
            for lg in self._lineage
            if lg._seconds_limit
        )

    def remaining_ratio(self) -> float:
        """The minimum remaining fraction over every limit that applies (1.0 when unlimited)."""
        return min(self.ratios().values(), default=1.0)

    def used(self) -> dict[str, float]:
        """What this ledger (and its children) has spent, with elapsed seconds."""
        with self._lock:
            out = {dim: v for dim, v in self.spent.items() if v}
            out["seconds"] = self.elapsed()
            return out

    @property
    def usd_spent(self) -> float:
        return self.spent.get("usd", 0.0)
