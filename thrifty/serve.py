"""``agent serve``: runs over HTTP (FastAPI on uvicorn), every one of them inside the server's budget.

Endpoints (every one needs ``Authorization: Bearer <token>``; the token comes from ``THRIFTY_SERVE_TOKEN``):

===============================  ===========================================================================
``POST /runs``                   submit a task (the task-file schema, as JSON); 202 with the run's id
``GET /runs``                    the runs, newest first (status, stop reason, spend)
``GET /runs/{id}``               one run (its RunResult once it has ended)
``GET /runs/{id}/events``        its events as server-sent events (those so far, then live, ``result`` last)
``POST /runs/{id}/cancel``       stop it at its next step (it ends ``cancelled`` with its best answer)
===============================  ===========================================================================

Budgets: a request's limits can never exceed the server's per-request cap (a limit the request leaves out
is the cap's), and every run spends from one root ledger, the server-wide budget (e.g. dollars per UTC day),
so the runs together cannot pass it either. At most ``max_concurrent`` runs go at once (429 past that).

Errors are JSON ``{"error": {"code": 2, "message": ...}}`` with the CLI's exit code and message (a task that
fails validation gets the same lines ``agent validate`` prints). No key or token appears in a response or
a log: messages pass :func:`thrifty.redact.redact`, and the token is compared, never echoed.

Runs here are not checkpointed (``agent run`` / ``Agent.run(run_id=...)`` are); a task may not name a
``module:function`` tool or strategy (the server would import code a request names).
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError
from sse_starlette.sse import EventSourceResponse

from thrifty.budget import Budget, BudgetExceeded, Ledger
from thrifty.redact import redact
from thrifty.workflows.result import EXIT_BAD_INPUT, EXIT_BUDGET, EXIT_INTERNAL, RunResult

TOKEN_ENV = "THRIFTY_SERVE_TOKEN"
MAX_BODY = 256 * 1024


class ServeSettings(BaseModel):
    """How the server runs: its token, caps and limits."""

    token: str | None = Field(default=None, repr=False)
    request_cap: Budget = Field(default_factory=lambda: Budget(usd=1.0, tool_calls=50, total_tokens=200_000))
    server_budget: Budget = Field(default_factory=lambda: Budget(usd=20.0))
    max_concurrent: int = 8
    max_body: int = MAX_BODY
    keep_runs: int = 1000


class ServeError(Exception):
    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = redact(message)


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def check_start(host: str, token: str | None, allow_no_token: bool) -> None:
    """Refuse to serve without a token, unless on a loopback address with the explicit flag."""
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

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "run_id": self.run_id,
            "task": self.task,
            "status": self.status,
            "created": datetime.fromtimestamp(self.created, UTC).isoformat(),
            "spent": {k: round(v, 8) for k, v in self.ledger.used().items()},
            "events": len(self.events),
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

    def root(self) -> Ledger:
        day = datetime.now(UTC).strftime("%Y-%m-%d")
        if self._root is None or day != self._day:
            self._root, self._day = Ledger(self.settings.server_budget, name=f"server-{day}"), day
        return self._root

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
        return Budget.model_validate({**requested.model_dump(exclude_none=True), **{**cap, **asked}})

    def submit(self, data: Any) -> _Run:
        spec = parse_task(data)
        budget = self.budget_for(spec.budget)
        spec = spec.model_copy(update={"budget": budget})
        from thrifty.workflows.runner import SetupError, new_run_id
        from thrifty.workflows.stream import stream_task

        with self.lock:
            if self.active() >= self.settings.max_concurrent:
                raise ServeError(
                    429,
                    EXIT_BUDGET,
                    f"{self.settings.max_concurrent} runs are going already; try again later",
                )
            run_id = new_run_id()
            root = self.root()
            spent = [dim for dim, left in root.availability().items() if left <= 0]
            if spent:
                raise ServeError(429, EXIT_BUDGET, f"the server's {spent[0]} budget is spent for today")
            try:
                ledger = root.child(budget, name=run_id)
            except BudgetExceeded as exc:
                raise ServeError(429, EXIT_BUDGET, f"the server's budget is spent: {exc}") from None
            stream = stream_task(spec, store=False, ledger=ledger, run_id=run_id)
            run = _Run(run_id, spec.name or "", spec.rendered_question(), time.time(), ledger, stream)
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
                run.events.append(json.loads(event.model_dump_json()))
                if event.kind == "result":
                    run.result = event.result
            assert run.result is not None
            run.status = "cancelled" if run.result.stop_reason == "cancelled" else "finished"
        except setup_error as exc:
            run.status, run.error = "failed", redact(str(exc))
        except Exception as exc:
            run.status, run.error = "failed", redact(f"{type(exc).__name__}: {exc}")
        finally:
            run.ledger.close()
            run.done.set()

    def _forget_old(self) -> None:
        ended = [r for r in self.runs.values() if r.done.is_set()]
        for r in sorted(ended, key=lambda r: r.created)[: max(0, len(self.runs) - self.settings.keep_runs)]:
            del self.runs[r.run_id]

    def get(self, run_id: str) -> _Run:
        run = self.runs.get(run_id)
        if run is None:
            raise ServeError(404, EXIT_BAD_INPUT, f"no run '{run_id}' (fix: GET /runs lists the runs)")
        return run


def parse_task(data: Any) -> Any:
    """A task from a request body, validated as a task file is (the same messages), with no code reference."""
    from thrifty.workflows.spec import TaskSpec, check_resources, render_issues, validation_issues

    if not isinstance(data, dict):
        raise ServeError(400, EXIT_BAD_INPUT, "the request body must be a JSON object of task fields")
    data = {k: v for k, v in data.items() if k != "base_dir"}
    try:
        spec = TaskSpec.model_validate(data)
    except ValidationError as exc:
        raise ServeError(
            400, EXIT_BAD_INPUT, render_issues(validation_issues(exc, None), "request")
        ) from None
    refs = [t.name for t in spec.tools if ":" in t.name] + [spec.strategy.name] * (":" in spec.strategy.name)
    if refs or spec.corpus_path() is not None:
        what = f"'{refs[0]}'" if refs else "a corpus file"
        raise ServeError(
            400,
            EXIT_BAD_INPUT,
            f"request: {what} cannot be used on a server (fix: use built-in tools and strategies, no file paths)",
        )
    issues = check_resources(spec)
    if issues:
        raise ServeError(400, EXIT_BAD_INPUT, render_issues(issues, "request"))
    return spec


def _error(status: int, code: int, message: str) -> Any:
    return JSONResponse({"error": {"code": code, "message": redact(message)}}, status_code=status)


def create_app(settings: ServeSettings) -> Any:
    """The FastAPI application (``uvicorn`` serves it; tests call it with a TestClient)."""
    server = Server(settings)
    app = FastAPI(title="thrifty", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.server = server

    @app.exception_handler(ServeError)
    async def _serve_error(request: Request, exc: ServeError) -> Any:
        return _error(exc.status, exc.code, exc.message)

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> Any:  # never a traceback
        return _error(500, EXIT_INTERNAL, f"internal error: {type(exc).__name__}")

    @app.middleware("http")
    async def _guard(request: Request, call_next: Any) -> Any:
        refused = _refused(request.headers, settings)
        return refused if refused is not None else await call_next(request)

    _add_routes(app, server, settings)
    return app


def _refused(headers: Any, settings: ServeSettings) -> Any:
    """A response refusing the request (wrong token, body too big), or None."""
    expected = settings.token
    if expected:
        given = headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {expected}".encode()):
            return _error(
                401, EXIT_BAD_INPUT, "missing or wrong token (send 'Authorization: Bearer <token>')"
            )
    length = headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > settings.max_body):
        return _error(413, EXIT_BAD_INPUT, f"request body over {settings.max_body} bytes")
    return None


async def _feed(run: _Run) -> AsyncIterator[dict[str, str]]:
    """A run's events as server-sent events: those so far, then each as it comes, until the run ends."""
    sent = 0
    while True:
        while sent < len(run.events):
            event = run.events[sent]
            sent += 1
            yield {"event": event["kind"], "id": str(event["index"]), "data": json.dumps(event)}
        if run.done.is_set() and sent >= len(run.events):
            if run.error:
                yield {"event": "error", "data": json.dumps({"code": EXIT_BAD_INPUT, "message": run.error})}
            return
        await asyncio.sleep(0.05)


