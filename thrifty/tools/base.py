"""The ``@tool`` decorator: a typed Python function becomes a priced, schema-described :class:`Tool`.

Why a decorator rather than hand-written schemas: the function signature already says what the model may
send, so the pydantic model that validates the arguments and the JSON schema shown to the model are both
generated from it, and can never drift apart. The docstring supplies the descriptions the model reads.

A Tool also carries what the budget needs to know before running it: a declared price per call, a timeout,
how many times to retry, and (``batch_arg``) which list parameter makes one call cost one unit per item,
as in BATS.
"""

from __future__ import annotations

import copy
import functools
import inspect
import math
import re
import typing
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, cast, overload

from pydantic import BaseModel, ConfigDict, Field, create_model

__all__ = ["Tool", "ToolError", "tool"]

_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # what the OpenAI function-calling API accepts
_SECTION_RE = re.compile(r"^(?P<head>[A-Z][A-Za-z ]*):\s*$")
_ARGS_HEADS = {"Args", "Arguments", "Parameters", "Params"}
_ARG_LINE_RE = re.compile(r"^(?P<name>\*{0,2}\w+)\s*(?:\((?P<type>[^)]*)\))?\s*:\s*(?P<desc>.*)$")


class ToolError(Exception):
    """Raised by a tool to refuse its input with a message meant for the model.

    The runner does not retry a ToolError (the same input would fail the same way, and every attempt is
    charged); it turns it into a failed observation whose content is ``error: <message>``.
    """


class TransientToolError(Exception):
    """Raised by a tool whose failure may pass (a service down for now), with a message meant for the model.

    Unlike a :class:`ToolError` the runner retries it (each attempt charged); once the attempts are spent the
    observation shows the message alone, like a ToolError's, not the exception's class name. An optional
    ``retry_after`` (seconds) asks the runner to wait that long before the next attempt.
    """

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class _Docstring:
    summary: str
    params: dict[str, str]


def _parse_docstring(doc: str | None) -> _Docstring:
    """First paragraph and Google-style ``Args:`` entries of a docstring."""
    if not doc:
        return _Docstring("", {})
    lines = inspect.cleandoc(doc).splitlines()
    summary_lines: list[str] = []
    for line in lines:
        if not line.strip() or _SECTION_RE.match(line.strip()):
            break
        summary_lines.append(line.strip())
    params: dict[str, str] = {}
    in_args = False
    base_indent: int | None = None
    current: str | None = None
    for line in lines:
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        header = _SECTION_RE.match(line)  # a header starts at column 0 after cleandoc
        if header:
            in_args = header.group("head") in _ARGS_HEADS
            base_indent, current = None, None
            continue
        if not in_args:
            continue
        if not stripped:
            continue
        if indent == 0:  # dedent back to prose ends the section
            in_args, current = False, None
            continue
        if base_indent is None:
            base_indent = indent
        match = _ARG_LINE_RE.match(stripped)
        if indent <= base_indent and match:
            arg: str = match.group("name").lstrip("*")
            params[arg] = match.group("desc").strip()
            current = arg
        elif current is not None:  # continuation of the previous entry
            params[current] = f"{params[current]} {stripped}".strip()
    return _Docstring(" ".join(summary_lines), params)


def _field_name(param: str) -> str:
    """A pydantic-safe field name for a parameter (aliases keep the schema showing the real name)."""
    if param.startswith("_") or hasattr(BaseModel, param):
        return f"arg_{param.lstrip('_') or 'x'}"
    return param


