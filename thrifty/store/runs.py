"""The run store (SQLAlchemy; SQLite by default, any database by URL): every run and every charge it made.

Why a database and not a log file: results and spending are what users audit later ("what did last week's
runs cost, and which stopped by budget?"), so they are kept queryable.

Why each charge is written as it settles (:class:`RunRecorder`): a run killed with ``kill -9`` must still
leave a record of what it spent. The run's row is written when it starts (``stop_reason`` ``running``),
every charge is committed as the Ledger settles it, and the row is completed when the run ends. A SQLite
store is opened in WAL mode with ``synchronous=NORMAL``: a commit survives the process being killed (it
is in the operating system's hands), costs tens of microseconds, and readers never block the writer.

Secrets never reach it: every text written (the result, a charge's detail) passes
:func:`thrifty.redact.redact_value`, on top of the scrubbing done where the text was made.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import threading
import warnings
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from sqlalchemy import JSON, DateTime, Float, Integer, String, Text, insert, select, update
from sqlalchemy import text as sql_text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from thrifty.redact import redact, redact_value
from thrifty.store.check import StoreError, StoreWarning, check_store, describe_store_error
from thrifty.store.db import IN_MEMORY, database_url, make_engine

#: ``stop_reason`` of a run that has started and not (yet) ended.
RUNNING = "running"


class _Base(DeclarativeBase):
    pass


class RunRow(_Base):
    __tablename__ = "runs"

    run_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    task: Mapped[str] = mapped_column(String(200), default="")
    question: Mapped[str] = mapped_column(Text)
    answer: Mapped[str | None] = mapped_column(Text, nullable=True)
    stop_reason: Mapped[str] = mapped_column(String(80))
    strategy: Mapped[str] = mapped_column(String(80))
    model: Mapped[str] = mapped_column(String(200))
    usd: Mapped[float] = mapped_column(Float, default=0.0)
    total_tokens: Mapped[int] = mapped_column(Integer, default=0)
    tool_calls: Mapped[int] = mapped_column(Integer, default=0)
    seconds: Mapped[float] = mapped_column(Float, default=0.0)
    result: Mapped[dict[str, Any]] = mapped_column(JSON)


class ChargeRow(_Base):
    __tablename__ = "charges"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(String(64), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    time: Mapped[float] = mapped_column(Float)
    ledger: Mapped[str] = mapped_column(String(200))
    node: Mapped[str | None] = mapped_column(String(80), nullable=True)
    kind: Mapped[str] = mapped_column(String(40))
    name: Mapped[str] = mapped_column(String(200))
    units: Mapped[dict[str, float]] = mapped_column(JSON)
    usd: Mapped[float] = mapped_column(Float)
    ok: Mapped[bool] = mapped_column(Integer)
    detail: Mapped[str] = mapped_column(Text, default="")


class RunStore:
    """Runs and their charges. ``RunStore(".thrifty/runs.db")`` or ``RunStore("postgresql://...")``.

    Raises :class:`StoreError` (with a fix) when the target cannot hold a run store.
    """

    def __init__(self, target: str | Path = ".thrifty/runs.db") -> None:
        self.target = str(target)
        try:
            self.engine: Engine = _engine_for(target)
        except Exception as exc:
            raise describe_store_error(target, exc) from None
        self.url = str(self.engine.url)
        self.sqlite_path: str | None = _sqlite_file(self.engine)

    # ------------------------------------------------------------------------------------- writing
    def start(
        self,
        run_id: str,
        *,
        question: str,
        strategy: str,
        model: str,
        task: str = "",
        budget: Mapping[str, float] | None = None,
        on_error: Callable[[StoreError], None] | None = None,
        resume: bool = False,
    ) -> RunRecorder:
        """Record that a run has started and return the recorder that writes each of its charges
        (``on_error``: told once if a write fails mid-run; by default a :class:`StoreWarning`).
        ``resume``: the run was recorded before (a resumed durable run): its row is taken over, and the
        charges already written are not written again."""
        fields = {"task": task, "question": question, "strategy": strategy, "model": model}
        return RunRecorder(self, run_id, fields, budget, on_error, resume=resume)

    def save(self, result: Any) -> None:
        """Write a RunResult and the charge events not yet written (one transaction)."""
        with self.engine.begin() as conn:
            written = set(conn.scalars(select(ChargeRow.seq).where(ChargeRow.run_id == result.run_id)))
            _write_result(conn, result, exists=_run_exists(conn, result.run_id))
            _insert_charges(conn, result.run_id, (e for e in result.events if e["seq"] not in written))

    # ------------------------------------------------------------------------------------- reading
    def get(self, run_id: str) -> dict[str, Any] | None:
        with Session(self.engine) as session:
            row = session.get(RunRow, run_id)
            return dict(row.result) if row else None

    def charges(self, run_id: str) -> list[dict[str, Any]]:
        with Session(self.engine) as session:
            rows = session.scalars(
                select(ChargeRow).where(ChargeRow.run_id == run_id).order_by(ChargeRow.seq)
            )
            return [
                {
                    "seq": r.seq,
                    "time": r.time,
                    "kind": r.kind,
                    "name": r.name,
                    "units": r.units,
                    "usd": r.usd,
                    "ok": bool(r.ok),
                    "detail": r.detail,
                }
                for r in rows
            ]

    def recent(self, limit: int = 20) -> list[dict[str, Any]]:
        """The newest runs first. A run that never finished (still going, or killed) shows its state as
        ``stop_reason`` (``running`` or ``unfinished``) and what its charges add up to so far."""
        with Session(self.engine) as session:
            rows = list(session.scalars(select(RunRow).order_by(RunRow.created.desc()).limit(limit)))
            out: list[dict[str, Any]] = []
            for r in rows:
                item = {
                    "run_id": r.run_id,
                    "created": r.created.isoformat(),
                    "task": r.task,
                    "answer": r.answer,
                    "stop_reason": r.stop_reason,
                    "usd": r.usd,
                    "total_tokens": r.total_tokens,
                    "tool_calls": r.tool_calls,
                    "seconds": r.seconds,
                    "finished": r.stop_reason != RUNNING,
                }
                if r.stop_reason == RUNNING:
                    item.update(_spent_so_far(session, r.run_id))
                    item["stop_reason"] = RUNNING if _alive(r.result) else "unfinished"
                out.append(item)
            return out


class RunRecorder:
    """Writes one run as it goes: its row when it starts, each charge as the Ledger settles it
    (:meth:`on_charge`, a Ledger listener), the result when it ends (:meth:`finish`).

    A store that fails never stops the run: the recorder reports the problem once (``on_error``, by
    default a :class:`StoreWarning`) and stops writing; :meth:`finish` then tries once more to write the
    whole run. SQLite is written through one connection of its own (WAL mode, one short transaction per
    charge); any other database through one SQLAlchemy connection held for the run.
    """

    def __init__(
        self,
        store: RunStore,
        run_id: str,
        fields: dict[str, str],
        budget: Mapping[str, float] | None = None,
        on_error: Callable[[StoreError], None] | None = None,
        *,
        resume: bool = False,
    ) -> None:
        self.store = store
        self.run_id = run_id
        self.on_error = on_error or _warn
        self.failed: StoreError | None = None
        self.written: set[int] = set()
        self._lock = threading.Lock()
        self._sqlite: sqlite3.Connection | None = None
        self._conn: Connection | None = None
        try:
            self._open()
            if not (resume and self._take_over(budget)):
                self._write_start(fields, budget)
        except Exception as exc:
            self._close()
            raise describe_store_error(store.target, exc) from None

    def _open(self) -> None:
        path = self.store.sqlite_path
        if path is not None:
            conn = sqlite3.connect(path, timeout=10.0, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._sqlite = conn
        else:
            self._conn = self.store.engine.connect()

    def _write_start(self, fields: dict[str, str], budget: Mapping[str, float] | None) -> None:
        started = {
            "run_id": self.run_id,
            "status": RUNNING,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "budget": dict(budget or {}),
            **fields,
        }
        row = {
            "run_id": self.run_id,
            "created": datetime.now(UTC),
            "task": fields.get("task", "")[:200],
            "question": redact(fields.get("question", "")),
            "answer": None,
            "stop_reason": RUNNING,
            "strategy": fields.get("strategy", "")[:80],
            "model": fields.get("model", "")[:200],
            "usd": 0.0,
            "total_tokens": 0,
            "tool_calls": 0,
            "seconds": 0.0,
            "result": redact_value(started),
        }
        with self.store.engine.begin() as conn:  # once a run: the ORM's types write the row
            conn.execute(insert(RunRow), row)

    def _take_over(self, budget: Mapping[str, float] | None) -> bool:
        """A resumed run: mark its row as this process's and note the charges already written (False when
        the store has no row for it)."""
        with self.store.engine.begin() as conn:
            if not _run_exists(conn, self.run_id):
                return False
            self.written = set(conn.scalars(select(ChargeRow.seq).where(ChargeRow.run_id == self.run_id)))
            started = {
                "run_id": self.run_id,
                "status": RUNNING,
                "pid": os.getpid(),
                "host": socket.gethostname(),
            }
            conn.execute(
                update(RunRow)
                .where(RunRow.run_id == self.run_id)
                .values(stop_reason=RUNNING, result={**started, "budget": dict(budget or {})})
            )
        return True

    def on_charge(self, event: Any) -> None:
        """A Ledger listener: commit ``event`` (a ChargeEvent) now. Never raises (it runs inside the
        Ledger's settle): a failure is reported once and writing stops."""
        if self.failed is not None:
            return
        try:
            with self._lock:
                if event.seq in self.written:
                    return
                if self._sqlite is not None:
                    self._sqlite.execute(_INSERT_CHARGE_SQL, _charge_params(self.run_id, event))
                elif self._conn is not None:
                    _insert_charges(self._conn, self.run_id, [event.to_dict()])
                    self._conn.commit()
                else:
                    return
                self.written.add(event.seq)
        except Exception as exc:
            self._fail(exc)

    def finish(self, result: Any) -> None:
        """Write the finished run (its result and any charge not yet written) and close.

        Raises StoreError if the run could not be recorded (the caller decides whether that is a warning).
        """
        try:
            self._close()
            with self.store.engine.begin() as conn:
                _write_result(conn, result, exists=_run_exists(conn, result.run_id))
                _insert_charges(
                    conn, result.run_id, (e for e in result.events if e["seq"] not in self.written)
                )
        except Exception as exc:
            raise describe_store_error(self.store.target, exc) from None

    def _fail(self, exc: BaseException) -> None:
        with self._lock:
            if self.failed is not None:
                return
            self.failed = describe_store_error(self.store.target, exc)
        self._close()
        with contextlib.suppress(Exception):  # a reporter must not break the run either
            self.on_error(self.failed)

    def _close(self) -> None:
        with self._lock:
            sqlite_conn, self._sqlite = self._sqlite, None
            conn, self._conn = self._conn, None
        for closing in (sqlite_conn, conn):
            if closing is not None:
                with contextlib.suppress(Exception):  # a broken connection: nothing left to do
                    closing.close()


# Engines opened (and their tables created) in this process, by URL, with the SQLite file's identity:
# a process that records many runs (a benchmark grid, a server) opens each store once. A file that was
# deleted or replaced since is opened afresh.
_engines: dict[str, tuple[Engine, tuple[int, int] | None]] = {}
_engines_lock = threading.Lock()


def _forget_engines_after_fork() -> None:
    """In a forked child: the parent's pooled connections are the parent's (sharing a socket with a
    PostgreSQL server, or a SQLite handle, across a fork corrupts both): drop them unclosed, open afresh."""
    global _engines_lock
    _engines_lock = threading.Lock()  # another thread of the parent may have held it at the fork
    for engine, _ in list(_engines.values()):
        engine.dispose(close=False)
    _engines.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_engines_after_fork)


