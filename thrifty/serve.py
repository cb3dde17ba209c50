"""``agent serve``: runs over HTTP (FastAPI on uvicorn), every one of them inside the server's budget.

Endpoints (all but the page's need ``Authorization: Bearer <token>``; the token is ``THRIFTY_SERVE_TOKEN``):

===============================  ===========================================================================
``POST /runs``                   submit a task (the task-file schema, as JSON); 202 with the run's id
``GET /runs``                    the runs, newest first (status, stop reason, spend), then the runs a
                                 restart cut off that can be resumed (from the checkpoint file)
``GET /runs/{id}``               one run (its RunResult once it has ended)
``GET /runs/{id}/events``        its events as server-sent events (those so far, then live, ``result`` last;
                                 each event's ``id`` is ``SERVER.INDEX``: ``Last-Event-ID`` reads on after it)
``POST /runs/{id}/cancel``       stop it at its next step (it ends ``cancelled`` with its best answer)
``POST /runs/{id}/resume``       continue a paused or interrupted run (``{"budget": {...}}``: raised limits)
``GET /``                        the page that watches runs (no token needed: it holds no data; it asks
                                 for the token and sends it as a header, never in a URL)
===============================  ===========================================================================

Budgets: a request's limits can never exceed the server's per-request cap (a limit the request leaves out
is the cap's), and every run spends from one root ledger, the server-wide budget (e.g. dollars per UTC day),
so the runs together cannot pass it either. At most ``max_concurrent`` runs go at once (429 past that).
With checkpoints, a restarted server reads back what its runs created that UTC day spent (every charge is
journaled as it settles), so a kill or restart does not reset the day's cap; a resumed run's earlier spend is
back in the run's own ledger and not charged to the server's budget twice. (A run that started the day before
counts in that day's budget.)

Errors are JSON ``{"error": {"code": 2, "message": ...}}`` with the CLI's exit code and message (a task that
fails validation gets the same lines ``agent validate`` prints). No key or token appears in a response or
a log: messages pass :func:`thrifty.redact.redact`, and the token is compared, never echoed.

With a checkpoint file (``ServeSettings.checkpoint``; ``agent serve`` uses ``.thrifty/checkpoints.db``) every
run is checkpointed as ``agent run``'s are (the same LangGraph checkpointer and Ledger journal), so a run
paused at its budget (``on_limit: pause``) or cut off by a server restart is resumed over HTTP, paying
nothing twice. A task may not name a ``module:function`` tool or strategy (the server would import code a
request names).

A run belongs to the server, not to the connection that submitted or watches it: a client that disconnects
from ``GET /runs/{id}/events`` stops nothing (``POST /runs/{id}/cancel`` does), nor does one that stops
reading: once a write to it has waited ``event_send_timeout`` seconds (its socket buffers full), its stream
ends and the server drops the connection. When the server shuts down (SIGTERM, Ctrl-C) it takes no new
run and stops each running one at its next model or tool call (the call under way ends and is charged; up to
``shutdown_grace`` seconds): a checkpointed run is left ``interrupted``, resumable with nothing in flight, a
run without checkpoints ends ``cancelled``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import json
import logging
import math
import secrets
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field, ValidationError
from sse_starlette.sse import EventSourceResponse, SendTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send

from thrifty.budget import Budget, BudgetExceeded, ChargeEvent, Ledger
from thrifty.redact import redact, redact_value
from thrifty.workflows.result import EXIT_BAD_INPUT, EXIT_BUDGET, EXIT_INTERNAL, RunResult

if TYPE_CHECKING:
    from thrifty.workflows.yaml_input import Issue

log = logging.getLogger(__name__)
_lifecycle = logging.getLogger("uvicorn.error")  # where uvicorn logs its own start and shutdown

TOKEN_ENV = "THRIFTY_SERVE_TOKEN"
MAX_BODY = 256 * 1024
#: The page's files (package data in ``thrifty/data/serve``), served without a token: they hold no data.
PAGE_FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/page/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/page/style.css": ("style.css", "text/css; charset=utf-8"),
}
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}
#: How many resumable runs of the checkpoint file ``GET /runs`` lists besides the runs in memory.
STORED_LISTED = 100
#: The task fields a server run is resumed from (kept in its checkpoint record).
TASK_META = "serve_task"


class ServeSettings(BaseModel):
    """How the server runs: its token, caps and limits."""

    token: str | None = Field(default=None, repr=False)
    request_cap: Budget = Field(default_factory=lambda: Budget(usd=1.0, tool_calls=50, total_tokens=200_000))
    server_budget: Budget = Field(default_factory=lambda: Budget(usd=20.0))
    max_concurrent: int = 8
    max_body: int = MAX_BODY
    keep_runs: int = 1000
    checkpoint: str | Path | None = None  # a SQLite file or a postgresql:// URL
    """The SQLite file runs are checkpointed in (None: not checkpointed, so not resumable)."""
    shutdown_grace: float = 30.0
    """Seconds a shutdown waits for the running runs to stop at their next model or tool call."""
    event_send_timeout: float = Field(default=30.0, gt=0)
    """Seconds one write of ``GET /runs/{id}/events`` may wait for a client that has stopped reading: past
    that the server ends that stream and closes its connection (the run goes on)."""


class ServerStopping(BaseException):
    """Raised inside a checkpointed run at its next model or tool call once the server shuts down: not an
    Exception nor a KeyboardInterrupt, so the runner does not end the run (as it would a cancelled one) and
    its checkpoint record stays resumable, with nothing in flight."""


class ServeError(Exception):
    """An HTTP error answer; ``retry_after`` (seconds) becomes a ``Retry-After`` header (a 429, a 503)."""

    def __init__(self, status: int, code: int, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = redact(message)
        self.retry_after = retry_after


#: The shortest token a server off a loopback address accepts.
MIN_TOKEN = 16
#: Seconds a client turned away because the server is busy is told to wait (``Retry-After``).
BUSY_RETRY_AFTER = 5


def _until_tomorrow() -> float:
    """Seconds until the next UTC day, when the server's daily budget starts again."""
    now = datetime.now(UTC)
    tomorrow = datetime(now.year, now.month, now.day, tzinfo=UTC) + timedelta(days=1)
    return (tomorrow - now).total_seconds()


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def check_start(host: str, token: str | None, allow_no_token: bool) -> None:
    """Refuse to serve without a token, unless on a loopback address with the explicit flag; refuse a blank
    token (no request could send it), and one shorter than :data:`MIN_TOKEN` off a loopback address."""
    make = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
    if token is not None and not token.strip():
        raise ServeError(
            400, EXIT_BAD_INPUT, f"{TOKEN_ENV} is blank (fix: set it to a secret, e.g. from {make})"
        )
    if token and len(token) < MIN_TOKEN and not is_loopback(host):
        raise ServeError(
            400,
            EXIT_BAD_INPUT,
            f"{TOKEN_ENV} is {len(token)} characters; a server on {host} needs at least {MIN_TOKEN} "
            f"(fix: set it to a longer secret, e.g. from {make})",
        )
    if token:
        return
    if allow_no_token and is_loopback(host):
        return
    if allow_no_token:
        raise ServeError(400, EXIT_BAD_INPUT, f"--no-token is only allowed on a loopback address, not {host}")
    raise ServeError(
        400,
        EXIT_BAD_INPUT,
        f"no token: set {TOKEN_ENV} to a secret every request must send as 'Authorization: Bearer <token>' "
        "(or, on 127.0.0.1 only, pass --no-token)",
    )