def _unwrapped(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The function a ``functools.partial`` wraps (its annotations and docstring), else ``fn``."""
    if isinstance(fn, functools.partial):
        return cast("functools.partial[Any]", fn).func
    return fn


def _build_args_model(fn: Callable[..., Any], name: str, param_docs: Mapping[str, str]) -> type[BaseModel]:
    """A pydantic model of ``fn``'s parameters: annotations become types, defaults stay defaults."""
    signature = inspect.signature(fn)
    try:  # a partial's annotations are its function's
        hints = typing.get_type_hints(_unwrapped(fn), include_extras=True)
    except Exception:  # unresolved forward refs: fall back to the raw annotations
        hints = {}
    fields: dict[str, Any] = {}
    for param in signature.parameters.values():
        if param.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            raise TypeError(f"tool '{name}': *args/**kwargs cannot be described to a model; name them")
        if param.kind is inspect.Parameter.POSITIONAL_ONLY:
            raise TypeError(
                f"tool '{name}': positional-only parameter '{param.name}' cannot be passed by name"
            )
        annotation = hints.get(param.name, param.annotation)
        if annotation is inspect.Parameter.empty:
            annotation = Any
        default = ... if param.default is inspect.Parameter.empty else param.default
        field_name = _field_name(param.name)
        alias = param.name if field_name != param.name else None
        fields[field_name] = (
            annotation,
            Field(default, description=param_docs.get(param.name), alias=alias),
        )
    model_name = "".join(part.capitalize() for part in re.split(r"[^A-Za-z0-9]+", name) if part) + "Args"
    model = create_model(
        model_name or "ToolArgs",
        __config__=ConfigDict(extra="forbid", populate_by_name=True, arbitrary_types_allowed=True),
        **fields,
    )
    _check_json(model, name)
    return model


def _check_json(model: type[BaseModel], name: str) -> None:
    """Refuse, at decoration, a parameter the model could not be told about (a type with no JSON schema) or
    whose default cannot be written as JSON: either would end every run that offers the tool, after a paid
    model call."""
    for fname, info in model.model_fields.items():
        param = info.alias or fname
        if info.is_required():
            continue
        default = info.get_default(call_default_factory=False)
        try:
            model.model_construct(**{fname: default}).model_dump(mode="json", include={fname})
        except Exception:
            raise TypeError(
                f"tool '{name}': the default of parameter '{param}' ({type(default).__name__}) cannot be "
                f"written as JSON (fix: a default of None, a str, a number, a bool or a list/dict of them)"
            ) from None
    try:
        model.model_json_schema(by_alias=True)
    except Exception:
        for fname, info in model.model_fields.items():
            one: dict[str, Any] = {fname: (info.annotation, ...)}
            single = create_model("ToolArg", __config__=ConfigDict(arbitrary_types_allowed=True), **one)
            try:
                single.model_json_schema()
            except Exception:
                shown = str(info.annotation).replace("typing.", "").replace("collections.abc.", "")
                if isinstance(info.annotation, type):
                    shown = info.annotation.__name__
                raise TypeError(
                    f"tool '{name}': parameter '{info.alias or fname}' has type {shown}, which cannot be "
                    f"described to a model as JSON (fix: a JSON type such as str, int, float, bool, a list, "
                    f"a dict or a pydantic model)"
                ) from None
        raise


def _clean_schema(node: Any) -> Any:
    """Drop pydantic's auto-generated ``title`` keys (noise for the model), never a property named title."""
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in cast("dict[str, Any]", node).items():
            if key == "title" and isinstance(value, str):
                continue
            if key in ("properties", "$defs", "definitions", "patternProperties") and isinstance(value, dict):
                out[key] = {name: _clean_schema(sub) for name, sub in cast("dict[str, Any]", value).items()}
            else:
                out[key] = _clean_schema(value)
        return out
    if isinstance(node, list):
        return [_clean_schema(item) for item in cast("list[Any]", node)]
    return node


def _check_number(name: str, what: str, value: object, shape: str) -> None:
    """A tool's ``price`` or ``timeout``: None, or a finite int or float (a bool or a str is refused)."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"tool '{name}': {what} must be {shape}, got {type(value).__name__} {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"tool '{name}': {what} must be {shape}, got {value!r}")


@dataclass(eq=False)
class Tool:
    """A callable the model can invoke, with what the runner and the budget need to know about it.

    Calling the Tool object calls the wrapped function unchanged (a coroutine for an async function).
    """

    name: str
    description: str
    args_model: type[BaseModel]
    fn: Callable[..., Any]
    price: float | None = None  # declared $/call; Pricing config overrides it, DEFAULT_TOOL_PRICES backs it
    timeout: float | None = 30.0  # None: run on the caller's thread, no hand-off and no timeout
    retries: int = 1
    batch_arg: str | None = None
    # field name -> parameter name
    _params: dict[str, str] = field(default_factory=dict[str, str], repr=False)

    def __post_init__(self) -> None:
        if not _NAME_RE.match(self.name):
            raise ValueError(f"tool name {self.name!r} must match {_NAME_RE.pattern} (OpenAI function names)")
        _check_number(self.name, "price", self.price, "a finite number >= 0 (dollars per call) or None")
        if self.price is not None and self.price < 0:
            raise ValueError(f"tool '{self.name}': price must be >= 0")
        _check_number(
            self.name, "timeout", self.timeout, "a finite number > 0 (seconds) or None (no timeout)"
        )
        if self.timeout is not None and self.timeout <= 0:
            raise ValueError(f"tool '{self.name}': timeout must be > 0 seconds (or None)")
        retries = cast(object, self.retries)  # a caller's value, typed or not
        if isinstance(retries, bool) or not isinstance(retries, int):
            raise TypeError(
                f"tool '{self.name}': retries must be an int >= 0 (extra attempts), "
                f"got {type(self.retries).__name__}"
            )
        if self.retries < 0:
            raise ValueError(f"tool '{self.name}': retries must be >= 0")
        if not self._params:
            self._params = {
                fname: (info.alias or fname) for fname, info in self.args_model.model_fields.items()
            }
        if self.batch_arg is not None and self.batch_arg not in self._params.values():
            raise ValueError(f"tool '{self.name}': batch_arg '{self.batch_arg}' is not a parameter")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def unavailable(self) -> str | None:
        """Why no call of this tool can succeed now (an MCP server that stopped), or None. The runner
        refuses such a call before charging it, with this message, and leaves the tool out of
        :meth:`~thrifty.tools.runner.ToolRunner.available` (so the model is no longer offered it)."""
        return None

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.fn)

    def validate(self, arguments: Mapping[str, Any]) -> BaseModel:
        """Check arguments against the signature (raises pydantic.ValidationError)."""
        return self.args_model.model_validate(dict(arguments))

    def kwargs(self, validated: BaseModel) -> dict[str, Any]:
        """The keyword arguments to call ``fn`` with, keeping typed values (not their JSON dumps)."""
        return {param: getattr(validated, fname) for fname, param in self._params.items()}

    def units(self, args: BaseModel | Mapping[str, Any]) -> int:
        """Budget units one call costs: 1, or the length of the ``batch_arg`` list (at least 1)."""
        if self.batch_arg is None:
            return 1
        if isinstance(args, BaseModel):
            value = self.kwargs(args).get(self.batch_arg)
        else:
            value = args.get(self.batch_arg)
        if isinstance(value, list | tuple | set | frozenset):
            return max(1, len(cast("Collection[Any]", value)))
        return 1

    def parameters_schema(self) -> dict[str, Any]:
        """The JSON schema of the arguments, without pydantic's titles."""
        schema: dict[str, Any] = _clean_schema(self.args_model.model_json_schema(by_alias=True))
        schema.setdefault("properties", {})
        return schema

    def openai_schema(self) -> dict[str, Any]:
        """The OpenAI / LiteLLM ``tools=[...]`` entry for this tool (built once: it is on every model call)."""
        cached = self.__dict__.get("_openai_schema")
        if cached is None:
            cached = self.__dict__["_openai_schema"] = self._build_openai_schema()
        return copy.deepcopy(cached)

    def _build_openai_schema(self) -> dict[str, Any]:
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters_schema(),
            },
        }

    def signature_hint(self) -> str:
        """A short ``name(arg: type, opt: type = default)`` line, for telling a model what was expected."""
        parts: list[str] = []
        for fname, info in self.args_model.model_fields.items():
            annotation = info.annotation
            type_name = getattr(annotation, "__name__", None) if isinstance(annotation, type) else None
            text = f"{self._params[fname]}: {type_name or str(annotation).replace('typing.', '')}"
            if not info.is_required():
                text += f" = {info.get_default(call_default_factory=False)!r}"
            parts.append(text)
        return f"{self.name}({', '.join(parts)})"