def _file_identity(url: str) -> tuple[int, int] | None:
    database = make_url(url).database if url.startswith("sqlite") else None
    if not database or database == ":memory:":
        return None
    try:
        st = os.stat(database)
    except OSError:
        return (-1, -1)  # not there (yet): never matches a file
    return (st.st_dev, st.st_ino)


def _engine_for(target: str | Path) -> Engine:
    """An engine for ``target`` with the store's tables, reused while the database is the same one (an
    in-memory database is a new one every time)."""
    text = str(target)
    if text in (":memory:", IN_MEMORY):
        engine = make_engine(text)
        _Base.metadata.create_all(engine)
        return engine
    url = database_url(target) if "://" in text else f"sqlite:///{Path(text).expanduser()}"
    with _engines_lock:
        cached = _engines.get(url)
        if cached is not None and cached[1] == _file_identity(url):
            return cached[0]
        check_store(target)
        engine = make_engine(database_url(target))
        _create_tables(engine)
        _engines[url] = (engine, _file_identity(url))
        if cached is not None:
            cached[0].dispose()
        return engine


def _create_tables(engine: Engine) -> None:
    """The store's tables, if missing. On PostgreSQL under an advisory lock of its own: two processes
    creating them at once on a new database would otherwise collide."""
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            from thrifty.store.checkpoint_db import STORE_LOCK_KEY

            conn.execute(sql_text("select pg_advisory_xact_lock(:key)"), {"key": STORE_LOCK_KEY})
        _Base.metadata.create_all(conn)


