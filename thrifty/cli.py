"""The ``agent`` command: run, validate and describe task files.

Exit codes: 0 answered, 4 stopped by the budget or the step limit (the answer is still printed),
2 bad input (task file, model, tool), 1 internal error or cancelled, 130 a checkpointed run stopped with
Ctrl-C (resumable with `agent resume`).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from thrifty.agents.events import (
    ExpandEvent,
    PlanEvent,
    TraceEvent,
    TreeEvent,
    VerdictEvent,
    shorten,
)
from thrifty.agents.records import ChecklistItem, TreeNode
from thrifty.budget import Budget, Ledger
from thrifty.console import err, fail, out
from thrifty.redact import redact, redact_value
from thrifty.workflows.result import EXIT_BAD_INPUT, EXIT_BUDGET, EXIT_INTERNAL, RunResult


def _error(message: str, code: int = EXIT_BAD_INPUT) -> typer.Exit:
    """``fail`` with the message scrubbed (thrifty.redact): a key pasted into a task file or an option (as a
    model name, a tool, a path) is never echoed to the terminal."""
    return fail(redact(message), code)


#: The exit code of a run stopped with Ctrl-C and left resumable (as `agent batch` and `agent bench` use it).
EXIT_INTERRUPTED = 130

app = typer.Typer(
    name="agent",
    help="thrifty: LLM agents that spend wisely. Run a task file within a budget.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_DIM_LABELS = {
    "input_tokens": "input tokens",
    "output_tokens": "output tokens",
    "total_tokens": "tokens",
    "usd": "USD",
    "model_requests": "model calls",
    "tool_calls": "tool calls",
    "memory_ops": "memory operations",
    "seconds": "seconds",
}


def _label(dim: str) -> str:
    return _DIM_LABELS.get(dim, dim.replace("tool:", "") + " calls")


def _fmt(dim: str, value: float) -> str:
    if abs(value) >= 1e9:  # a limit meant as "no limit" (1e26): its 27 digits say nothing
        return {"usd": "$", "seconds": ""}.get(dim, "") + f"{value:.4g}" + ("s" if dim == "seconds" else "")
    if dim == "usd":
        return f"${value:.4f}"
    if dim == "seconds":
        return f"{value:.1f}s"
    return f"{value:g}"


def _exact(dim: str, value: float) -> str:
    """A spend to as many digits as tell it from its limit (an overrun may be a fraction of a cent)."""
    return f"${value:.6g}" if dim == "usd" else f"{value:.6g}"


class LiveView:
    """Step, last action and one bar per budget dimension, redrawn while the run goes on."""

    def __init__(self, ledger: Ledger, title: str) -> None:
        self.ledger = ledger
        self.title = title
        self.step = 0
        self.last = "starting…"
        self.regime = "HIGH"
        self.lines: deque[str] = deque(maxlen=6)
        self.plan: list[ChecklistItem] = []
        self.decisions: deque[str] = deque(maxlen=4)
        self.tree_nodes: list[TreeNode] = [TreeNode(id=0, parent=None, depth=0, value=0.5)]
        self.tree_path: list[int] = []
        self._lock = threading.Lock()

    def on_trace(self, event: TraceEvent) -> None:
        with self._lock:
            self.step = event.step or self.step
            self.regime = event.regime or self.regime
            if isinstance(event, (PlanEvent, VerdictEvent)) and event.items:
                self.plan = list(event.items)
            if isinstance(event, ExpandEvent):
                depth = next((n.depth + 1 for n in self.tree_nodes if n.id == event.selected), 1)
                self.tree_nodes.extend(
                    TreeNode(parent=event.selected, depth=depth, **c.model_dump()) for c in event.children
                )
            if isinstance(event, TreeEvent):
                self.tree_nodes = list(event.nodes)
                self.tree_path = list(event.path)
            if isinstance(event, VerdictEvent):
                self.decisions.append(f"#{event.attempt} {event.answer!s} → {event.decision}")
            self.last = event.describe()
            self.lines.append(f"[dim]#{self.step}[/dim] {escape(self.last)}")

    def __rich__(self) -> Panel:
        with self._lock:
            table = Table.grid(padding=(0, 1))
            table.add_column(justify="right", style="bold")
            table.add_column(width=30)
            table.add_column()
            used = self.ledger.used()
            for dim in [*self.ledger.limits, *(["seconds"] if self.ledger.limit("seconds") else [])]:
                limit = self.ledger.limit(dim) or 0
                spent = used.get(dim, 0.0)
                table.add_row(
                    _label(dim),
                    ProgressBar(total=limit or 1, completed=min(spent, limit), width=30),
                    f"{_fmt(dim, spent)} / {_fmt(dim, limit)}",
                )
            if not self.ledger.limits:
                table.add_row("budget", Text("unlimited"), "")
            head = Text.from_markup(
                f"step [bold]{self.step}[/bold]   regime [bold]{self.regime}[/bold]   "
                f"spent [bold]${self.ledger.usd_spent:.4f}[/bold]   {self.ledger.elapsed():.1f}s"
            )
            parts: list[Any] = [head, table]
            if self.plan:
                marks = {
                    "pending": "[ ]",
                    "done": "[green][x][/green]",
                    "failed": "[red][!][/red]",
                    "partial": "[yellow][~][/yellow]",
                }
                plan = "\n".join(
                    f"{marks[i.status]} {escape(i.text)} [dim]({i.kind})[/dim]" for i in self.plan
                )
                parts.append(Text.from_markup("[bold]plan[/bold]\n" + plan))
            if len(self.tree_nodes) > 1:
                parts.append(
                    Text.from_markup("[bold]tree[/bold]\n" + render_tree(self.tree_nodes, self.tree_path))
                )
            if self.decisions:
                parts.append(Text.from_markup("[bold]verifier[/bold] " + escape("; ".join(self.decisions))))
            parts.append(Text.from_markup("\n".join(self.lines) or "[dim]thinking…[/dim]"))
            return Panel(Group(*parts), title=self.title, border_style="cyan")


def render_result(result: RunResult, console: Console) -> None:
    """The final summary: answer, why it stopped, what it spent."""
    colour = "green" if result.exit_code == 0 else ("yellow" if result.exit_code == 4 else "red")
    body = Text()
    body.append("Answer: ", style="bold")
    body.append(f"{result.answer if result.answer is not None else '(none)'}\n")
    if result.expected_answer is not None:
        body.append("Expected: ", style="bold")
        body.append(f"{result.expected_answer}\n")
    body.append("Stopped: ", style="bold")
    body.append(result.stop_reason, style=colour)
    if result.error:
        body.append(f"\nError: {result.error}", style="red")
    console.print(Panel(body, title=f"run {result.run_id}", border_style=colour))
    usage = result.usage
    table = Table(title="Spent", show_header=True, header_style="bold")
    table.add_column("dimension")
    table.add_column("used", justify="right")
    table.add_column("limit", justify="right")
    rows = [
        ("input tokens", usage.input_tokens, "input_tokens"),
        ("output tokens", usage.output_tokens, "output_tokens"),
        ("tokens", usage.total_tokens, "total_tokens"),
        ("model calls", usage.model_requests, "model_requests"),
        ("tool calls", usage.tool_calls, "tool_calls"),
    ]
    rows += [(f"  {name} calls", n, f"tool:{name}") for name, n in usage.per_tool.items()]
    if "memory_ops" in result.budget:  # the run's budget caps memory operations: show them against it
        ops = sum(e.get("units", {}).get("memory_ops", 0.0) for e in result.events)
        rows += [("memory operations", f"{ops:g}", "memory_ops")]
    rows += [
        ("USD (tokens + tools)", f"${usage.usd:.4f}", "usd"),
        ("seconds", f"{usage.seconds:.1f}", "seconds"),
    ]
    for label, value, dim in rows:
        limit = result.budget.get(dim)
        table.add_row(label, str(value), "—" if limit is None else _fmt(dim, limit))
    console.print(table)
    console.print(
        f"[dim]cost: tokens ${result.cost.tokens_usd:.4f} + tools ${result.cost.tools_usd:.4f} = "
        f"${result.cost.total_usd:.4f}; {result.steps} steps; strategy {result.strategy}; model {result.model}[/dim]"
    )
    for report in result.memory:  # each recall: what the router chose, what ran, what it cost
        ran = ", ".join(f"{module} {tier}" for module, tier in report.ran.items()) or "nothing"
        notes = f"; {'; '.join(report.notes)}" if report.notes else ""
        what = (  # the ingest adds items; a recall delivers a block, chosen by its router
            f"{report.items} items added"
            if report.router == "ingest"
            else f"{report.items} items, {report.block_tokens} block tokens"
        )
        router = "" if report.router == "ingest" else f"; router {report.router_ms:.2f} ms"
        console.print(
            f"[dim]memory ({report.router}): ran {ran}; {what}; "
            f"{report.memory_ops:g} memory ops, {report.model_tokens:g} model tokens, ${report.usd:.4f}"
            f"{router}{escape(notes)}[/dim]"
        )
    for over in result.overruns:  # a limit crossed is never silent
        where = "" if over.ledger == "run" else f" ({over.ledger})"
        console.print(
            f"[bold red]overrun:[/bold red] {over.dimension}{where} spent {_exact(over.dimension, over.spent)} "
            f"against a limit of {_exact(over.dimension, over.limit)}: "
            + (
                "a call ran on that could not be interrupted"
                if over.dimension == "seconds"
                else "the provider reported more than was reserved"
            )
        )


@app.command()
def run(
    file: Annotated[Path, typer.Argument(help="Task file (YAML).", readable=False)],
    model: Annotated[str | None, typer.Option(help="Override the model, e.g. openai/gpt-4o-mini.")] = None,
    max_usd: Annotated[float | None, typer.Option(help="Dollar limit for the run.")] = None,
    max_tokens: Annotated[int | None, typer.Option(help="Total token limit (prompt + completion).")] = None,
    max_tool_calls: Annotated[int | None, typer.Option(help="Tool call limit (all tools).")] = None,
    max_seconds: Annotated[float | None, typer.Option(help="Wall-clock limit in seconds.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the RunResult as JSON only.")] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No live view; print the summary only.")
    ] = False,
    no_store: Annotated[
        bool, typer.Option("--no-store", help="Do not record the run in the run store.")
    ] = False,
    tree_out: Annotated[
        Path | None,
        typer.Option("--tree-out", help="value_tree: write the search tree as JSON to this file."),
    ] = None,
    resume: Annotated[
        str | None,
        typer.Option("--resume", help="Resume this interrupted run (its id, as `agent run` showed it)."),
    ] = None,
    checkpoint: Annotated[
        str | None,
        typer.Option(
            help="The checkpoint file or postgresql:// URL (default: checkpoints.db beside the run store, the "
            "run store's database when it is PostgreSQL, or .thrifty/checkpoints.db)."
        ),
    ] = None,
) -> None:
    """Run a task file and print the answer, why it stopped and what it spent.

    The run is checkpointed at every step (unless --no-store): a run killed at any moment resumes where it
    was with `agent resume RUN_ID` (or `agent run FILE --resume RUN_ID`), paying nothing twice."""
    from thrifty.workflows.runner import SetupError
    from thrifty.workflows.spec import TaskFileError, load_task

    try:
        spec = load_task(  # an empty --model is refused, not ignored (an unset $MODEL in a script)
            file, import_references=True, check_models=True, **({"model": model} if model is not None else {})
        )
        if tree_out is not None:
            check_tree_out(tree_out, spec)
        overrides = {
            "usd": max_usd,
            "total_tokens": max_tokens,
            "tool_calls": max_tool_calls,
            "seconds": max_seconds,
        }
        overrides = {k: v for k, v in overrides.items() if v is not None}
        durable = _durable_options(file, spec, resume, checkpoint, no_store)
        budget = _resumed_budget(spec.budget, durable.pop("budget", None), durable.pop("task_budget", None))
        if overrides:
            budget = _override_budget(budget, overrides)
        spec = spec.model_copy(update={"budget": budget})
    except TaskFileError as exc:
        raise _error(str(exc), EXIT_BAD_INPUT) from None
    except Exception as exc:  # a bug of ours: still never a traceback
        raise _error(
            f"internal error while reading {file}: {type(exc).__name__}: {exc}", EXIT_INTERNAL
        ) from None

    from thrifty.workflows.runner import run_ledger

    ledger = run_ledger(spec.budget)
    view = None if (as_json or quiet) else LiveView(ledger, f"{spec.name or file.name} · {spec.model}")
    if view is not None:
        err.print(Text("Question: ", style="bold") + Text(redact(spec.rendered_question())))
    started = time.monotonic()
    try:
        if view is not None and err.is_terminal:
            with Live(view, console=err, refresh_per_second=8, transient=False):
                result = _run(spec, ledger, view.on_trace, no_store, **durable)
        else:
            printer = _plain_printer() if view is not None else None
            result = _run(spec, ledger, printer, no_store, **durable)
    except SetupError as exc:
        raise _error(str(exc), EXIT_BAD_INPUT) from None
    except RunInterrupted as exc:  # Ctrl-C: stopped before its next call, its checkpoint left resumable
        used = ledger.used()
        spent = (
            f"${ledger.usd_spent:.4f}, {used.get('tool_calls', 0.0):g} tool calls, "
            f"{used.get('total_tokens', 0.0):g} tokens, {used.get('model_requests', 0.0):g} model calls"
        )
        err.print(
            Text(
                f"interrupted: run {exc.run_id} stopped before its next model or tool call; spent so far: "
                f"{spent}. Continue it with: agent resume {exc.run_id} --checkpoint "
                f"{_shown(durable['checkpoint'])}"
            ),
            soft_wrap=True,
        )
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except Exception as exc:  # pragma: no cover - last resort: never a traceback
        raise _error(
            f"internal error after {time.monotonic() - started:.1f}s: {type(exc).__name__}: {exc}",
            EXIT_INTERNAL,
        ) from None

    if result.paused and durable:
        raised = _ask_for_budget(result, as_json)
        if raised:
            args = {"max_usd": max_usd, "max_tokens": max_tokens, "max_tool_calls": max_tool_calls, **raised}
            run(
                file,
                model=model,
                max_seconds=max_seconds,
                as_json=as_json,
                quiet=quiet,
                no_store=no_store,
                tree_out=tree_out,
                resume=result.run_id,
                checkpoint=str(durable["checkpoint"]),
                **args,
            )
    if as_json:
        # scrubbed as the run store scrubs its rows: a key pasted into the question is not printed back
        data = redact_value(result.model_dump(mode="json"))
        sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    else:
        render_result(result, out)
        if result.paused and durable:
            dim = result.stop_reason.split(":", 1)[1]
            option = _RAISE_OPTIONS.get(dim, "--max-usd")
            err.print(
                Text(
                    f"paused: the {_label(dim)} limit binds. Continue this run with a higher limit: "
                    f"agent resume {result.run_id} --checkpoint {_shown(durable['checkpoint'])} {option} N"
                ),
                soft_wrap=True,
            )
    if tree_out is not None:  # after the answer is printed: a failure here can only cost the tree
        write_tree(result, tree_out)
    raise typer.Exit(result.exit_code)


#: The option that raises a limit when a paused run is resumed.
_RAISE_OPTIONS = {"usd": "--max-usd", "total_tokens": "--max-tokens", "tool_calls": "--max-tool-calls"}
_RAISE_ARGS = {"usd": "max_usd", "total_tokens": "max_tokens", "tool_calls": "max_tool_calls"}
#: The command-line option that sets each budget dimension (a message names the option the user typed).
_LIMIT_OPTIONS = {**_RAISE_OPTIONS, "seconds": "--max-seconds"}


def _ask_for_budget(result: RunResult, as_json: bool) -> dict[str, float]:
    """A run paused at its budget, in a terminal: ask for a higher limit (empty: stay paused)."""
    dim = result.stop_reason.split(":", 1)[1]
    if as_json or dim not in _RAISE_ARGS or not (sys.stdin.isatty() and err.is_terminal):
        return {}
    spent = getattr(result.usage, dim, 0)
    limit = result.budget.get(dim)
    answer = err.input(
        f"The {_label(dim)} limit binds: spent {_fmt(dim, float(spent))} of {_fmt(dim, float(limit or 0))}. "
        f"New {_label(dim)} limit to continue (empty to stop here): "
    ).strip()
    if not answer:
        return {}
    try:
        value = float(answer)
    except ValueError:
        err.print(Text(f"not a number: {answer!r}; the run stays paused", style="yellow"))
        return {}
    return {_RAISE_ARGS[dim]: int(value) if dim != "usd" else value}


def _resumed_budget(
    file_budget: Budget, started: dict[str, float] | None, file_then: dict[str, float] | None
) -> Budget:
    """The budget a run goes on with: a new run's is the task file's. A resumed run keeps the limits it was
    started with (``started``: the file's and the command line's then), unless the file's budget has been
    edited since (``file_then`` is what it said then): the file as it is now applies, as its question, tools
    and strategy must be the ones the run was started with (a limit lowered below what was spent is refused
    by the resume). The command line's ``--max-*`` limits go over either."""
    from thrifty.workflows.spec import TaskFileError

    if started is None or (file_then is not None and file_then != file_budget.limits()):
        return file_budget
    try:  # ledger dimensions (tool:NAME for per_tool) back into a Budget
        return Budget.from_limits({str(k): float(v) for k, v in started.items()})
    except (ValidationError, ValueError, TypeError, AttributeError) as exc:
        raise TaskFileError(
            f"the budget stored with the run cannot be read ({type(exc).__name__}); fix: resume it with "
            "--max-usd / --max-tokens / --max-tool-calls, or start a new run"
        ) from None


