"""ToolRunner: runs the tools a model asks for, charging the Ledger before every attempt.

Why the runner never raises for a bad call: a model's malformed JSON, wrong arguments, unknown tool names,
tool exceptions and timeouts are all things the model can learn from, so they come back as a failed
:class:`Observation` whose content says what went wrong. The one exception that does propagate is
:class:`~thrifty.budget.BudgetExceeded`: the agent loop needs it to stop with ``budget_exhausted:<dim>``.

Why reserve before running: a tool call's cost is known in advance (price x units), and a hard limit must be
impossible to cross even with calls in flight on parallel branches. Every attempt is a call the provider
bills, so a retried attempt is reserved and settled (``ok=False``) on its own. Calls that fail before the
tool runs (bad arguments, unknown tool) cost nothing, and neither does a repeat of a call already answered
(served from the per-runner cache).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import re
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from pydantic import BaseModel, Field, ValidationError

from thrifty.budget import BudgetExceeded, Ledger, Pricing, Reservation, tool_dimension
from thrifty.budget.awareness import unpayable_tools
from thrifty.budget.retry import MAX_RETRY_AFTER, RetryPolicy, retry_after
from thrifty.redact import redact
from thrifty.tools.base import Tool, ToolError, TransientToolError

__all__ = ["Observation", "ToolRunner", "to_text"]

_MAX_ERRORS_SHOWN = 3
_SCRUB_MARGIN = 512  # characters past a tool output's cut that are scrubbed too (longer than any key)
_FRAME_END = re.compile(r"\n\[end of [a-z ]{1,40}\]\Z")  # as_data's end marker, kept when the text is cut


class Observation(BaseModel):
    """What a tool call gave back, as the model will see it, plus what it cost."""

    tool: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    content: str
    ok: bool
    cached: bool = False
    units: int = 0  # budget units charged, over all attempts (0 when nothing was charged)
    usd: float = 0.0  # dollars charged, over all attempts
    error: str | None = None
    elapsed: float = 0.0
    attempts: int = 0  # attempts actually run (0: rejected before running, or served from the cache)
    # A durable run resumed: the call was made and paid before the interruption, and its recorded result is
    # given back as it was then (not as a repeat: the node that made it runs again from its start). It is
    # not paid again: ``units`` and ``usd`` say what it cost then (a charge the resume took back).
    replayed: bool = False


class _ToolTimeout(Exception):
    """An attempt ran past the tool's timeout (internal: retried only when the runner is told to)."""

    def __init__(self, seconds: float | None) -> None:
        super().__init__("timed out" if seconds is None else f"timed out after {seconds:g}s")
        self.seconds = seconds


class _Refused(Exception):
    """Wraps a ToolError so that retry logic and result building can tell it apart from a crash."""

    def __init__(self, error: ToolError) -> None:
        super().__init__(str(error))
        self.error = error


@dataclass
class _Call:
    """A validated call, ready to be charged and run."""

    tool: Tool
    kwargs: dict[str, Any]
    arguments: dict[str, Any]  # canonical JSON-able arguments (what the observation reports)
    key: tuple[str, str]  # cache key: tool name + canonical JSON
    units: int
    price: float

    @property
    def amounts(self) -> dict[str, float]:
        return {
            "tool_calls": float(self.units),
            tool_dimension(self.tool.name): float(self.units),
            "usd": self.price * self.units,
        }


def to_text(result: Any) -> str:
    """A tool's return value as text for the model: strings as is, structured data as compact JSON."""
    if isinstance(result, str):
        return result
    if result is None:
        return "(no output)"
    if isinstance(result, BaseModel):
        return result.model_dump_json()
    if isinstance(result, Mapping | list | tuple):
        data = cast(object, result)  # items of any type: json.dumps and _json_default take them as they are
        try:
            return json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=_json_default)
        except (TypeError, ValueError):
            return str(data)
    return str(result)


def _json_default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, set | frozenset):
        return sorted(cast("set[Any] | frozenset[Any]", value), key=str)
    return str(value)


def _scrubbed(text: str, max_chars: int) -> str:
    """A tool's output as the model may see it: secrets masked (:func:`thrifty.redact.redact`), then cut to
    ``max_chars``. Only a margin past the cut is scrubbed, so a flood costs no more than its first part,
    and a key straddling the cut is still seen whole. Text framed as data (:func:`thrifty.tools.web.as_data`)
    is cut inside its frame: the end marker stays, after the note that says the text was cut."""
    end = _FRAME_END.search(text, max(0, len(text) - 80)) if len(text) > max_chars else None
    if end is None:
        return _truncate(redact(text[: max_chars + _SCRUB_MARGIN]), max_chars, len(text))
    body = text[: end.start()]
    return _truncate(redact(body[: max_chars + _SCRUB_MARGIN]), max_chars, len(body)) + end.group()