def _warn(error: StoreError) -> None:
    warnings.warn(str(error), StoreWarning, stacklevel=3)


_CHARGE_COLUMNS = ("run_id", "seq", "time", "ledger", "node", "kind", "name", "units", "usd", "ok", "detail")
_INSERT_CHARGE_SQL = (
    f"INSERT INTO charges ({', '.join(_CHARGE_COLUMNS)}) VALUES ({', '.join('?' * len(_CHARGE_COLUMNS))})"
)


def _charge_params(run_id: str, event: Any) -> tuple[Any, ...]:
    """A ChargeEvent as the row the SQLite fast path inserts (the same values the ORM would write)."""
    return (
        run_id,
        event.seq,
        round(event.time, 6),
        event.ledger[:200],
        event.node,
        event.kind[:40],
        event.name[:200],
        json.dumps({k: float(v) for k, v in event.units.items()}),
        float(event.usd),
        int(bool(event.ok)),
        redact(event.detail) if event.detail else "",
    )


def _insert_charges(conn: Connection, run_id: str, events: Iterable[Mapping[str, Any]]) -> None:
    rows = [
        {
            "run_id": run_id,
            "seq": e["seq"],
            "time": e["time"],
            "ledger": e["ledger"],
            "node": e.get("node"),
            "kind": e["kind"],
            "name": e["name"],
            "units": e["units"],
            "usd": e["usd"],
            "ok": int(bool(e.get("ok", True))),
            "detail": redact(e.get("detail") or ""),
        }
        for e in events
    ]
    if rows:
        conn.execute(insert(ChargeRow), rows)


