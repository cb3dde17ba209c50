"""Structured model outputs: ask for JSON matching a pydantic model, validate, retry once, else a safe default.

Every structured node (planner, verifier, judge, critic) uses this, so a malformed reply is never a crash:
the first failure is shown to the model with the error; a second failure returns the caller's default.
The JSON schema is sent as ``response_format`` (``json_schema`` with the role as its name), which local
models turn into a grammar and API models into structured output.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from enum import StrEnum
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from thrifty.agents.context import RunContext
from thrifty.models.gateway import ModelError
from thrifty.models.protocol import first_json_object

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


def schema_for(model_cls: type[BaseModel]) -> dict[str, Any]:
    schema = model_cls.model_json_schema()
    schema.pop("title", None)
    return schema


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
    default.
    """
    schema = schema or schema_for(model_cls)  # a tighter schema may be asked for; validation stays lenient
    response_format = {
        "type": "json_schema",
        "json_schema": {"name": str(role), "schema": schema, "strict": False},
    }
    convo = list(messages)
    kwargs = ctx.model_kwargs()
    if temperature is not None:
        kwargs["temperature"] = temperature
    for attempt in range(2):
        try:
            reply = ctx.gateway.complete(
                ctx.model,
                convo,
                max_tokens=max_tokens,
                node=node,
                response_format=response_format,
                **kwargs,
            )
        except ModelError:
            return default, False
        try:
            return model_cls.model_validate(extract_json(reply.content)), True
        except (ValueError, ValidationError) as exc:
            if attempt == 1:
                break
            problem = (
                str(exc).splitlines()[0][:300] if not isinstance(exc, ValidationError) else _short_errors(exc)
            )
            convo = [
                *convo,
                {"role": "assistant", "content": reply.content or ""},
                {
                    "role": "user",
                    "content": f"That reply was not valid ({problem}). Reply with one JSON object only, "
                    f"matching this schema: {json.dumps(schema, separators=(',', ':'))}",
                },
            ]
    return default, False


def _short_errors(exc: ValidationError) -> str:
    parts = [f"{'.'.join(str(p) for p in e['loc']) or 'object'}: {e['msg']}" for e in exc.errors()[:3]]
    return "; ".join(parts)
