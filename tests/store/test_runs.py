"""The run store: runs and their charges, kept in a database (SQLite file, in-memory SQLite or any URL)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from sqlalchemy import inspect, text

from thrifty.budget import Budget, Ledger
from thrifty.store import RunStore, database_url, make_engine
from thrifty.workflows.result import Cost, RunResult, Usage


def _result(run_id: str, answer: str = "Paris") -> RunResult:
    ledger = Ledger(Budget(tool_calls=5))
    ledger.charge({"input_tokens": 10, "output_tokens": 2, "total_tokens": 12}, kind="model", name="m/x")
    ledger.charge({"tool_calls": 1, "tool:search": 1, "usd": 0.001}, kind="tool", name="search")
    ledger.charge({"memory_ops": 1}, kind="memory", name="lexical", detail="k=5 items=2")
    return RunResult(
        run_id=run_id,
        question="Capital of France?",
        answer=answer,
        stop_reason="completed",
        strategy="react",
        model="m/x",
        usage=Usage.from_ledger(ledger),
        cost=Cost.from_ledger(ledger),
        events=[e.to_dict() for e in ledger.events],
    )


def test_a_saved_run_reads_back_with_its_charges_in_order(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "sub" / "runs.db")  # the folder is created
    store.save(_result("r1"))
    saved = store.get("r1")
    assert saved is not None and saved["answer"] == "Paris"
    json.dumps(saved)
    charges = store.charges("r1")
    assert [c["kind"] for c in charges] == ["model", "tool", "memory"]
    assert charges[2]["units"] == {"memory_ops": 1.0} and charges[2]["ok"] is True
    assert store.get("missing") is None and store.charges("missing") == []


def test_recent_lists_the_newest_first(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs.db")
    for run_id in ("a", "b", "c"):
        store.save(_result(run_id))
    assert [r["run_id"] for r in store.recent(2)] == ["c", "b"]
    assert RunStore(tmp_path / "runs.db").recent(1)[0]["run_id"] == "c"  # reopened: it was on disk


def test_database_url_keeps_urls_and_turns_paths_into_sqlite_files(tmp_path: Path) -> None:
    assert (
        database_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    )  # psycopg 3, the extra's driver
    assert database_url("mysql+pymysql://u@h/db") == "mysql+pymysql://u@h/db"
    assert database_url("sqlite://") == "sqlite://"
    assert database_url(":memory:") == "sqlite://"
    target = tmp_path / "a" / "b.db"
    assert database_url(target) == f"sqlite:///{target}"
    assert target.parent.is_dir()


def test_an_in_memory_database_is_one_database_for_every_thread() -> None:
    engine = make_engine(":memory:")
    with engine.begin() as conn:
        conn.execute(text("create table t (x int)"))
    seen: list[list[str]] = []
    worker = threading.Thread(target=lambda: seen.append(inspect(engine).get_table_names()))
    worker.start()
    worker.join()
    assert seen == [["t"]]
    store = RunStore("sqlite://")
    store.save(_result("mem"))
    assert store.get("mem") is not None