def _make_tool(
    fn: Callable[..., Any],
    *,
    name: str | None,
    description: str | None,
    price: float | None,
    timeout: float | None,
    retries: int,
    batch_arg: str | None,
) -> Tool:
    given = cast(object, name)  # a caller's value, typed or not
    if given is not None and not isinstance(given, str):
        raise TypeError(f"tool(name=...) must be a str, got {type(name).__name__}")
    fn_name = getattr(fn, "__name__", None)
    tool_name = name or fn_name
    if not isinstance(tool_name, str):
        what = "a functools.partial" if isinstance(fn, functools.partial) else f"a {type(fn).__name__} object"
        raise TypeError(
            f"tool(): {what} has no __name__ to name the tool (fix: tool(name='my_tool')(...), or wrap it "
            "in a def)"
        )
    target: Callable[..., Any] = _unwrapped(fn)  # a partial's docstring is partial's own
    first = next(iter(inspect.signature(fn).parameters), None)
    if first in ("self", "cls") and inspect.isfunction(fn):  # @tool in a class body: not bound to anything
        raise TypeError(
            f"tool '{tool_name}': its first parameter '{first}' would be asked of the model (a method "
            "decorated in its class is not bound to an object) (fix: decorate a plain function, or make the "
            f"tool from the bound method: tool(obj.{fn_name or tool_name}))"
        )
    doc = _parse_docstring(inspect.getdoc(target))
    args_model = _build_args_model(fn, tool_name, doc.params)
    return Tool(
        name=tool_name,
        description=description or doc.summary or tool_name.replace("_", " "),
        args_model=args_model,
        fn=fn,
        price=price,
        timeout=timeout,
        retries=retries,
        batch_arg=batch_arg,
    )