@dataclass
class _Run:
    run_id: str
    task: str
    question: str
    created: float
    ledger: Ledger
    stream: Any
    events: list[dict[str, Any]] = field(default_factory=list)
    status: str = "running"
    result: RunResult | None = None
    error: str | None = None
    done: threading.Event = field(default_factory=threading.Event)
    base: int = 0  # events of the run's earlier parts (before a resume): the stream's indexes follow them
    durable: bool = False  # checkpointed: resumable after a restart
    spent: dict[str, float] | None = None  # what it spent, once it has ended (its clock stops there)

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "run_id": self.run_id,
            "task": self.task,
            "status": self.status,
            "created": datetime.fromtimestamp(self.created, UTC).isoformat(),
            "spent": {k: round(v, 8) for k, v in (self.spent or self.ledger.used()).items()},
            "events": len(self.events),
            "question": self.question,
        }
        if self.result is not None:
            out["stop_reason"] = self.result.stop_reason
            out["answer"] = self.result.answer
        if self.error:
            out["error"] = self.error
        return out


class Server:
    """The runs of one server and the root ledger they spend from (a new one each UTC day)."""

    def __init__(self, settings: ServeSettings) -> None:
        self.settings = settings
        self.runs: dict[str, _Run] = {}
        self.lock = threading.Lock()
        self._day = ""
        self._root: Ledger | None = None
        self.stopping = threading.Event()  # set when the server shuts down: no new run, the running stop
        # names this server's events in their SSE ids: a run resumed by another server numbers its events
        # from 0 again, so an id read from an earlier server says nothing about which of these were read
        self.epoch = secrets.token_hex(4)

    def root(self) -> Ledger:
        day = datetime.now(UTC).strftime("%Y-%m-%d")
        if self._root is None or day != self._day:
            root = Ledger(self.settings.server_budget, name=f"server-{day}")
            root.restore(self._spent_on(day))
            self._root, self._day = root, day
        return self._root

    def _spent_on(self, day: str) -> list[ChargeEvent]:
        """What this server's runs created on ``day`` (UTC) spent before a restart, from the checkpoint
        journal (every charge is written as it settles): a restarted server keeps counting the same day's
        cap. Without checkpoints there is nothing to read (and the cap counts from the start)."""
        path = self.settings.checkpoint
        if path is None:
            return []
        from thrifty.store.durable import CheckpointError, DurableStore, checkpoints_missing

        if checkpoints_missing(path):
            return []
        try:
            store = DurableStore(path)
            try:
                return store.charges_since(f"{day}T00:00:00", TASK_META)
            finally:
                store.close()
        except CheckpointError as exc:
            log.warning("the server budget cannot read what was spent before the restart: %s", exc)
            return []

    def active(self) -> int:
        return sum(1 for r in self.runs.values() if r.status == "running")

    def budget_for(self, requested: Budget) -> Budget:
        """The request's limits, each at most the cap's; a limit the request leaves out is the cap's."""
        cap = self.settings.request_cap.limits()
        asked = requested.limits()
        for dim, value in asked.items():
            if dim in cap and value > cap[dim]:
                raise ServeError(
                    400,
                    EXIT_BAD_INPUT,
                    f"field 'budget.{dim}': {value:g} is over this server's per-request cap of {cap[dim]:g} "
                    f"(fix: ask for at most {cap[dim]:g})",
                )
        return Budget.from_limits({**cap, **asked})

    def submit(self, data: Any) -> _Run:
        spec = parse_task(data, self.budget_for)
        durable: dict[str, Any] = {}
        if self.settings.checkpoint is not None:
            task = {k: v for k, v in data.items() if k != "base_dir"}
            durable = {
                "checkpoint": self.settings.checkpoint,
                "checkpoint_meta": {TASK_META: redact_value(task)},
            }
        elif spec.on_limit == "pause":
            raise ServeError(
                400,
                EXIT_BAD_INPUT,
                "request: field 'on_limit': 'pause' needs a server that checkpoints its runs "
                "(fix: start `agent serve` with --checkpoint FILE, or use on_limit: stop)",
            )
        return self._start(None, spec, durable)

    def _start(
        self, run_id: str | None, spec: Any, durable: dict[str, Any], before: _Run | None = None
    ) -> _Run:
        """Start a run (``run_id`` None: a new one) on a child of the server's budget, in a thread."""
        from thrifty.workflows.runner import SetupError, new_run_id
        from thrifty.workflows.stream import stop_on, stream_task

        with self.lock:
            if self.stopping.is_set():
                raise ServeError(
                    503,
                    EXIT_INTERNAL,
                    "the server is shutting down; fix: try again once it is back",
                    retry_after=max(self.settings.shutdown_grace, BUSY_RETRY_AFTER),
                )
            if self.active() >= self.settings.max_concurrent:
                raise ServeError(
                    429,
                    EXIT_BUDGET,
                    f"{self.settings.max_concurrent} runs are going already; try again later",
                    retry_after=BUSY_RETRY_AFTER,
                )
            if run_id is not None and run_id in self.runs and not self.runs[run_id].done.is_set():
                raise ServeError(
                    409,
                    EXIT_BAD_INPUT,
                    f"run '{run_id}' is still running; fix: wait for it, or cancel it first",
                )
            run_id = run_id or new_run_id()
            root = self.root()
            spent = [dim for dim, left in root.availability().items() if left <= 0]
            if spent:
                raise ServeError(
                    429,
                    EXIT_BUDGET,
                    f"the server's {spent[0]} budget is spent for today",
                    retry_after=_until_tomorrow(),
                )
            try:
                ledger = root.child(spec.budget, name=run_id)
            except BudgetExceeded as exc:
                raise ServeError(429, EXIT_BUDGET, f"the server's budget is spent: {exc}") from None
            stream = stream_task(spec, store=False, ledger=ledger, run_id=run_id, **durable)
            if durable:  # at shutdown: stopped at its next call (the call handed back), left resumable
                stop_on(ledger, self.stopping, lambda: ServerStopping("the server is shutting down"))
            run = _Run(run_id, spec.name or "", redact(spec.rendered_question()), time.time(), ledger, stream)
            run.durable = bool(durable)
            if before is not None:  # a resume: its stream continues the events of the run's earlier parts
                run.created, run.events, run.base = before.created, list(before.events), len(before.events)
            self.runs[run_id] = run
            self._forget_old()
        thread = threading.Thread(
            target=self._consume, args=(run, SetupError), daemon=True, name=f"serve-{run_id}"
        )
        thread.start()
        return run

    def _consume(self, run: _Run, setup_error: type[Exception]) -> None:
        try:
            for event in run.stream:
                data = json.loads(event.model_dump_json())
                data["index"] += run.base
                data["text"] = event.describe() if hasattr(event, "describe") else event.kind
                run.events.append(data)
                if event.kind == "result":
                    run.result = event.result
            assert run.result is not None
            run.status = _status_of(run.result)
        except ServerStopping:
            run.status = "interrupted"
            run.error = (
                "the server shut down before the run's next call; fix: resume it once the server is back "
                f"(POST /runs/{run.run_id}/resume)"
            )
        except setup_error as exc:
            run.status, run.error = "failed", redact(str(exc))
        except Exception as exc:
            run.status, run.error = "failed", redact(f"{type(exc).__name__}: {exc}")
        finally:
            run.ledger.close()
            run.spent = run.ledger.used()
            run.done.set()

    def shutdown(self, grace: float) -> list[str]:
        """Take no new run and stop the running ones at their next model or tool call (a checkpointed run
        stays resumable, one without checkpoints is cancelled); wait up to ``grace`` seconds for them. The
        ids of the runs still going after that (a call that outlasted the grace) are returned."""
        with self.lock:
            self.stopping.set()
            running = [r for r in self.runs.values() if not r.done.is_set()]
        if not running:
            return []
        _lifecycle.info("shutting down: stopping %d running runs at their next call", len(running))
        for run in running:
            if not run.durable:
                run.stream.cancel()
        deadline = time.monotonic() + grace
        for run in running:
            run.done.wait(max(0.0, deadline - time.monotonic()))
        left = [r.run_id for r in running if not r.done.is_set()]
        if left:
            _lifecycle.warning(
                "shutting down with %d runs still in a call after %gs: %s", len(left), grace, ", ".join(left)
            )
        return left

    # ------------------------------------------------------------------------------------ resume
    def resume(self, run_id: str, data: Any) -> _Run:
        """Continue a paused or interrupted run from its checkpoint (what ``agent resume`` does), with the
        limits it had or the raised ones asked for (each within the per-request cap). Refused (the stored
        run unchanged) with the CLI's messages when it cannot be."""
        path = self.settings.checkpoint
        if path is None:
            raise ServeError(
                409,
                EXIT_BAD_INPUT,
                "this server does not checkpoint its runs, so none can be resumed "
                "(fix: start `agent serve` with --checkpoint FILE)",
            )
        asked = _resume_budget(data)
        before = self.runs.get(run_id)
        if before is not None and not before.done.is_set():
            raise ServeError(
                409, EXIT_BAD_INPUT, f"run '{run_id}' is still running; fix: wait for it, or cancel it first"
            )
        row, spec, budget = self._resumable(path, run_id, asked, before)
        spec = spec.model_copy(update={"budget": budget})
        durable = {"checkpoint": path, "resume": True, "checkpoint_meta": row["meta"]}
        return self._start(run_id, spec, durable, before)

    def _resumable(
        self, path: str | Path, run_id: str, asked: dict[str, float], before: _Run | None
    ) -> tuple[dict[str, Any], Any, Budget]:
        """The run's record, task and budget, once the checks a resume makes have passed."""
        from thrifty.store.durable import CheckpointError, DurableStore, checkpoints_missing
        from thrifty.workflows.durable import check_resumable

        if checkpoints_missing(path):
            raise ServeError(404, EXIT_BAD_INPUT, _unknown(run_id))
        try:
            store = DurableStore(path)
            try:
                row = store.get(run_id)
                if row is None:
                    raise ServeError(404, EXIT_BAD_INPUT, _unknown(run_id))
                task = row["meta"].get(TASK_META)
                if not isinstance(task, dict):
                    raise ServeError(
                        409,
                        EXIT_BAD_INPUT,
                        f"run '{run_id}' was not started by `agent serve`; fix: resume it with `agent resume`",
                    )
                spec = parse_task(task)
                started = (
                    before.ledger.budget.limits() if before is not None else row["meta"].get("budget", {})
                )
                budget = self.budget_for(Budget.from_limits({**started, **asked}))
                check_resumable(store, row, run_id, Ledger(budget, name=run_id))
                _check_checkpoint(store, run_id, spec)
            finally:
                store.close()
        except CheckpointError as exc:
            raise ServeError(409, EXIT_BAD_INPUT, str(exc)) from None
        return row, spec, budget

    def stored_run(self, run_id: str) -> dict[str, Any] | None:
        """The summary of a run a restart cut off (None: the run is in memory, or not resumable)."""
        if run_id in self.runs:
            return None
        return next((r for r in self.stored() if r["run_id"] == run_id), None)

    def stored(self) -> list[dict[str, Any]]:
        """This server's runs in its checkpoint file that can be resumed and are not in memory (a restart
        left them), as summaries."""
        from thrifty.store.durable import CheckpointError, DurableStore, checkpoints_missing

        path = self.settings.checkpoint
        if path is None or checkpoints_missing(path):
            return []

        out: list[dict[str, Any]] = []
        try:
            store = DurableStore(path)
            try:
                for row in store.runs(unfinished=True, limit=min(self.settings.keep_runs, STORED_LISTED)):
                    if row["run_id"] in self.runs:
                        continue
                    record = store.get(row["run_id"])
                    if record is None or TASK_META not in record["meta"] or record["alive"]:
                        continue
                    out.append(
                        {
                            "run_id": row["run_id"],
                            "task": row["task"],
                            "question": row["question"],
                            "status": row["status"],
                            "created": row["created"],
                            "spent": {k: round(v, 8) for k, v in row["spent"].items()},
                            "stop_reason": row["stop_reason"],
                            "events": 0,
                        }
                    )
            finally:
                store.close()
        except CheckpointError:
            return []
        return out

    def listed(self) -> list[_Run]:
        """The runs in memory, newest first: a copy made under the lock (a resume, in a worker thread, adds
        and drops runs while the event loop lists them)."""
        with self.lock:
            runs = list(self.runs.values())
        return sorted(runs, key=lambda r: r.created, reverse=True)

    def _forget_old(self) -> None:
        ended = [r for r in self.runs.values() if r.done.is_set()]
        for r in sorted(ended, key=lambda r: r.created)[: max(0, len(self.runs) - self.settings.keep_runs)]:
            del self.runs[r.run_id]

    def abandon(self, run_id: str) -> str:
        """Cancel a run that is not running but could be resumed (paused, or cut off by a restart or a
        shutdown): its checkpoint record is marked finished, ``cancelled``, so it can no longer be resumed.
        Returns the run's status; 409 for a run that has ended, 404 for an unknown one."""
        from thrifty.budget import StopKind, stop_reason
        from thrifty.store.durable import FINISHED, DurableStore

        with self.lock:
            run = self.runs.get(run_id)
            resumable = run is not None and run.durable and run.status in ("paused", "interrupted")
            if run is not None and not resumable:
                raise ServeError(
                    409, EXIT_BAD_INPUT, f"run '{run_id}' has ended ({run.status}); nothing to cancel"
                )
            if run is None and self.stored_run(run_id) is None:
                raise ServeError(404, EXIT_BAD_INPUT, f"no run '{run_id}' (fix: GET /runs lists the runs)")
            assert self.settings.checkpoint is not None  # a resumable run is a checkpointed one
            store = DurableStore(self.settings.checkpoint)
            try:
                store.set_status(run_id, FINISHED, stop_reason=stop_reason(StopKind.CANCELLED))
            finally:
                store.close()
            if run is not None:
                run.status = "cancelled"
            return "cancelled"

    def get(self, run_id: str) -> _Run:
        run = self.runs.get(run_id)
        if run is None:
            raise ServeError(404, EXIT_BAD_INPUT, f"no run '{run_id}' (fix: GET /runs lists the runs)")
        return run


