"""Durable runs: the Ledger's side of a checkpointed run, kept next to LangGraph's own checkpoints.

A durable run survives ``kill -9``. LangGraph's checkpointer saves the graph's state after every step: the
SQLite one (``langgraph-checkpoint-sqlite``) in a file by default, the PostgreSQL one
(``langgraph-checkpoint-postgres``, driver psycopg 3, the ``postgres`` extra) when the target is a
``postgresql://`` URL. This module saves, in the same database, what the Ledger needs to resume exactly:

* ``thrifty_runs``: the run (its id, status, what it was asked, its limits, the charge last seen at a
  step's end and the seconds it had used);
* ``thrifty_charges``: every settled charge, each in its own transaction, and with it (in the same
  transaction) the result of the model or tool call it paid for, so the two are never apart;
* ``thrifty_routing``: a run with several models (:mod:`thrifty.models.routing`): each escalation (its trace
  event) and each one-call escalation used up, in order, with the last charge seen when it happened, so that
  a resumed run keeps the escalations it had made (``scope: run`` / ``node``) and its trace shows each once;
* ``thrifty_inflight``: the model and tool calls reserved and not yet settled. A row left there by a dead
  process is a call that was in flight when it died: the resume charges it at its reserved worst case (the
  provider may have billed it), marked so, in the same transaction that removes the row.

On resume the Ledger is rebuilt from its charges (limits held exactly as in one process), and a node that
LangGraph runs again replays the calls it had completed (:meth:`RunJournal.replay`) instead of paying for
them twice, deciding on its budget as it did then (:meth:`RunJournal.credit`). Every text written passes
:func:`thrifty.redact.redact_value`.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import os
import re
import socket
import threading
import warnings
from collections import defaultdict, deque
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from thrifty.budget import ChargeEvent, Ledger, Reservation
from thrifty.redact import redact, redact_value
from thrifty.store.check import StoreWarning
from thrifty.store.checkpoint_db import CheckpointDBError, DuplicateRow, open_checkpoint_db
from thrifty.store.db import is_postgres_url

__all__ = [
    "DEFAULT_CHECKPOINTS",
    "INFLIGHT_DETAIL",
    "CheckpointError",
    "DurableStore",
    "RunJournal",
    "checkpoint_target",
    "checkpoints_beside",
    "checkpoints_missing",
]

DEFAULT_CHECKPOINTS = ".thrifty/checkpoints.db"
INFLIGHT_DETAIL = "in flight when the run was interrupted: charged the reserved worst case"
#: Statuses of a durable run.
RUNNING, PAUSED, FINISHED = "running", "paused", "finished"
_JOURNALED_KINDS = ("model", "tool")
# A budget block as the Budget Tracker writes it (no tag inside). Not ``<budget>.*?</budget>``: the system
# prompt's policy mentions "a <budget> block", and that pattern ran from there to the first tool result's
# block, leaving the plan, the question and the first observation out of every later call's key.
_BUDGET_BLOCK = re.compile(r"<budget>[^<>]*</budget>")

_SCHEMA = (
    """create table if not exists thrifty_runs (
        run_id text primary key, created text not null, status text not null, meta text not null,
        checkpoint_seq integer not null default 0, elapsed double precision not null default 0, pid integer,
        host text, stop_reason text, result text)""",
    """create table if not exists thrifty_charges (
        run_id text not null, seq bigint not null, event text not null, call_key text, result text,
        primary key (run_id, seq))""",
    """create table if not exists thrifty_routing (
        run_id text not null, n integer not null, at_seq integer not null, entry text not null,
        primary key (run_id, n))""",
    """create table if not exists thrifty_inflight (
        run_id text not null, pid integer not null, res_id bigint not null, kind text not null,
        name text not null, node text, ledger text not null, amounts text not null,
        primary key (run_id, pid, res_id))""",
)

# Set by the Gateway or the ToolRunner around the settle of a completed call: the charge listener writes the
# call's result in the charge's own transaction. (kind, key, result) or None.
_COMPLETING: contextvars.ContextVar[tuple[str, str, dict[str, Any]] | None] = contextvars.ContextVar(
    "thrifty_completing", default=None
)


class CheckpointError(ValueError):
    """A durable run that cannot be started or resumed (unknown id, finished, corrupt, another's...)."""


def checkpoints_beside(store_target: str | Path | None) -> str | Path:
    """Where a run's checkpoints go: next to a SQLite run store, in the same database as a PostgreSQL one,
    else ``.thrifty/checkpoints.db``."""
    text = str(store_target or "")
    if is_postgres_url(text):
        return text
    if text and "://" not in text and text not in (":memory:",):
        return Path(text).expanduser().parent / "checkpoints.db"
    return Path(DEFAULT_CHECKPOINTS)


def checkpoint_target(target: str | Path) -> str | Path:
    """A checkpoint target as given: a database URL kept as text (a Path would fold its ``//``), else a
    file path."""
    text = str(target)
    return text if "://" in text else Path(text).expanduser()


def checkpoints_missing(target: str | Path) -> bool:
    """True when ``target`` is a checkpoint file that does not exist yet (a database URL: never; the server
    is asked when it is opened)."""
    found = checkpoint_target(target)
    return isinstance(found, Path) and not found.exists()


def _pid_alive(pid: int | None, host: str | None) -> bool:
    if not pid or host != socket.gethostname() or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def charge_from_dict(data: Mapping[str, Any]) -> ChargeEvent:
    return ChargeEvent(
        seq=int(data["seq"]),
        time=float(data.get("time", 0.0)),
        ledger=str(data.get("ledger", "run")),
        node=data.get("node"),
        kind=str(data["kind"]),
        name=str(data["name"]),
        units={k: float(v) for k, v in dict(data.get("units") or {}).items()},
        usd=float(data.get("usd", 0.0)),
        ok=bool(data.get("ok", True)),
        detail=str(data.get("detail", "")),
    )


class DurableStore:
    """The database of durable runs (a SQLite file, or a PostgreSQL server by ``postgresql://`` URL):
    LangGraph's checkpoints and the Ledger's journal.

    Raises :class:`CheckpointError` (with a fix) when the target cannot be one.
    """

    def __init__(self, path: str | Path = DEFAULT_CHECKPOINTS) -> None:
        try:
            self.db = open_checkpoint_db(path)
        except CheckpointDBError as exc:
            raise CheckpointError(str(exc)) from None
        #: Where the checkpoints are, as messages show it (a URL's password hidden).
        self.path = self.db.where
        try:
            with self.db.setup_lock():
                for statement in _SCHEMA:
                    self.db.execute(statement)
        except Exception as exc:
            self.db.close()
            raise CheckpointError(
                f"{self.path}: cannot hold checkpoints ({redact(str(exc))}); fix: give a writable SQLite file "
                "path or a PostgreSQL database the URL's user may create tables in"
            ) from None
        self.lock = threading.RLock()
        self._saver: Any = None

    # ------------------------------------------------------------------------------------ LangGraph
    def saver(self, types: list[type] | None = None) -> Any:
        """LangGraph's checkpointer on this database (SqliteSaver or PostgresSaver, a connection of its
        own), reading back only ``types`` (the classes a graph's state holds) besides LangGraph's own safe
        ones."""
        if self._saver is None:
            from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

            serde = JsonPlusSerializer(allowed_msgpack_modules=list(types or []))
            try:
                self._saver = self.db.saver(serde)
            except CheckpointDBError as exc:
                raise CheckpointError(str(exc)) from None
            except Exception as exc:
                raise CheckpointError(
                    f"{self.path}: LangGraph's checkpoint tables cannot be set up ({redact(str(exc))[:300]}); "
                    "fix: give a database the URL's user may create tables in"
                ) from None
        return self._saver

    def close(self) -> None:
        self.db.close()

    # ------------------------------------------------------------------------------------------ runs
    def create(self, run_id: str, meta: Mapping[str, Any]) -> None:
        with self.lock:
            try:
                self.db.execute(
                    "insert into thrifty_runs (run_id, created, status, meta, pid, host) values (?,?,?,?,?,?)",
                    (
                        run_id,
                        datetime.now(UTC).isoformat(),
                        RUNNING,
                        json.dumps(redact_value(dict(meta))),
                        os.getpid(),
                        socket.gethostname(),
                    ),
                )
            except DuplicateRow:
                raise CheckpointError(
                    f"run '{run_id}' already exists in {self.path}; fix: resume it, or start a new run"
                ) from None

    def get(self, run_id: str) -> dict[str, Any] | None:
        with self.lock:
            rows = self.db.execute(
                "select run_id, created, status, meta, checkpoint_seq, elapsed, pid, host, stop_reason, result "
                "from thrifty_runs where run_id = ?",
                (run_id,),
            )
        if not rows:
            return None
        row = rows[0]
        keys = (
            "run_id",
            "created",
            "status",
            "meta",
            "checkpoint_seq",
            "elapsed",
            "pid",
            "host",
            "stop_reason",
        )
        out: dict[str, Any] = dict(zip(keys, row[:9], strict=True))
        try:
            out["meta"] = json.loads(row[3])
            out["result"] = json.loads(row[9]) if row[9] else None
        except ValueError:
            raise CheckpointError(
                f"run '{run_id}' in {self.path}: its record is corrupt; fix: start the run again"
            ) from None
        out["alive"] = _pid_alive(out["pid"], out["host"])
        return out

    def claim(self, run_id: str) -> None:
        """Mark the run as this process's (running)."""
        with self.lock:
            self.db.execute(
                "update thrifty_runs set status = ?, pid = ?, host = ? where run_id = ?",
                (RUNNING, os.getpid(), socket.gethostname(), run_id),
            )

    def set_status(
        self, run_id: str, status: str, *, stop_reason: str | None = None, result: Any = None
    ) -> None:
        with self.lock:
            self.db.execute(
                "update thrifty_runs set status = ?, stop_reason = ?, result = ? where run_id = ?",
                (status, stop_reason, None if result is None else json.dumps(redact_value(result)), run_id),
            )

    def update_meta(self, run_id: str, **fields: Any) -> None:
        with self.lock:
            rows = self.db.execute("select meta from thrifty_runs where run_id = ?", (run_id,))
            clean = cast("dict[str, Any]", redact_value(dict(fields)))
            meta = {**json.loads(rows[0][0]), **clean} if rows else clean
            self.db.execute("update thrifty_runs set meta = ? where run_id = ?", (json.dumps(meta), run_id))

    def charges(self, run_id: str) -> list[dict[str, Any]]:
        """The run's settled charges (each with ``call_key`` and whether a call result came with it)."""
        with self.lock:
            rows = self.db.execute(
                "select event, call_key, result is not null from thrifty_charges where run_id = ? order by seq",
                (run_id,),
            )
        out: list[dict[str, Any]] = []
        for event, key, has_result in rows:
            try:
                data = json.loads(event)
            except ValueError:
                raise CheckpointError(
                    f"run '{run_id}' in {self.path}: a charge record is corrupt; fix: start the run again"
                ) from None
            out.append({**data, "call_key": key, "recorded": bool(has_result)})
        return out

    def charges_since(self, since: str, meta_key: str) -> list[ChargeEvent]:
        """The charges of every run created at or after ``since`` (an ISO time, UTC) whose record holds
        ``meta_key`` (the runs of `agent serve`): what a budget over many runs (a server's daily cap) has
        spent, which a restart must not forget. Each is journaled as it settles, so a kill loses none."""
        with self.lock:
            rows = self.db.execute(
                "select run_id, meta from thrifty_runs where created >= ? order by created", (since,)
            )
        out: list[ChargeEvent] = []
        for run_id, meta in rows:
            try:
                held = meta_key in json.loads(meta)
            except ValueError:
                continue  # a corrupt record is refused when that run is resumed, not here
            if held:
                out.extend(charge_from_dict(c) for c in self.charges(run_id))
        return out

    def inflight(self, run_id: str) -> list[dict[str, Any]]:
        with self.lock:
            rows = self.db.execute(
                "select pid, res_id, kind, name, node, ledger, amounts from thrifty_inflight where run_id = ?",
                (run_id,),
            )
        keys = ("pid", "res_id", "kind", "name", "node", "ledger", "amounts")
        return [{**dict(zip(keys, r, strict=True)), "amounts": json.loads(r[6])} for r in rows]

    def runs(self, *, unfinished: bool = False, limit: int = 50) -> list[dict[str, Any]]:
        """Runs, newest first, each with what it has spent (summed from its charges)."""
        where = "where r.status != 'finished'" if unfinished else ""
        with self.lock:
            rows = self.db.execute(
                "select r.run_id, r.created, r.status, r.meta, r.stop_reason, r.pid, r.host, "
                "(select count(*) from thrifty_charges c where c.run_id = r.run_id) "
                f"from thrifty_runs r {where} order by r.created desc limit ?",
                (limit,),
            )
        out: list[dict[str, Any]] = []
        for run_id, created, status, meta, stop, pid, host, n in rows:
            spent: dict[str, float] = defaultdict(float)
            for c in self.charges(run_id):
                for k, v in c["units"].items():
                    spent[k] += v
                spent["usd"] += c["usd"]
            if status == RUNNING and not _pid_alive(pid, host) and pid != os.getpid():
                status = "interrupted"
            info = json.loads(meta)
            out.append(
                {
                    "run_id": run_id,
                    "created": created,
                    "status": status,
                    "stop_reason": stop,
                    "task": info.get("task", ""),
                    "question": info.get("question", ""),
                    "budget": info.get("budget", {}),
                    "spent": dict(spent),
                    "charges": n,
                }
            )
        return out

    def add_routing(self, run_id: str, at_seq: int, entry: Mapping[str, Any]) -> None:
        """Append one routing entry (an escalation's trace event, or a one-call escalation used up)."""
        text = json.dumps(redact_value(dict(entry)))
        with self.lock:
            self.db.execute(
                "insert into thrifty_routing (run_id, n, at_seq, entry) values "
                "(?, (select coalesce(max(n), 0) + 1 from thrifty_routing where run_id = ?), ?, ?)",
                (run_id, run_id, at_seq, text),
            )

    def routing(self, run_id: str) -> list[tuple[int, dict[str, Any]]]:
        """The run's routing entries in order, each with the last charge seen when it was written."""
        with self.lock:
            rows = self.db.execute(
                "select at_seq, entry from thrifty_routing where run_id = ? order by n", (run_id,)
            )
        try:
            return [(int(seq), json.loads(entry)) for seq, entry in rows]
        except ValueError:
            raise CheckpointError(
                f"run '{run_id}' in {self.path}: a routing record is corrupt; fix: start the run again"
            ) from None

    def mark_step(self, run_id: str, seq: int, elapsed: float) -> None:
        with self.lock:
            self.db.execute(
                "update thrifty_runs set checkpoint_seq = ?, elapsed = ? where run_id = ?",
                (seq, elapsed, run_id),
            )

    def recorded_calls(self, run_id: str, after_seq: int) -> dict[str, deque[dict[str, Any]]]:
        """Completed calls with their results, charged after ``after_seq``: what a re-run node may replay.
        Each result carries its charge's ``seq`` (as ``_seq``)."""
        out: dict[str, deque[dict[str, Any]]] = defaultdict(deque)
        with self.lock:
            rows = self.db.execute(
                "select seq, call_key, result from thrifty_charges where run_id = ? and seq > ? "
                "and result is not null order by seq",
                (run_id, after_seq),
            )
        for seq, key, result in rows:
            out[key].append({**json.loads(result), "_seq": int(seq)})
        return out


class RunJournal:
    """One durable run's journal: writes each charge (with the call result it paid for) and each call in
    flight, and replays a recorded call to a node that LangGraph runs again after a resume.

    While a resumed node replays its calls, :meth:`credit` tells its budget checks what the calls still
    to be replayed had not yet spent when the node first made them, so that the node decides as it did
    then (shows the same tools, makes the same calls) instead of seeing, at its first step, the spend of
    its own later steps. The Ledger itself always holds every charge: a call that is not replayed is
    reserved and checked against all that was spent."""

    def __init__(
        self,
        store: DurableStore,
        run_id: str,
        recorded: dict[str, deque[dict[str, Any]]] | None = None,
        charges: list[ChargeEvent] | None = None,
        after_seq: int = 0,
    ):
        self.store = store
        self.run_id = run_id
        self._recorded = recorded or {}
        self.replayed = 0
        self.failed: Exception | None = None
        self._pid = os.getpid()
        #: The charges a resume took back (with those of the calls left in flight, once charged).
        self.taken_back: list[ChargeEvent] = list(charges or [])
        # The charges after the last saved step (the node(s) run again spent them), and the seqs of the
        # recorded calls not replayed yet; a replay moves the point the node has reached (its last seq).
        self._lock = threading.Lock()
        self._after: list[ChargeEvent] = [c for c in self.taken_back if c.seq > after_seq]
        self._waiting: set[int] = {int(r.get("_seq") or 0) for q in self._recorded.values() for r in q}
        self._reached = after_seq
        # The seqs of the charges of calls left in flight (settle_inflight): those calls were made after
        # the node's recorded ones (or beside them, in threads), and are made again when the node gets there.
        self._inflight: set[int] = set()
        #: True until the first call that is not replayed: from then on the run is past what it had done.
        self.replaying = bool(self._waiting)

    def attach(self, ledger: Ledger) -> None:
        ledger.journal = self
        ledger.listeners.insert(0, self.on_charge)
        ledger.reserve_listeners.append(self.on_reserve)
        ledger.release_listeners.append(self.on_release)

    def detach(self, ledger: Ledger) -> None:
        ledger.journal = None
        if self.on_charge in ledger.listeners:
            ledger.listeners.remove(self.on_charge)
        if self.on_reserve in ledger.reserve_listeners:
            ledger.reserve_listeners.remove(self.on_reserve)
        if self.on_release in ledger.release_listeners:
            ledger.release_listeners.remove(self.on_release)

    # --------------------------------------------------------------------------------- calls
    @staticmethod
    def key(kind: str, name: str, request: Mapping[str, Any]) -> str:
        """A call's identity: the same request (kind, name, messages or arguments, settings, node) has the
        same key in every process."""
        text = json.dumps({"kind": kind, "name": name, **request}, sort_keys=True, default=str)
        # The budget blocks the model is shown change with the time left: not part of what was asked.
        text = _BUDGET_BLOCK.sub("<budget/>", text)
        return hashlib.sha256(text.encode()).hexdigest()

    def replay(self, kind: str, key: str) -> dict[str, Any] | None:
        """The recorded result of a call completed before the resume (each replayed once), or None (the
        call is made and paid: the node is past what it had done before the interruption)."""
        with self._lock:
            queue = self._recorded.get(key)
            if not queue:
                self.replaying = False
                return None
            result = dict(queue.popleft())
            self.replayed += 1
            seq = int(result.pop("_seq", 0) or 0)
            self._waiting.discard(seq)
            self._reached = max(self._reached, seq)
            if result.get("_kind") != kind:
                self.replaying = False
                return None
            return result

    def credit(self, path: str) -> dict[str, float]:
        """While a resumed node replays its calls: what the ledger ``path`` (and the ledgers under it) had
        not yet spent at this point of the node when it first ran, though the resumed Ledger holds it (the
        charges after the last call replayed, up to the last recorded call still to be replayed, and the
        worst-case charges of the calls left in flight, which the node had not made either). Empty once a
        call was not replayed (the call in flight made again is the first), or nothing is left to replay.
        A budget check that adds it to what is available decides as the node did; the Ledger still checks
        every new call against all spend."""
        with self._lock:
            if not self.replaying or not (self._waiting or self._inflight):
                return {}
            low, high = self._reached, max(self._waiting, default=self._reached)
            inflight = set(self._inflight)
        out: dict[str, float] = defaultdict(float)
        for charge in self._after:
            if (low < charge.seq <= high or charge.seq in inflight) and (
                charge.ledger == path or charge.ledger.startswith(path + "/")
            ):
                for dim, value in charge.units.items():
                    out[dim] += value
                if charge.usd:
                    out["usd"] += charge.usd
        out.pop("seconds", None)  # time passes whatever the node does
        return dict(out)

    def began_after(self, seq: int) -> None:
        """A node that LangGraph runs again on resume began after the charge ``seq`` (its saved state says
        so). The step behind it was saved: the calls recorded up to ``seq`` are not this node's to replay
        (the run's last step seq is kept one step behind), so :meth:`credit` counts from there instead of
        crediting the spend of the saved step too."""
        with self._lock:
            self._reached = max(self._reached, seq)
            self._waiting = {s for s in self._waiting if s > seq}

    @contextlib.contextmanager
    def completing(self, kind: str, key: str, result: Mapping[str, Any]) -> Iterator[None]:
        """Around the settle of a completed call: its charge is written with ``result``."""
        clean = cast("dict[str, Any]", redact_value(dict(result)))
        token = _COMPLETING.set((kind, key, {**clean, "_kind": kind}))
        try:
            yield
        finally:
            _COMPLETING.reset(token)

    # ---------------------------------------------------------------------------- listeners
    def _write(self, statements: list[tuple[str, tuple[Any, ...]]]) -> None:
        if self.failed is not None:
            return
        try:
            with self.store.lock, self.store.db.transaction():
                for sql, params in statements:
                    self.store.db.execute(sql, params)
        except Exception as exc:  # never breaks the Ledger's settle: reported once, the run goes on
            self.failed = exc
            warnings.warn(
                f"{self.store.path}: the run's checkpoint journal stopped ({redact(str(exc))}); the run goes on "
                "but cannot be resumed exactly",
                StoreWarning,
                stacklevel=2,
            )

    def on_reserve(self, res: Reservation) -> None:
        if res.kind not in _JOURNALED_KINDS:
            return
        self._write(
            [
                (
                    _UPSERT_INFLIGHT,
                    (
                        self.run_id,
                        self._pid,
                        res.id,
                        res.kind,
                        res.name,
                        res.node,
                        res.ledger.path,
                        json.dumps(res.amounts),
                    ),
                )
            ]
        )

    def on_release(self, res: Reservation) -> None:
        if res.kind in _JOURNALED_KINDS:
            self._write([(_DELETE_INFLIGHT, (self.run_id, self._pid, res.id))])

    def on_charge(self, event: ChargeEvent) -> None:
        completing = _COMPLETING.get()
        key = result = None
        if completing is not None and completing[0] == event.kind:
            key, result = completing[1], json.dumps(completing[2])
        data = redact_value(event.to_dict())
        statements = [
            (
                _UPSERT_CHARGE,
                (self.run_id, event.seq, json.dumps(data), key, result),
            ),
            (_DELETE_INFLIGHT, (self.run_id, self._pid, event.reservation)),
        ]
        dropping = _DROPPING.get()
        if dropping is not None:
            statements.append((_DELETE_INFLIGHT, (self.run_id, dropping[0], dropping[1])))
        self._write(statements)

    # ------------------------------------------------------------------------------- resume
    def settle_inflight(self, ledger: Ledger) -> list[ChargeEvent]:
        """Charge every call left in flight by a dead process at its reserved worst case (marked so), each in
        the transaction that removes its row."""
        events: list[ChargeEvent] = []
        for row in self.store.inflight(self.run_id):
            if row["pid"] == self._pid:
                continue
            amounts = {k: float(v) for k, v in row["amounts"].items()}
            event = ChargeEvent(
                seq=max((e.seq for e in ledger.events), default=0) + 1,
                time=ledger.elapsed(),
                ledger=row["ledger"],
                node=row["node"],
                kind=row["kind"],
                name=row["name"],
                units={k: v for k, v in amounts.items() if k != "usd"},
                usd=amounts.get("usd", 0.0),
                ok=False,
                detail=INFLIGHT_DETAIL,
            )
            ledger.restore([event])
            self.taken_back.append(event)
            with self._lock:
                self._after.append(event)
                self._inflight.add(event.seq)
                self.replaying = True  # before any call of the resumed run: the node has not made it yet
            token = _DROPPING.set((row["pid"], row["res_id"]))
            try:
                self.on_charge(event)
            finally:
                _DROPPING.reset(token)
            for listener in ledger.listeners:  # the run store and a stream see it too
                if listener != self.on_charge:
                    listener(event)
            events.append(event)
        return events


_DELETE_INFLIGHT = "delete from thrifty_inflight where run_id = ? and pid = ? and res_id = ?"
# Upserts both SQLite (3.24+) and PostgreSQL accept.
_UPSERT_INFLIGHT = (
    "insert into thrifty_inflight values (?,?,?,?,?,?,?,?) on conflict (run_id, pid, res_id) do update set "
    "kind = excluded.kind, name = excluded.name, node = excluded.node, ledger = excluded.ledger, "
    "amounts = excluded.amounts"
)
_UPSERT_CHARGE = (
    "insert into thrifty_charges values (?,?,?,?,?) on conflict (run_id, seq) do update set "
    "event = excluded.event, call_key = excluded.call_key, result = excluded.result"
)
# Set while the resume charges a call a dead process left in flight: its row goes in the charge's transaction.
_DROPPING: contextvars.ContextVar[tuple[int, int] | None] = contextvars.ContextVar(
    "thrifty_dropping", default=None
)