_DEFAULT_OPTIONS: dict[str, Any] = {
    "name": None,
    "description": None,
    "price": None,
    "timeout": 30.0,
    "retries": 1,
    "batch_arg": None,
}


def _wrap(fn: object, options: dict[str, Any]) -> Tool:
    """``@tool``'s work: a function (sync or async) or other callable becomes a Tool; a Tool given with no
    options is returned as it is; anything else (a name, a number) is a TypeError saying what to write."""
    if isinstance(fn, Tool):
        if options == _DEFAULT_OPTIONS:
            return fn
        raise TypeError(
            f"tool(): {fn.name!r} is already a Tool: set its options in its own @tool(...) decorator"
        )
    if isinstance(fn, str):
        raise TypeError(
            f"tool() takes the function to wrap, got the str {fn!r}: to name the tool write @tool(name={fn!r})"
        )
    if not callable(fn):
        raise TypeError(f"tool() takes the function to wrap (a def or an async def), got {type(fn).__name__}")
    return _make_tool(cast("Callable[..., Any]", fn), **options)


@overload
def tool(fn: Callable[..., Any], /) -> Tool: ...


@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    price: float | None = None,
    timeout: float | None = 30.0,
    retries: int = 1,
    batch_arg: str | None = None,
) -> Callable[[Callable[..., Any]], Tool]: ...


def tool(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    price: float | None = None,
    timeout: float | None = 30.0,
    retries: int = 1,
    batch_arg: str | None = None,
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Turn a typed function (sync or async) into a :class:`Tool`; use bare (``@tool``) or with options.

    Args:
        fn: The function, when used bare.
        name: Tool name shown to the model (default: the function's name).
        description: What the model is told the tool does (default: the docstring's first paragraph).
        price: Declared dollars per call (unit); a configured Pricing overrides it.
        timeout: Seconds one attempt may run before it is abandoned (the call runs on a worker thread so
            that it can be). ``None`` runs a sync tool on the caller's thread with no timeout: for fast
            in-memory tools (a corpus search, a calculator), where the thread hand-off is pure cost.
        retries: Extra attempts after an exception (each attempt is charged).
        batch_arg: A list parameter whose length is the number of units a call costs.
    """
    options: dict[str, Any] = {
        "name": name,
        "description": description,
        "price": price,
        "timeout": timeout,
        "retries": retries,
        "batch_arg": batch_arg,
    }
    if fn is not None:
        return _wrap(fn, options)

    def decorate(func: Callable[..., Any]) -> Tool:
        return _wrap(func, options)

    return decorate