#: How much of each question ``GET /runs`` shows (a 250 KB question made a 5 MB list at 20 runs).
LISTED_QUESTION_CHARS = 500


def _shortened(question: str) -> str:
    from thrifty.agents.events import shorten

    return question if len(question) <= LISTED_QUESTION_CHARS else shorten(question, LISTED_QUESTION_CHARS)


def _status_of(result: RunResult) -> str:
    if result.paused:
        return "paused"
    return "cancelled" if result.stop_reason == "cancelled" else "finished"


def _unknown(run_id: str) -> str:
    return f"no run '{run_id}' on this server; fix: GET /runs lists the runs that can be resumed"


def _resume_budget(data: Any) -> dict[str, float]:
    """The raised limits a resume request asks for (``{"budget": {...}}``, every field optional)."""
    if data is None:
        return {}
    if not isinstance(data, dict) or set(data) - {"budget"}:
        extra = sorted(set(data) - {"budget"}) if isinstance(data, dict) else []
        named = f" (unknown field{'s' * (len(extra) > 1)} {', '.join(map(repr, extra))})" if extra else ""
        raise ServeError(
            400,
            EXIT_BAD_INPUT,
            f'the request body must be empty or {{"budget": {{...}}}} (the limits to raise){named}',
        )
    try:
        return Budget.model_validate(data.get("budget") or {}).limits()
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(["budget", *(str(p) for p in first["loc"])])
        if first["type"] == "extra_forbidden":
            fix = f"use the fields of a budget: {', '.join(Budget.model_fields)}"
        elif not first["loc"]:
            fix = 'give a mapping of limits, e.g. {"budget": {"tool_calls": 10}}'
        else:
            fix = "a positive limit"
        raise ServeError(
            400, EXIT_BAD_INPUT, f"request: field '{where}': {first['msg']} (fix: {fix})"
        ) from None


