"""A batch: many task files run as one job, on threads or Ray workers, optionally under one global budget.

Every file is read and checked first as ``agent run`` checks it before spending anything (models and keys,
MCP servers started and listed), and every bad file is reported; one bad file stops the batch before
anything runs, and so does a results file that cannot be opened. Each task then runs
as ``agent run`` would run it; the calling process writes one JSON line per finished task to the results file
and saves the run in the task's run store (so ``agent runs`` lists it), whatever executed it. A rerun on the
same results file skips the files already there: an interrupted batch resumes where it stopped. A run store
that cannot be written costs a task nothing (as with ``agent run``): its result still goes to the results
file, and a warning says so.

With a global budget each task leases its worst case (its own budget's limits; dollars computed from its
token and tool-call limits at its prices when it sets none, an MCP tool's price counted as the highest it
may have) before it starts, and settles what it spent.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from thrifty.budget import Budget, Ledger, Pricing
from thrifty.budget.pool import LeaseClient, lease_too_big, usage_spent
from thrifty.budget.pricing import DEFAULT_TOOL_PRICES
from thrifty.scale.executors import Placement, RunStopper, execute_pooled, run_leased

__all__ = [
    "BatchError",
    "BatchJob",
    "BatchOutcome",
    "BatchWorker",
    "ResultsFileError",
    "load_batch",
    "run_batch",
    "task_reservation",
]


class BatchError(ValueError):
    """A batch that cannot run as asked (no files, a bad task file, a global budget too small for a task)."""


class ResultsFileError(BatchError):
    """The results file cannot be read or written (a folder, a path under a file, no permission)."""

    def __init__(self, path: Path, reason: str, fix: str) -> None:
        super().__init__(f"results file {path}: {reason} (fix: {fix})")
        self.path, self.reason, self.fix = path, reason, fix

    @classmethod
    def of(cls, path: Path, exc: OSError) -> ResultsFileError:
        reason = exc.strerror or str(exc) or type(exc).__name__
        if isinstance(exc, IsADirectoryError) or path.is_dir():
            return cls(path, "is a folder", f"name a file in it, e.g. {path / 'results.jsonl'}")
        if isinstance(exc, NotADirectoryError | FileExistsError):
            return cls(
                path, f"{reason}: a part of the path is a file", "choose a path whose folders are folders"
            )
        return cls(path, reason, "choose a file in a folder you can write")


@dataclass(frozen=True)
class BatchJob:
    """One task file of a batch: its path (as the results file keys it), its validated spec, and its path as
    given (what messages show)."""

    file: str
    spec: Any  # a TaskSpec
    shown: str = ""

    @property
    def name(self) -> str:
        return self.shown or self.file

    @property
    def digest(self) -> str:
        """What the task asks, as read (its validated spec), in 16 hex digits: a results line made from
        another version of the file has another digest."""
        return hashlib.sha256(self.spec.model_dump_json().encode()).hexdigest()[:16]


@dataclass
class BatchOutcome:
    records: list[dict[str, Any]]  # every finished task's line (earlier ones included)
    ran: int  # tasks run by this call
    not_run: list[str]  # files the global budget left unrun
    snapshot: dict[str, Any]  # the global budget's reading ({} without one)
    changed: list[str] = field(default_factory=list[str])  # skipped files edited since their result was saved
    #: the run-store failures (each names the task file and the store): those tasks' results are in the
    #: results file all the same, but ``agent runs`` does not list them
    store_errors: list[str] = field(default_factory=list[str])


def _key(path: str | Path) -> str:
    return str(Path(path).resolve())


def load_batch(
    files: Sequence[str | Path], *, check_models: bool = True, start_servers: bool = True
) -> list[BatchJob]:
    """Read and validate every task file as ``agent run`` does before it spends anything (its models with
    ``check_models``; its MCP servers started, listed and stopped with ``start_servers``), so that no bad
    file is found after others ran. BatchError listing every bad file (each problem with its file, line,
    field and fix), for none given, or for a file given twice."""
    from thrifty.workflows.spec import TaskFileError, load_task

    if not files:
        raise BatchError("no task files given (example: agent batch tasks/*.yaml)")
    jobs: list[BatchJob] = []
    problems: list[tuple[str, str]] = []  # (file, what is wrong with it)
    seen: set[str] = set()
    for file in files:
        if _unmatched_pattern(file):
            problems.append(
                (
                    str(file),
                    f"{file}: no file matches this pattern (a pattern that matches nothing reaches the "
                    "command as it was typed; fix: check the folder and the pattern, e.g. ls tasks/*.yaml)",
                )
            )
            continue
        key = _key(file)
        if key in seen:
            problems.append((str(file), f"{file}: given twice (fix: give each task file once)"))
            continue
        seen.add(key)
        try:
            spec = load_task(file, import_references=True, check_models=check_models)
        except TaskFileError as exc:
            problems.append((str(file), str(exc)))
            continue
        jobs.append(BatchJob(key, spec, str(file)))
    if start_servers:
        problems += check_servers(jobs)
    if problems:
        bad = len({file for file, _ in problems})
        lines = [text for _, text in problems]
        raise BatchError("\n".join([*lines, f"{bad} of {len(files)} task files cannot run: nothing ran"]))
    return jobs


def _unmatched_pattern(file: str | Path) -> bool:
    """Whether ``file`` is a shell pattern (``tasks/*.yaml``) that matched nothing: the shell then passes it
    on as typed, and "no such file" would not say why."""
    text = str(file)
    return any(c in text for c in "*?[") and not Path(text).exists()


def _with_file(name: str, problem: object) -> str:
    """The message (an exception's, or text), starting with the task file's name."""
    text = str(problem)
    return text if text.startswith(f"{name}:") else f"{name}: {text}"


def check_servers(jobs: Sequence[BatchJob]) -> list[tuple[str, str]]:
    """Start each task's MCP servers (a server several tasks share: once), list their tools and stop them:
    the problems (file, message) of servers that cannot start, and of ``budget.per_tool`` /
    ``pricing.tools`` names that are none of the task's tools once the servers' tools are known."""
    from thrifty.workflows.spec import task_tool_names

    problems: list[tuple[str, str]] = []
    listed: dict[str, list[str] | str] = {}  # a server (as configured) -> its tools' names, or its error
    for job in jobs:
        spec = job.spec
        if not spec.mcp_servers:
            continue
        names: set[str] = set()
        failed = False
        for server in spec.mcp_servers:
            key = repr((str(spec.base_dir), sorted(server.model_dump().items())))
            if key not in listed:
                listed[key] = _list_tools(spec, server)
            found = listed[key]
            if isinstance(found, str):
                problems.append((job.name, _with_file(job.name, found)))
                failed = True
            else:
                names.update(found)
        if not failed:  # load_task imported the task's own tools already
            problems += _unknown_tool_names(job, (task_tool_names(spec) or set()) | names)
    return problems


def _list_tools(spec: Any, server: Any) -> list[str] | str:
    """The names of one MCP server's tools (it is started and stopped), or why it cannot start."""
    from thrifty.workflows.runner import SetupError, open_mcp_servers

    try:
        with open_mcp_servers(spec.model_copy(update={"mcp_servers": [server]})) as tools:
            return [t.name for t in tools]
    except SetupError as exc:
        return str(exc)


def _unknown_tool_names(job: BatchJob, tools: set[str]) -> list[tuple[str, str]]:
    from thrifty.workflows.spec import unknown_tool_names

    shown = ", ".join(sorted(tools)) or "none"
    return [
        (
            job.name,
            f"{job.name}: field '{field}.{name}': '{name}' is not a tool of this task once its MCP servers "
            f"started, so this would never apply (fix: use one of its tools: {shown})",
        )
        for field, name in unknown_tool_names(job.spec, tools)
    ]


def _mcp_price(server: Any, pricing: Pricing) -> float:
    """The most one call of an MCP server's tools may cost: its tools' names are known only once it starts
    (unless it lists them), so any configured tool price, and any default one, may be theirs."""
    from thrifty.workflows.spec import mcp_tool_names

    names = mcp_tool_names(server)
    if names is not None:
        return max((pricing.tool_price(name, server.price) for name in names), default=0.0)
    declared = server.price if server.price is not None else max(DEFAULT_TOOL_PRICES.values(), default=0.0)
    return max([declared, *pricing.tools.values()])


def task_reservation(job: BatchJob, global_budget: Budget) -> dict[str, float]:
    """The most ``job`` can spend in each dimension ``global_budget`` limits. BatchError (naming the file and
    the fix) when its budget does not bound one of them."""
    from thrifty.models.gateway import Gateway, ModelError
    from thrifty.workflows.runner import resolve_tools

    spec = job.spec
    limits = spec.budget.limits()
    seconds = limits.pop("seconds", None)
    out = dict(limits)
    wanted = set(global_budget.limits())
    if "usd" in wanted and "usd" not in out:
        try:
            tools, pricing = resolve_tools(spec)
            price = Gateway(Ledger(), pricing).price(spec.model)
        except (ModelError, ValueError, ImportError) as exc:
            raise BatchError(_with_file(job.name, exc)) from None
        per_token = max(price.input_per_token, price.output_per_token)
        tool_usd = max(
            [pricing.tool_price(t.name, t.price) for t in tools]
            + [_mcp_price(server, pricing) for server in spec.mcp_servers],
            default=0.0,
        )
        tokens, calls = out.get("total_tokens"), out.get("tool_calls")
        if (
            (per_token and tokens is None)
            or (tool_usd and calls is None)
            or (price.per_second and not seconds)
        ):
            raise BatchError(
                f"{job.name}: field 'budget': a global USD budget needs each task's worst case; "
                "set budget.usd (or budget.total_tokens and budget.tool_calls) in the task"
            )
        out["usd"] = (
            (tokens or 0.0) * per_token + (calls or 0.0) * tool_usd + price.per_second * (seconds or 0.0)
        )
    missing = sorted(wanted - set(out))
    if missing:
        raise BatchError(
            f"{job.name}: field 'budget': the global budget limits {', '.join(missing)}, which this task does "
            "not: set them in its budget"
        )
    why = lease_too_big(global_budget, out)
    if why is not None:
        raise BatchError(
            f"{job.name}: the global budget is smaller than this task's reservation ({why}): raise the global "
            "budget or lower the task's budget"
        )
    return out


class BatchWorker(RunStopper):
    """Runs a batch's tasks in one process: lease, run (without the store: the caller saves), settle.
    :meth:`stop` (an interrupted batch) ends its runs in flight at their next call."""

    def __init__(
        self,
        pool: LeaseClient | None = None,
        reservations: dict[str, dict[str, float]] | None = None,
        setup: Callable[[], object] | None = None,
    ) -> None:
        super().__init__()
        self.pool = pool
        self.reservations = reservations or {}
        if setup is not None:  # e.g. register a custom provider in each worker process
            setup()

    def run(self, job: BatchJob, lease_id: str) -> Any:
        from thrifty.workflows.runner import SetupError, run_task

        try:
            return run_leased(
                self.pool,
                lease_id,
                self.reservations[job.file] if self.pool is not None else {},
                f"global budget: no room for {job.name} now",
                lambda: run_task(job.spec, store=False, ledger=self.ledger(job.spec.budget)),
                lambda result: usage_spent(result.usage.model_dump()),
            )
        except SetupError as exc:  # nothing was spent; the message names the task file
            raise SetupError(_with_file(job.name, exc)) from None


def _line(job: BatchJob, result: Any) -> dict[str, Any]:
    return {
        "file": job.file,
        "digest": job.digest,
        "task": result.task,
        "run_id": result.run_id,
        "model": result.model,
        "strategy": result.strategy,
        "question": result.question,
        "answer": result.answer,
        "expected_answer": result.expected_answer,
        "stop_reason": result.stop_reason,
        "exit_code": result.exit_code,
        "error": result.error,
        "usage": result.usage.model_dump(),
        "cost": result.cost.model_dump(),
        "finished": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }


def load_lines(path: Path) -> list[dict[str, Any]]:
    """A batch results file's lines (cut or foreign lines skipped; a file run twice counts once).
    ResultsFileError when it cannot be read."""
    try:
        if not path.exists():
            return []
        content = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise ResultsFileError.of(path, exc) from None
    lines: dict[str, dict[str, Any]] = {}
    for text in content.splitlines():
        try:
            line = json.loads(text)
        except json.JSONDecodeError:
            continue
        if isinstance(line, dict) and isinstance(line.get("file"), str):
            lines[line["file"]] = line
    return list(lines.values())


def run_batch(
    jobs: Sequence[BatchJob],
    results_path: str | Path,
    *,
    executor: str = "local",
    concurrency: int = 1,
    workers: int | None = None,
    ray_address: str | None = None,
    global_budget: Budget | None = None,
    store: bool = True,
    on_result: Callable[[dict[str, Any]], None] | None = None,
    worker_setup: Callable[[], object] | None = None,
) -> BatchOutcome:
    """Run the tasks not yet in ``results_path``; return every finished task's line and what was left.

    Raises BatchError / ScaleError before anything runs when the batch cannot run as asked;
    KeyboardInterrupt after saving what finished (a task cancelled by Ctrl-C is not recorded).
    ``worker_setup`` runs once in each worker process before its first task (a picklable function).
    """
    if executor not in ("local", "ray"):
        raise BatchError(f"unknown executor {executor!r}: use local or ray")
    path = Path(results_path)
    from thrifty.models.gateway import transient_failure

    existing = load_lines(path)
    # a task that failed on a transient model error (the server unreachable, a timeout, a 5xx, a rate limit) is
    # not done: it runs again, its new line taking the place of the failed one (as load_lines reads the file)
    done = {line["file"]: line for line in existing if not transient_failure(line)}
    todo = [job for job in jobs if job.file not in done]
    changed = [  # kept as they are (skipped), but said: a line without a digest is from an older version
        job.name
        for job in jobs
        if job.file in done and done[job.file].get("digest") not in (None, job.digest)
    ]
    reservations = {job.file: task_reservation(job, global_budget) for job in jobs} if global_budget else None
    earlier: dict[str, float] = {}
    for line in existing:
        for dim, value in usage_spent(line.get("usage") or {}).items():
            earlier[dim] = earlier.get(dim, 0.0) + value
    try:  # opened before anything runs: a path that cannot be written costs nothing
        path.parent.mkdir(parents=True, exist_ok=True)
        results = path.open("a", encoding="utf-8")
        if _cut_last_line(path):  # a line cut by a crash: the next result must not be glued to it (and lost)
            results.write("\n")
            results.flush()
    except OSError as exc:
        raise ResultsFileError.of(path, exc) from None
    records = {line["file"]: line for line in existing}  # a rerun's line takes the place of the failed one
    ran: list[str] = []
    stores = _Stores(path)
    # Set once the batch is interrupted and stopped waiting for its runs in flight (a second Ctrl-C): one
    # ending later is not a finished task (the resumed batch runs it again), and the results file is closed.
    stopped = threading.Event()

    def on_done(job: BatchJob, result: Any) -> None:
        from thrifty.budget import StopKind

        if stopped.is_set():
            return
        if result.stop_reason == StopKind.CANCELLED.value:
            raise KeyboardInterrupt
        target = job.spec.store_target() if store else None
        if target:
            stores.save(job, target, result)
        line = _line(job, result)
        try:
            results.write(json.dumps(line, ensure_ascii=False, default=str) + "\n")
            results.flush()
        except OSError as exc:
            saved = f"; run {result.run_id} is saved in the run store {target}" if target else ""
            raise ResultsFileError(
                path,
                f"cannot write the result of {job.name}: {exc.strerror or exc}{saved}",
                "free space or choose another results file, then rerun to resume",
            ) from None
        records[job.file] = line
        ran.append(job.file)
        if on_result is not None:
            on_result(line)

    with results:
        try:
            left, snapshot = execute_pooled(
                todo,
                on_done,
                Placement(executor, concurrency, workers, ray_address),
                global_budget,
                earlier,
                lambda pool: partial(BatchWorker, pool, reservations, worker_setup),
            )
        except BaseException:
            stopped.set()
            raise
    return BatchOutcome(
        list(records.values()), len(ran), [job.file for job in left], snapshot, changed, stores.errors
    )


class _Stores:
    """The run stores a batch saves its runs in, opened once each. As `agent run`, a store that fails costs
    the run nothing: the task's result still goes to the results file (``results``) and the batch goes on;
    the failure is said on stderr (once per store) and kept in ``errors``."""

    def __init__(self, results: Path) -> None:
        self.results = results
        self.open: dict[str, Any] = {}
        self.errors: list[str] = []
        self.warned: set[str] = set()

    def save(self, job: BatchJob, target: str, result: Any) -> None:
        from thrifty.store import RunStore, StoreError

        try:
            if target not in self.open:
                self.open[target] = RunStore(target)
            self.open[target].save(result)
        except StoreError as exc:
            # the store as the error shows it (a URL's password hidden), never ``target`` itself
            problem = f"{job.name}: run {result.run_id} is not recorded: {exc}"
            self.errors.append(problem)
            if target not in self.warned:
                self.warned.add(target)
                more = " (not said again for the other tasks of this store)"
                _warn(f"warning: {problem}; its result is kept in {self.results}{more}")


def _cut_last_line(path: Path) -> bool:
    """Whether ``path`` ends in a line without its newline (a write cut by a crash or a full disk)."""
    if not path.is_file() or path.stat().st_size == 0:
        return False
    with path.open("rb") as fh:
        fh.seek(-1, 2)
        return fh.read(1) != b"\n"


def _warn(text: str) -> None:
    """A warning on stderr (the batch goes on). Plain text: the library layers do not use the CLI's console."""
    import sys

    sys.stderr.write(text + "\n")
    sys.stderr.flush()
