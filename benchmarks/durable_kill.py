"""Kill durable runs with SIGKILL at random moments, resume them, and check that nothing is lost or paid twice.

    python benchmarks/durable_kill.py --runs 100 --out /tmp/durable-kill.md
    python benchmarks/durable_kill.py --runs 30 --postgres postgresql://user@127.0.0.1:5432/postgres

With ``--postgres URL`` the run store and the checkpoints are on that PostgreSQL server (in a new database
the script creates there, dropped at the end), LangGraph's PostgreSQL checkpointer included; by default they
are SQLite files in the work folder.

Each trial starts a checkpointed run (react, the scripted model, a priced tool that takes 0-50 ms) in a
forked child process, kills it with ``SIGKILL`` after a random delay (during a model call, a tool call or
between steps), resumes it in a new child, sometimes kills that one too, and resumes until it finishes.
Forked children start warm (everything imported in this process), so a kill lands inside the run, not in
the imports. For every trial it checks:

* the run finishes with the answer;
* the resumed ledger equals the sum of the persisted charges (the RunResult's usage against the journal's
  rows, and against the run store's);
* no limit is crossed (tool calls, dollars);
* no completed call is paid twice: exactly one successful charge per model call and tool call the run
  needs (6 tool calls, 7 model calls), each call's recorded result paid once; a call in flight at a kill is
  charged at its reserved worst case and marked so.

Prints a JSON summary (``--json``) or writes a Markdown table (``--out``). Exit code 1 if any check fails.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

import thrifty  # noqa: F401  (sets nothing; imported first as every entry point does)
from thrifty import Budget
from thrifty.store.durable import INFLIGHT_DETAIL
from thrifty.testing import ScriptedModel, ScriptedReply, ScriptedRequest, call, reply
from thrifty.tools import tool
from thrifty.workflows.runner import execute

STEPS = 6  # tool calls the task needs; model calls: STEPS + 1
LIMITS = {"tool_calls": 12, "usd": 10.0}  # room for the calls in flight at kills
TOOL_PRICE = 0.5


@tool(price=TOOL_PRICE)
def work(n: int) -> str:
    """Does step n of the work (takes up to 50 ms)."""
    time.sleep(random.uniform(0.0, 0.05))
    return f"worked {n}"


def _step(request: ScriptedRequest) -> ScriptedReply:
    """The model's next move, decided by the conversation (so a resumed run gets the same replies)."""
    done = sum(1 for m in request.messages if m.get("role") == "tool")
    if done < STEPS:
        return call("work", n=done + 1, prompt_tokens=40, completion_tokens=8)
    return reply("done", prompt_tokens=40, completion_tokens=4)


MODEL = ScriptedModel([], name="durable-kill", default=_step)
#: Where the checkpoints and the run store are: SQLite files in the work folder, or one PostgreSQL database.
BACKEND: dict[str, str] = {}


def _targets(work_dir: Path) -> tuple[str, str]:
    """(checkpoints, run store) as given to the run."""
    url = BACKEND.get("postgres")
    return (url, url) if url else (str(work_dir / "checkpoints.db"), str(work_dir / "runs.db"))


def _query(target: str, sql: str, **params: Any) -> list[Any]:
    """Rows of ``sql`` on a checkpoint or run store target (a connection of its own, never kept: the
    trials fork)."""
    url = target if "://" in target else f"sqlite:///{target}"
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            result = conn.execute(text(sql), params)
            return list(result.fetchall()) if result.returns_rows else []
    finally:
        engine.dispose()


def _run(work_dir: Path, run_id: str, resume: bool) -> Any:
    checkpoints, store = _targets(work_dir)
    return execute(
        "Do the six steps of the work.",
        model=MODEL.model,
        tools=[work],
        budget=Budget.model_validate(LIMITS),
        checkpoint=checkpoints,
        store=store,
        run_id=run_id,
        resume=resume,
        task="durable-kill",
    )


def _child(work_dir: Path, run_id: str, resume: bool) -> int:
    """Fork a child that runs (or resumes) the run and writes its RunResult; returns its pid."""
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 0
        try:
            random.seed(os.getpid())
            result = _run(work_dir, run_id, resume)
            (work_dir / f"{run_id}.json").write_text(result.model_dump_json())
        except BaseException as exc:
            (work_dir / f"{run_id}.error").write_text(f"{type(exc).__name__}: {exc}")
            code = 1
        os._exit(code)
    return pid


def _where(db: str, run_id: str) -> str:
    """Where the kill landed: the call the run had in flight, or between calls."""
    kinds = [k for (k,) in _query(db, "select kind from thrifty_inflight where run_id = :r", r=run_id)]
    return "+".join(sorted(kinds)) + " call" if kinds else "between calls"