def _override_budget(budget: Budget, overrides: dict[str, float]) -> Budget:
    """The task's budget with the command line's limits, validated like the file's (NaN, infinity, zero
    and negative limits are refused: NaN would stop a run at once or silently lift a limit)."""
    from thrifty.workflows.spec import TaskFileError

    for dim, value in overrides.items():
        if not math.isfinite(value) or value <= 0:
            raise TaskFileError(
                f"{_LIMIT_OPTIONS[dim]}: must be a positive finite number (got {value:g}); "
                "fix: give a positive limit, or drop the option for the task file's"
            )
    try:
        return Budget.model_validate({**budget.model_dump(exclude_none=True), **overrides})
    except ValidationError as exc:
        raise TaskFileError(f"command-line limit: {exc.errors()[0]['msg']}") from None


#: Marks a file written by --tree-out: only such a file is ever replaced by another tree.
TREE_FORMAT = "thrifty.tree/1"
_TREE_STRATEGIES = ("value_tree",)


def _is_tree_file(path: Path) -> bool:
    """Whether ``path`` holds a tree written by ``--tree-out`` (read at most 64 MB; never a FIFO)."""
    try:
        if not path.is_file():
            return False
        with path.open("rb") as handle:
            data = json.loads(handle.read(64 * 2**20))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and (
        data.get("format") == TREE_FORMAT or {"run_id", "question", "nodes", "path"} <= set(data)
    )


