"""Where thrifty's tables live: a SQLite file by default, any database by SQLAlchemy URL.

The run store and a memory tier may share one database (their tables have distinct names), so both open it
the same way here.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import create_engine
from sqlalchemy.engine import Engine
from sqlalchemy.pool import StaticPool

__all__ = ["IN_MEMORY", "database_url", "is_postgres_url", "make_engine", "postgres_conninfo"]

IN_MEMORY = "sqlite://"
#: How a PostgreSQL URL may start; thrifty drives every one with psycopg 3 (the ``postgres`` extra).
_POSTGRES_SCHEMES = ("postgresql://", "postgres://", "postgresql+psycopg://")


def is_postgres_url(target: str | Path) -> bool:
    return str(target).startswith(_POSTGRES_SCHEMES)


def postgres_conninfo(url: str) -> str:
    """The libpq form of a PostgreSQL URL (``postgresql://...``, without SQLAlchemy's ``+psycopg``)."""
    return "postgresql://" + str(url).split("://", 1)[1]


def database_url(target: str | Path) -> str:
    """A SQLAlchemy URL for ``target``: a URL as is (a PostgreSQL one with the psycopg 3 driver), else a SQLite
    file (its folder is created)."""
    text = str(target)
    if is_postgres_url(
        text
    ):  # psycopg 3, the driver the `postgres` extra installs (not SQLAlchemy's psycopg2)
        return "postgresql+psycopg://" + text.split("://", 1)[1]
    if "://" in text:
        return text
    if text == ":memory:":
        return IN_MEMORY
    path = Path(text).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def make_engine(target: str | Path) -> Engine:
    """An engine for ``target``. An in-memory SQLite database (``sqlite://`` or ``:memory:``) keeps one
    connection shared by every thread: with a pool of its own each connection would see an empty database."""
    url = database_url(target)
    if url in (IN_MEMORY, "sqlite:///:memory:"):
        return create_engine(url, poolclass=StaticPool, connect_args={"check_same_thread": False})
    return create_engine(url)
