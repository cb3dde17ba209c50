"""The database under a durable run's checkpoints: a SQLite file, or a PostgreSQL server by URL.

Both hold the same three tables of :mod:`thrifty.store.durable` (written in SQL both accept: ``?``
placeholders, ``insert ... on conflict ... do update``) and LangGraph's own checkpointer tables: the SQLite
saver's in the file, the PostgreSQL saver's (``langgraph-checkpoint-postgres``, psycopg 3) on the server.
Each side keeps one connection for the journal (autocommit, an explicit transaction where several
statements must land together) and gives the saver a connection of its own.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from thrifty.extras import pip_install
from thrifty.redact import redact
from thrifty.store.db import is_postgres_url, postgres_conninfo

__all__ = ["CheckpointDB", "DuplicateRow", "PostgresDB", "SqliteDB", "open_checkpoint_db"]

#: What to install for PostgreSQL checkpoints.


#: The advisory lock held while thrifty creates its checkpoint tables on a PostgreSQL database (any fixed
#: number; the run store's tables have their own, :data:`STORE_LOCK_KEY`).
SETUP_LOCK_KEY = 7_316_016
STORE_LOCK_KEY = 7_316_017


class DuplicateRow(Exception):
    """An insert met a row with the same key."""


class CheckpointDBError(Exception):
    """The database cannot be opened; the message says why and how to fix it (the URL's password hidden)."""


class CheckpointDB(ABC):
    """One connection to the checkpoints' database (:class:`SqliteDB` or :class:`PostgresDB`)."""

    #: Where the checkpoints are, as shown in messages (a path, or the URL with its password hidden).
    where: str
    #: The journal's connection, and the saver's once :meth:`saver` has opened it.
    conn: Any
    _saver_conn: Any

    @abstractmethod
    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one statement (``?`` placeholders) and return its rows."""

    @abstractmethod
    def transaction(self) -> contextlib.AbstractContextManager[None]:
        """The statements run inside land together or not at all."""

    @abstractmethod
    def saver(self, serde: Any) -> Any:
        """LangGraph's checkpointer on this database (a connection of its own, its tables set up)."""

    def setup_lock(self) -> contextlib.AbstractContextManager[None]:
        """Held while tables are created: two processes creating them at once on a new database fail."""
        return contextlib.nullcontext()

    def close(self) -> None:
        """Close the journal's connection and the saver's (a failure to close one is not an error)."""
        for conn in (self.conn, self._saver_conn):
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.close()


class SqliteDB(CheckpointDB):
    def __init__(self, path: Path) -> None:
        self.path = path
        self.where = str(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.conn = self._connect(isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise CheckpointDBError(
                f"{path}: cannot hold checkpoints ({exc}); fix: give a writable SQLite file path"
            ) from None
        self._saver_conn: sqlite3.Connection | None = None

    def _connect(self, **kwargs: Any) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False, **kwargs)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            return self.conn.execute(sql, tuple(params)).fetchall()
        except sqlite3.IntegrityError as exc:
            raise DuplicateRow(str(exc)) from None

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        self.conn.execute("begin immediate")
        try:
            yield
            self.conn.execute("commit")
        except BaseException:
            self.conn.execute("rollback")
            raise

    def saver(self, serde: Any) -> Any:
        from langgraph.checkpoint.sqlite import SqliteSaver

        # Python's default transaction handling, which the saver relies on: a task's writes are one
        # transaction (in autocommit mode a kill could leave half of them, and the task would not rerun)
        self._saver_conn = self._connect()
        saver = SqliteSaver(self._saver_conn, serde=serde)
        saver.setup()
        return saver


class PostgresDB(CheckpointDB):
    def __init__(self, url: str) -> None:
        self.where = redact(url)
        try:
            import psycopg
            from langgraph.checkpoint.postgres import PostgresSaver  # noqa: F401  (checked here, used later)
        except ImportError as exc:
            raise CheckpointDBError(
                f"checkpoints '{self.where}': the PostgreSQL checkpointer is not installed (no module "
                f"'{exc.name}'); fix: {pip_install('postgres')} (langgraph-checkpoint-postgres and psycopg[binary]), or give a SQLite file path"
            ) from None
        self._psycopg = psycopg
        self.conninfo = postgres_conninfo(url)
        self.conn = self._connect()
        self._saver_conn: Any = None

    def _connect(self, **kwargs: Any) -> Any:
        try:
            return self._psycopg.connect(self.conninfo, autocommit=True, connect_timeout=10, **kwargs)
        except self._psycopg.Error as exc:
            reason = redact(" ".join(str(exc).split()))[:300]
            raise CheckpointDBError(
                f"checkpoints '{self.where}': cannot connect to PostgreSQL ({reason}); fix: start the server "
                "or correct the URL (postgresql://user:password@host:port/database), or give a SQLite file path"
            ) from None

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            cur = self.conn.execute(sql.replace("?", "%s"), tuple(params))
        except self._psycopg.errors.UniqueViolation as exc:
            raise DuplicateRow(str(exc)) from None
        return cur.fetchall() if cur.description is not None else []

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        with self.conn.transaction():
            yield

    def saver(self, serde: Any) -> Any:
        from langgraph.checkpoint.postgres import PostgresSaver
        from psycopg.rows import dict_row

        # The saver's own settings (as its from_conn_string): autocommit, no server-side prepared statements.
        self._saver_conn = self._connect(prepare_threshold=0, row_factory=dict_row)
        saver = PostgresSaver(self._saver_conn, serde=serde)
        with self.setup_lock():
            saver.setup()
        return saver

    @contextlib.contextmanager
    def setup_lock(self) -> Iterator[None]:
        """A PostgreSQL advisory lock: concurrent ``create table if not exists`` (and the saver's migrations)
        on a new database otherwise collide (duplicate key in pg_type). Taken by polling, not by waiting in
        ``pg_advisory_lock``: the saver's ``create index concurrently`` waits for every statement in
        progress, a waiting lock call included, and the two would wait on each other forever."""
        deadline = time.monotonic() + 120.0
        while not self.conn.execute("select pg_try_advisory_lock(%s)", (SETUP_LOCK_KEY,)).fetchone()[0]:
            if time.monotonic() > deadline:
                raise CheckpointDBError(
                    f"checkpoints '{self.where}': another process has been creating the checkpoint tables for "
                    "two minutes; fix: check the server (pg_stat_activity), or try again"
                )
            time.sleep(0.05)
        try:
            yield
        finally:
            self.conn.execute("select pg_advisory_unlock(%s)", (SETUP_LOCK_KEY,))


def open_checkpoint_db(target: str | Path) -> CheckpointDB:
    """The database at ``target``: a PostgreSQL URL, a ``sqlite:///`` URL or a SQLite file path.
    Raises :class:`CheckpointDBError` (with a fix) when it cannot be opened."""
    text = str(target)
    if is_postgres_url(text):
        return PostgresDB(text)
    if text.startswith("sqlite:///") and len(text) > len("sqlite:///"):
        return SqliteDB(Path(text[len("sqlite:///") :]).expanduser())
    if "://" in text:
        raise CheckpointDBError(
            f"checkpoints '{redact(text)}': only a SQLite file or a PostgreSQL URL can hold checkpoints; "
            "fix: give a file path such as .thrifty/checkpoints.db or a postgresql://user@host/db URL"
        )
    return SqliteDB(Path(text).expanduser())