def check_tree_out(path: Path, spec: Any) -> None:
    """Refuse, before the run, a ``--tree-out`` that cannot be written or must not be replaced.

    A file that exists is replaced only if it is a tree written by ``--tree-out`` before: never the task
    file, its corpus or any other file.
    """
    from thrifty.workflows.spec import TaskFileError

    shown = str(path)
    if path.is_dir():
        raise TaskFileError(
            f"--tree-out {shown}: is a directory (fix: give a file path, e.g. {shown}/tree.json)"
        )
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise TaskFileError(
                    f"--tree-out {shown}: {parent} is a file, not a folder (fix: choose a path in a folder)"
                )
            if not os.access(parent, os.W_OK | os.X_OK):
                raise TaskFileError(
                    f"--tree-out {shown}: cannot write in {parent} (fix: choose a folder you can write to)"
                )
            break
    if (path.exists() or path.is_symlink()) and not _is_tree_file(path):
        raise TaskFileError(
            f"--tree-out {shown}: the file exists and is not a tree written by --tree-out; it is never "
            "overwritten (fix: choose another path, or delete the file first)"
        )
    protected = {p for p in (getattr(spec, "corpus_path", lambda: None)(),) if p is not None}
    if path.resolve() in {p.resolve() for p in protected}:
        raise TaskFileError(f"--tree-out {shown}: is the task's corpus (fix: choose another path)")