def _run_exists(conn: Connection, run_id: str) -> bool:
    return conn.scalar(select(RunRow.run_id).where(RunRow.run_id == run_id)) is not None


def _write_result(conn: Connection, result: Any, *, exists: bool) -> None:
    """Insert or complete the run's row with a RunResult (scrubbed)."""
    data = cast("dict[str, Any]", redact_value(json.loads(result.model_dump_json())))
    values = {
        "task": (result.task or "")[:200],
        "question": data.get("question") or "",
        "answer": data.get("answer"),
        "stop_reason": result.stop_reason,
        "strategy": result.strategy[:80],
        "model": result.model[:200],
        "usd": result.usage.usd,
        "total_tokens": result.usage.total_tokens,
        "tool_calls": result.usage.tool_calls,
        "seconds": result.usage.seconds,
        "result": data,
    }
    if exists:
        conn.execute(update(RunRow).where(RunRow.run_id == result.run_id).values(**values))
    else:
        conn.execute(insert(RunRow), {"run_id": result.run_id, "created": datetime.now(UTC), **values})


def _spent_so_far(session: Session, run_id: str) -> dict[str, Any]:
    """What an unfinished run's charges add up to."""
    usd = tokens = tools = 0.0
    last = 0.0
    for units, charged, at in session.execute(
        select(ChargeRow.units, ChargeRow.usd, ChargeRow.time).where(ChargeRow.run_id == run_id)
    ):
        usd += charged or 0.0
        tokens += float((units or {}).get("total_tokens", 0.0))
        tools += float((units or {}).get("tool_calls", 0.0))
        last = max(last, at or 0.0)
    return {
        "usd": round(usd, 8),
        "total_tokens": int(tokens),
        "tool_calls": int(tools),
        "seconds": round(last, 3),
    }


def _alive(started: Mapping[str, Any] | None) -> bool:
    """Whether the process that started a run is still running (on this machine; elsewhere: assumed).
    ``started``: the record written when the run started (its pid and host)."""
    started = started or {}
    pid = started.get("pid")
    if not isinstance(pid, int) or started.get("host") != socket.gethostname():
        return not isinstance(pid, int)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def _sqlite_file(engine: Engine) -> str | None:
    """The file behind a SQLite engine (None for another database or an in-memory one)."""
    url = engine.url
    if url.get_backend_name() != "sqlite" or str(url) == IN_MEMORY:
        return None
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return database
