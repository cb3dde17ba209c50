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
import inspect
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


def _build_args_model(fn: Callable[..., Any], name: str, param_docs: Mapping[str, str]) -> type[BaseModel]:
    """A pydantic model of ``fn``'s parameters: annotations become types, defaults stay defaults."""
    signature = inspect.signature(fn)
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
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
    return create_model(
        model_name or "ToolArgs",
        __config__=ConfigDict(extra="forbid", populate_by_name=True, arbitrary_types_allowed=True),
        **fields,
    )


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
        if self.price is not None and self.price < 0:
            raise ValueError(f"tool '{self.name}': price must be >= 0")
        if self.timeout is not None and self.timeout <= 0:
            raise ValueError(f"tool '{self.name}': timeout must be > 0 seconds (or None)")
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
    tool_name = name or fn.__name__
    doc = _parse_docstring(inspect.getdoc(fn))
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
        return _make_tool(fn, **options)

    def decorate(func: Callable[..., Any]) -> Tool:
        return _make_tool(func, **options)

    return decorate