def trial(work_dir: Path, index: int, rng: random.Random, typical: float) -> dict[str, Any]:
    run_id = f"kill-{index:03d}"
    checkpoints = _targets(work_dir)[0]
    kills: list[str] = []
    resume = False
    while True:
        pid = _child(work_dir, run_id, resume)
        kill_now = not resume or rng.random() < 0.3  # the first run always, a resumed one sometimes
        if kill_now:
            time.sleep(rng.uniform(0.0, typical))
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        if killed and not resume and not _started(checkpoints, run_id):
            typical *= 1.2  # killed before the run had begun: nothing to resume, start it again
            _reset(work_dir, run_id)
            continue
        if killed and _finished(checkpoints, run_id):
            killed = False  # killed after the run had ended, as the process was exiting: not a kill mid-run
            (work_dir / f"{run_id}.json").write_text(_stored_result(checkpoints, run_id))
        if killed:
            kills.append(_where(checkpoints, run_id))
            resume = True
            continue
        if not kills:  # finished before the kill: start the trial again, sooner
            typical *= 0.7
            _reset(work_dir, run_id)
            continue
        break
    return _check(work_dir, run_id, kills)


def _started(db: str, run_id: str) -> bool:
    return bool(_query(db, "select 1 from thrifty_runs where run_id = :r", r=run_id))


def _finished(db: str, run_id: str) -> bool:
    rows = _query(db, "select status from thrifty_runs where run_id = :r", r=run_id)
    return bool(rows) and rows[0][0] == "finished"


def _stored_result(db: str, run_id: str) -> str:
    return str(_query(db, "select result from thrifty_runs where run_id = :r", r=run_id)[0][0])


def _reset(work_dir: Path, run_id: str) -> None:
    """Forget a trial whose run finished before it was killed (it is started again under the same id)."""
    checkpoints, store = _targets(work_dir)
    saver_tables = (
        ("checkpoints", "checkpoint_writes", "checkpoint_blobs")
        if BACKEND.get("postgres")
        else ("checkpoints", "writes")
    )
    for table in ("thrifty_runs", "thrifty_charges", "thrifty_inflight", *saver_tables):
        key = "thread_id" if table in saver_tables else "run_id"
        _query(checkpoints, f"delete from {table} where {key} = :r", r=run_id)
    _query(store, "delete from runs where run_id = :r", r=run_id)
    _query(store, "delete from charges where run_id = :r", r=run_id)
    (work_dir / f"{run_id}.json").unlink(missing_ok=True)


