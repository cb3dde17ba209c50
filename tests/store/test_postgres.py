"""The run store and the memory store on a real PostgreSQL server (tests/postgres.py starts one, or
THRIFTY_TEST_POSTGRES_URL names one), and what a PostgreSQL URL that cannot be used says.

The durable runs (checkpoints, kill -9 and resume) are tested on PostgreSQL in
tests/workflows/test_durable_runs.py, parameterised over both backends."""

from __future__ import annotations

import re
import socket
import sys
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.memory.conversations import SESSIONS
from thrifty.cli import app
from thrifty.extras import pip_install
from thrifty.memory import Memory
from thrifty.store import RunStore, StoreError, check_store, database_url
from thrifty.store.durable import CheckpointError, DurableStore, checkpoints_beside
from thrifty.testing import ScriptedModel, ScriptedReply, ScriptedRequest, call, reply
from thrifty.tools import calculator
from thrifty.workflows.runner import execute

cli = CliRunner()
CAROLINE = {"user_id": "caroline"}


def _counting(request: ScriptedRequest) -> ScriptedReply:
    done = sum(1 for m in request.messages if m.get("role") == "tool")
    return call("calculator", expression=f"{done}+1") if done < 2 else reply("2")


def test_the_run_store_records_runs_and_charges_on_postgres(postgres_url: str) -> None:
    script = ScriptedModel([], default=_counting)
    result = execute("count", model=script.model, tools=[calculator], store=postgres_url, task="pg")
    store = RunStore(postgres_url)
    assert store.engine.dialect.name == "postgresql" and store.engine.dialect.driver == "psycopg"
    assert store.get(result.run_id)["answer"] == "2"
    charges = store.charges(result.run_id)
    assert [c["seq"] for c in charges] == [e["seq"] for e in result.events]
    assert sum(c["units"].get("tool_calls", 0) for c in charges) == result.usage.tool_calls == 2
    (recent,) = store.recent()
    assert recent["run_id"] == result.run_id and recent["stop_reason"] == "completed"
    # SQLAlchemy's own spelling of the same database reaches the same rows
    same = RunStore(postgres_url.replace("postgresql://", "postgresql+psycopg://"))
    assert [r["run_id"] for r in same.recent()] == [result.run_id]


def test_memory_keeps_its_tables_on_postgres(postgres_url: str) -> None:
    mem = Memory(postgres_url, embedder="none")
    try:
        assert mem.engine.dialect.name == "postgresql"
        assert (mem.ingest(SESSIONS, scope=CAROLINE).added, mem.ingest(SESSIONS, scope=CAROLINE).skipped) == (
            2,
            2,
        )
        got = mem.recall("When did Caroline go to the LGBTQ support group?", scope=CAROLINE, router="low")
        assert "yesterday (7 May 2023)" in got.block and "[8 May 2023, s1]" in got.block
        mem.remember("Bob keeps bees on his roof.", scope={"user_id": "bob"})
        assert "bees" not in mem.recall("Who keeps bees?", scope=CAROLINE, router="low").block
        assert mem.forget(CAROLINE).removed == 2 and mem.count({"user_id": "bob"}) == 1
    finally:
        mem.close()


def test_checkpoints_go_to_the_run_stores_postgres_database(postgres_url: str) -> None:
    assert checkpoints_beside(postgres_url) == postgres_url
    assert checkpoints_beside("runs/runs.db") == Path("runs/checkpoints.db")
    assert database_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    store = DurableStore(postgres_url)
    try:
        store.create("pg-1", {"task": "t"})
        with pytest.raises(CheckpointError, match="already exists"):
            store.create("pg-1", {"task": "t"})
        assert [r["run_id"] for r in store.runs(unfinished=True)] == ["pg-1"]
    finally:
        store.close()


def _refused_url() -> str:
    """A PostgreSQL URL (with a password) on a port of 127.0.0.1 nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"postgresql://bob:s3cret-pw@127.0.0.1:{port}/thrifty"


def test_an_unreachable_postgres_url_is_a_clear_error_with_the_password_hidden(tmp_path: Path) -> None:
    url = _refused_url()
    script = ScriptedModel([reply("4")])
    task = tmp_path / "task.yaml"
    task.write_text(f"question: q\nmodel: {script.model}\noutput:\n  store: {url}\n")
    redacted = url.replace("s3cret-pw", "***")
    for args in (
        ["run", str(task), "--quiet"],
        ["resume", "abc", "--checkpoint", url],
        ["runs", "--store", url],
        ["runs", "--unfinished", "--store", url],
    ):
        res = cli.invoke(app, args)
        assert res.exit_code == 2, (args, res.output)
        assert redacted in res.stderr and "s3cret-pw" not in res.output, (args, res.output)
        assert "Traceback" not in res.output and "fix:" in res.stderr, (args, res.output)
    assert "cannot connect to PostgreSQL" in cli.invoke(app, ["resume", "abc", "--checkpoint", url]).stderr
    with pytest.raises(CheckpointError, match=r"cannot connect to PostgreSQL .*fix: start the server"):
        DurableStore(url)


def test_a_missing_postgres_driver_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    url = _refused_url()
    monkeypatch.setitem(sys.modules, "psycopg", None)  # `import psycopg` fails as if not installed
    install = re.escape(pip_install("postgres"))  # the checkout's folder, as the README installs it
    with pytest.raises(CheckpointError, match=rf"not installed \(no module 'psycopg'\).*fix: {install}"):
        DurableStore(url)
    with pytest.raises(StoreError, match=rf"'postgresql://bob:\*\*\*@.*no module 'psycopg'.*{install}"):
        check_store(url)
    res = cli.invoke(app, ["resume", "abc", "--checkpoint", url])
    assert res.exit_code == 2 and pip_install("postgres") in res.stderr and "s3cret-pw" not in res.output


def test_runs_starting_at_once_on_a_new_database_set_its_tables_up_once(postgres_url: str) -> None:
    """Concurrent `create table if not exists` (and LangGraph's migrations, with their `create index
    concurrently`) on a new PostgreSQL database collide unless serialised: eight stores opened at once."""
    errors: list[str] = []
    barrier = threading.Barrier(8)

    def open_one() -> None:
        try:
            barrier.wait()
            store = DurableStore(postgres_url)
            try:
                store.saver([])
            finally:
                store.close()
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=open_one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads) and errors == []