def _check_checkpoint(store: Any, run_id: str, spec: Any) -> None:
    """The run's last checkpoint can be read back into its strategy's graph (what a resume reads first:
    the same check, so the same CheckpointError)."""
    from thrifty.workflows.durable import DurableRun
    from thrifty.workflows.graph import Workflow
    from thrifty.workflows.options import parse_options
    from thrifty.workflows.strategies import get_builder

    try:
        builder = get_builder(spec.strategy.name)
        graph = builder(parse_options(spec.strategy.name, builder, spec.strategy.options))
    except (ValueError, ImportError, AttributeError) as exc:
        raise ServeError(400, EXIT_BAD_INPUT, f"request: strategy '{spec.strategy.name}': {exc}") from None
    if isinstance(graph, Workflow):
        graph = graph.compile()
    durable = DurableRun(store, run_id, journal=cast(Any, None), resuming=True)
    durable.saved_state(durable.attach(graph))


def parse_task(data: Any, budget_for: Callable[[Budget], Budget] | None = None) -> Any:
    """A task from a request body, validated as a task file is (the same messages), with no code reference.
    ``budget_for``: the budget the run will have (the server's caps), set before the models are checked (a
    dollar cap needs a model with a price)."""
    from thrifty.workflows.spec import (
        TaskSpec,
        check_resources,
        model_issues,
        render_issues,
        validation_issues,
    )

    if not isinstance(data, dict):
        raise ServeError(400, EXIT_BAD_INPUT, "the request body must be a JSON object of task fields")
    data = {k: v for k, v in data.items() if k != "base_dir"}
    try:
        spec = TaskSpec.model_validate(data)
    except ValidationError as exc:
        raise ServeError(
            400, EXIT_BAD_INPUT, render_issues(_for_a_request(validation_issues(exc, None)), "request")
        ) from None
    refs = [t.name for t in spec.tools if ":" in t.name] + [spec.strategy.name] * (":" in spec.strategy.name)
    if refs or spec.corpus_path() is not None:
        what = f"'{refs[0]}'" if refs else "a corpus file"
        raise ServeError(
            400,
            EXIT_BAD_INPUT,
            f"request: {what} cannot be used on a server (fix: use built-in tools and strategies, no file paths)",
        )
    server_only = _server_refusal(spec, data)
    if server_only:
        raise ServeError(400, EXIT_BAD_INPUT, f"request: {server_only}")
    if budget_for is not None:
        spec = spec.model_copy(update={"budget": budget_for(spec.budget)})
    # a model the run would refuse is a 400 here, not an accepted run that then fails
    issues = check_resources(spec) or model_issues(spec)
    if issues:
        raise ServeError(400, EXIT_BAD_INPUT, render_issues(issues, "request"))
    return spec


