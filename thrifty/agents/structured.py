"""Structured model outputs: ask for JSON matching a pydantic model, parse leniently, re-ask once, else a
safe default.

Every structured node (planner, verifier, judge, value-tree candidates and critic) uses this, so a
malformed reply is never a crash. How the JSON is asked for depends on what the model's server supports
(``model_settings.response_format``, :func:`structured_format`):

* ``json_schema``: the schema as OpenAI structured output (``json_schema`` with the role as its name),
  which in-process models turn into a grammar and API models into structured output;
* ``json_object``: JSON mode with the schema alongside (``{"type": "json_object", "schema": ...}``), which
  llama.cpp's and llama-cpp-python's OpenAI-compatible servers turn into a grammar (llama-cpp-python
  rejects ``json_schema`` outright) and other servers into plain JSON mode;
* ``none``: no ``response_format``; the prompt alone asks for JSON.

``auto`` (the default) picks ``json_schema`` for in-process providers and for models LiteLLM knows support
it, else ``json_object``; a server that rejects the format (a failed call) is asked again at once with the
next one (``json_schema`` -> ``json_object`` -> ``none``), and what worked is remembered for that model and
server for the rest of the process. The steps and what was learned are the cascade's own
(:func:`thrifty.models.routing.format_steps`): a cascade steps each of its models down itself, and
:class:`StructuredReply` reports the format of the request that got the reply.

A reply is read leniently (:func:`parse_reply`): the first JSON object in it, else the object
``json_repair`` recovers from it (trailing commas, single quotes, bare words, a reply cut off by
``max_tokens``). A reply that still does not validate is shown to the model with the error once; a second
failure returns the caller's default, and :class:`StructuredReply` says why (the nodes put it in the trace).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from thrifty.agents.context import RunContext
from thrifty.models.gateway import ModelError, format_kind

# The lenient reply parsing lives with the chat protocol (memory, below the agents, uses it too).
from thrifty.models.protocol import extract_json as extract_json
from thrifty.models.protocol import parse_reply
from thrifty.models.protocol import repair_json as repair_json
from thrifty.models.routing import REJECTED_REQUEST as REJECTED_REQUEST
from thrifty.models.routing import RoutedGateway, format_steps, format_worked, rejected_request
from thrifty.models.routing import forget_formats as forget_formats
from thrifty.models.settings import ResponseFormatMode

T = TypeVar("T", bound=BaseModel)


class StructuredRole(StrEnum):
    """What a structured call asks for; its value is the ``json_schema`` name sent to the model (which the
    simulated model reads to know which role to play)."""

    PLAN = "plan"  # the planner's clues (Plan)
    VERDICT = "verdict"  # the verifier's decision (Verdict)
    JUDGE = "judge"  # the judge's pick among candidates (JudgeChoice)
    CANDIDATES = "candidates"  # the value tree's next actions (Candidates)
    CRITIC = "critic"  # the value tree's residual critic (Progress)
    FINAL_ANSWER = "final_answer"  # the grammar of a forced last answer (the solver's final call)


def schema_for(model_cls: type[BaseModel]) -> dict[str, Any]:
    schema = model_cls.model_json_schema()
    schema.pop("title", None)
    return schema


def _schema_supported(model: str) -> bool:
    try:
        from thrifty.models._litellm import get_litellm

        return bool(get_litellm().supports_response_schema(model=model))
    except Exception:
        return False


def structured_format(ctx: RunContext) -> str:
    """The ``response_format`` kind structured calls of this run start with (``json_schema``,
    ``json_object`` or ``none``): the setting, or for ``auto`` what this model and server are known to take."""
    mode: ResponseFormatMode = ctx.settings.response_format
    if mode != "auto":
        return mode
    try:
        in_process = ctx.gateway.provider(ctx.model).in_process
    except Exception:
        in_process = False
    if in_process:
        return "json_schema"
    kind = "json_schema" if _schema_supported(ctx.model) else "json_object"
    if _steps_itself(ctx):
        return kind
    first = _steps(ctx, {"response_format": response_format(kind, "", {})})[0]
    return format_kind(first.get("response_format"))


def _steps_itself(ctx: RunContext) -> bool:
    """Whether ``ctx.model`` is a cascade's entry, whose calls step each model's format down themselves."""
    return isinstance(ctx.gateway, RoutedGateway) and ctx.model == ctx.gateway.entry


def _steps(ctx: RunContext, fields: dict[str, Any]) -> list[dict[str, Any]]:
    """The request fields to try in turn: under ``auto``, the format stepped down on a remote server that
    rejects it (see :func:`format_steps`); an explicit setting, or a cascade, is sent as it is."""
    if ctx.settings.response_format != "auto" or _steps_itself(ctx):
        return [fields]
    return format_steps(ctx.model, fields, ctx.gateway.api_base)


def response_format(kind: str, role: str, schema: dict[str, Any]) -> dict[str, Any] | None:
    """The OpenAI ``response_format`` of one kind (None for ``none``)."""
    if kind == "json_schema":
        return {"type": "json_schema", "json_schema": {"name": role, "schema": schema, "strict": False}}
    if kind == "json_object":
        return {"type": "json_object", "schema": schema}
    return None


@dataclass(frozen=True)
class StructuredReply(Generic[T]):
    """What a structured call produced: the object, whether it came from the model (``ok``; False: the
    caller's default), the ``response_format`` kind that was used, whether the reply had to be repaired,
    and why the default was used (``error``)."""

    value: T
    ok: bool
    format: str
    repaired: bool = False
    error: str | None = None

    def label(self) -> str:
        """A short note for the trace: how the object was obtained."""
        if not self.ok:
            return f"default used ({self.format}): {self.error}"
        return f"{self.format}{', repaired' if self.repaired else ''}"


def structured_call(
    ctx: RunContext,
    role: StructuredRole | str,
    model_cls: type[T],
    messages: Sequence[dict[str, Any]],
    *,
    default: T,
    node: str,
    max_tokens: int = 320,
    temperature: float | None = None,
    schema: dict[str, Any] | None = None,
) -> tuple[T, bool]:
    """Call the model for a ``model_cls`` object. Returns (object, ok); ok is False when the default was used.

    ``role`` names the request (a :class:`StructuredRole`, or a name of your own for a custom node).

    ``schema`` overrides the JSON Schema sent to the model (e.g. one that spells out each tool's arguments,
    so that a grammar-constrained local model cannot leave them empty).

    BudgetExceeded propagates (the graph decides what a budget stop means); a provider error gives the
    default. :func:`structured_request` returns the same with how it was obtained.
    """
    out = structured_request(
        ctx,
        role,
        model_cls,
        messages,
        default=default,
        node=node,
        max_tokens=max_tokens,
        temperature=temperature,
        schema=schema,
    )
    return out.value, out.ok


def structured_request(
    ctx: RunContext,
    role: StructuredRole | str,
    model_cls: type[T],
    messages: Sequence[dict[str, Any]],
    *,
    default: T,
    node: str,
    max_tokens: int = 320,
    temperature: float | None = None,
    schema: dict[str, Any] | None = None,
) -> StructuredReply[T]:
    """:func:`structured_call`, returning a :class:`StructuredReply` (format used, repaired, why a default)."""
    schema = schema or schema_for(model_cls)  # a tighter schema may be asked for; validation stays lenient
    kind = structured_format(ctx)
    convo = list(messages)
    kwargs = ctx.model_kwargs()
    if temperature is not None:
        kwargs["temperature"] = temperature
    problem = "no reply"
    for attempt in range(2):
        try:
            reply, kind = _call(ctx, str(role), convo, kind, schema, node, max_tokens, kwargs)
        except ModelError as exc:
            return StructuredReply(default, False, kind, error=f"model error: {str(exc)[:200]}")
        try:
            value, repaired = parse_reply(reply.content, model_cls)
            return StructuredReply(value, True, kind, repaired=repaired)
        except (ValueError, ValidationError) as exc:
            problem = (
                str(exc).splitlines()[0][:300] if not isinstance(exc, ValidationError) else _short_errors(exc)
            )
            if attempt == 1:
                break
            convo = [
                *convo,
                {"role": "assistant", "content": reply.content or ""},
                {
                    "role": "user",
                    "content": f"That reply was not valid ({problem}). Reply with one JSON object only, "
                    f"matching this schema: {json.dumps(schema, separators=(',', ':'))}",
                },
            ]
    return StructuredReply(default, False, kind, error=f"invalid reply twice: {problem}")


def _call(
    ctx: RunContext,
    role: str,
    convo: list[dict[str, Any]],
    kind: str,
    schema: dict[str, Any],
    node: str,
    max_tokens: int,
    kwargs: dict[str, Any],
) -> tuple[Any, str]:
    """One charged call with the ``kind`` of response format, and the kind of the request that got the reply:
    under ``auto``, a call that a remote server rejects is made again at once with the next kind (see
    :func:`_steps`), and what worked is remembered for this model and server."""
    fmt = response_format(kind, role, schema)
    fields: dict[str, Any] = {"response_format": fmt} if fmt is not None else {}
    steps = _steps(ctx, fields)
    for i, request in enumerate(steps):
        try:
            reply = ctx.gateway.complete(
                ctx.model, convo, max_tokens=max_tokens, node=node, **request, **kwargs
            )
        except ModelError as exc:
            if i + 1 < len(steps) and rejected_request(exc):
                continue
            raise
        format_worked(ctx.model, fields, ctx.gateway.api_base, i)
        return reply, reply.response_format or format_kind(request.get("response_format"))
    raise AssertionError("format_steps is never empty")


def _short_errors(exc: ValidationError) -> str:
    parts = [f"{'.'.join(str(p) for p in e['loc']) or 'object'}: {e['msg']}" for e in exc.errors()[:3]]
    return "; ".join(parts)