def write_tree(result: RunResult, path: Path) -> bool:
    """Write the value-tree search tree (nodes, values, pruned branches, chosen path) as JSON.

    Written to a temporary file then moved into place, so a failure never leaves half a file; a failure
    is a warning (the run's answer is already printed). Returns whether the file was written.
    """
    tree = next((t for t in reversed(result.trace) if isinstance(t, TreeEvent)), None)
    if tree is None:
        base = result.strategy.split("(")[0]
        if base in _TREE_STRATEGIES:
            why = f"the run ended ({result.stop_reason}) before its search tree was recorded"
            if result.error:
                why = f"the run failed ({result.stop_reason}): no tree was recorded"
            err.print(Text(f"note: --tree-out: {why}; nothing written"))
        else:
            err.print(Text(f"note: --tree-out: strategy '{result.strategy}' builds no tree; nothing written"))
        return False
    payload = {
        "format": TREE_FORMAT,
        "run_id": result.run_id,
        "question": result.question,
        "answer": result.answer,
        **tree.model_dump(),
    }
    tmp: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() and not _is_tree_file(path):  # appeared during the run
            raise FileExistsError(17, "exists and is not a tree file; not overwritten")
        with tempfile.NamedTemporaryFile(
            "w", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False, encoding="utf-8"
        ) as handle:
            tmp = Path(handle.name)
            handle.write(json.dumps(payload, indent=2))
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        err.print(
            Text(f"warning: --tree-out {path}: not written: {exc.strerror or exc} (the answer above stands)"),
            soft_wrap=True,
        )
        return False
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
    return True


def render_tree(nodes: list[TreeNode], path: list[int] | None = None, limit: int = 14) -> str:
    """The search tree as indented text: value, action, pruned or chosen (rich markup)."""
    children: dict[int | None, list[TreeNode]] = {}
    for n in nodes:
        children.setdefault(n.parent, []).append(n)
    chosen = set(path or [])
    lines: list[str] = []

    def walk(node: TreeNode, indent: int) -> None:
        if len(lines) >= limit:
            return
        if node.parent is None:
            label = "root"
        elif node.tool == "answer":
            label = f"answer '{escape(str(node.answer))}' [{node.verdict or 'unverified'}]"
        else:
            label = f"{node.tool}({escape(shorten(node.arguments, 40))})"
        style = "red" if node.pruned else ("bold green" if node.id in chosen else "")
        mark = " ✗ pruned" if node.pruned else ""
        text = f"{'  ' * indent}{node.id}. V={node.value:.2f} {label}{mark}"
        lines.append(f"[{style}]{text}[/{style}]" if style else text)
        for kid in children.get(node.id, []):
            walk(kid, indent + 1)

    for root in children.get(None, []):
        walk(root, 0)
    return "\n".join(lines)


def _shown(target: Any) -> str:
    """A checkpoint file or URL as a message shows it: a file under the current folder relative to it (as
    `agent runs` shows it), a URL's password hidden."""
    text = str(target)
    if "://" not in text:
        with contextlib.suppress(ValueError, OSError):  # not under the current folder: shown as it is
            text = str(Path(text).resolve().relative_to(Path.cwd().resolve()))
    return redact(text)