def _for_a_request(issues: list[Issue]) -> list[Issue]:
    """A task file's messages as a request's: a server refuses every ``module:function`` tool or strategy, so
    an unknown (or malformed) one is told the built-ins, never to write a reference."""
    from thrifty.workflows.spec import BUILTIN_TOOLS
    from thrifty.workflows.strategies import STRATEGIES

    out: list[Issue] = []
    for issue in issues:
        if "module:function" not in issue.message + issue.fix:
            out.append(issue)
            continue
        field = issue.field or ""
        kind, names = ("strategy", STRATEGIES) if field.startswith("strategy") else ("tool", BUILTIN_TOOLS)
        message, malformed, _ = issue.message.partition(" is not a reference of the form")
        if malformed:  # 'x:y!' is not a reference ...: to a server, just not one of its tools
            message = f"unknown {kind} {message}"
        fix = f"use one of {', '.join(names)}; a server runs only built-in tools and strategies"
        out.append(replace(issue, message=message, fix=fix))
    return out


def _server_refusal(spec: Any, data: dict[str, Any]) -> str | None:
    """What a request may not ask of a server though a task file may (None: nothing): run a program, read
    or write a file of the server's, choose the hosts it reaches or sends its keys to, or price a model or
    tool below what it costs (the server's dollar caps count those prices)."""
    if spec.model_settings.api_base:
        return (
            "field 'model_settings.api_base': a request cannot choose where the server sends its model "
            "requests and provider keys (fix: drop api_base; the server's own provider settings apply)"
        )
    output = data.get("output")
    if isinstance(output, dict) and "store" in output:
        return (
            "field 'output.store': a request cannot choose where runs are recorded on a server "
            "(fix: drop output.store; GET /runs/{id} returns the run)"
        )
    for i, tool in enumerate(spec.tools):
        for option in ("allow_private", "allow_hosts", "api_bases"):
            if getattr(tool, option):
                return (
                    f"field 'tools.{i}.{option}': a request cannot choose which hosts the server reaches "
                    f"or sends its search keys to (fix: drop {option})"
                )
        if tool.price is not None and _tool_underpriced(tool.name, tool.price):
            return f"field 'tools.{i}.price': {_TOOL_PRICE_FIX}"
    for name, price in spec.pricing.tools.items():
        if _tool_underpriced(name, price):
            return f"field 'pricing.tools.{name}': {_TOOL_PRICE_FIX}"
    return (
        _model_path(spec)
        or _mcp_refusal(spec)
        or _memory_refusal(spec, data)
        or _underpriced(spec.pricing.models)
    )


