"""The chat and tool-call protocol shared by thrifty's in-process providers (llama.cpp, transformers,
the simulator): reading OpenAI-shaped messages, flattening tool traffic into plain chat turns that any chat
template accepts, describing tools to a small model, and finding the JSON a model wrote.

Every in-process provider shows a model the same conversation and the same tool-call format, so this
lives once.
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import json_repair
from pydantic import BaseModel, ValidationError

__all__ = [
    "allowed_functions",
    "call_json",
    "content_text",
    "describe_tool",
    "extract_json",
    "first_json_object",
    "message_field",
    "new_call_id",
    "parse_reply",
    "render_messages",
    "repair_json",
    "response_schema",
    "tool_functions",
    "type_label",
]
_OPEN_BRACE = re.compile(r"\{")
_M = TypeVar("_M", bound=BaseModel)


def message_field(obj: Any, key: str, default: Any = None) -> Any:
    """Read a field from a dict or a pydantic-ish object (LiteLLM passes messages as either)."""
    if isinstance(obj, Mapping):
        return obj.get(key, default)
    return getattr(obj, key, default)


def content_text(content: Any) -> str:
    """Flatten OpenAI message content (str, None, or a list of parts) to text: chat templates and the
    simulated model read plain strings."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, Mapping) and part.get("type") == "text":
                parts.append(str(part.get("text", "")))
        return "\n".join(parts)
    return str(content)


def call_json(name: str, arguments: Any) -> str:
    """A tool call written in the same JSON shape the model is asked to produce (a consistent few-shot)."""
    if isinstance(arguments, str):
        with contextlib.suppress(json.JSONDecodeError):
            arguments = json.loads(arguments) if arguments.strip() else {}
    return json.dumps({"tool": name, "arguments": arguments}, ensure_ascii=False)


def render_messages(messages: Sequence[Any], system_extra: str | None = None) -> list[dict[str, str]]:
    """Turn OpenAI chat messages (with tool calls/results) into what a plain chat template accepts.

    SmolLM2's template knows only system/user/assistant and string content, so assistant tool calls become
    their JSON text and tool results become user messages ("Result of search({...}): ...").
    Consecutive messages with the same role are merged, since some templates demand alternation.
    ``system_extra`` (the tool instructions) is appended to the leading system message.
    """
    calls: dict[str, str] = {}
    out: list[dict[str, str]] = []
    for message in messages:
        role = message_field(message, "role", "user")
        content = content_text(message_field(message, "content"))
        if role == "developer":
            role = "system"
        if role == "assistant":
            lines = [content] if content else []
            for call in message_field(message, "tool_calls") or []:
                function = message_field(call, "function") or {}
                name = str(message_field(function, "name", "tool"))
                arguments = message_field(function, "arguments", "{}")
                args_text = arguments if isinstance(arguments, str) else json.dumps(arguments)
                calls[str(message_field(call, "id", ""))] = f"{name}({args_text})"
                lines.append(call_json(name, arguments))
            function_call = message_field(message, "function_call")
            if function_call:
                lines.append(
                    call_json(
                        str(message_field(function_call, "name", "tool")),
                        message_field(function_call, "arguments"),
                    )
                )
            content = "\n".join(lines)
        elif role in ("tool", "function"):
            call = calls.get(str(message_field(message, "tool_call_id", ""))) or str(
                message_field(message, "name") or "tool"
            )
            content = f"Result of {call}: {content}"
            role = "user"
        elif role not in ("system", "user"):
            role = "user"
        if out and out[-1]["role"] == role:
            out[-1]["content"] = f"{out[-1]['content']}\n\n{content}"
        else:
            out.append({"role": role, "content": content})
    if system_extra:
        if out and out[0]["role"] == "system":
            out[0]["content"] = (
                f"{out[0]['content']}\n\n{system_extra}" if out[0]["content"] else system_extra
            )
        else:
            out.insert(0, {"role": "system", "content": system_extra})
    return out


def tool_functions(tools: Sequence[Any]) -> list[dict[str, Any]]:
    """OpenAI ``tools`` entries reduced to plain function dicts with a parameters schema."""
    functions = []
    for tool in tools:
        function = message_field(tool, "function") or tool
        name = message_field(function, "name")
        if not name:
            continue
        parameters = message_field(function, "parameters") or {"type": "object", "properties": {}}
        functions.append(
            {
                "name": str(name),
                "description": str(message_field(function, "description") or ""),
                "parameters": parameters,
            }
        )
    return functions