def _truncate(text: str, max_chars: int, total: int | None = None) -> str:
    total = len(text) if total is None else max(total, len(text))
    if total <= max_chars:
        return text
    return f"{text[:max_chars]}\n...[truncated: {total - max_chars} more chars]"


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _duplicates(tools: Sequence[Tool], duplicates: list[str]) -> str:
    """``duplicate tool names: a, b``; when an MCP server's tool is one of them, which server's tool clashes
    with which, and the fix (the server's ``prefix``)."""
    from thrifty.tools.mcp import MCPTool, mcp_tool_name

    message = f"duplicate tool names: {', '.join(duplicates)}"
    clashes: list[str] = []
    servers: list[str] = []
    for name in duplicates:
        same = [t for t in tools if t.name == name]
        remote = [t for t in same if isinstance(t, MCPTool)]
        if not remote:
            continue
        owners = [f"MCP server '{t.server}' (its tool '{_short(t.remote_name, 80)}')" for t in remote]
        others = len(same) - len(remote)
        if others:
            owners.append("another tool of the task" if others == 1 else f"{others} other tools of the task")
        clashes.append(f"'{name}' is the name of {' and of '.join(owners)}")
        servers += [t.server for t in remote if t.server not in servers]
    if not clashes:
        return message
    prefix = mcp_tool_name("", servers[0])[:19].rstrip("_") + "_"
    return (
        f"{message} ({'; '.join(clashes)}; fix: give MCP server '{servers[0]}' a prefix, e.g. `prefix: "
        f"{prefix}` (its tools then become {prefix}<name>), or leave the tool out with the server's "
        "`tools: [...]`)"
    )


def _exited(exc: SystemExit) -> ToolError:
    """A tool that called ``sys.exit()`` (or a library that did): the call fails, the process goes on."""
    return ToolError(f"the tool tried to end the process (SystemExit: {exc.code!r}); the call was stopped")


def _retryable(exc: BaseException) -> bool:
    return not isinstance(exc, ValidationError | BudgetExceeded | _Refused | _ToolTimeout)