def _mcp_refusal(spec: Any) -> str | None:
    """An MCP server a request may not name: a program to run, or a URL on the server's own network."""
    for i, mcp in enumerate(spec.mcp_servers):
        if mcp.command:
            return (
                f"field 'mcp_servers.{i}.command': a stdio MCP server would run a program on the "
                "server (fix: give its url: http(s)://host/mcp of a running MCP server)"
            )
        private = _private_url(mcp.url)
        if private:
            return (
                f"field 'mcp_servers.{i}.url': {private}; a request cannot make the server reach its own "
                "network (fix: give the url of an MCP server on a public address)"
            )
    return None


def _memory_refusal(spec: Any, data: dict[str, Any]) -> str | None:
    """Memory options a request may not use: files read, or a store chosen, on the server."""
    memory = data.get("memory")
    if spec.memory is None or not isinstance(memory, dict):
        return None
    if spec.memory.ingest:
        return "field 'memory.ingest': files cannot be read on a server (fix: drop memory.ingest)"
    if "store" in memory:
        return (
            "field 'memory.store': a request cannot choose where memory is stored on a server "
            "(fix: drop memory.store: the server's own is used)"
        )
    if isinstance(spec.memory.router, str) and spec.memory.router.startswith("learned:"):
        return (
            "field 'memory.router': 'learned:PATH' reads a file on the server "
            "(fix: use learned, rules, low, mid or high)"
        )
    return None


def _private_url(url: str | None) -> str | None:
    """Why an MCP server's URL may not be reached from a request (it resolves to a private, loopback or
    link-local address: what ``read_url`` refuses too), or None. Checked when the request arrives."""
    from thrifty.tools.web import UrlPolicy, WebError, system_resolver

    if not url:
        return None
    try:
        UrlPolicy().check(url, system_resolver)
    except WebError as exc:
        return str(exc).removeprefix("refused: ")
    return None


def _model_path(spec: Any) -> str | None:
    """A model named by a path on the server (``local/<file>.gguf``, ``hf/<directory>``): a request would
    load, or probe for, the server's files (None: every model is a name)."""
    from thrifty.models import hf, local

    routing = spec.routing()
    named = [("model", spec.model)] + [("models", m) for m in (routing.all_models() if routing else [])]
    if spec.memory is not None and spec.memory.model:
        named.append(("memory.model", spec.memory.model))
    by_path = {"local": local.names_a_path, "hf": hf.names_a_path}
    for where, model in named:
        reads = by_path.get(model.partition("/")[0])
        if reads is not None and reads(model):
            return (
                f"field '{where}': {model!r} names a file or directory on the server "
                "(fix: use a model name, e.g. local/smollm2 or openai/<name>)"
            )
    return None


_TOOL_PRICE_FIX = (
    "a request may not lower a built-in tool's price on a server (the server's dollar caps count it) "
    "(fix: drop the price, or ask for at least the tool's own)"
)


def _tool_underpriced(name: str, price: float) -> bool:
    """A request's price for a built-in tool below its own (web_search's depends on its provider: any
    price a request gives it is refused)."""
    from thrifty.budget.pricing import DEFAULT_TOOL_PRICES

    if name == "web_search":
        return True
    return price < DEFAULT_TOOL_PRICES.get(name, 0.0) - 1e-15