def _durable_options(
    file: Path, spec: Any, resume: str | None, checkpoint: str | None, no_store: bool
) -> dict[str, Any]:
    """The checkpoint file, run id and resume flag of a run (nothing when it is not durable); for a
    resume, the budget the run was started with (under ``budget``) and its task file's then (under
    ``task_budget``; None for a run started before it was recorded)."""
    from thrifty.store.durable import (
        CheckpointError,
        DurableStore,
        checkpoint_target,
        checkpoints_beside,
        checkpoints_missing,
    )
    from thrifty.workflows.durable import check_row
    from thrifty.workflows.spec import TaskFileError

    if no_store and resume is None and checkpoint is None:
        return {}
    path = checkpoint_target(checkpoint) if checkpoint else checkpoints_beside(spec.store_target())
    options: dict[str, Any] = {
        "checkpoint": path,
        # the task file's own budget too: a resume tells an edited budget from limits given on the command line
        "checkpoint_meta": {"task_file": str(file.resolve()), "task_budget": spec.budget.limits()},
    }
    if resume is not None and checkpoints_missing(path):  # refused without creating the file
        raise TaskFileError(
            f"no run '{resume}' in {_shown(path)}; fix: `agent runs` lists the runs that can be resumed"
        )
    problem = _checkpoint_problem(path)
    if problem:  # refused before the run shows anything
        raise TaskFileError(problem)
    if resume is None:
        return options
    try:
        store = DurableStore(path)
        try:
            row = store.get(resume)
            check_row(store, row, resume)  # missing, finished or running: refused before the run is shown
        finally:
            store.close()
    except CheckpointError as exc:
        raise TaskFileError(str(exc)) from None
    meta = (row or {}).get("meta") or {}
    return {
        **options,
        "run_id": resume,
        "resume": True,
        "budget": meta.get("budget"),
        "task_budget": meta.get("task_budget"),
    }


def _checkpoint_problem(target: str | Path) -> str | None:
    """Why a checkpoint file cannot be one, found without creating anything (None: it can, or it is a
    database URL, which the run checks when it connects)."""
    text = str(target)
    if "://" in text and not text.startswith("sqlite:///"):
        return None
    path = Path(text.removeprefix("sqlite:///")).expanduser()
    shown = _shown(target)
    if path.is_dir():
        return f"{shown}: is a folder, not a checkpoint file; fix: name a file in it, e.g. {path / 'checkpoints.db'}"
    if path.exists() and not path.is_file():
        return f"{shown}: is not a regular file (a device or a pipe); fix: name a checkpoint file"
    if path.exists():
        if not os.access(path, os.R_OK | os.W_OK):
            return f"{shown}: cannot be written (permissions); fix: make it writable or name another file"
        try:
            with path.open("rb") as fh:
                head = fh.read(16)
        except OSError as exc:
            return f"{shown}: cannot be read ({exc.strerror}); fix: name another file"
        if head and head != b"SQLite format 3\x00":
            return f"{shown}: is not a SQLite database (it holds other data); fix: name a new file"
        return None
    folder = path.parent
    while not folder.exists() and folder.parent != folder:
        folder = folder.parent
    if not folder.is_dir():
        return f"{shown}: '{folder}' is a file, not a folder; fix: name a path in a folder"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"{shown}: folder '{folder}' cannot be written; fix: name a writable path"
    return None


class RunInterrupted(BaseException):
    """Raised inside a checkpointed run at its next model or tool call once Ctrl-C was pressed: neither an
    Exception nor a KeyboardInterrupt, so the runner does not end the run (as it ends a cancelled one) and its
    checkpoint stays resumable with nothing in flight, as the server's shutdown leaves a run."""

    run_id: str = ""