class ToolRunner:
    """Validates, charges, runs, retries and caches tool calls against one Ledger.

    Thread-safe: the cache and counters are guarded by a lock, and the Ledger has its own.
    """

    def __init__(
        self,
        tools: Sequence[Tool],
        ledger: Ledger,
        pricing: Pricing | None = None,
        cache: bool = True,
        *,
        max_chars: int = 4000,
        retry_timeouts: bool = False,
        max_workers: int = 8,
    ) -> None:
        names = [t.name for t in tools]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(_duplicates(tools, duplicates))
        if max_chars < 1:
            raise ValueError("max_chars must be >= 1")
        self.tools: dict[str, Tool] = {t.name: t for t in tools}
        self.ledger = ledger
        self.pricing = pricing or Pricing()
        self.cache_enabled = cache
        self.max_chars = max_chars
        self.retry_timeouts = retry_timeouts
        self._cache: dict[tuple[str, str], Observation] = {}
        self._lock = threading.Lock()
        self._counters: Counter[str] = Counter()
        self._max_workers = max_workers
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

    # ------------------------------------------------------------------------------------ helpers
    def price(self, tool: Tool) -> float:
        """Dollars per unit for ``tool``: configured price, else declared, else the default."""
        return self.pricing.tool_price(tool.name, tool.price)

    def available(
        self, ledger: Ledger | None = None, credit: Mapping[str, float] | None = None
    ) -> list[Tool]:
        """The tools whose budget can still pay one call, so an agent can hide the spent ones (and those
        that cannot be called any more: :meth:`Tool.unavailable`, e.g. an MCP server's after it stopped).

        ``credit``: spend to count as not made yet (a resumed node replaying its calls decides as it did
        when it first ran: :meth:`thrifty.store.durable.RunJournal.credit`)."""
        ledger = ledger or self.ledger
        left = ledger.availability()
        if credit:
            left = {dim: value + credit.get(dim, 0.0) for dim, value in left.items()}
        affordable = [
            t
            for t in self.tools.values()
            if t.unavailable() is None  # a tool that cannot be called now (its MCP server stopped) is hidden
            and ledger.can_afford({"tool_calls": 1, tool_dimension(t.name): 1, "usd": self.price(t)}, left)
        ]
        unpaid = unpayable_tools(ledger, [t.name for t in affordable])  # e.g. recall without memory_ops
        return [t for t in affordable if t.name not in unpaid]

    @property
    def counters(self) -> dict[str, int]:
        """calls, cache_hits, rejected, attempts, failed_attempts, errors, timeouts (a snapshot)."""
        with self._lock:
            return dict(self._counters)

    def clear_cache(self) -> None:
        with self._lock:
            self._cache.clear()

    def close(self) -> None:
        """Shut the worker threads down (a thread stuck in a timed-out tool is not waited for)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> ToolRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _executor(self) -> concurrent.futures.ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = concurrent.futures.ThreadPoolExecutor(
                    max_workers=self._max_workers, thread_name_prefix="thrifty-tool"
                )
            return self._pool

    def _count(self, *keys: str) -> None:
        with self._lock:
            for key in keys:
                self._counters[key] += 1

    # ------------------------------------------------------------------------------ preparation
    def _reject(self, name: str, arguments: dict[str, Any], error: str, content: str) -> Observation:
        self._count("calls", "rejected")
        return Observation(tool=name, arguments=arguments, content=content, ok=False, error=error)

    def _prepare(self, name: str, arguments: Mapping[str, Any] | str | None) -> _Call | Observation:
        """Validate a call; an Observation means it was rejected (nothing charged)."""
        tool = self.tools.get(name)
        if tool is None:
            listed = ", ".join(sorted(self.tools)) or "(none)"
            return self._reject(
                name,
                {},
                f"unknown tool '{name}'",
                f"error: unknown tool '{name}'. Available tools: {listed}.",
            )
        raw: Any = arguments
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            raw = {}
        elif isinstance(raw, str):
            try:
                raw = json.loads(raw)
            except json.JSONDecodeError as exc:
                return self._reject(
                    name,
                    {},
                    f"invalid JSON: {exc.msg}",
                    f"error: arguments are not valid JSON ({exc.msg} at char {exc.pos}). "
                    f"Send a JSON object for {tool.signature_hint()}.",
                )
            except RecursionError:  # "[[[[..." thousands deep: Python's parser gives up
                return self._reject(
                    name,
                    {},
                    "arguments nest too deeply",
                    f"error: the arguments nest too deeply to read. Send a flat JSON object for "
                    f"{tool.signature_hint()}.",
                )
        if not isinstance(raw, Mapping):
            return self._reject(
                name,
                {},
                "arguments are not an object",
                f"error: arguments must be a JSON object, got {type(raw).__name__}. "
                f"Expected {tool.signature_hint()}.",
            )
        given: dict[str, Any] = dict(cast("Mapping[str, Any]", raw))
        gone = tool.unavailable()
        if gone is not None:  # e.g. its MCP server stopped: the call cannot succeed, so it is not charged
            return self._reject(name, _jsonable(given), gone, f"error: {gone}")
        try:
            validated = tool.validate(given)
        except ValidationError as exc:
            problems: list[str] = []
            for err in exc.errors()[:_MAX_ERRORS_SHOWN]:
                where = ".".join(str(part) for part in err["loc"]) or "arguments"
                problems.append(f"{where}: {err['msg']}")
            more = exc.error_count() - len(problems)
            detail = "; ".join(problems) + (f"; and {more} more" if more > 0 else "")
            return self._reject(
                name,
                _jsonable(given),
                f"invalid arguments: {detail}",
                f"error: invalid arguments for {name}: {detail}. Expected {tool.signature_hint()}.",
            )
        canonical = validated.model_dump(mode="json", by_alias=True)
        key = (name, validated.model_dump_json(by_alias=True))  # fields in the model's fixed order
        units = tool.units(validated)
        return _Call(tool, tool.kwargs(validated), canonical, key, units, self.price(tool))

    def _cached(self, call: _Call) -> Observation | None:
        if not self.cache_enabled:
            return None
        with self._lock:
            hit = self._cache.get(call.key)
            if hit is None:
                return None
            self._counters.update(("calls", "cache_hits"))
        return hit.model_copy(
            deep=True, update={"cached": True, "units": 0, "usd": 0.0, "elapsed": 0.0, "attempts": 0}
        )

    def _journal_key(self, call: _Call, ledger: Ledger, node: str | None) -> str | None:
        journal = ledger.journal
        if journal is None:
            return None
        return journal.key("tool", call.tool.name, {"arguments": call.key[1], "node": node})

    def _replayed(self, call: _Call, ledger: Ledger, node: str | None) -> Observation | None:
        """In a durable run: a call completed before the run resumed, given back free from its record, as
        the model saw it then (not marked as a repeat: the node that made it is running again, and its model
        has not seen the result in this run of it). Cached as the first result of the call."""
        key = self._journal_key(call, ledger, node)
        recorded = None if key is None else ledger.journal.replay("tool", key)
        if recorded is None:
            return None
        attempts = int(recorded.get("attempts") or 1)
        obs = Observation(
            tool=call.tool.name,
            arguments=call.arguments,
            content=str(recorded["content"]),
            ok=True,
            units=call.units * attempts,
            usd=call.price * call.units * attempts,
            attempts=attempts,
        )
        with self._lock:
            self._counters.update(("calls", "replayed"))
            if self.cache_enabled:
                self._cache[call.key] = obs
        return obs.model_copy(update={"replayed": True})

    def _record(self, state: _Attempts) -> tuple[str, dict[str, Any]] | None:
        """In a durable run: the key and the result (as the model will see it) to write with the charge."""
        key = self._journal_key(state.call, state.ledger, state.node)
        if key is None:
            return None
        return key, {"content": _scrubbed(to_text(state.outcome), self.max_chars), "attempts": state.attempts}

    def _finish(
        self, call: _Call, outcome: Any, failure: BaseException | None, attempts: int, started: float
    ) -> Observation:
        """Build the observation for a call that ran (at least one attempt was charged)."""
        base: dict[str, Any] = {
            "tool": call.tool.name,
            "arguments": call.arguments,
            "units": call.units * attempts,
            "usd": call.price * call.units * attempts,
            "elapsed": time.monotonic() - started,
            "attempts": attempts,
        }
        if failure is None:
            obs = Observation(content=_scrubbed(to_text(outcome), self.max_chars), ok=True, **base)
            with self._lock:
                self._counters["calls"] += 1
                if self.cache_enabled:
                    self._cache[call.key] = obs
            return obs
        error = _describe(failure)
        self._count("calls", "errors", *(["timeouts"] if isinstance(failure, _ToolTimeout) else []))
        content = f"error: {error}"
        if attempts > 1:
            content += f" (after {attempts} attempts)"
        return Observation(content=_truncate(content, self.max_chars), ok=False, error=error, **base)

    # ---------------------------------------------------------------------------------- running
    def _attempt_sync(self, call: _Call, ledger: Ledger) -> Any:
        tool = call.tool
        if tool.timeout is None and not tool.is_async:  # a fast in-memory tool: no thread hand-off
            try:
                return tool.fn(**call.kwargs)
            except ToolError as exc:
                raise _Refused(exc) from exc
            except SystemExit as exc:
                raise _Refused(_exited(exc)) from None
        wait, by_budget = _wait_limit(tool.timeout, ledger)
        if tool.is_async:
            future = self._executor().submit(_run_coroutine, tool.fn, call.kwargs, wait)
        else:
            future = self._executor().submit(tool.fn, **call.kwargs)
        try:
            try:
                return future.result(timeout=wait)
            except TimeoutError:
                if not future.done():  # our wait ran out; the thread cannot be killed, only abandoned
                    future.cancel()
                    raise _timed_out(wait, by_budget, ledger) from None
                return future.result()  # finished meanwhile, or the tool itself raised TimeoutError
        except _ToolTimeout as exc:  # an async tool's own bounded wait, in its worker thread
            raise _timed_out(exc.seconds, by_budget, ledger) from None
        except ToolError as exc:
            raise _Refused(exc) from exc
        except SystemExit as exc:
            raise _Refused(_exited(exc)) from None

    async def _attempt_async(self, call: _Call, ledger: Ledger) -> Any:
        tool = call.tool
        awaitable: Awaitable[Any]
        if tool.is_async:
            awaitable = tool.fn(**call.kwargs)
        elif tool.timeout is None:  # a fast in-memory tool: run it on the loop's thread
            try:
                return tool.fn(**call.kwargs)
            except ToolError as exc:
                raise _Refused(exc) from exc
            except SystemExit as exc:
                raise _Refused(_exited(exc)) from None
        else:
            loop = asyncio.get_running_loop()
            awaitable = loop.run_in_executor(self._executor(), lambda: tool.fn(**call.kwargs))
        wait, by_budget = _wait_limit(tool.timeout, ledger)
        try:
            return await _bounded(awaitable, wait)
        except _ToolTimeout:
            raise _timed_out(wait, by_budget, ledger) from None
        except ToolError as exc:
            raise _Refused(exc) from exc
        except SystemExit as exc:  # from the tool's coroutine, or a sync tool's worker thread
            raise _Refused(_exited(exc)) from None

    def _should_retry(self, exc: BaseException) -> bool:
        if isinstance(exc, _ToolTimeout):
            return self.retry_timeouts
        return _retryable(exc) and (retry_after(exc) or 0.0) <= MAX_RETRY_AFTER

    def _retry_policy(self, state: _Attempts) -> RetryPolicy:
        """Another attempt at once, or after the wait the failure asks for (a search provider's 429 with
        ``Retry-After``), but never over MAX_RETRY_AFTER; a wait that would end past the time budget is not
        slept through: the last failure becomes the observation at once, so the agent can use its time."""
        ledger = state.ledger

        def check_wait(seconds: float) -> None:
            ledger.check_time()
            left = ledger.available("seconds")
            if seconds > 0 and seconds >= left:
                failure = _describe(state.failure) if state.failure is not None else "failed"
                raise _Refused(
                    ToolError(
                        f"{failure} (not retried: it asks for a {seconds:.1f}s wait and {left:.1f}s of"
                        " the time budget are left)"
                    )
                )

        return RetryPolicy(
            attempts=state.call.tool.retries + 1,
            retry=self._should_retry,
            wait_hint=retry_after,
            before_wait=check_wait,
        )

    def _charged(self, state: _Attempts) -> _Charge:
        """One attempt's budget: reserve before (the ``with`` gets None when a retry cannot be paid), settle
        after — as a failure if the tool raised, back in full if the attempt was interrupted."""
        return _Charge(self._count, state)

    def run(
        self,
        name: str,
        arguments: Mapping[str, Any] | str | None = None,
        *,
        node: str | None = None,
        ledger: Ledger | None = None,
    ) -> Observation:
        """Run one tool call. Never raises for the model's or the tool's faults; raises BudgetExceeded.

        ``arguments`` may be a dict or the JSON text a model produced. ``node`` labels the ledger events;
        ``ledger`` charges a child ledger (a branch or node) instead of the runner's own.
        """
        prepared = self._prepare(name, arguments)
        if isinstance(prepared, Observation):
            return prepared
        call = prepared
        hit = self._cached(call) or self._replayed(call, ledger or self.ledger, node)
        if hit is not None:
            return hit
        state = _Attempts(call, ledger or self.ledger, node)

        def attempt() -> None:
            with self._charged(state) as res:
                if res is not None:  # None: a retry the budget cannot pay; the last failure is reported
                    # as text here: a result whose __str__ raises fails this attempt, as a tool's exception does
                    state.outcome = to_text(self._attempt_sync(call, state.ledger))
                    state.record = self._record(state)

        try:
            self._retry_policy(state).call(attempt)
        except BudgetExceeded:
            raise
        except Exception as exc:
            state.failure = exc
        return self._finish(call, state.outcome, state.failure, state.attempts, state.started)

    async def arun(
        self,
        name: str,
        arguments: Mapping[str, Any] | str | None = None,
        *,
        node: str | None = None,
        ledger: Ledger | None = None,
    ) -> Observation:
        """The async twin of :meth:`run` (async tools are awaited; sync ones run in the thread pool)."""
        prepared = self._prepare(name, arguments)
        if isinstance(prepared, Observation):
            return prepared
        call = prepared
        hit = self._cached(call) or self._replayed(call, ledger or self.ledger, node)
        if hit is not None:
            return hit
        state = _Attempts(call, ledger or self.ledger, node)

        async def attempt() -> None:
            with self._charged(state) as res:
                if res is not None:
                    state.outcome = to_text(await self._attempt_async(call, state.ledger))
                    state.record = self._record(state)

        try:
            await self._retry_policy(state).acall(attempt)
        except BudgetExceeded:
            raise
        except Exception as exc:
            state.failure = exc
        return self._finish(call, state.outcome, state.failure, state.attempts, state.started)


class _Charge:
    """The context manager behind :meth:`ToolRunner._charged` (a class: a generator-based one costs more
    than the instant tool it wraps). ``count`` bumps the runner's counters."""

    __slots__ = ("count", "res", "state")

    def __init__(self, count: Callable[[str], None], state: _Attempts) -> None:
        self.count = count
        self.state = state
        self.res: Reservation | None = None

    def __enter__(self) -> Reservation | None:
        state = self.state
        self.res = _reserve(state.ledger, state.call, state.node, state.attempts + 1)
        if self.res is not None:
            state.attempts += 1
            self.count("attempts")
        return self.res

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        res = self.res
        if res is None:
            return
        if exc is None:
            record, journal = self.state.record, res.ledger.journal
            if record is not None and journal is not None:
                with journal.completing("tool", record[0], record[1]):
                    res.ledger.settle(res, ok=True)
            else:
                res.ledger.settle(res, ok=True)
            self.state.failure = None
        elif isinstance(exc, Exception):
            self.state.failure = exc
            res.ledger.settle(res, ok=False, detail=_short(_describe(exc)))
            self.count("failed_attempts")
        else:  # interrupted or cancelled: the attempt never completed, give it back
            res.ledger.release(res)