def _underpriced(prices: dict[str, Any]) -> str | None:
    """A request's model price below the model's known price, or for a model with no known price (either
    would spend the server's dollars uncounted), or None."""
    from thrifty.models.registry import provider_for

    for model, asked in prices.items():
        try:
            known = provider_for(model).default_price(model) if "/" in model else None
        except Exception:  # an unknown provider: the model check reports it
            continue
        if known is None:
            return (
                f"field 'pricing.models.{model}': the server has no price of its own for this model, so it "
                "cannot check the one a request gives, and its dollar caps would count what the request "
                "says (fix: use a model with a known price)"
            )
        floors = {
            "input_per_token": known.input_per_token,
            "output_per_token": known.output_per_token,
            "cached_input_per_token": known.cached_input_per_token
            if known.cached_input_per_token is not None
            else known.input_per_token,
            "per_second": known.per_second,
        }
        for name, floor in floors.items():
            value = getattr(asked, name)
            if name == "cached_input_per_token" and value is None:
                continue  # its input rate applies, checked with input_per_token
            if float(value) < float(floor) - 1e-15:
                return (
                    f"field 'pricing.models.{model}.{name}': {float(value):g} is below the model's known "
                    f"price ({float(floor):g}) (fix: drop the price, or ask for at least the known one)"
                )
    return None


def _error(status: int, code: int, message: str, retry_after: float | None = None) -> Any:
    headers = {"Retry-After": str(max(1, math.ceil(retry_after)))} if retry_after is not None else None
    return JSONResponse(
        {"error": {"code": code, "message": redact(message)}}, status_code=status, headers=headers
    )


