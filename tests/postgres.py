"""A real PostgreSQL server for the tests (and ``benchmarks/durable_kill.py --postgres``).

``THRIFTY_TEST_POSTGRES_URL`` names one to use (a database its user may create databases on); otherwise a
throwaway server is started from the installed binaries (Debian's ``postgresql`` package puts them in
``/usr/lib/postgresql/<version>/bin``): ``initdb`` into a temporary folder, ``pg_ctl start`` on a free port of
127.0.0.1 with its socket in that folder, and everything removed when it stops. As root (initdb refuses
root) the server runs as the ``postgres`` system user.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import sqlite3
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

URL_ENV = "THRIFTY_TEST_POSTGRES_URL"
REQUIRE_ENV = "THRIFTY_REQUIRE_POSTGRES"
INSTALL_HINT = (
    "install Debian's postgresql package (apt-get install -y postgresql) or set THRIFTY_TEST_POSTGRES_URL "
    "to a server the tests may create databases on"
)


def server_binaries() -> Path | None:
    """The folder holding initdb and pg_ctl (None: PostgreSQL is not installed)."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).parent
    folders = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: [int(x) for x in p.split("/")[-2].split(".")]
    )
    for folder in reversed(folders):
        if (Path(folder) / "initdb").exists() and (Path(folder) / "pg_ctl").exists():
            return Path(folder)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def throwaway_server(binaries: Path) -> Iterator[str]:
    """Start a PostgreSQL server in a temporary folder; yield its URL (database ``postgres``); stop it and
    remove the folder."""
    home = Path(tempfile.mkdtemp(prefix="thrifty-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(home, user.pw_uid, user.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = home / "data", _free_port()

    def run(*args: str) -> None:
        # from the server's own folder: initdb fails in a working directory its user cannot read (/root)
        subprocess.run([*as_user, *args], check=True, capture_output=True, text=True, timeout=120, cwd=home)

    try:
        run(
            str(binaries / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "--no-sync",
            "-E",
            "UTF8",
        )
        options = f"-p {port} -k {home} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        run(str(binaries / "pg_ctl"), "-D", str(data), "-l", str(home / "log"), "-o", options, "-w", "start")
        try:
            yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
        finally:
            with contextlib.suppress(Exception):
                run(str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
    except subprocess.CalledProcessError as exc:
        raise RuntimeError(f"PostgreSQL did not start: {exc.stderr or exc.stdout}") from None
    finally:
        shutil.rmtree(home, ignore_errors=True)


def create_database(server_url: str, name: str | None = None, template: str | None = None) -> str:
    """A new database on the server at ``server_url`` (optionally a copy of ``template``); its URL."""
    import psycopg

    name = name or f"thrifty_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        copy = f" template {template}" if template else ""
        conn.execute(f'create database "{name}"{copy}')
    return server_url.rsplit("/", 1)[0] + "/" + name


@contextlib.contextmanager
def postgres_server() -> Iterator[str | None]:
    """The URL of a server to test on: ``THRIFTY_TEST_POSTGRES_URL``, else a throwaway one (None: no
    PostgreSQL binaries here)."""
    given = os.environ.get(URL_ENV)
    if given:
        yield given
        return
    binaries = server_binaries()
    if binaries is None:
        yield None
        return
    with throwaway_server(binaries) as url:
        yield url


class Backend:
    """Where a test's checkpoints (and run store) live: SQLite files, or databases on a PostgreSQL server."""

    def __init__(self, server: str | None) -> None:
        self.server = server

    def new(self, tmp_path: Path, name: str = "ck.db") -> str | Path:
        """A new, empty place for checkpoints."""
        return tmp_path / name if self.server is None else create_database(self.server)

    def copy(self, tmp_path: Path, source: str | Path) -> str | Path:
        if self.server is None:
            shutil.copy(source, tmp_path / "ck.db")
            return tmp_path / "ck.db"
        return create_database(self.server, template=str(source).rsplit("/", 1)[1])

    def rows(self, target: str | Path, sql: str, *args: object) -> list[tuple[object, ...]]:
        if self.server is None:
            with sqlite3.connect(target) as conn:
                return conn.execute(sql, args).fetchall()
        import psycopg

        with psycopg.connect(str(target), autocommit=True) as conn:
            cur = conn.execute(sql.replace("?", "%s"), args)
            return [tuple(r) for r in cur.fetchall()] if cur.description else []

    def corrupt_checkpoints(self, target: str | Path) -> None:
        """Garble the saved checkpoints (SQLite: the serialized checkpoint; PostgreSQL: its JSON document)."""
        if self.server is None:
            self.rows(target, "update checkpoints set checkpoint = x'00ff00'")
        else:
            self.rows(target, "update checkpoints set checkpoint = '\"corrupt\"'::jsonb")