def _reserve(ledger: Ledger, call: _Call, node: str | None, attempt: int) -> Reservation | None:
    """Reserve one attempt. The first attempt's BudgetExceeded propagates; a retry's returns None."""
    try:
        return ledger.reserve(call.amounts, kind="tool", name=call.tool.name, node=node)
    except BudgetExceeded:
        if attempt == 1:
            raise
        return None


@dataclass
class _Attempts:
    """What the attempts of one call have produced so far."""

    call: _Call
    ledger: Ledger
    node: str | None
    attempts: int = 0
    outcome: Any = None
    failure: BaseException | None = None
    record: tuple[str, dict[str, Any]] | None = None  # a durable run's key and result for the charge
    started: float = field(default_factory=time.monotonic)


def _describe(exc: BaseException) -> str:
    """``ExcType: message`` for a crash; the bare message for a ToolError refusal, a TransientToolError or a
    timeout. Scrubbed
    (:func:`thrifty.redact.redact`): it goes into the observation, the trace, the charge event, the run
    store and the next prompt, and a tool's HTTP client puts keys in its errors."""
    if isinstance(exc, _Refused | _ToolTimeout | TransientToolError):
        return redact(str(exc))
    message = str(exc)
    return redact(f"{type(exc).__name__}: {message}") if message else type(exc).__name__