def _add_routes(app: Any, server: Server, settings: ServeSettings) -> None:
    @app.post("/runs", status_code=202)
    async def submit(request: Request) -> Any:
        body = await request.body()
        if len(body) > settings.max_body:
            raise ServeError(413, EXIT_BAD_INPUT, f"request body over {settings.max_body} bytes")
        try:
            data = json.loads(body or b"null")
        except ValueError:
            raise ServeError(400, EXIT_BAD_INPUT, "the request body is not JSON") from None
        run = server.submit(data)
        return {"run_id": run.run_id, "status": run.status, "budget": run.ledger.budget.limits()}

    @app.get("/runs")
    async def list_runs() -> Any:
        runs = sorted(server.runs.values(), key=lambda r: r.created, reverse=True)
        root = server.root()
        return {
            "runs": [r.summary() for r in runs],
            "server": {
                "spent": {k: round(v, 8) for k, v in root.used().items()},
                "limits": root.budget.limits(),
            },
        }

    @app.get("/runs/{run_id}")
    async def read(run_id: str) -> Any:
        run = server.get(run_id)
        out = run.summary()
        if run.result is not None:
            out["result"] = json.loads(run.result.model_dump_json())
        return out

    @app.post("/runs/{run_id}/cancel")
    async def cancel(run_id: str) -> Any:
        run = server.get(run_id)
        if run.done.is_set():
            raise ServeError(
                409, EXIT_BAD_INPUT, f"run '{run_id}' has ended ({run.status}); nothing to cancel"
            )
        run.stream.cancel()
        return {"run_id": run_id, "status": "cancelling"}

    @app.get("/runs/{run_id}/events")
    async def events(run_id: str) -> Any:
        return EventSourceResponse(_feed(server.get(run_id)))


def serve(host: str, port: int, settings: ServeSettings, *, allow_no_token: bool = False) -> None:
    """Run the server until stopped (uvicorn; its access log shows paths, never headers or bodies)."""
    import uvicorn

    check_start(host, settings.token, allow_no_token)
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info")