@contextlib.contextmanager
def _ctrl_c_interrupts(stop: threading.Event, resume_with: str) -> Iterator[None]:
    """While a checkpointed run goes (main thread only): the first Ctrl-C sets ``stop`` (the run stops
    before its next model or tool call, the call under way ending first); a second ends the process at once,
    as kill -9 would: the run still resumes, the call that was in flight charged at its worst case."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_ctrl_c(signum: int, frame: Any) -> None:
        if stop.is_set():
            err.show_cursor(True)
            sys.stderr.write(
                "\nstopped at once; continue the run with: " + resume_with + " (the call that was in flight "
                "is charged at its worst case and made again)\n"
            )
            sys.stderr.flush()
            os._exit(EXIT_INTERRUPTED)
        stop.set()
        err.print(
            Text(
                "interrupted: stopping before the next model or tool call (the call under way ends first); "
                "Ctrl-C again to stop at once",
                style="yellow",
            ),
            soft_wrap=True,
        )

    previous = signal.signal(signal.SIGINT, on_ctrl_c)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _run(spec: Any, ledger: Ledger, on_trace: Any, no_store: bool, **durable: Any) -> RunResult:
    """Run the task, reading its event stream (the same events ``Agent.stream`` yields): each trace event
    goes to the live view; the run id is shown once the run has set up (its first charge, step or result, or
    an interruption), so a setup error (an unknown model, a bad key) is not preceded by the id of a run that
    never started.

    Ctrl-C stops a checkpointed run before its next call and leaves it resumable (RunInterrupted, carrying
    the run id); a run without checkpoints ends ``cancelled``, its best answer and charges kept."""
    from thrifty.workflows.stream import stop_on, stream_task

    stream = stream_task(spec, store=not no_store, ledger=ledger, on_store_error=_store_warning, **durable)
    interrupt = threading.Event()
    if durable:
        stop_on(ledger, interrupt, lambda: RunInterrupted("interrupted with Ctrl-C"))
    result: RunResult | None = None
    run_id: Text | None = None

    def show_id() -> None:
        nonlocal run_id
        if run_id is not None:
            err.print(run_id, highlight=False)
            run_id = None

    try:
        ctrl_c = (
            _ctrl_c_interrupts(
                interrupt, f"agent resume {stream.run_id} --checkpoint {_shown(durable['checkpoint'])}"
            )
            if durable
            else contextlib.nullcontext()
        )
        with ctrl_c:
            for event in stream:
                if event.kind == "start":
                    resumed = " (resumed)" if event.resumed else ""
                    run_id = Text(f"run id: {event.run_id}{resumed}", style="dim")
                    continue
                if event.kind in ("trace", "charge", "result"):
                    show_id()
                if event.kind == "trace" and on_trace is not None:
                    on_trace(event.event)
                elif event.kind == "result":
                    result = event.result
    except RunInterrupted as exc:  # stopped before its next call: resumable
        show_id()
        exc.run_id = stream.run_id
        raise
    except KeyboardInterrupt:  # the stream cancelled the run and waited for it to end
        show_id()  # an interrupted run can be resumed by its id
        result = stream.result
        if result is None:
            raise
    if result is None:  # pragma: no cover - a stream always ends with its result or raises
        raise RuntimeError("the run ended without a result")
    return result


def _store_warning(exc: Exception) -> None:
    """A run store that fails costs the run nothing: the result is still printed, this goes to stderr."""
    err.print(Text(f"warning: the run is not fully recorded: {exc}", style="yellow"), soft_wrap=True)


def _plain_printer() -> Any:
    """Progress lines for a non-terminal stderr (CI logs, pipes): one line per step."""

    def on_trace(event: TraceEvent) -> None:
        line = f"[step {event.step}] {event.describe()}"
        if event.remaining is not None:  # an event with the budget at that moment (an escalation has none)
            left = ", ".join(f"{_label(k)} {_fmt(k, v)}" for k, v in event.remaining.items())
            line += f"  | left: {left or 'unlimited'} | {event.regime or ''}"
        err.print(Text(line), highlight=False, soft_wrap=True)

    return on_trace


@app.command("resume")
def resume_run(
    run_id: Annotated[str, typer.Argument(help="The run to resume (`agent runs` lists them).")],
    checkpoint: Annotated[
        str, typer.Option(help="The checkpoint file (or postgresql:// URL) the run was saved in.")
    ] = ".thrifty/checkpoints.db",
    max_usd: Annotated[float | None, typer.Option(help="A new (higher) dollar limit.")] = None,
    max_tokens: Annotated[int | None, typer.Option(help="A new (higher) total token limit.")] = None,
    max_tool_calls: Annotated[int | None, typer.Option(help="A new (higher) tool call limit.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the RunResult as JSON only.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No live view.")] = False,
) -> None:
    """Resume an interrupted (or paused) run where it was, from its task file and checkpoint."""
    from thrifty.store.durable import CheckpointError, DurableStore, checkpoints_missing

    if checkpoints_missing(checkpoint):
        raise _error(
            f"{checkpoint}: no checkpoint file (fix: give --checkpoint the file the run used)", EXIT_BAD_INPUT
        )
    try:
        store = DurableStore(checkpoint)
        try:
            row = store.get(run_id)
        finally:
            store.close()
    except CheckpointError as exc:
        raise _error(str(exc), EXIT_BAD_INPUT) from None
    if row is None:
        raise _error(
            f"no run '{run_id}' in {_shown(checkpoint)}; fix: `agent runs` lists the runs that can be resumed",
            EXIT_BAD_INPUT,
        )
    task_file = row["meta"].get("task_file")
    if not task_file:
        raise _error(
            f"run '{run_id}' was not started from a task file; resume it from Python", EXIT_BAD_INPUT
        )
    run(
        Path(task_file),
        model=None,
        max_usd=max_usd,
        max_tokens=max_tokens,
        max_tool_calls=max_tool_calls,
        max_seconds=None,
        as_json=as_json,
        quiet=quiet,
        no_store=False,
        tree_out=None,
        resume=run_id,
        checkpoint=checkpoint,
    )


@app.command()
def validate(
    file: Annotated[Path, typer.Argument(help="Task file (YAML).", readable=False)],
    import_: Annotated[
        bool,
        typer.Option(
            "--import",
            help="Import the module:function tools and strategy (runs their module's code) instead of "
            "reading their source.",
        ),
    ] = False,
) -> None:
    """Check a task file without running it. Runs no code of the task's own unless --import."""
    from thrifty.workflows.spec import TaskFileError, load_task

    try:
        spec = load_task(file, import_references=import_, check_models=True)
    except TaskFileError as exc:
        raise _error(str(exc), EXIT_BAD_INPUT) from None
    except Exception as exc:  # a bug of ours: still never a traceback
        raise _error(
            f"internal error while validating {file}: {type(exc).__name__}: {exc}", EXIT_INTERNAL
        ) from None
    _check_store_field(file, spec.store_target())
    limits = ", ".join(f"{_label(k)} {_fmt(k, v)}" for k, v in spec.budget.limits().items()) or "unlimited"
    refs = [t.name for t in spec.tools if ":" in t.name] + [spec.strategy.name] * (":" in spec.strategy.name)
    how = ""
    if refs:
        how = (
            "; module references imported"
            if import_
            else "; module references checked in their source, not imported (--import imports them)"
        )
    servers = ", ".join(m.name for m in spec.mcp_servers)  # their tools are known once they start
    mcp = f", MCP servers [{servers}]" if servers else ""
    out.print(
        Text(
            redact(
                f"{file}: ok — model {spec.model}, strategy {spec.strategy.name}, "
                f"tools [{', '.join(t.name for t in spec.tools)}]{mcp}, budget: {limits}{how}"
            )
        ),
        soft_wrap=True,
    )


def _check_store_field(file: Path, target: str | None) -> None:
    """``output.store`` must be a store a run can open (checked without creating or connecting to it)."""
    if not target:
        return
    from thrifty.store import StoreError, check_store

    try:
        check_store(target)
    except StoreError as exc:
        from thrifty.workflows.yaml_input import LineIndex, compose_and_load, decode, read_capped

        node, _ = compose_and_load(decode(read_capped(file)))  # as load_task read it, which checked it
        line = LineIndex(node).line(("output", "store"))
        raise _error(f"{file}:{line}: field 'output.store': {exc}", EXIT_BAD_INPUT) from None