def type_label(schema: Any) -> str:
    """Short human-readable type for the tool description (``string``, ``array of string``, enum values)."""
    if not isinstance(schema, Mapping):
        return "any"
    if "enum" in schema:
        return " | ".join(json.dumps(v) for v in schema["enum"])
    kind = schema.get("type")
    if kind == "array":
        return f"array of {type_label(schema.get('items', {}))}"
    if isinstance(kind, list):
        return " | ".join(str(k) for k in kind)
    if kind:
        return str(kind)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return " | ".join(type_label(s) for s in schema[key])
    return "any"


def describe_tool(function: dict[str, Any]) -> str:
    """One compact block per tool: a tiny model needs to *see* names, purposes and argument names."""
    params = function["parameters"] if isinstance(function["parameters"], Mapping) else {}
    props: Mapping[str, Any] = params.get("properties") or {}
    required = set(params.get("required") or [])
    signature = ", ".join(
        f"{arg}{'' if arg in required else '?'}: {type_label(schema)}" for arg, schema in props.items()
    )
    lines = [
        f"- {function['name']}({signature})"
        + (f": {function['description']}" if function["description"] else "")
    ]
    for arg, schema in props.items():
        if isinstance(schema, Mapping) and schema.get("description"):
            lines.append(f"    {arg}: {schema['description']}")
    return "\n".join(lines)


def response_schema(response_format: Any) -> dict[str, Any] | bool | None:
    """Schema asked for by an OpenAI ``response_format``: a dict, ``True`` for any JSON, ``None`` for text."""
    if not response_format:
        return None
    kind = message_field(response_format, "type")
    if kind == "json_schema":
        spec = message_field(response_format, "json_schema") or {}
        schema = message_field(spec, "schema")
        return dict(schema) if isinstance(schema, Mapping) else True
    if kind == "json_object":
        schema = message_field(response_format, "schema")
        return dict(schema) if isinstance(schema, Mapping) else True
    return None


def new_call_id() -> str:
    """OpenAI-style tool call id; random so ids stay unique across resumed conversations."""
    return f"call_{secrets.token_hex(12)}"


def first_json_object(text: str) -> dict[str, Any] | None:
    """The first ``{...}`` in ``text`` that parses as a JSON object (prose and code fences around it ok)."""
    decoder = json.JSONDecoder()
    for match in _OPEN_BRACE.finditer(text):
        try:
            value, _ = decoder.raw_decode(text, match.start())
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            return value
    return None


def allowed_functions(
    tools: Sequence[Any], tool_choice: Any, error: type[Exception] = ValueError
) -> tuple[list[dict[str, Any]], bool] | None:
    """The functions a request may call and whether it may answer instead, from OpenAI ``tools`` and
    ``tool_choice``; None when there are no tools or ``tool_choice`` is "none". A ``tool_choice`` naming a
    tool that is not given raises ``error``."""
    functions = tool_functions(tools)
    if tool_choice == "none" or not functions:
        return None
    forced: str | None = None
    if isinstance(tool_choice, Mapping):
        forced = message_field(message_field(tool_choice, "function") or {}, "name") or message_field(
            tool_choice, "name"
        )
    if forced is not None:
        functions = [f for f in functions if f["name"] == forced]
        if not functions:
            raise error(f"tool_choice names {forced!r}, which is not among the given tools")
    return functions, forced is None and tool_choice != "required"


# ------------------------------------------------------------------------- JSON replies (lenient)
def extract_json(text: str | None) -> Any:
    """The first JSON object in ``text`` (models sometimes wrap it in prose or code fences)."""
    if not text:
        raise ValueError("empty reply")
    text = text.strip()
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        found = first_json_object(text)
        if found is None:
            raise ValueError("no JSON object in the reply") from None
        return found


def repair_json(text: str | None) -> dict[str, Any] | None:
    """The JSON object ``json_repair`` recovers from ``text`` from its first ``{`` on (trailing commas,
    single quotes, Python literals, unquoted words, a reply cut off mid-object), or None when there is none."""
    if not text or "{" not in text:
        return None
    try:
        value = json_repair.loads(text[text.index("{") :])
    except (ValueError, RecursionError):  # pragma: no cover - json_repair returns "" on hopeless input
        return None
    if isinstance(value, list):
        value = next((v for v in value if isinstance(v, dict)), None)
    return value if isinstance(value, dict) and value else None


def parse_reply(text: str | None, model_cls: type[_M]) -> tuple[_M, bool]:
    """``model_cls`` from a model's reply, and whether it had to be repaired. Raises ValueError (no JSON
    object in the reply) or ValidationError (an object that does not fit, even repaired)."""
    try:
        return model_cls.model_validate(extract_json(text)), False
    except (ValueError, ValidationError) as exc:
        repaired = repair_json(text)
        if repaired is None:
            raise exc from None
        try:
            return model_cls.model_validate(repaired), True
        except ValidationError:
            raise exc from None
