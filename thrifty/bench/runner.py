"""The benchmark grid: strategies x budgets x questions (x seeds), resumable, one JSON line per run.

A budget value ``B`` becomes ``Budget(tool_calls=B, total_tokens=tokens_per_call * B)`` (``tokens_per_call``
defaults to 2,000 — roomy for react's prompts with a small local model or an API model, so the tool calls
are what binds; set it to 0 for no token limit) plus ``seconds=timeout`` when a per-question timeout is
set; see :class:`BudgetRule`.

Results are appended to a JSON-lines file as each run finishes; a rerun on the same file skips every
``(strategy, budget, question_id, seed)`` already there, so an interrupted benchmark resumes where it
stopped; a run that failed on a transient model error (the server unreachable, a timeout, a 5xx, a rate
limit: :func:`transient_failure`) is run again, and its new line counts in place of the failed one. Each
line holds the strategy, budget, question, answer, gold answers, EM, F1, stop reason, usage (tokens, tool
calls, model requests, USD, seconds), the model, and ``"simulated": true`` for ``sim/`` models.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from thrifty.bench.datasets import Dataset, QAItem
from thrifty.bench.metrics import exact_match, f1_score, is_budget_stop
from thrifty.budget import Budget, ModelPrice, Pricing, StopKind
from thrifty.budget.pool import LeaseClient, usage_spent
from thrifty.models.gateway import transient_failure
from thrifty.models.routing import EscalationPolicy, Routing, parse_model_spec
from thrifty.models.settings import (
    DEFAULT_ANSWER_CHOICE,
    DEFAULT_ANSWER_CONTEXT,
    DEFAULT_REPLY_TOKENS,
    DEFAULT_TEMPERATURE,
    AnswerChoice,
    AnswerContext,
    ModelSettings,
)
from thrifty.scale.executors import Placement, Refused, RunStopper, execute_pooled, run_leased
from thrifty.tools import Corpus, Tool, make_search_tools
from thrifty.workflows.spec import StrategySpec

try:
    import fcntl
except ImportError:  # pragma: no cover - not on POSIX
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "DEFAULT_TOKENS_PER_CALL",
    "MAX_BUDGET",
    "BenchConfig",
    "BenchError",
    "BudgetRule",
    "GlobalBudgetReached",
    "GridWorker",
    "StrategyChoice",
    "load_results",
    "make_pricing",
    "parse_budgets",
    "parse_shard",
    "parse_strategies",
    "run_grid",
    "run_reservation",
    "transient_failure",  # re-exported from thrifty.models.gateway
]

DEFAULT_TOKENS_PER_CALL = 2000
#: The largest budget B (tool calls per run) a grid takes: a run may take 2B + 2 model calls and
#: ``tokens_per_call`` x B tokens, so a larger B is a typo, not a benchmark setting.
MAX_BUDGET = 10_000
_SPEC_FIELDS = {"tracker", "max_steps", "keep_observations"}


class BenchError(ValueError):
    """A benchmark that cannot run as asked (unknown strategy, bad budget, mixed results file...)."""


# ------------------------------------------------------------------------------------------ strategies
@dataclass(frozen=True)
class StrategyChoice:
    """A strategy as the benchmark runs it: the label it is reported under and the StrategySpec.

    ``max_steps`` is None when the spec should get the budget-scaled default (2B + 2 model calls).
    """

    label: str
    name: str
    tracker: bool = True
    options: dict[str, Any] = field(default_factory=dict)
    max_steps: int | None = None
    keep_observations: int | None = None

    def spec(self, budget: int) -> StrategySpec:
        return StrategySpec(
            name=self.name,
            tracker=self.tracker,
            max_steps=self.max_steps or 2 * budget + 2,
            keep_observations=self.keep_observations,
            options=dict(self.options),
        )


def _value(raw: str) -> Any:
    low = raw.lower()
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    if low in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(raw)
        except ValueError:
            pass
    return raw


def _split_strategies(text: str) -> list[str]:
    """Split on commas, except before ``key=value`` pieces, which continue the previous strategy's options
    (``react,self_consistency:samples=5,parallel=true,bats``)."""
    out: list[str] = []
    for piece in (p.strip() for p in text.split(",")):
        if not piece:
            continue
        if "=" in piece and ":" not in piece and out and ":" in out[-1]:
            out[-1] = f"{out[-1]},{piece}"
        else:
            out.append(piece)
    return out


def _piece_parts(piece: str) -> tuple[str, str, str]:
    """``(label, name, options)`` of one strategy as written: ``value_tree:k=2`` has options ``k=2``;
    ``value_tree:`` (a colon, no options) is ``value_tree`` itself, not a label of its own; a
    ``package.module:function`` builder has none."""
    head, _, tail = piece.partition(":")
    if not tail.strip():
        return head.strip(), head.strip(), ""
    if "=" not in tail:  # package.module:function
        return piece, piece, ""
    return piece, head, tail


def parse_strategies(text: str | Sequence[str]) -> list[StrategyChoice]:
    """Parse ``react,react_tracker,bats,value_tree:k=2`` against the live STRATEGIES registry.

    ``react`` is react with the Budget Tracker off (the plain ReAct baseline), ``react_tracker`` react with
    it on; any other name must be registered in ``thrifty.workflows.strategies.STRATEGIES`` (or be a
    ``package.module:function`` builder). ``name:key=val,key=val`` passes options: ``tracker``,
    ``max_steps`` and ``keep_observations`` set the StrategySpec fields, other keys go to its ``options``,
    which are checked against the strategy's options model (an unknown key or a bad value is a BenchError).
    """
    from thrifty.workflows.options import StrategyOptionsError, parse_options
    from thrifty.workflows.strategies import STRATEGIES, get_builder

    pieces = (
        _split_strategies(text) if isinstance(text, str) else [p for t in text for p in _split_strategies(t)]
    )
    if not pieces:
        raise BenchError("no strategies given (example: --strategies react,react_tracker)")
    choices: list[StrategyChoice] = []
    for written in pieces:
        piece, head, tail = _piece_parts(written)
        options: dict[str, Any] = {}
        for item in filter(None, (t.strip() for t in tail.split(","))):
            key, sep, raw = item.partition("=")
            if not sep or not key.strip():
                raise BenchError(f"strategy '{piece}': option '{item}' is not key=value")
            options[key.strip()] = _value(raw.strip())
        if head == "react_tracker":
            name, tracker = "react", True
        elif head == "react":
            name, tracker = "react", False
        else:
            name, tracker = head, True
        try:
            builder = get_builder(name)
        except (ValueError, ImportError, AttributeError) as exc:
            known = ", ".join(["react", "react_tracker", *[s for s in STRATEGIES if s != "react"]])
            # a custom builder's own failure says why; an unknown name is answered by the list alone
            why = f" ({exc})" if ":" in name else ""
            raise BenchError(
                f"unknown strategy '{head}': use one of {known} or 'module:function'{why}"
            ) from None
        spec_fields = {k: options.pop(k) for k in list(options) if k in _SPEC_FIELDS}
        try:
            parse_options(name, builder, options)
        except StrategyOptionsError as exc:
            raise BenchError(f"strategy '{piece}': {exc}") from None
        if "tracker" in spec_fields:
            if not isinstance(spec_fields["tracker"], bool):  # bool("maybe") would be True
                raise BenchError(f"strategy '{piece}': tracker must be true or false")
            tracker = spec_fields["tracker"]
        for key in ("max_steps", "keep_observations"):
            value = spec_fields.get(key)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise BenchError(f"strategy '{piece}': {key} must be a positive integer")
        choice = StrategyChoice(
            label=piece,
            name=name,
            tracker=tracker,
            options=options,
            max_steps=spec_fields.get("max_steps"),
            keep_observations=spec_fields.get("keep_observations"),
        )
        if any(c.label == choice.label for c in choices):
            raise BenchError(f"strategy '{piece}' given twice")
        choices.append(choice)
    return choices


def parse_budgets(text: str | Iterable[int]) -> list[int]:
    """``"3,5,10"`` -> [3, 5, 10]: whole numbers of tool calls from 1 to :data:`MAX_BUDGET`, no repeats
    (BenchError naming ``--budgets`` and the fix otherwise)."""
    raw = [p.strip() for p in text.split(",")] if isinstance(text, str) else list(text)
    if all(p == "" for p in raw):
        raise BenchError(
            "--budgets: no budgets given (fix: give tool-call budgets, e.g. --budgets 3,5,10,20)"
        )
    if isinstance(text, str) and "" in raw:  # "3,,5": a budget left out (an empty shell variable?)
        raise BenchError(
            f"--budgets {text!r}: a budget is missing between two commas or at an end (fix: give a whole "
            "number between each pair of commas, e.g. --budgets 3,5)"
        )
    out: list[int] = []
    for value in raw:
        whole = (
            f"--budgets: budget {value!r} is not a whole number of tool calls (fix: e.g. --budgets 3,5,10,20)"
        )
        try:
            number = int(value)
        except (TypeError, ValueError, OverflowError):
            raise BenchError(whole) from None
        if isinstance(value, bool) or (isinstance(value, float) and value != number):
            raise BenchError(whole)
        if number < 1:
            raise BenchError(
                f"--budgets: budget {value!r} must be at least 1 tool call (fix: e.g. --budgets 3,5)"
            )
        if number > MAX_BUDGET:
            raise BenchError(
                f"--budgets: budget {value!r} is more than {MAX_BUDGET:,} tool calls, the most a benchmark run "
                f"may have (fix: give budgets from 1 to {MAX_BUDGET}, e.g. --budgets 3,5,10,20)"
            )
        if number in out:
            raise BenchError(f"--budgets: budget {number} given twice (fix: give each budget once)")
        out.append(number)
    return out


# ---------------------------------------------------------------------------------------------- config
@dataclass(frozen=True)
class BudgetRule:
    """How a budget value B becomes a Budget: ``tool_calls=B``, ``total_tokens=tokens_per_call * B``
    (omitted when ``tokens_per_call`` is 0 or None), ``seconds=timeout`` when a timeout is set."""

    tokens_per_call: int | None = DEFAULT_TOKENS_PER_CALL
    timeout: float | None = None

    def budget(self, b: int) -> Budget:
        limits: dict[str, Any] = {"tool_calls": b}
        if self.tokens_per_call:
            limits["total_tokens"] = int(self.tokens_per_call) * b
        if self.timeout:
            limits["seconds"] = float(self.timeout)
        return Budget(**limits)


def make_pricing(
    model: str,
    *,
    price_in: float | None = None,
    price_out: float | None = None,
    tool_price: float | None = None,
) -> Pricing:
    """Pricing for a benchmark: model prices in dollars per million tokens (in / out), search and read
    at ``tool_price`` dollars per call (default $0.001, the BATS setting)."""
    models: dict[str, ModelPrice] = {}
    # inf or nan: ModelPrice and Pricing would refuse it in pydantic's words, naming no option
    prices = (
        ("--price-in", price_in, "0.15"),
        ("--price-out", price_out, "0.6"),
        ("--tool-price", tool_price, "0.001"),
    )
    for flag, value, example in prices:
        if value is not None and not math.isfinite(value):
            unit = "per search/read call" if flag == "--tool-price" else "per 1M tokens"
            raise BenchError(
                f"{flag} {value}: not a price (fix: give a finite number of dollars {unit}, "
                f"e.g. {flag} {example})"
            )
    if price_in is not None or price_out is not None:
        for value in (price_in, price_out):
            if value is not None and value < 0:
                raise BenchError("prices must be >= 0")
        models[model] = ModelPrice(
            input_per_token=(price_in or 0.0) / 1e6, output_per_token=(price_out or 0.0) / 1e6
        )
    tools: dict[str, float] = {}
    if tool_price is not None:
        if tool_price < 0:
            raise BenchError("--tool-price must be >= 0")
        tools = {"search": tool_price, "read": tool_price}
    return Pricing(models=models, tools=tools)


@dataclass
class BenchConfig:
    """Everything one grid needs. ``tools`` default to BM25 ``search`` / ``read`` over ``corpus`` (or the
    dataset's own corpus)."""

    dataset: Dataset
    strategies: list[StrategyChoice]
    budgets: list[int]
    model: str
    seeds: list[int] = field(default_factory=lambda: [0])
    concurrency: int = 1
    rule: BudgetRule = field(default_factory=BudgetRule)
    pricing: Pricing = field(default_factory=Pricing)
    temperature: float | None = DEFAULT_TEMPERATURE
    max_tokens: int = DEFAULT_REPLY_TOKENS
    #: ``ModelSettings.answer_choice`` / ``answer_context`` of every run (grounded answers of small models)
    answer_choice: AnswerChoice = DEFAULT_ANSWER_CHOICE
    answer_context: AnswerContext = DEFAULT_ANSWER_CONTEXT
    search_k: int = 3
    corpus: Corpus | None = None
    tools: list[Tool] | None = None
    #: ``(k, n)``: run only questions k, k + n, k + 2n, ... (0-based) so that n processes or machines share
    #: one grid, each writing to the same results file; the corpus stays the whole dataset's.
    shard: tuple[int, int] = (0, 1)
    #: One budget for the whole grid (USD, tokens, tool calls), whatever executes the runs: each run leases
    #: its worst case from it before it starts and settles what it spent; a resumed grid counts the spend
    #: of its finished runs. None: no global limit.
    global_budget: Budget | None = None
    #: with a cascade or per-role ``model`` (``a>b``, ``role=a;...``): when a call moves up the cascade
    escalation: EscalationPolicy | None = None

    def settings(self, seed: int) -> ModelSettings:
        """The model settings of every run of the grid with this seed."""
        return ModelSettings(
            temperature=self.temperature,
            max_tokens=self.max_tokens,
            seed=seed,
            answer_choice=self.answer_choice,
            answer_context=self.answer_context,
        )

    @property
    def routing(self) -> Routing | None:
        """The run's models when ``model`` names several (:func:`thrifty.models.routing.parse_model_spec`)."""
        try:
            routing = parse_model_spec(self.model)
        except ValueError as exc:
            raise BenchError(f"--model {self.model!r}: {exc}") from None
        if routing is not None and self.escalation is not None:
            routing = routing.model_copy(update={"escalation": self.escalation})
        return routing

    @property
    def models(self) -> list[str]:
        routing = self.routing
        return routing.all_models() if routing is not None else [self.model]

    @property
    def simulated(self) -> bool:
        return all(m.startswith("sim/") for m in self.models)


Key = tuple[str, int, str, int]


def _key(record: dict[str, Any]) -> Key:
    """The run a record is the result of; ValueError for a budget or seed that is not a whole number (not a
    line this module wrote: ``"budget": 3.7`` is no budget-3 run)."""
    budget, seed = record["budget"], record.get("seed", 0)
    for name, value in (("budget", budget), ("seed", seed)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"{name} {value!r} is not a whole number")
    return (str(record["strategy"]), budget, str(record["question_id"]), seed)


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` (0 <= K < N) as ``(K, N)``."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match:
        raise BenchError(
            f"--shard {text!r} is not K/N (fix: e.g. --shard 0/2 and --shard 1/2 for two processes)"
        )
    return _checked_shard(int(match.group(1)), int(match.group(2)))


def _checked_shard(k: int, n: int) -> tuple[int, int]:
    if n < 1 or not 0 <= k < n:
        raise BenchError(
            f"--shard {k}/{n}: K must be 0 .. N-1 and N at least 1 (fix: e.g. --shard 0/2 and --shard 1/2 "
            "for two processes)"
        )
    return k, n


def load_results(path: str | Path) -> list[dict[str, Any]]:
    """The records of a results file (unreadable lines, e.g. one cut by a crash, are skipped).

    A run recorded twice (two processes that raced on the same file without ``--shard``) counts once: the
    last line wins, in the place of the first.
    """
    path = Path(path)
    if not path.exists():
        return []
    records: dict[Key, dict[str, Any]] = {}
    for raw in path.read_bytes().splitlines():
        if not raw.strip():
            continue
        try:
            record = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):  # a damaged line: not a result
            continue
        if isinstance(record, dict) and {"strategy", "budget", "question_id"} <= record.keys():
            try:
                key = _key(record)
            except (TypeError, ValueError):  # a budget or seed that is not a number: not our line
                continue
            if _well_formed(record):
                records[key] = record
    return list(records.values())


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _well_formed(record: dict[str, Any]) -> bool:
    """Whether the figures the summary reads from ``record`` are numbers where it has them (a line with
    ``"em": "yes"`` or a ``usage`` that is not a mapping is not a result of ours: skipped, not a crash)."""
    for name in ("em", "f1", "escalations", "resamples"):
        if name in record and not _is_number(record[name]):
            return False
    usage = record.get("usage")
    if usage is None:
        return True
    if not isinstance(usage, dict):
        return False
    names = (
        "input_tokens",
        "output_tokens",
        "total_tokens",
        "tool_calls",
        "model_requests",
        "usd",
        "seconds",
    )
    if not all(_is_number(usage[name]) for name in names if name in usage):
        return False
    per_tool = usage.get("per_tool")
    return per_tool is None or (isinstance(per_tool, dict) and all(map(_is_number, per_tool.values())))


# ---------------------------------------------------------------------------------------------- runs
def _record(
    config: BenchConfig,
    choice: StrategyChoice,
    b: int,
    item: QAItem,
    seed: int,
    result: Any,
    tools: Sequence[Tool],
) -> dict[str, Any]:
    from thrifty import __version__

    usage = result.usage
    return {
        "strategy": choice.label,
        "strategy_name": choice.name,
        "tracker": choice.tracker,
        "options": choice.options,
        "budget": b,
        "limits": result.budget,
        "question_id": item.id,
        "question": item.question,
        "type": item.type,
        "seed": seed,
        "answer": result.answer,
        "gold": item.answers,
        "em": exact_match(result.answer, item.answers),
        "f1": round(f1_score(result.answer, item.answers), 6),
        "stop_reason": result.stop_reason,
        "budget_stop": is_budget_stop(result.stop_reason),
        "error": result.error,
        "steps": result.steps,
        "usage": {
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "total_tokens": usage.total_tokens,
            "tool_calls": usage.tool_calls,
            "per_tool": usage.per_tool,
            "model_requests": usage.model_requests,
            "usd": usage.usd,
            "tokens_usd": result.cost.tokens_usd,
            "tools_usd": result.cost.tools_usd,
            "seconds": usage.seconds,
        },
        "model": config.model,
        "model_settings": config.settings(seed).model_dump(
            include={"temperature", "max_tokens", "answer_choice", "answer_context"}
        ),
        **_routing_fields(config, result),
        "setup": grid_setup(config, tools),
        "simulated": config.simulated,
        "dataset": config.dataset.name,
        "run_id": result.run_id,
        "finished": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "thrifty": __version__,
    }


def grid_setup(config: BenchConfig, tools: Sequence[Tool]) -> dict[str, Any]:
    """What a grid's runs depend on besides the model settings and limits: how many results a search
    returns (``--k``), the tools and each one's price per call (``--web``, ``--tool-price``), and the models'
    configured prices in dollars per token (``--price-in`` / ``--price-out``)."""
    return {
        "k": config.search_k,
        "tools": {t.name: config.pricing.tool_price(t.name, t.price) for t in tools},
        "model_prices": {
            name: [price.input_per_token, price.output_per_token]
            for name, price in sorted(config.pricing.models.items())
        },
    }


def _other_setup(recorded: dict[str, Any], wanted: dict[str, Any]) -> tuple[str, Any, Any] | None:
    """:func:`_other_settings` for the :func:`grid_setup` of a record."""
    if "k" in recorded and recorded["k"] != wanted["k"]:
        return "--k", recorded["k"], wanted["k"]
    was_tools, now_tools = recorded.get("tools"), wanted["tools"]
    if isinstance(was_tools, dict):
        if sorted(was_tools) != sorted(now_tools):
            return "--web (the tools)", ", ".join(sorted(was_tools)), ", ".join(sorted(now_tools))
        for name, price in now_tools.items():
            if not _same_number(was_tools[name], price):
                return f"--tool-price ({name})", was_tools[name], price
    was_prices, now_prices = recorded.get("model_prices"), wanted["model_prices"]
    if isinstance(was_prices, dict):
        for name in sorted(set(was_prices) | set(now_prices)):
            was, now = was_prices.get(name), now_prices.get(name)
            same = was is not None and now is not None and all(map(_same_number, was, now))
            if not same and (was is not None or now is not None):
                label = f"--price-in/--price-out ({name}, $ per 1M tokens in/out)"
                return label, _per_million(was), _per_million(now)
    return None


def _same_number(a: Any, b: Any) -> bool:
    return _is_number(a) and _is_number(b) and math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-15)


def _per_million(price: Any) -> str:
    if not isinstance(price, list) or not all(map(_is_number, price)):
        return "unset"
    return "/".join(f"{float(v) * 1e6:g}" for v in price)


def _routing_fields(config: BenchConfig, result: Any) -> dict[str, Any]:
    """For a run with several models: what each model cost and how often the run escalated."""
    if config.routing is None:
        return {}
    by_model: dict[str, float] = {}
    for event in result.events:
        if event.get("kind") == "model":
            by_model[event["name"]] = by_model.get(event["name"], 0.0) + float(event.get("usd") or 0.0)
    escalations = [e for e in result.trace if getattr(e, "action", None) == "escalation"]
    return {
        "models_usd": by_model,
        "escalations": sum(1 for e in escalations if not e.refused and not e.resample),
        "escalations_refused": sum(1 for e in escalations if e.refused),
        "resamples": sum(1 for e in escalations if e.resample),
    }


class _Writer:
    """Appends records to the results file, one flushed line each, from any thread or process (shards
    of one grid share the file: each line is written whole under an exclusive ``flock``)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() and path.stat().st_size:
            with path.open("rb") as fh:
                fh.seek(-1, 2)
                needs_newline = fh.read(1) != b"\n"
            if needs_newline:  # a line cut by a crash: start a fresh one
                with path.open("a", encoding="utf-8") as fh:
                    fh.write("\n")
        self.path = path
        self._lock = threading.Lock()

    def write(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, ensure_ascii=False, allow_nan=False, default=str) + "\n"
        with self._lock, self.path.open("a", encoding="utf-8") as fh:
            if fcntl is not None:
                fcntl.flock(fh, fcntl.LOCK_EX)  # released when the file closes
            fh.write(line)
            fh.flush()


ProgressCallback = Callable[[dict[str, Any]], None]


class _Progress:
    """A rich progress bar with ETA on a terminal; plain periodic lines (for logs) otherwise."""

    def __init__(self, total: int, done: int, label: str) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.console = Console(stderr=True)
        self.total, self.done, self.label = total, done, label
        self.started, self.start_done = time.monotonic(), done
        self.last_line = 0.0
        self.bar: Any = None
        if self.console.is_terminal:
            self.bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("EM {task.fields[em]}"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=self.console,
            )
            self.task = self.bar.add_task(label, total=total, completed=done, em="-")
            self.bar.start()
        else:
            self.console.print(f"{label}: {done}/{total} runs already done", highlight=False)

    def advance(self, em: str) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.update(self.task, advance=1, em=em)
            return
        now = time.monotonic()
        step = max(1, self.total // 20)
        if self.done == self.total or self.done % step == 0 or now - self.last_line > 30:
            self.last_line = now
            rate = (now - self.started) / max(1, self.done - self.start_done)
            eta = rate * (self.total - self.done)
            self.console.print(
                f"{self.label}: {self.done}/{self.total} runs, EM {em}, "
                f"{now - self.started:.0f}s elapsed, ETA {eta:.0f}s",
                highlight=False,
            )

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()


Job = tuple[StrategyChoice, int, QAItem, int]
EXECUTORS = ("local", "ray")


class GlobalBudgetReached(BenchError):
    """The grid's global budget could not pay for every run: the finished ones are kept (in ``records``),
    ``not_run`` runs were never started. Rerun with a larger global budget to resume."""

    def __init__(self, records: list[dict[str, Any]], not_run: int, snapshot: dict[str, Any]) -> None:
        self.records, self.not_run, self.snapshot = records, not_run, snapshot
        limits: dict[str, float] = snapshot.get("limits", {})
        spent = ", ".join(
            f"{dim} {snapshot.get('spent', {}).get(dim, 0.0):g} of {limit:g}"
            for dim, limit in sorted(limits.items())
        )
        super().__init__(
            f"global budget reached: {not_run} runs not started (spent {spent or 'nothing'}); "
            "finished runs are kept: rerun with a larger global budget to run the rest"
        )


def run_reservation(config: BenchConfig, b: int, tools: Sequence[Tool]) -> dict[str, float]:
    """The most one run at budget ``b`` can spend: its tool calls and tokens, and the dollars those can cost
    at the configured prices (what it leases from a global budget). Raises BenchError when the global budget
    limits something a run does not bound (dollars with no token limit on a priced model, for example)."""
    limits = config.rule.budget(b).limits()
    seconds = limits.pop("seconds", None)
    out = dict(limits)
    wanted = set(config.global_budget.limits()) if config.global_budget is not None else set()
    if "usd" in wanted:
        from thrifty.budget import Ledger
        from thrifty.models.gateway import Gateway, ModelError

        try:
            price = Gateway(Ledger(), config.pricing).price(config.model)
        except ModelError as exc:
            raise BenchError(str(exc)) from None
        per_token = max(price.input_per_token, price.output_per_token)
        tool_usd = max((config.pricing.tool_price(t.name, t.price) for t in tools), default=0.0)
        tokens = out.get("total_tokens")
        if per_token and tokens is None:
            raise BenchError(
                "a global USD budget needs a bounded run: set --tokens-per-call above 0 "
                f"(model {config.model} is priced per token)"
            )
        if price.per_second and seconds is None:
            raise BenchError(
                f"a global USD budget needs a bounded run: model {config.model} is priced per second, "
                "so set --timeout"
            )
        out["usd"] = (tokens or 0.0) * per_token + b * tool_usd + price.per_second * (seconds or 0.0)
    unbounded = sorted(wanted - set(out))
    if unbounded:
        raise BenchError(f"the global budget limits {', '.join(unbounded)}, which a bench run does not bound")
    return out


class GridWorker(RunStopper):
    """Runs a grid's jobs in one process: builds the tools (and registers the simulated model's questions)
    once, then leases, runs and settles each job. Ray workers each build one. :meth:`stop` (an interrupted
    grid) ends its runs in flight at their next call."""

    def __init__(
        self,
        config: BenchConfig,
        pool: LeaseClient | None = None,
        reservations: dict[int, dict[str, float]] | None = None,
        tools: list[Tool] | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.tools = tools if tools is not None else _grid_tools(config)
        self.pool = pool
        self.reservations = reservations or {}

    def run(self, job: Job, lease_id: str) -> dict[str, Any] | Refused | None:
        """The run's record; None if it was cancelled (not a result: rerun it next time); Refused when the
        global budget cannot hold its worst case now."""
        config = self.config
        outcome = run_leased(
            self.pool,
            lease_id,
            self.reservations[job[1]] if self.pool is not None else {},
            f"global budget: no room for a budget-{job[1]} run now",
            lambda: _record(config, job[0], job[1], job[2], job[3], self._execute(*job), self.tools),
            lambda record: usage_spent(record["usage"]),
        )
        if isinstance(outcome, Refused) or outcome["stop_reason"] != StopKind.CANCELLED.value:
            return outcome
        return None

    def _execute(self, choice: StrategyChoice, b: int, item: QAItem, seed: int) -> Any:
        from thrifty.workflows.runner import execute

        config = self.config
        settings = config.settings(seed)
        routing = config.routing

        def go() -> Any:
            return execute(
                item.question,
                model=config.model,
                tools=self.tools,
                ledger=self.ledger(config.rule.budget(b)),
                pricing=config.pricing,
                strategy=choice.spec(b),
                settings=settings,
                task=f"bench:{config.dataset.name}",
                expected_answer=item.answers[0],
                keep_trace=routing is not None,  # escalations are counted from the trace
                routing=routing,
            )

        if config.simulated:
            from thrifty.bench import sim

            with sim.run_scope(f"{choice.label}|{b}|{item.id}|{seed}"):
                return go()
        return go()


def run_grid(
    config: BenchConfig,
    results_path: str | Path,
    *,
    progress: bool = True,
    on_result: ProgressCallback | None = None,
    executor: str = "local",
    workers: int | None = None,
    ray_address: str | None = None,
    on_workers: Callable[[list[int]], None] | None = None,
    keep_workers: bool = False,
    gpus_per_worker: float = 0.0,
) -> list[dict[str, Any]]:
    """Run every (seed, question, strategy, budget) not yet in ``results_path`` and append its record (a run
    recorded there as failed on a transient model error, :func:`transient_failure`, runs again).

    ``executor="ray"`` spreads the runs over ``workers`` Ray workers (a local Ray started for the grid, or the
    cluster at ``ray_address``); the records are written here, as they come back, exactly as by the local
    executor (``on_workers`` is told the workers' process ids: for tests that kill one; ``keep_workers``
    leaves them up for the next grid of this process, see ``thrifty.scale.ray_executor``;
    ``gpus_per_worker`` asks Ray for GPUs for each worker, which loads a local model once and serves every run
    placed on it). With
    ``config.global_budget`` every run leases its worst case from one shared budget first.

    Returns all the records of the file (earlier ones included). Raises BenchError before running anything
    if the file holds runs of another model (or ScaleError if the executor cannot be used); SetupError (from
    the runner) if the model or tools cannot be used; GlobalBudgetReached when the global budget stopped the
    grid (finished runs kept); KeyboardInterrupt after saving what finished.
    """
    if config.concurrency < 1:
        raise BenchError("concurrency must be >= 1")
    if executor not in EXECUTORS:
        raise BenchError(f"unknown executor {executor!r}: use local or ray")
    shard_k, shard_n = _checked_shard(*config.shard)
    path = Path(results_path)
    tools = _grid_tools(config)
    existing = _existing_results(path, config, tools)
    # a run that failed on a transient model error (the server unreachable, a timeout, a 5xx, a rate limit)
    # is not done: it runs again, its new line replacing the failed one (as load_results reads the file)
    done = {_key(r) for r in existing if not transient_failure(r)}

    grid = [
        (choice, b, item, seed)
        for seed in config.seeds
        for item in config.dataset.items[shard_k::shard_n]
        for choice in config.strategies
        for b in config.budgets
    ]
    jobs = [job for job in grid if (job[0].label, job[1], job[2].id, job[3]) not in done]
    reservations = _check_global(config, tools)
    earlier = _earlier_spend(grid, existing) if config.global_budget is not None else {}
    total = len(grid)
    writer = _Writer(path)
    by_key = {_key(r): r for r in existing}  # a rerun's record takes the place of the failed one
    finished = [r for r in existing if _key(r) in done]
    em_sum = [sum(float(r.get("em", 0)) for r in finished), len(finished)]
    bar = (
        _Progress(total, total - len(jobs), f"{config.dataset.name} · {config.model}")
        if progress and jobs
        else None
    )

    # Set once the grid is interrupted (Ctrl-C) or fails and has stopped waiting for its runs in flight (the
    # executor stops them at their next call and waits; a second Ctrl-C cuts the wait short): a run ending
    # later ends in a process that is shutting down (its model client's threads refuse new work, so it
    # "fails"), and is not recorded: it was not finished when the grid stopped; the resumed grid runs it.
    stopped = threading.Event()

    def on_done(job: Job, record: dict[str, Any] | None) -> None:
        if stopped.is_set():
            return
        if record is None:
            raise KeyboardInterrupt  # a cancelled run: stop, keeping what finished
        writer.write(record)
        by_key[_key(record)] = record
        em_sum[0] += record["em"]
        em_sum[1] += 1
        if on_result is not None:
            on_result(record)
        if bar is not None:
            bar.advance(f"{em_sum[0] / em_sum[1]:.3f}")

    try:
        place = Placement(
            executor,
            config.concurrency,
            workers,
            ray_address,
            gpus=gpus_per_worker,
            on_start=on_workers,
            keep_workers=keep_workers,
        )
        left, snapshot = execute_pooled(
            jobs,
            on_done,
            place,
            config.global_budget,
            earlier,
            _grid_worker(config, reservations, tools, executor),
        )
    except BaseException:
        stopped.set()
        raise
    finally:
        if bar is not None:
            bar.stop()
    records = list(by_key.values())
    if shard_n > 1:  # other shards may have added to the file meanwhile: return all of it
        records = load_results(path)
    if left:
        raise GlobalBudgetReached(records, len(left), snapshot)
    return records


def _check_global(config: BenchConfig, tools: Sequence[Tool]) -> dict[int, dict[str, float]] | None:
    """Each budget value's lease (None without a global budget); BenchError, before anything runs, when one
    run's worst case is more than the whole global budget."""
    from thrifty.budget.pool import lease_too_big

    if config.global_budget is None:
        return None
    reservations = {b: run_reservation(config, b, tools) for b in config.budgets}
    for b, amounts in reservations.items():
        why = lease_too_big(config.global_budget, amounts)
        if why is not None:
            raise BenchError(
                f"the global budget is smaller than one run's reservation at budget {b} ({why}): "
                "raise the global budget or lower the run budgets"
            )
    return reservations


def _earlier_spend(grid: list[Job], existing: list[dict[str, Any]]) -> dict[str, float]:
    """What the grid's finished runs spent: a resumed grid's global budget counts it."""
    keys = {(job[0].label, job[1], job[2].id, job[3]) for job in grid}
    total: dict[str, float] = {}
    for record in existing:
        if _key(record) in keys:
            for dim, value in usage_spent(record.get("usage") or {}).items():
                total[dim] = total.get(dim, 0.0) + value
    return total


def _grid_worker(
    config: BenchConfig,
    reservations: dict[int, dict[str, float]] | None,
    tools: list[Tool],
    executor: str,
) -> Callable[[LeaseClient | None], Callable[[], GridWorker]]:
    """The grid's worker factory for ``execute_pooled``: local threads share ``tools``; each Ray worker
    builds its own."""
    from functools import partial

    if executor == "local":
        return lambda pool: partial(GridWorker, config, pool, reservations, tools)
    return lambda pool: partial(GridWorker, config, pool, reservations)


def _existing_results(path: Path, config: BenchConfig, tools: Sequence[Tool]) -> list[dict[str, Any]]:
    """The runs already in ``path`` (to skip); refuses a file that holds another model's runs, or runs made
    with other settings (their keys would match this grid's, so they would be skipped as done and reported
    as this grid's results)."""
    existing = load_results(path)
    model = config.model
    other = sorted({str(r.get("model")) for r in existing} - {model})
    if other:
        raise BenchError(
            f"{path} holds results of model {other[0]}, not {model}: use another --out directory"
        )
    setup = grid_setup(config, tools)
    for record in existing:
        recorded = record.get("setup")
        clash = _other_settings(record, config) or (
            _other_setup(recorded, setup) if isinstance(recorded, dict) else None
        )
        if clash is not None:
            what, was, now = clash
            raise BenchError(
                f"{path} holds runs made with other settings ({what} was {was} there, {now} now): its "
                "finished runs would be taken for this grid's (fix: rerun with the same settings to resume, "
                "or use another --out folder)"
            )
    return existing


#: model_settings keys of a record, and the option that sets each
_SETTING_OPTIONS = {
    "temperature": "--temperature",
    "max_tokens": "--max-tokens",
    "answer_choice": "--answer-choice",
    "answer_context": "--answer-context",
}


def _other_settings(record: dict[str, Any], config: BenchConfig) -> tuple[str, Any, Any] | None:
    """``(option, recorded value, this grid's value)`` of the first setting in which ``record`` differs from
    ``config``; None when it was made the same way (a field the record lacks, from an older version, is not
    compared)."""
    dataset = record.get("dataset")
    if dataset is not None and dataset != config.dataset.name:
        return "--data", repr(dataset), repr(config.dataset.name)
    recorded = record.get("model_settings")
    if isinstance(recorded, dict):
        wanted = config.settings(0).model_dump(include=set(_SETTING_OPTIONS))
        for key, option in _SETTING_OPTIONS.items():
            if key in recorded and recorded[key] != wanted[key]:
                return option, recorded[key], wanted[key]
    limits = record.get("limits")
    if isinstance(limits, dict):
        budget = int(record["budget"])
        wanted_limits = config.rule.budget(budget).limits()
        for dim in ("total_tokens", "seconds"):  # what the rule adds to B tool calls
            was, now = limits.get(dim), wanted_limits.get(dim)
            if was is not None and not _is_number(was):
                continue  # not a limit this version writes: nothing to compare
            if (was is None) != (now is None) or (
                was is not None and now is not None and abs(float(was) - now) > 1e-9 * max(1.0, now)
            ):
                option = "--tokens-per-call" if dim == "total_tokens" else "--timeout"
                return f"{option}: the {dim} limit at budget {budget}", _limit(was), _limit(now)
    return None


def _limit(value: Any) -> str:
    return "none" if value is None else f"{float(value):g}"


def _grid_tools(config: BenchConfig) -> list[Tool]:
    """The grid's tools (search and read over the corpus unless given); registers the questions with the
    simulated model when it is the one benchmarked."""
    corpus = config.corpus if config.corpus is not None else config.dataset.corpus()
    tools = config.tools
    if tools is None:
        if corpus is None:
            raise BenchError(
                f"dataset '{config.dataset.name}' has no passages: give a corpus (--corpus) for its search tools"
            )
        tools = make_search_tools(corpus, k=config.search_k)
    if config.simulated:
        from thrifty.bench import sim

        try:
            for model in config.models:
                sim.SimParams.parse(model)
            sim.register_items(config.dataset.items, corpus)
        except sim.SimModelError as exc:
            raise BenchError(str(exc)) from None
    return list(tools)