def _wait_limit(timeout: float | None, ledger: Ledger) -> tuple[float | None, bool]:
    """How long to wait for one attempt: the tool's timeout, but never past the time budget's end (a tool
    declaring ``timeout=30`` waits 2 s when 2 s are left). True when the time left is what bounds it."""
    left = ledger.available("seconds")
    if left == float("inf") or (timeout is not None and timeout <= left):
        return timeout, False
    return max(left, 0.001), True


def _timed_out(seconds: float | None, by_budget: bool, ledger: Ledger) -> Exception:
    """The error for an attempt whose wait ran out: the tool's own timeout, or the run's time budget."""
    if by_budget:
        return BudgetExceeded("seconds", seconds or 0.0, ledger.available("seconds"), ledger.path)
    return _ToolTimeout(seconds)


async def _bounded(awaitable: Awaitable[Any], timeout: float | None) -> Any:
    """Await with a timeout, telling our timeout apart from a TimeoutError the tool raised itself."""
    scope = asyncio.timeout(timeout)
    try:
        async with scope:
            return await awaitable
    except TimeoutError:
        if scope.expired():
            raise _ToolTimeout(timeout) from None
        raise


def _jsonable(value: dict[str, Any]) -> dict[str, Any]:
    """The given arguments as JSON-able data, for reporting a rejected call."""
    try:
        result: dict[str, Any] = json.loads(json.dumps(value, default=str))
    except (TypeError, ValueError, RecursionError):
        return {k: str(v) for k, v in value.items()}
    return result


def _run_coroutine(fn: Callable[..., Awaitable[Any]], kwargs: dict[str, Any], timeout: float | None) -> Any:
    """Run an async tool to completion in a worker thread (for the sync :meth:`ToolRunner.run`).

    The coroutine gets its own timeout so that it is cancelled, not just abandoned, when it runs over.
    """
    return asyncio.run(_bounded(fn(**kwargs), timeout))