def create_app(settings: ServeSettings) -> Any:
    """The FastAPI application (``uvicorn`` serves it; tests call it with a TestClient)."""
    server = Server(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        # uvicorn has stopped taking connections (SIGTERM, Ctrl-C): stop the runs before the process ends
        await asyncio.to_thread(server.shutdown, settings.shutdown_grace)

    app = FastAPI(title="thrifty", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.server = server

    @app.exception_handler(ServeError)
    async def _serve_error(request: Request, exc: ServeError) -> Any:
        message = exc.message  # a client that put the server's token in its body is not shown it back
        if settings.token:
            message = message.replace(settings.token, "***")
        return _error(exc.status, exc.code, message, exc.retry_after)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Any:  # an unknown path, a method
        return _error(exc.status_code, EXIT_BAD_INPUT, f"{request.method} {request.url.path}: {exc.detail}")

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> Any:  # never a traceback
        return _error(500, EXIT_INTERNAL, f"internal error: {type(exc).__name__}")

    app.add_middleware(_Guard, settings=settings)
    _add_routes(app, server, settings)
    return app


class _Guard:
    """Refuses a request before a route reads it (a wrong token, a body too big). A plain ASGI middleware,
    not ``@app.middleware("http")``: that one relays a response's writes through a task of its own, which a
    client that stops reading blocks forever, out of reach of the event stream's send timeout."""

    def __init__(self, app: ASGIApp, settings: ServeSettings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            request = Request(scope)
            page = request.method in ("GET", "HEAD") and request.url.path in PAGE_FILES
            refused = _refused(request.headers, self.settings, check_token=not page)
            if refused is not None:
                await refused(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _refused(headers: Any, settings: ServeSettings, *, check_token: bool = True) -> Any:
    """A response refusing the request (wrong token, body too big), or None."""
    expected = settings.token
    if expected and check_token:
        given = headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {expected}".encode()):
            return _error(
                401, EXIT_BAD_INPUT, "missing or wrong token (send 'Authorization: Bearer <token>')"
            )
    length = headers.get("content-length")
    if length is not None and not length.isdigit():
        return _error(
            400, EXIT_BAD_INPUT, f"the Content-Length header {length[:40]!r} is not a number of bytes"
        )
    if length is not None and int(length) > settings.max_body:
        return _error(413, EXIT_BAD_INPUT, f"request body over {settings.max_body} bytes")
    return None


async def _body(request: Request, limit: int) -> bytes:
    """The request's body, read no further than ``limit`` bytes (413 past it): a chunked body has no
    Content-Length for the guard to check, and is not read whole into memory first."""
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise ServeError(413, EXIT_BAD_INPUT, f"request body over {limit} bytes")
    except ClientDisconnect:  # nobody to answer; not a server error (no traceback in the log)
        raise ServeError(
            400, EXIT_BAD_INPUT, "the client disconnected before sending its whole body"
        ) from None
    return bytes(body)


def _json(body: bytes) -> Any:
    """A request body's JSON (None for an empty body): 400 when it is not JSON, nests too deep to read, or
    holds text that is not Unicode (a lone surrogate ``\\ud800``, which no answer could then be written with)."""
    if not body.strip():
        return None
    try:
        data = json.loads(body)
    except ValueError:
        raise ServeError(400, EXIT_BAD_INPUT, "the request body is not JSON") from None
    except RecursionError:
        raise ServeError(400, EXIT_BAD_INPUT, "the request body nests too deep to read") from None
    try:
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise ServeError(
            400,
            EXIT_BAD_INPUT,
            "the request body holds text that is not valid Unicode (a lone surrogate escape such as "
            "\\ud800; fix: send the text as UTF-8, escaping only whole characters)",
        ) from None
    return data


async def _feed(run: _Run, epoch: str, start: int = 0) -> AsyncIterator[dict[str, str]]:
    """A run's events as server-sent events from index ``start``: those so far, then each as it comes,
    until the run ends. Each event's SSE ``id`` is ``EPOCH.INDEX`` (the server's epoch), so a client that
    reconnects with ``Last-Event-ID`` (:func:`_resume_from`) reads on from the next one instead of from
    the start."""
    sent = start
    while True:
        while sent < len(run.events):
            event = run.events[sent]
            sent += 1
            yield {"event": event["kind"], "id": f"{epoch}.{event['index']}", "data": json.dumps(event)}
        if run.done.is_set() and sent >= len(run.events):
            if run.error:
                yield {"event": "error", "data": json.dumps({"code": EXIT_BAD_INPUT, "message": run.error})}
            return
        await asyncio.sleep(0.05)


def _add_routes(app: Any, server: Server, settings: ServeSettings) -> None:
    @app.post("/runs", status_code=202)
    async def submit(request: Request) -> Any:
        data = _json(await _body(request, settings.max_body))
        run = await asyncio.to_thread(server.submit, data)  # checks the task (models, tools): off the loop
        return {"run_id": run.run_id, "status": run.status, "budget": run.ledger.budget.limits()}

    @app.get("/runs")
    async def list_runs() -> Any:
        runs = server.listed()
        stored = await asyncio.to_thread(server.stored)
        root = server.root()
        listed = [r.summary() for r in runs] + stored
        for (
            run
        ) in listed:  # a page of runs stays small whatever was asked; GET /runs/{id} has the whole question
            run["question"] = _shortened(run["question"])
        return {
            "runs": listed,
            "server": {
                "spent": {k: round(v, 8) for k, v in root.used().items()},
                "limits": root.budget.limits(),
            },
        }

    @app.get("/runs/{run_id}")
    async def read(run_id: str) -> Any:
        stored = await asyncio.to_thread(server.stored_run, run_id)
        if stored is not None:
            return stored
        run = server.get(run_id)
        out = run.summary()
        if run.result is not None:
            out["result"] = json.loads(run.result.model_dump_json())
        return out

    _add_run_routes(app, server)
    for path, (name, media_type) in PAGE_FILES.items():
        app.add_api_route(path, _page_file(name, media_type), methods=["GET"], include_in_schema=False)


def _add_run_routes(app: Any, server: Server) -> None:
    """What can be done to one run: cancel it, resume it, read its events."""

    @app.post("/runs/{run_id}/cancel")
    async def cancel(run_id: str) -> Any:
        run = server.runs.get(run_id)
        if run is not None and not run.done.is_set():
            run.stream.cancel()
            return {"run_id": run_id, "status": "cancelling"}
        # paused, or cut off by a restart: cancelled for good (no longer resumable); else 409 / 404
        return {"run_id": run_id, "status": await asyncio.to_thread(server.abandon, run_id)}

    @app.post("/runs/{run_id}/resume", status_code=202)
    async def resume(run_id: str, request: Request) -> Any:
        data = _json(await _body(request, server.settings.max_body))
        run = await asyncio.to_thread(server.resume, run_id, data)
        return {"run_id": run.run_id, "status": run.status, "budget": run.ledger.budget.limits()}

    @app.get("/runs/{run_id}/events")
    async def events(run_id: str, request: Request) -> Any:
        if await asyncio.to_thread(server.stored_run, run_id) is not None:
            raise ServeError(
                409,
                EXIT_BAD_INPUT,
                f"run '{run_id}' was cut off by a server restart and its events went with that server; "
                f"fix: resume it (POST /runs/{run_id}/resume) and read the events from there",
            )
        run = server.get(run_id)
        start = _resume_from(request.headers.get("last-event-id"), run_id, server.epoch)
        return _EventStream(run, server.settings.event_send_timeout, start, server.epoch)


def _resume_from(last_event_id: str | None, run_id: str, epoch: str) -> int:
    """The index to stream from for a client's ``Last-Event-ID`` header (``EPOCH.INDEX``, or a bare
    index): the event after it; 0 without one, or for an id from another server (a restart: none of this
    server's events were read)."""
    text = (last_event_id or "").strip()
    if not text:
        return 0
    where, _, index = text.rpartition(".")
    if not (index.isascii() and index.isdigit()) or (where and not where.isalnum()):
        raise ServeError(
            400,
            EXIT_BAD_INPUT,
            f"Last-Event-ID {text[:40]!r} is not an event of run '{run_id}' (its events' ids are "
            f"{epoch}.0, {epoch}.1, ...); fix: send the id of the last event read, or no Last-Event-ID to "
            "read from the start",
        )
    return int(index) + 1 if where in ("", epoch) else 0


class _EventStream(EventSourceResponse):
    """A run's events (:func:`_feed`) to one client. A write (an event, a ping) that waits past
    ``send_timeout`` for a client that has stopped reading (its socket buffers full) ends this stream: its
    generator is closed and the server drops the connection. The run goes on; other clients are untouched."""

    def __init__(self, run: _Run, send_timeout: float, start: int, epoch: str) -> None:
        super().__init__(_feed(run, epoch, start), send_timeout=send_timeout)
        self.run_id = run.run_id

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        except SendTimeoutError:  # nothing more can be sent: returning leaves uvicorn to close the connection
            log.warning(
                "GET /runs/%s/events: the client has stopped reading (a write waited %gs); its event stream "
                "is closed (the run goes on)",
                self.run_id,
                self.send_timeout,
            )


def _page_file(name: str, media_type: str) -> Any:
    """A handler serving one file of the page (read from the package once)."""
    content = (resources.files("thrifty") / "data" / "serve" / name).read_bytes()

    async def handler() -> Any:
        return Response(content, media_type=media_type, headers=PAGE_HEADERS)

    return handler


def serve(host: str, port: int, settings: ServeSettings, *, allow_no_token: bool = False) -> None:
    """Run the server until stopped (uvicorn; its access log shows paths, never headers or bodies)."""
    import uvicorn

    check_start(host, settings.token, allow_no_token)
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info")