@app.command()
def schema() -> None:
    """Print the JSON Schema of task files."""
    from thrifty.workflows.spec import json_schema

    sys.stdout.write(json.dumps(json_schema(), indent=2) + "\n")


@app.command()
def runs(
    limit: Annotated[int, typer.Option(min=1, help="How many recent runs.")] = 10,
    store: Annotated[
        str, typer.Option(help="Run store (SQLite path or SQLAlchemy URL).")
    ] = ".thrifty/runs.db",
    unfinished: Annotated[
        bool, typer.Option("--unfinished", help="Only runs that can be resumed (interrupted or paused).")
    ] = False,
    checkpoint: Annotated[
        str | None,
        typer.Option(
            help="The checkpoint file or postgresql:// URL (default: checkpoints.db beside the run store, or "
            "the run store's PostgreSQL database)."
        ),
    ] = None,
) -> None:
    """List recent runs from the run store (--unfinished: the runs that can be resumed, with their spend)."""
    from thrifty.store import RunStore, StoreError

    if unfinished:
        from thrifty.store.durable import checkpoints_beside

        _list_unfinished(checkpoint or checkpoints_beside(store), limit)
        return

    if "://" not in store and not Path(store).exists():
        raise _error(f"{store}: no run store yet (runs are recorded by `agent run`)", EXIT_BAD_INPUT)
    try:
        recent = RunStore(store).recent(limit)
    except StoreError as exc:  # the hint on skipping the store is for a run, not for reading one
        from thrifty.store.check import SKIP_HINT

        raise _error(str(exc).replace(f", {SKIP_HINT}", ""), EXIT_BAD_INPUT) from None
    table = _runs_table(["task", "answer", "stop", "tokens", "tools", "USD"], [r["run_id"] for r in recent])
    for r in recent:
        table.add_row(
            r["run_id"],
            r["task"],
            "(none)" if r["answer"] is None else shorten(str(r["answer"]), 40),
            r["stop_reason"],
            str(r["total_tokens"]),
            str(r["tool_calls"]),
            f"${r['usd']:.4f}",
        )
    out.print(table)


def _runs_table(columns: list[str], run_ids: list[str]) -> Table:
    """A table of runs whose first column shows each run id whole (it is what `agent resume` takes): the
    other columns wrap on a narrow terminal instead."""
    table = Table("run", *columns)
    table.columns[0].no_wrap = True
    table.columns[0].min_width = max((len(i) for i in run_ids), default=3)
    return table


def _list_unfinished(path: str | Path, limit: int) -> None:
    from thrifty.store.durable import CheckpointError, DurableStore, checkpoints_missing

    if checkpoints_missing(path):
        raise _error(f"{path}: no checkpoint file yet (runs are checkpointed by `agent run`)", EXIT_BAD_INPUT)
    try:
        store = DurableStore(path)
        try:
            rows = store.runs(unfinished=True, limit=limit)
        finally:
            store.close()
    except CheckpointError as exc:
        raise _error(str(exc), EXIT_BAD_INPUT) from None
    table = _runs_table(["status", "task", "tokens", "tools", "USD"], [r["run_id"] for r in rows])
    for r in rows:
        spent = r["spent"]
        table.add_row(
            r["run_id"],
            r["status"] + (f" ({r['stop_reason']})" if r["stop_reason"] else ""),
            shorten(str(r["task"] or r["question"]), 24),
            f"{spent.get('total_tokens', 0):g}",
            f"{spent.get('tool_calls', 0):g}",
            f"${spent.get('usd', 0.0):.4f}",
        )
    out.print(table)
    if rows:
        out.print(Text(f"resume one with: agent resume RUN_ID --checkpoint {_shown(path)}"), soft_wrap=True)


def _flag_budget(flags: dict[str, tuple[str, float]]) -> Budget:
    """A Budget from command-line limits (flag -> (dimension, value)); a bad one names its flag."""
    for flag, (dim, value) in flags.items():
        try:
            Budget.model_validate({dim: value})
        except ValidationError as exc:
            raise fail(
                f"{flag} {value}: {exc.errors()[0]['msg']} (fix: give a positive finite number)",
                EXIT_BAD_INPUT,
            ) from None
    return Budget.model_validate({dim: value for dim, value in flags.values()})


@app.command("serve")
def serve_command(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
    max_concurrent: Annotated[int, typer.Option(min=1, help="Runs that may go at once.")] = 8,
    request_usd: Annotated[float, typer.Option(help="Per-request cap: dollars.")] = 1.0,
    request_tool_calls: Annotated[int, typer.Option(help="Per-request cap: tool calls.")] = 50,
    request_tokens: Annotated[int, typer.Option(help="Per-request cap: total tokens.")] = 200_000,
    daily_usd: Annotated[
        float, typer.Option(help="Server-wide budget: dollars per UTC day, all runs.")
    ] = 20.0,
    no_token: Annotated[
        bool, typer.Option("--no-token", help="Serve without a token (loopback addresses only).")
    ] = False,
    checkpoint: Annotated[
        str,
        typer.Option(
            help="Checkpoint runs in this file (or postgresql:// URL), so a paused or interrupted run can be "
            "resumed."
        ),
    ] = ".thrifty/checkpoints.db",
    no_checkpoint: Annotated[
        bool, typer.Option("--no-checkpoint", help="Do not checkpoint runs (they cannot be resumed).")
    ] = False,
    shutdown_grace: Annotated[
        float,
        typer.Option(
            min=0.0,
            help="At SIGTERM / Ctrl-C: seconds to wait for the running runs to stop at their next call.",
        ),
    ] = 30.0,
    event_send_timeout: Annotated[
        float,
        typer.Option(
            min=0.1,
            help="Seconds a write to an event stream may wait for a client that has stopped reading; past "
            "that its stream is closed (the run goes on).",
        ),
    ] = 30.0,
) -> None:
    """Serve runs over HTTP (submit, read, stream events, resume, cancel, list) and a page to watch them
    (open http://HOST:PORT/). The bearer token every request must send is read from THRIFTY_SERVE_TOKEN."""
    from thrifty.serve import TOKEN_ENV, ServeError, ServeSettings, check_start, serve
    from thrifty.store.durable import checkpoint_target

    token = os.environ.get(TOKEN_ENV) or None
    try:
        request_cap = _flag_budget(
            {
                "--request-usd": ("usd", request_usd),
                "--request-tool-calls": ("tool_calls", request_tool_calls),
                "--request-tokens": ("total_tokens", request_tokens),
            }
        )
        settings = ServeSettings(
            token=token,
            request_cap=request_cap,
            server_budget=_flag_budget({"--daily-usd": ("usd", daily_usd)}),
            max_concurrent=max_concurrent,
            checkpoint=None if no_checkpoint else checkpoint_target(checkpoint),
            shutdown_grace=shutdown_grace,
            event_send_timeout=event_send_timeout,
        )
        check_start(host, token, no_token)
    except ValidationError as exc:
        raise fail(f"agent serve: {exc.errors()[0]['msg']}", EXIT_BAD_INPUT) from None
    except ServeError as exc:
        raise fail(exc.message, EXIT_BAD_INPUT) from None
    serve(host, port, settings, allow_no_token=no_token)


