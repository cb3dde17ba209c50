"""Checking a run store's target before anything is written, and the errors a store reports.

Every message says what is wrong and how to fix it, so the CLI can print it as it is. Nothing here
connects to a database server: a URL is checked for its form and its driver only.
"""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from thrifty.extras import pip_install
from thrifty.redact import redact
from thrifty.store.db import database_url

__all__ = ["SKIP_HINT", "StoreError", "StoreWarning", "check_store", "describe_store_error"]

SKIP_HINT = "or set `output.store: null` in the task file, or pass --no-store"
_SQLITE_HEADER = b"SQLite format 3\x00"
# Drivers SQLAlchemy looks for by default, and the package that provides each.
_DRIVER_PACKAGES = {
    "psycopg2": "psycopg2-binary",
    "pymysql": "pymysql",
    "MySQLdb": "mysqlclient",
    "oracledb": "oracledb",
    "pyodbc": "pyodbc",
    "asyncpg": "asyncpg",
}


class StoreError(RuntimeError):
    """The run store cannot be opened or written; the message says why and how to fix it."""


class StoreWarning(UserWarning):
    """A run finished but could not be recorded (its result is still returned)."""


def check_store(target: str | Path) -> None:
    """Raise :class:`StoreError` if ``target`` (a SQLite path or a SQLAlchemy URL) cannot hold a run store.

    A path must be a SQLite database (or an empty or new file) that can be written, in a folder that can
    be created; a URL must parse and its driver must be importable. Nothing is created or connected to.

    >>> check_store(":memory:")
    >>> check_store("nosuchdb://x")
    Traceback (most recent call last):
    ...
    thrifty.store.check.StoreError: run store 'nosuchdb://x': unknown database type 'nosuchdb' (fix: use a SQLite path such as .thrifty/runs.db or a SQLAlchemy URL such as postgresql://user@host/db, or set `output.store: null` in the task file, or pass --no-store)
    """
    text = str(target)
    if text in (":memory:", "sqlite://"):
        return
    if "://" not in text:
        _check_sqlite_path(Path(text).expanduser(), text)
        return
    try:
        url = make_url(database_url(text))  # a PostgreSQL URL: with the psycopg 3 driver
    except ArgumentError as exc:
        raise StoreError(
            _message(text, f"not a database URL ({exc})", "write it as dialect://user@host/db")
        ) from None
    try:
        dialect = url.get_dialect()
    except NoSuchModuleError:
        raise StoreError(
            _message(
                text,
                f"unknown database type '{url.drivername}'",
                "use a SQLite path such as .thrifty/runs.db or a SQLAlchemy URL such as postgresql://user@host/db",
            )
        ) from None
    try:
        dialect.import_dbapi()
    except ImportError as exc:
        raise StoreError(_driver_message(text, url.drivername, exc)) from None
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        _check_sqlite_path(Path(url.database).expanduser(), text)


def _check_sqlite_path(path: Path, shown: str) -> None:
    if path.exists():
        if path.is_dir():
            raise StoreError(_message(shown, "is a folder", "name a file inside it, e.g. runs.db"))
        if not path.is_file():
            raise StoreError(_message(shown, "is not a regular file (a device or a pipe)", "name a file"))
        if not os.access(path, os.R_OK | os.W_OK):
            raise StoreError(
                _message(shown, "cannot be written (permissions)", "make it writable or name another file")
            )
        try:
            with path.open("rb") as fh:
                head = fh.read(len(_SQLITE_HEADER))
        except OSError as exc:
            raise StoreError(
                _message(shown, f"cannot be read ({exc.strerror})", "name another file")
            ) from None
        if head and head != _SQLITE_HEADER:
            raise StoreError(
                _message(
                    shown,
                    "is not a SQLite database (it holds other data)",
                    "name a new file, e.g. .thrifty/runs.db",
                )
            )
        return
    folder = path.parent
    while not folder.exists():
        if folder.parent == folder:
            break
        folder = folder.parent
    if not folder.is_dir():
        raise StoreError(_message(shown, f"'{folder}' is a file, not a folder", "name a path in a folder"))
    if not os.access(folder, os.W_OK | os.X_OK):
        raise StoreError(_message(shown, f"folder '{folder}' cannot be written", "name a writable path"))


def _driver_message(shown: str, drivername: str, exc: ImportError) -> str:
    missing = getattr(exc, "name", None) or str(exc)
    if missing == "psycopg":
        install = f"{pip_install('postgres')} (psycopg[binary])"
    else:
        install = f"pip install {_DRIVER_PACKAGES.get(str(missing), str(missing))}"
    return _message(
        shown,
        f"the '{drivername}' driver is not installed (no module '{missing}')",
        f"{install}, or use a SQLite path such as .thrifty/runs.db",
    )


def _message(shown: str, problem: str, fix: str) -> str:
    return f"run store '{redact(shown)}': {problem} (fix: {fix}, {SKIP_HINT})"


def describe_store_error(target: str | Path, exc: BaseException) -> StoreError:
    """A StoreError for an exception raised while opening or writing the store at ``target``: the check's
    message when the target is the problem, else the database's own error (scrubbed) with a fix."""
    if isinstance(exc, StoreError):
        return exc
    try:
        check_store(target)
    except StoreError as problem:
        return problem
    if isinstance(exc, ImportError):
        return StoreError(_driver_message(str(target), "database", exc))
    text = redact(" ".join(f"{type(exc).__name__}: {exc}".split()))[:300]
    return StoreError(_message(str(target), text, "check that the database is reachable and writable"))