def _check(work_dir: Path, run_id: str, kills: list[str]) -> dict[str, Any]:
    problems: list[str] = []
    error = work_dir / f"{run_id}.error"
    if error.exists():
        return {"run_id": run_id, "kills": kills, "problems": [error.read_text()]}
    result = json.loads((work_dir / f"{run_id}.json").read_text())
    if result["answer"] != "done" or result["stop_reason"] != "completed":
        problems.append(f"ended {result['stop_reason']} with {result['answer']!r}")
    checkpoints, store = _targets(work_dir)
    rows = [
        (json.loads(e), key)
        for e, key in _query(
            checkpoints,
            "select event, call_key from thrifty_charges where run_id = :r order by seq",
            r=run_id,
        )
    ]
    left = _query(checkpoints, "select count(*) from thrifty_inflight where run_id = :r", r=run_id)[0][0]
    stored = _query(store, "select count(*), coalesce(sum(usd), 0) from charges where run_id = :r", r=run_id)[
        0
    ]
    events = [e for e, _ in rows]
    usage = result["usage"]
    persisted_usd = sum(e["usd"] for e in events)
    persisted_tools = sum(e["units"].get("tool_calls", 0) for e in events)
    persisted_tokens = sum(e["units"].get("total_tokens", 0) for e in events)
    if abs(usage["usd"] - persisted_usd) > 1e-9 or usage["tool_calls"] != persisted_tools:
        problems.append(
            f"ledger {usage['usd']}/{usage['tool_calls']} != persisted {persisted_usd}/{persisted_tools}"
        )
    if usage["total_tokens"] != persisted_tokens:
        problems.append(f"tokens {usage['total_tokens']} != persisted {persisted_tokens}")
    if [e["seq"] for e in result["events"]] != [e["seq"] for e in events]:
        problems.append("the result's events are not the persisted ones")
    if stored[0] != len(events) or abs(stored[1] - persisted_usd) > 1e-9:
        problems.append(
            f"run store has {stored[0]} charges / ${stored[1]}, journal {len(events)} / ${persisted_usd}"
        )
    if (
        usage["tool_calls"] > LIMITS["tool_calls"]
        or usage["usd"] > LIMITS["usd"] + 1e-9
        or result["overruns"]
    ):
        problems.append(f"limit crossed: {usage['tool_calls']} tool calls, ${usage['usd']}")
    paid = Counter(e["kind"] for e in events if e["ok"])
    if paid["tool"] != STEPS or paid["model"] != STEPS + 1:
        problems.append(f"completed calls paid {dict(paid)} times, expected tool {STEPS}, model {STEPS + 1}")
    keys = Counter(key for _, key in rows if key)
    if any(n > 1 for n in keys.values()):
        problems.append("a recorded call was paid twice")
    inflight = [e for e in events if not e["ok"]]
    if any(e["detail"] != INFLIGHT_DETAIL for e in inflight):
        problems.append("a failed charge is not marked as in flight at a kill")
    if left:
        problems.append(f"{left} calls still marked in flight")
    return {
        "run_id": run_id,
        "kills": kills,
        "inflight_charged": len(inflight),
        "usd": usage["usd"],
        "problems": problems,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--dir", type=Path, default=None, help="Work folder (default: a temporary one).")
    parser.add_argument("--out", type=Path, default=None, help="Write the figures as Markdown here.")
    parser.add_argument("--json", action="store_true", help="Print the summary as JSON.")
    parser.add_argument(
        "--postgres",
        default=None,
        metavar="URL",
        help="A PostgreSQL server (postgresql://user@host:port/db) whose user may create databases: the run "
        "store and checkpoints go to a new database there (dropped at the end).",
    )
    args = parser.parse_args(argv)
    work_dir = args.dir or Path(tempfile.mkdtemp(prefix="thrifty-kill-"))
    work_dir.mkdir(parents=True, exist_ok=True)
    if args.postgres:
        with _postgres_database(args.postgres) as url:
            BACKEND["postgres"] = url
            return _trials(args, work_dir)
    return _trials(args, work_dir)


@contextlib.contextmanager
def _postgres_database(server: str) -> Iterator[str]:
    """A new database on ``server`` for the trials; dropped at the end."""
    name = f"thrifty_kill_{os.getpid()}"
    _autocommit(server, f'create database "{name}"')
    try:
        yield server.rsplit("/", 1)[0] + "/" + name
    finally:
        _autocommit(server, f'drop database if exists "{name}" with (force)')


def _autocommit(server: str, sql: str) -> None:
    url = "postgresql+psycopg://" + server.split("://", 1)[1]
    engine = create_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text(sql))
    finally:
        engine.dispose()


def _trials(args: argparse.Namespace, work_dir: Path) -> int:
    rng = random.Random(args.seed)
    started = time.monotonic()
    _run(work_dir, "warm-up", resume=False)  # imports and first-call set-up, in this process before forking
    warm = time.monotonic()
    _run(work_dir, "timing", resume=False)
    typical = time.monotonic() - warm
    trials = [trial(work_dir, i, rng, typical) for i in range(args.runs)]
    failed = [t for t in trials if t["problems"]]
    where = Counter(w for t in trials for w in t["kills"])
    summary = {
        "backend": "postgresql" if BACKEND.get("postgres") else "sqlite",
        "runs": args.runs,
        "finished_and_exact": args.runs - len(failed),
        "kills": sum(len(t["kills"]) for t in trials),
        "kills_by_moment": dict(where),
        "inflight_calls_charged": sum(t.get("inflight_charged", 0) for t in trials),
        "typical_run_seconds": round(typical, 3),
        "wall_seconds": round(time.monotonic() - started, 1),
        "failures": failed[:10],
    }
    if args.json:
        print(json.dumps(summary))
    else:
        print(json.dumps(summary, indent=2))
    if args.out is not None:
        args.out.write_text(_markdown(summary))
    return 1 if failed else 0


def _markdown(s: dict[str, Any]) -> str:
    moments = "\n".join(f"| killed during {k} | {v} |" for k, v in sorted(s["kills_by_moment"].items()))
    return (
        "# Durable runs under `kill -9` (`python benchmarks/durable_kill.py --runs "
        f"{s['runs']}{' --postgres URL' if s['backend'] == 'postgresql' else ''}`), on {s['backend']}\n\n"
        "| figure | value |\n|---|---|\n"
        f"| runs killed and resumed | {s['runs']} |\n"
        f"| finished, ledger == persisted charges, no limit crossed, no completed call paid twice | "
        f"{s['finished_and_exact']} of {s['runs']} |\n"
        f"| SIGKILLs in all | {s['kills']} |\n{moments}\n"
        f"| calls in flight at a kill, charged at their reserved worst case | {s['inflight_calls_charged']} |\n"
        f"| one run without a kill (warm, seconds) | {s['typical_run_seconds']} |\n"
        f"| wall time (seconds) | {s['wall_seconds']} |\n"
    )


if __name__ == "__main__":
    sys.exit(main())
