"""MCP servers' tools as thrifty tools: every call goes through the ToolRunner, so per-tool limits
(``tool:<name>``), prices, the cache, retries and the Budget Tracker apply to them like to any tool.

A server is a stdio command (started as a subprocess) or a streamable HTTP URL (:class:`MCPServerConfig`).
:func:`connect_mcp` starts it, lists its tools and turns each into a :class:`MCPTool` whose schema is the
server's own input schema (checked when the server starts: a schema that is not valid JSON Schema is a
startup error, not a surprise mid-run), and whose arguments are validated against it before anything is
charged.

Why a thread with its own event loop: the MCP client is asynchronous and its session belongs to the loop
it was opened on, while the runner calls tools from its worker threads (sync runs) or from a fresh loop
(async tools in a sync run). Each connection keeps one loop in one daemon thread, and a call is handed to
it with ``run_coroutine_threadsafe``, bounded by the call timeout.

What can go wrong becomes an observation: a tool's own error (``isError``), a protocol error (unknown
tool, bad params), a call that hangs (timeout), a server that crashed (its stderr's last lines are shown).
A server that cannot start, times out while starting, or lists a tool with a bad schema raises
:class:`MCPStartupError` (``agent run`` exits 2).

What a server lists is bounded before it costs anything per tool: at most 10,000 tools are read from its
listing, at most ``max_tools`` (128) of them are kept once ``tools`` has picked, and each kept tool's input
schema is at most 64 KiB of JSON, 32 levels deep and 32 regular expressions. A schema's ``pattern`` and
``patternProperties`` are matched with pydantic-core's Rust regex engine, in time linear in the text (a
pattern such as ``^(a+)+$`` cannot hang a run on the model's arguments); a pattern that engine cannot compile
(look-around, back-references) is a startup error.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import json
import re
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, ClassVar, cast

from pydantic import BaseModel, ConfigDict, create_model, model_validator
from pydantic_core import PydanticCustomError

from thrifty.redact import redact
from thrifty.tools.base import Tool, ToolError
from thrifty.tools.web import as_data

__all__ = ["MCPConnection", "MCPServerConfig", "MCPStartupError", "MCPTool", "connect_mcp", "mcp_tool_name"]

_BAD_NAME_CHARS = re.compile(r"[^A-Za-z0-9_-]")
_STDERR_TAIL = 600
_ERROR_CHARS = 2000  # characters of a server's error message kept
_MAX_LISTED = 10_000  # tools read from one server's listing, before its `tools` filter
_SHOWN_NAMES = 20  # tool names an error message lists
_SCHEMA_CHARS = 65_536  # characters of compact JSON in one tool's input schema
_SCHEMA_DEPTH = 32  # levels of objects and arrays in one tool's input schema
_SCHEMA_REGEXES = 32  # distinct regular expressions in one tool's input schema
_SERVER_REGEXES = 256  # ... and in all the tools kept of one server (each is compiled at startup)


def mcp_tool_name(prefix: str, remote_name: str) -> str:
    """The name a server's tool has in a run: its prefix and name, in the characters a model's tool names
    may use, at most 64 of them."""
    return _BAD_NAME_CHARS.sub("_", f"{prefix}{remote_name}")[:64]


class MCPStartupError(RuntimeError):
    """An MCP server that cannot be used: not started, timed out, or listing a tool with a bad schema."""


@dataclass(frozen=True)
class MCPServerConfig:
    """One MCP server. Exactly one of ``command`` (stdio: the program and its arguments) or ``url``
    (streamable HTTP).

    ``tools``: expose only these (by the server's names); ``prefix``: put before each tool's name (e.g.
    ``"wiki_"``), to keep two servers' tools apart; ``price``: dollars per call of each tool (a configured
    Pricing overrides it per tool name); ``timeout``: seconds one call may take; ``startup_timeout``:
    seconds to start and list tools; ``retries``: extra attempts after a failed call (each charged).
    ``env``: the whole environment of a stdio server besides the MCP client's minimal one (HOME, PATH,
    USER...). ``max_tools``: the most tools it may offer once ``tools`` has picked (more is a startup
    error). ``origin``: where each option was written (option -> ``"task.yaml:7, field
    'mcp_servers.0.url'"``), named by startup errors.
    """

    name: str
    command: Sequence[str] = ()
    url: str | None = None
    env: Mapping[str, str] | None = field(default=None, repr=False)  # may hold keys: never shown
    cwd: str | None = None
    tools: Sequence[str] | None = None
    prefix: str = ""
    price: float | None = None
    timeout: float = 60.0
    startup_timeout: float = 30.0
    retries: int = 0
    mode: str = "legacy"  # the MCP handshake: "legacy" (initialize), "auto" (probe the newer protocol first)
    max_tools: int = 128
    origin: Mapping[str, str] | None = None

    def __post_init__(self) -> None:
        command = cast(object, self.command)  # a caller's value, typed or not
        if isinstance(command, str):  # as a task file's `command: "python server.py"` is read
            import shlex

            try:
                object.__setattr__(self, "command", tuple(shlex.split(command)))
            except ValueError as exc:
                raise ValueError(
                    f"MCP server '{self.name}': command {command!r} cannot be split into words ({exc}) (fix: "
                    "give a list, e.g. command=['python', 'server.py'])"
                ) from None
        tools = cast(object, self.tools)
        if isinstance(tools, str):
            raise TypeError(
                f"MCP server '{self.name}': tools must be a list of the server's tool names, not the str "
                f"{tools!r} (fix: tools=[{tools!r}])"
            )
        if bool(self.command) == bool(self.url):
            raise ValueError(f"MCP server '{self.name}': give exactly one of command (stdio) or url (HTTP)")
        if self.timeout <= 0 or self.startup_timeout <= 0:
            raise ValueError(f"MCP server '{self.name}': timeouts must be > 0")
        if self.max_tools < 1:
            raise ValueError(f"MCP server '{self.name}': max_tools must be >= 1")


class _SchemaArgs(BaseModel):
    """Arguments of an MCP tool: any JSON object the server's input schema accepts."""

    model_config = ConfigDict(extra="allow")
    schema_validator: ClassVar[Any] = None

    @model_validator(mode="before")
    @classmethod
    def _check(cls, data: Any) -> Any:
        if cls.schema_validator is None:
            return data
        from referencing.exceptions import Unresolvable

        try:
            problems = sorted(cls.schema_validator.iter_errors(data), key=lambda e: list(e.absolute_path))
        except RecursionError:  # deep arguments under a recursive schema, or a schema that loops on itself
            raise PydanticCustomError(
                "mcp_schema", "the arguments nest too deeply to check against the tool's input schema"
            ) from None
        except (Unresolvable, _UncheckablePattern) as exc:  # the server's schema, not the arguments
            detail = " ".join(str(exc).split())[:300]
            raise PydanticCustomError(
                "mcp_schema", "the tool's input schema cannot be checked ({detail})", {"detail": detail}
            ) from None
        if problems:
            shown: list[str] = []
            for problem in problems[:3]:
                where = ".".join(str(p) for p in problem.absolute_path)
                shown.append(f"{where}: {problem.message}" if where else str(problem.message))
            # A custom error type: pydantic shows its message as it is (a ValueError gets "Value error, ").
            raise PydanticCustomError("mcp_schema", "{detail}", {"detail": "; ".join(shown)})
        if isinstance(data, dict):  # one key order, so that the same call is the same cache entry
            given = cast("dict[str, Any]", data)
            return {key: given[key] for key in sorted(given)}
        return data


@dataclass(eq=False)
class MCPTool(Tool):
    """A tool of an MCP server: its schema is the server's, its calls go to the server."""

    input_schema: dict[str, Any] = field(default_factory=dict[str, Any])
    server: str = ""
    remote_name: str = ""
    # Why its server can take no call now (it stopped), or None: MCPConnection.stopped.
    server_stopped: Callable[[], str | None] | None = field(default=None, repr=False)

    def unavailable(self) -> str | None:
        return None if self.server_stopped is None else self.server_stopped()

    def kwargs(self, validated: BaseModel) -> dict[str, Any]:
        return validated.model_dump(mode="json", by_alias=True)

    def parameters_schema(self) -> dict[str, Any]:
        return json.loads(json.dumps(self.input_schema))

    def signature_hint(self) -> str:
        props = cast("dict[str, Any]", self.input_schema.get("properties") or {})
        required = set(cast("list[str]", self.input_schema.get("required") or []))
        parts: list[str] = []
        for name, schema in props.items():
            spec = cast("dict[str, Any]", schema) if isinstance(schema, dict) else {}
            default = f" = {spec['default']!r}" if "default" in spec else " = optional"  # the server's
            parts.append(f"{name}: {spec.get('type', 'any')}" + ("" if name in required else default))
        return f"{self.name}({', '.join(parts)})"


def _checked_schema(
    server: str, tool: str, schema: Any, compiled: set[str] | None = None
) -> tuple[dict[str, Any], Any]:
    """The tool's input schema and a validator for its arguments; MCPStartupError when the schema is not
    usable (not a JSON Schema object, too large or deep, refers to another document, holds a regular
    expression the linear-time engine cannot compile). ``compiled``: the regular expressions of the
    server's tools checked so far (this tool's are added), at most ``_SERVER_REGEXES`` of them."""
    from jsonschema import validators
    from jsonschema.exceptions import SchemaError

    def refused(problem: str, fix: str = "fix the server") -> MCPStartupError:
        return _refused(server, tool, "an input schema", problem, fix)

    if not isinstance(schema, dict) or cast("dict[str, Any]", schema).get("type") != "object":
        raise refused("that is not a JSON Schema object (type: object)")
    checked = cast("dict[str, Any]", schema)
    # Its shape first: jsonschema walks a schema recursively, so a deep one would raise RecursionError.
    shape = _oversized(checked)
    if shape is not None:
        raise refused(shape)
    try:
        cls = validators.validator_for(checked)
        cls.check_schema(checked)
    except SchemaError as exc:
        raise MCPStartupError(
            f"MCP server '{server}': tool '{tool}' has an invalid input schema ({exc.message}); fix the "
            "server, or leave the tool out with `tools: [...]`"
        ) from None
    outside = _external_ref(checked)
    if outside is not None:
        raise refused(
            f"that refers to another document ({outside[:200]!r}), which is never fetched",
            "fix the server (refer only inside the schema, '#/...')",
        )
    regexes, unevaluated = _regexes(checked)
    if len(regexes) > _SCHEMA_REGEXES:
        raise refused(
            f"with {len(regexes)} regular expressions (pattern, patternProperties), more than {_SCHEMA_REGEXES}"
        )
    if unevaluated:  # jsonschema matches unevaluatedProperties' patternProperties with Python's re
        raise refused(
            "that uses unevaluatedProperties with patternProperties, which is not checked in linear time"
        )
    compiled = set[str]() if compiled is None else compiled
    new = [regex for regex in regexes if regex not in compiled]
    if len(compiled) + len(new) > _SERVER_REGEXES:  # each compile may take a tenth of a second
        raise MCPStartupError(
            f"MCP server '{server}': its tools' input schemas hold more than {_SERVER_REGEXES} regular "
            f"expressions (pattern, patternProperties), counting up to tool '{tool}'; expose fewer tools "
            "with `tools: [...]`"
        )
    for regex in new:
        compiled.add(regex)
        reason = _uncompilable(regex)
        if reason is not None:
            raise refused(f"with a pattern {regex[:100]!r} that cannot be matched in linear time ({reason})")
    # A registry that holds the JSON Schema metaschemas and retrieves nothing: jsonschema's default one
    # would fetch a $ref's URL (any host, file:// too) while the model's arguments are checked.
    from jsonschema_specifications import REGISTRY  # pyright: ignore[reportMissingTypeStubs]
    from referencing.exceptions import Unresolvable

    validator = _linear_validator(cls)(checked, registry=REGISTRY)
    try:  # a schema that loops on itself, or points nowhere, for any arguments
        list(validator.iter_errors({}))
    except RecursionError:
        raise refused("that refers to itself without end") from None
    except (Unresolvable, _UncheckablePattern) as exc:
        raise refused(f"that cannot be checked ({' '.join(str(exc).split())[:200]})") from None
    return checked, validator


def _refused(server: str, tool: str, what: str, problem: str, fix: str = "fix the server") -> MCPStartupError:
    return MCPStartupError(
        f"MCP server '{server}': tool '{tool}' has {what} {problem}; {fix}, or leave the tool out with "
        "`tools: [...]`"
    )


def _check_output_schema(server: str, tool: str, schema: Any) -> None:
    """Refuse an output schema the MCP client could not check safely: it validates each structured result
    against it with jsonschema and Python's backtracking ``re`` (a ``pattern`` such as ``^(a+)+$`` and a
    result made for it would hang the run), recursively (a deep schema would crash it)."""
    if schema is None:
        return
    if not isinstance(schema, dict):
        raise _refused(server, tool, "an output schema", "that is not a JSON object")
    checked = cast("dict[str, Any]", schema)
    shape = _oversized(checked)
    if shape is not None:
        raise _refused(server, tool, "an output schema", shape)
    if _regexes(checked)[0]:
        raise _refused(
            server,
            tool,
            "an output schema",
            "with regular expressions (pattern, patternProperties), which the MCP client matches against "
            "its results with Python's re, where a pattern can hang the run",
        )


def _oversized(schema: dict[str, Any]) -> str | None:
    """What makes a schema too large to take (too deep, checked first and without recursion: jsonschema
    walks a schema recursively; too many characters of JSON), or None."""
    if _depth_over(schema, _SCHEMA_DEPTH):
        return f"nested more than {_SCHEMA_DEPTH} levels deep"
    size = len(json.dumps(schema, ensure_ascii=False, separators=(",", ":"), default=str))
    if size > _SCHEMA_CHARS:
        return f"of {size:,} characters of JSON, more than {_SCHEMA_CHARS:,}"
    return None


def _depth_over(node: Any, limit: int) -> bool:
    """Whether a JSON value nests objects and arrays more than ``limit`` levels deep (without recursion)."""
    stack: list[tuple[Any, int]] = [(node, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: list[Any] = list(cast("dict[str, Any]", item).values())
        elif isinstance(item, list):
            children = cast("list[Any]", item)
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


_DATA_KEYWORDS = frozenset({"const", "default", "enum", "examples"})  # their values are data, not schemas
_NAME_MAPS = frozenset({"$defs", "definitions", "dependentSchemas", "patternProperties", "properties"})


def _regexes(schema: dict[str, Any]) -> tuple[list[str], bool]:
    """The distinct regular expressions of a schema (``pattern`` values, ``patternProperties`` keys), and
    whether it uses ``unevaluatedProperties`` and ``patternProperties`` both (looked for everywhere, data
    included: jsonschema evaluates that pair with Python's ``re``)."""
    found: dict[str, None] = {}
    keywords: set[str] = set()
    stack: list[tuple[Any, str]] = [(schema, "schema")]  # "schema", "names" (name -> schema) or "data"
    while stack:
        item, kind = stack.pop()
        if isinstance(item, list):
            stack.extend((child, kind) for child in cast("list[Any]", item))
            continue
        if not isinstance(item, dict):
            continue
        for key, value in cast("dict[str, Any]", item).items():
            if key in ("unevaluatedProperties", "patternProperties"):
                keywords.add(key)
            if kind != "schema":
                stack.append((value, "schema" if kind == "names" else "data"))
                continue
            if key == "pattern" and isinstance(value, str):
                found[value] = None
            elif key == "patternProperties" and isinstance(value, dict):
                found.update(dict.fromkeys(cast("dict[str, Any]", value)))
            child = cast("Any", value)
            stack.append(
                (child, "data" if key in _DATA_KEYWORDS else "names" if key in _NAME_MAPS else "schema")
            )
    return list(found), len(keywords) == 2


class _UncheckablePattern(Exception):
    """A schema's regular expression that the linear-time engine cannot compile, met while validating."""


@functools.lru_cache(maxsize=32)  # a compiled pattern may take megabytes (e.g. \w{200}): a few are kept
def _linear_regex(pattern: str) -> Any:
    """A pydantic-core validator that accepts the strings ``pattern`` matches anywhere (Rust's regex crate:
    no backtracking, time linear in the text)."""
    from pydantic_core import SchemaValidator, core_schema

    return SchemaValidator(core_schema.str_schema(pattern=pattern, regex_engine="rust-regex"))


def _uncompilable(pattern: str) -> str | None:
    """Why the linear-time engine cannot compile ``pattern`` (its error's last line), or None."""
    from pydantic_core import SchemaError

    try:
        _linear_regex(pattern)
    except SchemaError as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        reason = lines[-1] if lines else "does not compile"
        return reason.removeprefix("SchemaError: ").removeprefix("error: ")[:200]
    return None


def _search(pattern: str, text: str) -> bool:
    """Whether ``pattern`` matches somewhere in ``text`` (JSON Schema's ``pattern``), in linear time."""
    from pydantic_core import SchemaError, ValidationError

    try:
        validator = _linear_regex(pattern)
    except SchemaError:
        raise _UncheckablePattern(f"pattern {pattern[:100]!r}: {_uncompilable(pattern)}") from None
    try:
        validator.validate_python(text)
    except ValidationError:
        return False
    return True


def _pattern(validator: Any, pattern: Any, instance: Any, schema: Any) -> Any:
    from jsonschema.exceptions import ValidationError

    if validator.is_type(instance, "string") and not _search(pattern, instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


def _pattern_properties(validator: Any, patterns: Any, instance: Any, schema: Any) -> Any:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in patterns.items():
        for key, value in instance.items():
            if _search(pattern, key):
                yield from validator.descend(value, subschema, path=key, schema_path=pattern)


def _additional_properties(validator: Any, additional: Any, instance: Any, schema: Any) -> Any:
    """jsonschema's ``additionalProperties``, with ``patternProperties`` matched by :func:`_search`."""
    from jsonschema.exceptions import ValidationError

    if not validator.is_type(instance, "object"):
        return
    properties = schema.get("properties", {})
    patterns = list(schema.get("patternProperties", {}))
    extras = [key for key in instance if key not in properties and not any(_search(p, key) for p in patterns)]
    if validator.is_type(additional, "object"):
        for extra in extras:
            yield from validator.descend(instance[extra], additional, path=extra)
    elif not additional and extras:
        joined = ", ".join(repr(extra) for extra in sorted(extras, key=str))
        if patterns:
            verb = "does" if len(extras) == 1 else "do"
            shown = ", ".join(repr(p) for p in sorted(patterns))
            yield ValidationError(f"{joined} {verb} not match any of the regexes: {shown}")
        else:
            verb = "was" if len(extras) == 1 else "were"
            yield ValidationError(f"Additional properties are not allowed ({joined} {verb} unexpected)")


_LINEAR_CLASSES: dict[Any, Any] = {}


def _linear_validator(cls: Any) -> Any:
    """``cls`` (a jsonschema validator class) whose regular expressions are matched by :func:`_search`."""
    from jsonschema import validators

    extended = _LINEAR_CLASSES.get(cls)
    if extended is None:
        keywords = {
            "pattern": _pattern,
            "patternProperties": _pattern_properties,
            "additionalProperties": _additional_properties,
        }
        replaced = {k: v for k, v in keywords.items() if k in cls.VALIDATORS}
        extended = cast("Any", validators.extend(cls, replaced))  # pyright: ignore[reportUnknownMemberType]
        _LINEAR_CLASSES[cls] = extended
    return extended


def _external_ref(node: Any) -> str | None:
    """The first ``$ref`` / ``$dynamicRef`` in a schema that points outside it (not ``#...``), or None."""
    from jsonschema_specifications import REGISTRY  # pyright: ignore[reportMissingTypeStubs]

    stack: list[Any] = [node]
    seen = 0
    while stack and seen < 100_000:
        seen += 1
        item = stack.pop()
        if isinstance(item, dict):
            for key, value in cast("dict[str, Any]", item).items():
                if key in ("$ref", "$dynamicRef") and isinstance(value, str):
                    if not value.startswith("#") and value.split("#")[0] not in REGISTRY:
                        return value
                else:
                    stack.append(value)
        elif isinstance(item, list):
            stack.extend(cast("list[Any]", item))
    return None


def _content_text(result: Any) -> str:
    parts: list[str] = []
    blocks: list[Any] = list(getattr(result, "content", None) or [])
    for block in blocks:
        kind = getattr(block, "type", "")
        if kind == "text":
            parts.append(str(getattr(block, "text", "")))
        elif kind == "resource":
            resource = getattr(block, "resource", None)
            text = getattr(resource, "text", None)
            parts.append(str(text) if text is not None else f"[resource {getattr(resource, 'uri', '')}]")
        elif kind == "resource_link":
            parts.append(f"[resource {getattr(block, 'uri', '')}]")
        else:
            parts.append(f"[{kind or 'content'}: {getattr(block, 'mime_type', '')} not shown]")
    structured = getattr(result, "structured_content", None)
    if not parts and structured is not None:
        parts.append(json.dumps(structured, ensure_ascii=False, default=str))
    return "\n".join(parts)


class MCPConnection:
    """One running MCP server and its tools (use :func:`connect_mcp`; close it when done)."""

    def __init__(self, config: MCPServerConfig) -> None:
        self.config = config
        self.tools: list[MCPTool] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: Any = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._listing: list[Any] = []
        self._closed = False
        self._stopped: str | None = None  # why the server can take no more calls, once it stopped
        self._errlog: IO[str] | None = None
        self._thread = threading.Thread(target=self._main, name=f"thrifty-mcp-{config.name}", daemon=True)

    # ------------------------------------------------------------------------- the loop's thread
    def _server(self) -> Any:
        from mcp.client.stdio import StdioServerParameters, stdio_client

        config = self.config
        if config.url:
            return config.url
        self._errlog = tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace")  # noqa: SIM115
        params = StdioServerParameters(
            command=config.command[0],
            args=list(config.command[1:]),
            env=dict(config.env) if config.env else None,
            cwd=config.cwd,
        )
        return stdio_client(params, errlog=self._errlog)

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported to start() or to the next call
            self._error = self._error or exc
        finally:
            self._ready.set()

    async def _serve(self) -> None:
        from mcp.client.client import Client

        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with Client(
            self._server(), read_timeout_seconds=self.config.startup_timeout, mode=self.config.mode
        ) as client:
            cursor: str | None = None
            for _ in range(100):  # a paginator that never ends cannot hang the start
                page = await client.list_tools(cursor=cursor)
                self._listing.extend(page.tools)
                cursor = page.next_cursor
                if not cursor or len(self._listing) > _MAX_LISTED:  # too many: refused by _build_tools
                    break
            self._client = client
            self._ready.set()
            await self._stop.wait()

    # --------------------------------------------------------------------------- the caller's side
    def start(self) -> list[MCPTool]:
        """Start the server, list its tools and build them (MCPStartupError when it cannot be used)."""
        self._thread.start()
        if not self._ready.wait(self.config.startup_timeout + 5.0):
            tail = self._stderr_tail()
            self.close()
            raise self._startup_error(
                "startup_timeout",
                f"did not start within {self.config.startup_timeout:g}s{tail}",
                self._slow_fix(),
            )
        if self._client is None:
            self._thread.join(
                timeout=5.0
            )  # let the client finish closing, so the server's stderr is complete
            error = self._startup_failure(_describe(self._error) + self._stderr_tail())
            self.close()
            raise error
        try:
            self.tools = self._build_tools()
        except Exception:
            self.close()
            raise
        return self.tools

    def _startup_error(self, option: str, problem: str, fix: str) -> MCPStartupError:
        """``MCP server 'x' <problem> (at <file:line, field>; fix: <fix>)``: where the option was written,
        when the config knows it."""
        where = (self.config.origin or {}).get(option)
        at = f"at {where}; " if where else ""
        return MCPStartupError(f"MCP server '{self.config.name}' {problem} ({at}fix: {fix})")

    def _slow_fix(self) -> str:
        what = (
            "url is an MCP server's endpoint" if self.config.url else "command starts an MCP server on stdio"
        )
        return (
            f"raise startup_timeout (now {self.config.startup_timeout:g}s) if it is slow to start, or check "
            f"that its {what}"
        )

    def _startup_failure(self, detail: str) -> MCPStartupError:
        """The error for a server that stopped or failed before it listed its tools, naming the option to
        look at: startup_timeout for a handshake that timed out, url for an HTTP error, else command."""
        lowered = detail.lower()
        if "timed out" in lowered or "timeout" in lowered:
            problem = f"did not answer within {self.config.startup_timeout:g}s while starting ({detail})"
            return self._startup_error("startup_timeout", problem, self._slow_fix())
        problem = f"could not start: {detail}"
        if self.config.url:
            if "not found" in lowered or "404" in lowered:
                fix = "check the path in url: it must be the server's MCP endpoint (FastMCP serves /mcp)"
            else:
                fix = "start the server, or correct url (host, port and path of its MCP endpoint)"
            return self._startup_error("url", problem, fix)
        return self._startup_error(
            "command", problem, "run the command by hand to see why it stops; fix it or its env"
        )

    def _build_tools(self) -> list[MCPTool]:
        config = self.config
        if len(self._listing) > _MAX_LISTED:
            raise self._startup_error(
                "tools",
                f"lists more than {_MAX_LISTED:,} tools, the most read from one server",
                "use a server that lists fewer tools",
            )
        wanted = set(config.tools) if config.tools is not None else None
        listed = {str(t.name) for t in self._listing}
        missing = sorted((wanted or set()) - listed)
        if missing:
            raise self._startup_error(
                "tools",
                f"has no tool {_names(missing)} (it lists: {_names(sorted(listed), quote=False) or 'none'})",
                "name tools the server lists, or drop tools to expose them all",
            )
        # Only the tools picked cost more than a name's look-up: their schemas are checked below.
        picked = [t for t in self._listing if wanted is None or str(t.name) in wanted]
        if len(picked) > config.max_tools:
            raise self._startup_error(
                "max_tools",
                f"offers {len(picked)} tools, more than max_tools ({config.max_tools})",
                "expose only the ones you need with `tools: [...]` (the server's names), or raise max_tools",
            )
        tools: list[MCPTool] = []
        named: dict[str, str] = {}  # tool name in the run -> the server's name for it
        compiled: set[str] = set()  # the regular expressions of the schemas checked so far
        for remote in picked:
            remote_name = str(remote.name)
            schema, validator = _checked_schema(config.name, remote_name, remote.input_schema, compiled)
            _check_output_schema(config.name, remote_name, remote.output_schema)
            name = mcp_tool_name(config.prefix, remote_name)
            if not name:
                raise self._startup_error(
                    "tools",
                    "lists a tool with an empty name",
                    "leave it out with `tools: [...]` (the names you want), or give the server a prefix",
                )
            if name in named:
                raise self._startup_error(
                    "tools",
                    f"lists tools {named[name][:80]!r} and {remote_name[:80]!r}, which both become '{name}' "
                    "(a tool name keeps letters, digits, _ and -, and 64 of them)",
                    "leave one of them out with `tools: [...]`",
                )
            named[name] = remote_name
            model = create_model(f"{name}Args", __base__=_SchemaArgs)
            model.schema_validator = validator
            description = " ".join(str(remote.description or remote_name.replace("_", " "))[:4000].split())
            tools.append(
                MCPTool(
                    name=name,
                    description=description[:1000],
                    args_model=model,
                    fn=self._caller(remote_name),
                    price=config.price,
                    timeout=config.timeout + 5.0,
                    retries=config.retries,
                    input_schema=schema,
                    server=config.name,
                    remote_name=remote_name,
                    server_stopped=self.stopped,
                )
            )
        return tools

    def _caller(self, remote_name: str) -> Any:
        def call(**arguments: Any) -> str:
            return self.call(remote_name, arguments)

        return call

    def stopped(self) -> str | None:
        """Why the server can take no more calls (``MCP server 'x' stopped: ...``: it exited, or was
        closed), or None while it runs. Its tools' calls are then refused before they are charged."""
        if self._stopped is None and self._client is not None:
            loop = self._loop
            if self._closed:
                self._stopped = f"MCP server '{self.config.name}' stopped: its connection was closed"
            elif loop is None or loop.is_closed() or not self._thread.is_alive():
                self._stopped = self._stop_message(self._error)
        return self._stopped

    def _stop_message(self, exc: BaseException | None) -> str:
        return f"MCP server '{self.config.name}' stopped: {_describe(exc)}{self._stderr_tail()}"

    def _stopping(self, exc: BaseException | None) -> ToolError:
        """The error for a call that found the server gone; later calls are refused free with it."""
        self._stopped = self._stopped or self._stop_message(exc)
        return ToolError(self._stopped)

    def call(self, tool: str, arguments: dict[str, Any]) -> str:
        """Call one tool of the server; its text framed as data. ToolError for the tool's or the protocol's
        errors, for a server that stopped and for a call that runs past the timeout (not retried: a hung tool
        would hang again, and every attempt is charged)."""
        from mcp.shared.exceptions import MCPError

        loop, client = self._loop, self._client
        if self._stopped is not None:
            raise ToolError(self._stopped)
        if self._closed or loop is None or client is None or loop.is_closed() or not self._thread.is_alive():
            raise ToolError(
                f"MCP server '{self.config.name}' is not running: {_describe(self._error)}{self._stderr_tail()}"
            )
        timeout = self.config.timeout
        future = asyncio.run_coroutine_threadsafe(
            client.call_tool(tool, arguments, read_timeout_seconds=timeout), loop
        )
        try:
            result = future.result(timeout + 2.0)
        except (TimeoutError, concurrent.futures.TimeoutError):
            future.cancel()
            raise ToolError(f"MCP tool '{tool}' did not answer within {timeout:g}s") from None
        except MCPError as exc:
            if "timed out" in str(exc).lower():
                raise ToolError(f"MCP tool '{tool}' did not answer within {timeout:g}s") from None
            if "connection closed" in str(exc).lower():
                raise self._stopping(exc) from None
            detail = " ".join(str(exc).split())[:_ERROR_CHARS]  # one line: it cannot pose as a frame's end
            raise ToolError(f"MCP server '{self.config.name}': {redact(detail)}") from None
        except Exception as exc:
            if not self._thread.is_alive() or loop.is_closed():
                raise self._stopping(exc) from None
            raise
        text = _content_text(result)
        if getattr(result, "is_error", False):  # the server's words: framed as data like its output
            shown = text[:_ERROR_CHARS] if text else "no detail"
            raise ToolError(
                f"{tool} failed: " + as_data(f"MCP {self.config.name}/{tool}", shown, kind="tool error")
            )
        return as_data(f"MCP {self.config.name}/{tool}", text or "(no output)", kind="tool output")

    def _stderr_tail(self) -> str:
        log = self._errlog
        if log is None:
            return ""
        try:
            log.flush()
            log.seek(0)
            text = log.read()[-_STDERR_TAIL:].strip()
        except (OSError, ValueError):
            return ""
        lines = [" ".join(line.split()) for line in text.splitlines()]
        shown = " | ".join([line for line in lines if line][-3:])
        return f" (server stderr: {redact(shown)})" if shown else ""

    def close(self) -> None:
        """Stop the session and the server (a stdio server's process is ended by the MCP client)."""
        if self._closed:
            return
        self._closed = True
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(stop.set)
        if self._thread.is_alive():
            self._thread.join(timeout=10.0)
        if self._errlog is not None:
            self._errlog.close()

    def __enter__(self) -> MCPConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _names(names: Sequence[str], quote: bool = True) -> str:
    """Tool names for a message: each cut at 80 characters (and quoted), the first 20 of them."""
    shown = ", ".join(repr(name[:80]) if quote else name[:80] for name in names[:_SHOWN_NAMES])
    return shown + (f" ... ({len(names)} in all)" if len(names) > _SHOWN_NAMES else "")


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "it exited"
    inner: BaseException = exc
    while isinstance(inner, BaseExceptionGroup):
        members: tuple[BaseException, ...] = tuple(cast("Any", inner).exceptions)
        if not members:
            break
        inner = members[0]
    shown = cast("BaseException", inner)
    text = " ".join(str(shown).split())
    return redact(f"{type(shown).__name__}: {text}" if text else type(shown).__name__)[:400]


def connect_mcp(config: MCPServerConfig) -> MCPConnection:
    """Start an MCP server and build its tools (``connection.tools``); MCPStartupError when it cannot
    be used. Close the connection when the run is over (it is a context manager)."""
    connection = MCPConnection(config)
    connection.start()
    return connection