@app.command()
def batch(
    files: Annotated[list[Path], typer.Argument(help="Task files (YAML), e.g. tasks/*.yaml.")],
    out_file: Annotated[
        Path, typer.Option("--out", help="Results: one JSON line per task (rerun to resume).")
    ] = Path(".thrifty/batch/results.jsonl"),
    executor: Annotated[
        str,
        typer.Option(help="local (threads) or ray (Ray workers; needs thrifty's optional extra \\[ray])."),
    ] = "local",
    concurrency: Annotated[int, typer.Option(min=1, help="Tasks at once with --executor local.")] = 1,
    workers: Annotated[
        int | None, typer.Option(min=1, help="Ray workers (default: the CPUs Ray has).")
    ] = None,
    ray_address: Annotated[
        str | None, typer.Option(help="An existing Ray cluster (host:port, ray://host:port or auto).")
    ] = None,
    global_usd: Annotated[float | None, typer.Option(min=0.0, help="USD for the whole batch.")] = None,
    global_tokens: Annotated[
        int | None, typer.Option(min=1, help="Total tokens for the whole batch.")
    ] = None,
    global_tool_calls: Annotated[
        int | None, typer.Option(min=1, help="Tool calls for the whole batch.")
    ] = None,
    no_store: Annotated[
        bool, typer.Option("--no-store", help="Do not record the runs in the run store.")
    ] = False,
) -> None:
    """Run many task files as one batch (on threads or Ray workers), optionally under one global budget.

    Exit codes: 0 every task ran, 2 bad input (nothing ran), 4 the global budget stopped the batch (finished
    tasks kept), 130 interrupted (rerun to resume).
    """
    from thrifty.bench.cli import check_executor, global_limits
    from thrifty.bench.runner import BenchError
    from thrifty.scale import ScaleError
    from thrifty.scale.batch import BatchError, ResultsFileError, load_batch, run_batch
    from thrifty.workflows.runner import SetupError
    from thrifty.workflows.spec import TaskFileError

    def show(line: dict[str, Any]) -> None:
        err.print(
            Text(f"{Path(line['file']).name}: {line['stop_reason']} · ${line['usage']['usd']:.4f} · ")
            + Text(str(line["answer"])[:80]),
            highlight=False,
        )

    try:
        global_budget = global_limits(global_usd, global_tokens, global_tool_calls)
        check_executor(executor, ray_address)
        jobs = load_batch(files)
        outcome = run_batch(
            jobs,
            out_file,
            executor=executor,
            concurrency=concurrency,
            workers=workers,
            ray_address=ray_address,
            global_budget=global_budget,
            store=not no_store,
            on_result=show,
        )
    except ResultsFileError as exc:
        raise fail(f"--out {exc.path}: {exc.reason} (fix: {exc.fix})", EXIT_BAD_INPUT) from None
    except typer.BadParameter as exc:  # its message alone would not name the option
        raise fail(exc.format_message(), EXIT_BAD_INPUT) from None
    except (TaskFileError, BatchError, BenchError, ScaleError, SetupError) as exc:
        raise fail(str(exc), EXIT_BAD_INPUT) from None
    except KeyboardInterrupt:
        raise fail(f"interrupted: finished tasks are saved in {out_file}; rerun to resume", 130) from None
    out.print(f"{outcome.ran} tasks run, {len(outcome.records)} in {out_file}", highlight=False)
    if outcome.changed:
        err.print(
            Text(
                f"note: {len(outcome.changed)} task file(s) changed since their results were saved and were "
                f"skipped, their old results kept: {', '.join(outcome.changed)}; to run them again, remove "
                f"their lines from {out_file} or use another --out"
            ),
            soft_wrap=True,
        )
    if outcome.not_run:
        spent = outcome.snapshot.get("spent", {})
        shown = ", ".join(
            f"{d} {spent.get(d, 0.0):g} of {v:g}" for d, v in outcome.snapshot["limits"].items()
        )
        raise fail(
            f"global budget reached ({shown}): {len(outcome.not_run)} tasks not started; "
            "rerun with a larger global budget to run them",
            EXIT_BUDGET,
        )


def _mount_bench() -> None:
    from thrifty.bench.cli import bench_app

    app.add_typer(bench_app, name="bench")


_mount_bench()


def _mount_memory() -> None:
    from thrifty.bench.memory_cli import memory_app

    app.add_typer(memory_app, name="memory")


_mount_memory()


def main() -> None:
    # The `agent` command owns its process: make it offline for LiteLLM and Hugging Face (an application
    # that imports thrifty keeps its own environment).
    from thrifty.models._litellm import apply_offline_env

    apply_offline_env()
    app()


if __name__ == "__main__":
    main()
