"""Several models in one run: a model per role, a cascade from cheap to strong, escalation and failover.

A run names its models with :class:`Routing`::

    Routing(
        models=["local/smollm2", "openai/gpt-4o-mini"],      # the cascade, cheapest first
        roles={"verifier": "openai/gpt-4o-mini"},            # a role on its own model (or its own cascade)
        escalation=EscalationPolicy(scope="step", min_confidence=0.5),
    )

:class:`RoutedGateway` is a :class:`~thrifty.models.gateway.Gateway` that serves the run's model name (the
first model of the default cascade) from the cascade of the role making the call (read from the call's
``node`` or its ``response_format`` name). Each call starts on the cheapest model its role may use now and
moves one model up the cascade when:

* ``parse_failed``: structured output was asked for and the reply holds no JSON object;
* ``cannot_answer``: an answer (no tool call) that is empty or says it cannot answer (``unknown``, ...);
* ``low_confidence``: the provider reported token log-probabilities and their mean probability is below
  ``min_confidence``;
* ``verifier_rejected``: the verifier's decision was not SUCCESS — the solver's next call is escalated;
* ``model_failed``: the model failed after its retries (failover to the next model of the cascade);
* ``answer_rejected``: with ``answer_check`` on, the model that answered (below the top of the cascade) was
  asked, in one short structured call at its own price, whether its answer is right, and said it is not
  (the check is sent the compact prompt below: the budget policy says nothing about an answer's truth).

With ``resample: N``, a reply of low confidence is first asked again of the same model, up to N times (a
fresh sample at ``resample_temperature`` or above, another seed, at that model's price); the call moves up
only when no sample reaches the threshold. A resample is recorded like an escalation (``resample: true``,
``to_model`` the same model) and is only asked when the budget can pay for it.

``prompt: compact`` sends a model above the cheapest a shorter prompt: the Budget Tracker's policy paragraph
is left out of the system prompt and the ``<budget>`` blocks of older tool results are removed (the latest
one stays, so the model still sees what is left). The prompt is most of what an escalated call costs.

An escalation happens only when the budget can pay the stronger model's call: its worst case (the prompt
counted by its own tokenizer, at least ``min_tokens`` of completion, at its own price) must fit what is left,
or the escalation is refused and recorded as refused. Every call goes through the Gateway and is reserved
and charged at the price of the model that served it, so neither an escalation nor a failover can take a
run past a limit. Each escalation (or refusal) is an :class:`Escalation` record, told to the
:class:`RouterState`'s listeners (the runner turns them into ``escalation`` trace events) with its reason
and what the stronger call cost.

``scope`` says how long an escalation lasts: ``step`` (this call; for a verifier rejection the solver's next
call), ``node`` (every later call of the same node; for a verifier rejection, of the solver's nodes) or
``run`` (every later call of the run, every role).
"""

from __future__ import annotations

import json
import math
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from functools import partial
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, field_validator, model_validator

from thrifty.budget import POLICY, Budget, BudgetExceeded, Ledger, Pricing, UnpricedModelError
from thrifty.models.gateway import Gateway, ModelError, ModelReply
from thrifty.models.protocol import first_json_object
from thrifty.models.registry import provider_for

__all__ = [
    "MODEL_CHECK_ERRORS",
    "NODE_ROLES",
    "ROLES",
    "Escalation",
    "EscalationPolicy",
    "RoutedGateway",
    "RouterState",
    "Routing",
    "Scope",
    "Trigger",
    "check_model",
    "checked_entry",
    "forget_formats",
    "format_steps",
    "format_worked",
    "make_gateway",
    "parse_model_spec",
    "role_of",
]

ROLES = ("planner", "solver", "verifier", "judge", "critic", "memory")
#: The role of the built-in nodes (the ``node`` a call names); a call of another node uses the default cascade.
NODE_ROLES: dict[str, str] = {
    "act": "solver",
    "final": "solver",
    "expand": "solver",
    "plan": "planner",
    "verify": "verifier",
    "judge": "judge",
    "critic": "critic",
    "memory": "memory",
}
#: The role of a structured call, by its ``json_schema`` name (``thrifty.agents.structured.StructuredRole``).
SCHEMA_ROLES: dict[str, str] = {
    "plan": "planner",
    "verdict": "verifier",
    "judge": "judge",
    "critic": "critic",
    "candidates": "solver",
    "final_answer": "solver",
}
#: ``response_format`` names the solver sends only to a grammar-constrained model (grounded span, forced answer)
GRAMMAR_FORMATS = frozenset({"grounded_answer", "final_answer"})
_CANNOT_ANSWER = re.compile(
    r"(?i)^\W*(unknown|n/?a|none|no answer|i (do not|don't) know|not enough information|"
    r"insufficient (information|evidence)|(i )?(cannot|can't|can not|am unable to|am not able to) "
    r"(answer|determine|tell|find|say))\b"
)


#: The answer check (``answer_check``): a structured verdict the answering model gives on its own answer.
CHECK_PROMPT = (
    "Proposed answer: {answer}\n"
    "Check this proposed answer against the question and the tool results above. Reply with JSON only: "
    '{{"decision": "SUCCESS" if the results support it as the answer to the question, else "FAIL", '
    '"reason": one short sentence}}'
)
CHECK_FORMAT: dict[str, Any] = {
    "type": "json_schema",
    "json_schema": {
        "name": "verdict",
        "schema": {
            "type": "object",
            "properties": {
                "decision": {"type": "string", "enum": ["SUCCESS", "FAIL"]},
                "reason": {"type": "string", "maxLength": 200},
            },
            "required": ["decision", "reason"],
            "additionalProperties": False,
        },
    },
}
CHECK_MAX_TOKENS = 64
#: Errors that say a server refused a request as written (a response format it does not take; a
#: llama-cpp-python server answers 500 to a validation error), not that it is down or the key is wrong.
REJECTED_REQUEST = ("BadRequestError", "UnprocessableEntityError", "InternalServerError")
#: The formats a structured call (a cascade's, or one of thrifty.agents.structured) steps down to when a
#: remote server rejects one: ``json_schema``, then JSON
#: mode with the schema alongside (llama-cpp-python's server takes that), then none (the prompt asks for JSON).
_learned_formats: dict[tuple[str, str | None, str], int] = {}
_learned_formats_lock = threading.Lock()


def rejected_request(exc: ModelError) -> bool:
    """Whether a model error says the server refused the request as written (see :data:`REJECTED_REQUEST`)."""
    return any(f": {name}:" in str(exc) for name in REJECTED_REQUEST)


def forget_formats() -> None:
    """Forget the response formats learned from servers that rejected one (tests)."""
    with _learned_formats_lock:
        _learned_formats.clear()


def format_steps(model: str, fields: Mapping[str, Any], api_base: str | None) -> list[dict[str, Any]]:
    """The request fields to try in turn for a call of ``model``: as given, and for a remote model asked for
    ``json_schema`` or ``json_object``, the same with JSON mode (the schema alongside), then with no
    ``response_format``; starting from the one this model and server were seen to take."""
    fmt = fields.get("response_format")
    kind = fmt.get("type") if isinstance(fmt, Mapping) else None
    if kind not in ("json_schema", "json_object") or provider_for(model).in_process:
        return [dict(fields)]
    assert isinstance(fmt, Mapping)
    schema = fmt.get("json_schema", {}).get("schema") if kind == "json_schema" else fmt.get("schema")
    formats: list[Mapping[str, Any] | None] = [fmt]
    if kind == "json_schema":
        formats.append({"type": "json_object", **({"schema": schema} if schema is not None else {})})
    formats.append(None)
    with _learned_formats_lock:
        start = _learned_formats.get((model, api_base, str(kind)), 0)
    plain = {k: v for k, v in fields.items() if k != "response_format"}
    return [plain if f is None else {**plain, "response_format": f} for f in formats[start:]]


def format_worked(model: str, fields: Mapping[str, Any], api_base: str | None, step: int) -> None:
    """Remember that the ``step``-th of :func:`format_steps` worked (for the rest of the process)."""
    fmt = fields.get("response_format")
    if step > 0 and isinstance(fmt, Mapping):
        key = (model, api_base, str(fmt.get("type")))
        with _learned_formats_lock:
            _learned_formats[key] = _learned_formats.get(key, 0) + step


_BUDGET_BLOCK = re.compile(r"\n?<budget>.*?</budget>", re.DOTALL)


def compact_prompt(messages: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The prompt ``prompt: compact`` sends a model above the cheapest: the Budget Tracker's policy paragraph
    out of the system prompt, and the ``<budget>`` block of every tool result but the latest (stale: the
    latest one says what is left). Everything else, every observation included, is kept as it is."""
    last_tool = max((i for i, m in enumerate(messages) if m.get("role") == "tool"), default=-1)
    out: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        content = message.get("content")
        if isinstance(content, str):
            new = content
            if message.get("role") == "system" and POLICY in content:
                new = re.sub(r"\n{3,}", "\n\n", content.replace(POLICY, "")).strip()
            elif message.get("role") == "tool" and i != last_tool:
                new = _BUDGET_BLOCK.sub("", content)
            if new != content:
                message = {**message, "content": new}
        out.append(message)
    return out


class Scope(StrEnum):
    STEP = "step"
    NODE = "node"
    RUN = "run"


class Trigger(StrEnum):
    VERIFIER_REJECTED = "verifier_rejected"
    PARSE_FAILED = "parse_failed"
    CANNOT_ANSWER = "cannot_answer"
    LOW_CONFIDENCE = "low_confidence"
    MODEL_FAILED = "model_failed"
    ANSWER_REJECTED = "answer_rejected"


#: The reason of a refusal to carry an earlier escalation (its ``node`` / ``run`` scope, or a verifier's
#: rejection) into a call the budget cannot pay the stronger model for.
KEPT = "kept_escalation"


class EscalationPolicy(BaseModel):
    """When and for how long a call moves up the cascade (``escalation:`` in a task file)."""

    model_config = ConfigDict(extra="forbid")

    scope: Scope = Field(default=Scope.STEP, description="step, node or run: how long an escalation lasts.")
    on: list[Trigger] = Field(
        default_factory=lambda: list(Trigger), description="The signals that escalate (default: all)."
    )
    min_confidence: float | None = Field(
        default=0.6,
        ge=0,
        le=1,
        description="Escalate when the reply's mean token probability (from reported log-probabilities) is "
        "below this; null: never on confidence.",
    )
    min_confidence_moves: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="The threshold for a reply that calls a tool (a move) instead of min_confidence; 0: never "
        "escalate a move on confidence; null: the same as min_confidence.",
    )
    moves_when_tools_left: int | None = Field(
        default=None,
        ge=0,
        description="Escalate a doubtful move only when at most this many tool calls are left in the budget "
        "(a wasted tool call matters when few are left; otherwise the cheap model's move is kept and its "
        "tool call is cheaper than the stronger model's call); null: whatever is left.",
    )
    prompt: Literal["full", "compact"] = Field(
        default="compact",
        description="What a model above the cheapest is sent: full (the same prompt) or compact (without the "
        "Budget Tracker's policy paragraph and the <budget> blocks of older tool results; the latest stays).",
    )
    answer_check: bool = Field(
        default=True,
        description="Before an answer of a model below the top of the cascade is accepted, that model checks it "
        "in one short structured call (at its own price); an answer it rejects escalates (answer_rejected).",
    )
    resample: int = Field(
        default=2,
        ge=0,
        le=3,
        description="Before a reply of low confidence is escalated, ask the same model again up to this many "
        "times (a fresh sample: temperature at least resample_temperature, another seed); the first sample "
        "at or above the threshold stands, and only when none is does the call move up the cascade. Each "
        "sample is charged at that model's price; a sample the budget cannot pay is not asked.",
    )
    resample_temperature: float = Field(
        default=0.7,
        ge=0,
        le=2,
        description="The lowest temperature a resample is asked at (a call at temperature 0 would repeat itself).",
    )
    min_tokens: PositiveInt = Field(
        default=32,
        description="The stronger model must be able to pay at least this many completion tokens (or the "
        "call's own max_tokens if fewer), or the escalation is refused.",
    )
    request_logprobs: bool = Field(
        default=False,
        description="Ask remote models for log-probabilities (logprobs=true) so that confidence can be read.",
    )


def _check_role(role: str) -> str:
    if role not in ROLES:
        raise ValueError(f"unknown role '{role}' (fix: use one of {', '.join(ROLES)})")
    return role


class Routing(BaseModel):
    """The models of a run: a default cascade and/or a model (or cascade) per role."""

    model_config = ConfigDict(extra="forbid")

    models: list[str] = Field(
        default_factory=list, description="The cascade, cheapest first: e.g. [local/smollm2, openai/gpt-4o]."
    )
    roles: dict[str, str | list[str]] = Field(
        default_factory=dict, description=f"A model or cascade per role ({', '.join(ROLES)})."
    )
    escalation: EscalationPolicy = Field(default_factory=EscalationPolicy)

    @field_validator("roles")
    @classmethod
    def _known_roles(cls, value: dict[str, str | list[str]]) -> dict[str, str | list[str]]:
        for role, models in value.items():
            _check_role(role)
            if isinstance(models, list) and not models:
                raise ValueError(f"role '{role}' names an empty cascade (fix: give at least one model)")
        return value

    @model_validator(mode="after")
    def _some_model(self) -> Routing:
        if not self.models and not self.roles:
            raise ValueError("routing names no model (fix: give `models: [...]` or `roles: {...}`)")
        for cascade in [self.models, *(self.cascade(r) for r in self.roles)]:
            if len(set(cascade)) != len(cascade):
                raise ValueError(f"cascade {cascade} names a model twice (fix: list each model once)")
        return self

    def cascade(self, role: str | None) -> list[str]:
        """The models ``role`` may use, cheapest first (the default cascade for a role not named)."""
        chosen = self.roles.get(role) if role is not None else None
        if chosen is None:
            return list(self.models) or self.cascade(next(iter(self.roles)))
        return [chosen] if isinstance(chosen, str) else list(chosen)

    def all_models(self) -> list[str]:
        seen: list[str] = []
        for cascade in [self.models, *(self.cascade(r) for r in self.roles)]:
            seen.extend(m for m in cascade if m not in seen)
        return seen

    @property
    def entry(self) -> str:
        """The run's model name: the first model of the default cascade (what nodes call)."""
        return self.cascade(None)[0]

    def label(self) -> str:
        """A short name for results: ``a>b`` for a cascade, ``role=m`` for the roles."""
        parts = [">".join(self.models)] if self.models else []
        parts += [f"{r}={m if isinstance(m, str) else '>'.join(m)}" for r, m in self.roles.items()]
        return ";".join(parts)


def parse_model_spec(text: str) -> Routing | None:
    """A cascade or per-role mapping written on one line (``agent bench --model``), or None for one model.

    ``a>b`` is a cascade; ``;`` separates parts; ``role=a>b`` gives a role its model or cascade
    (``solver=local/smollm2;verifier=openai/gpt-4o``). Raises ValueError for an unknown role or a model
    name missing around a ``>`` (``a>``, ``>b``, ``a>>b``).
    """
    if ">" not in text and ";" not in text and not re.match(r"^\s*[a-z_]+=", text):
        return None
    models: list[str] = []
    roles: dict[str, str | list[str]] = {}
    parts = [p.strip() for p in text.split(";")]
    for part in parts:
        if not part:
            continue
        head, sep, rest = part.partition("=")
        if sep and "/" not in head:
            role = _check_role(head.strip())
            chain = _chain(rest, f"role '{role}'", part if len(parts) > 1 else "")
            roles[role] = chain[0] if len(chain) == 1 else chain
        else:
            models.extend(_chain(part, "", part if len(parts) > 1 else ""))
    return Routing(models=models, roles=roles)


def _chain(text: str, role: str, part: str) -> list[str]:
    """The models of ``a>b``: ValueError (with its fix) for a name missing before or after a ``>`` (``a>``,
    ``>b``, ``a>>b``), which would otherwise run a shorter cascade than the one meant."""
    names = [m.strip() for m in text.split(">")]
    kept = [m for m in names if m]
    where = f" in '{part}'" if part else ""
    if not kept:
        what = f"{role} names no model" if role else "a model name is missing"
        example = "'local/smollm2>openai/gpt-4o'"
        raise ValueError(f"{what}{where} (fix: give a model, or a cascade cheapest first, e.g. {example})")
    if len(kept) < len(names):
        if len(kept) > 1:
            example = f"'{'>'.join(kept)}'"
        else:
            example = f"'{kept[0]}' for one model, or '{kept[0]}>provider/stronger-model'"
        raise ValueError(
            f"a model name is missing before or after '>'{where} (fix: name a model on each side of every "
            f"'>', cheapest first, e.g. {example})"
        )
    return names


def role_of(node: str | None, response_format: Any) -> str | None:
    """The role making a call: from its node, else from its structured output's name, else None."""
    if node in NODE_ROLES:
        return NODE_ROLES[node]
    if isinstance(response_format, Mapping):
        spec: Any = response_format.get("json_schema")
        if isinstance(spec, Mapping):
            name: Any = spec.get("name")
            if isinstance(name, str) and name in SCHEMA_ROLES:
                return SCHEMA_ROLES[name]
    return None


@dataclass
class Escalation:
    """One escalation of a call (or one refused for want of budget)."""

    role: str
    node: str
    from_model: str
    to_model: str
    reason: str
    scope: str
    refused: bool = False
    detail: str = ""
    usd: float = 0.0
    """What the call to the stronger model cost (filled when it is served; 0 for a refusal)."""
    discarded_usd: float = 0.0
    """What the weaker call whose reply was set aside cost."""
    resample: bool = False
    """A fresh sample of the same model (``resample``), not a move up: ``to_model`` is ``from_model``."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RouterState:
    """The escalations of a run, shared by every Gateway of it (its branches and samples)."""

    run_level: int = 0
    node_levels: dict[str, int] = field(default_factory=dict)
    pending: dict[str, int] = field(default_factory=dict)  # role -> level for its next call only
    records: list[Escalation] = field(default_factory=list)
    listeners: list[Callable[[Escalation], None]] = field(default_factory=list)
    consumed: list[Callable[[str], None]] = field(default_factory=list)
    """Told the role whose one-call escalation (a verifier's rejection, scope ``step``) a call used up."""
    replayable: list[dict[str, Any]] = field(default_factory=list, repr=False)
    """Escalations restored from a checkpoint that a re-run node may make again (told once, not twice)."""
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def start(self, role: str | None, node: str, size: int) -> int:
        """The level a call starts at (consumes a one-call escalation of its role)."""
        with self.lock:
            once = self.pending.pop(role or "", 0)
            level = max(
                self.run_level,
                self.node_levels.get(f"node:{node}", 0),
                self.node_levels.get(f"role:{role}", 0),
                once,
            )
            listeners = list(self.consumed) if once else []
        for listener in listeners:
            listener(role or "")
        return min(level, size - 1)

    def keep(self, scope: Scope, role: str | None, node: str, level: int, *, for_next: bool = False) -> None:
        """Remember an escalation to ``level`` for its scope (``for_next``: a verifier rejection, which
        escalates the solver's next call(s) rather than the call that saw it)."""
        with self.lock:
            if scope is Scope.RUN:
                self.run_level = max(self.run_level, level)
            elif scope is Scope.NODE:
                key = f"role:{role}" if for_next else f"node:{node}"
                self.node_levels[key] = max(self.node_levels.get(key, 0), level)
            elif for_next:
                self.pending[role or ""] = max(self.pending.get(role or "", 0), level)

    def add(self, record: Escalation) -> None:
        with self.lock:
            data = record.to_dict()
            if data in self.replayable:  # made again by a node re-run after a resume: already told
                self.replayable.remove(data)
                return
            self.records.append(record)
            listeners = list(self.listeners)
        for listener in listeners:
            listener(record)


class RoutedGateway(Gateway):
    """A Gateway whose calls to the run's model (:attr:`entry`) are served from the role's cascade.

    Calls naming another model go straight to that model, as with a plain Gateway.
    """

    def __init__(
        self,
        ledger: Ledger,
        pricing: Pricing | None = None,
        *,
        routing: Routing,
        state: RouterState | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(ledger, pricing, **kwargs)
        self.routing = routing
        self.policy = routing.escalation
        self.state = state or RouterState()
        self.entry = routing.entry
        self._cascades: dict[str | None, list[str]] = {r: routing.cascade(r) for r in (None, *ROLES)}

    def spawn(self, ledger: Ledger) -> RoutedGateway:
        """The same models and settings on another ledger (a branch, a sample), sharing the escalations."""
        gw = RoutedGateway(
            ledger,
            self.pricing,
            routing=self.routing,
            state=self.state,
            retries=self.retries,
            backoff=self.backoff,
            default_max_tokens=self.default_max_tokens,
            api_base=self.api_base,
            ratios=self.ratios,
        )
        gw._cascades = self._cascades
        gw.entry = self.entry
        return gw

    def restore(
        self, entries: Sequence[tuple[int, Mapping[str, Any]]], replay_after: int, replay_from_step: int = 0
    ) -> list[Escalation]:
        """Resuming a checkpointed run: take back the escalations it had made (``entries``: what
        ``thrifty.store.durable`` kept, in order: ``{"kind": "escalation", "step": ..., ...the record's
        fields}`` or ``{"kind": "consumed", "role": ...}``, each with the last charge seen then). Their
        ``node`` / ``run`` scope holds again; a one-call escalation not used up is still pending; one that a
        node LangGraph runs again will make again (made after charge ``replay_after``, at or after step
        ``replay_from_step``: the last step of the saved trace) is not told twice. Returns the records."""
        names = set(Escalation.__dataclass_fields__)
        restored: list[Escalation] = []
        for at_seq, entry in entries:
            if entry.get("kind") == "consumed":
                with self.state.lock:
                    self.state.pending.pop(str(entry.get("role") or ""), 0)
                continue
            if entry.get("kind") != "escalation":
                continue
            record = Escalation(**{k: v for k, v in entry.items() if k in names})
            restored.append(record)
            self.state.records.append(record)
            if at_seq > replay_after and int(entry.get("step") or 0) >= replay_from_step:
                self.state.replayable.append(record.to_dict())
            self._keep_again(record)
        return restored

    def _keep_again(self, record: Escalation) -> None:
        """What an escalation kept for its scope, applied again (a refusal, a failover or a resample keeps
        nothing)."""
        if record.refused or record.resample or record.reason == Trigger.MODEL_FAILED:
            return
        role = None if record.role == "default" else record.role
        cascade = self.cascade(role)
        if record.to_model not in cascade:
            return
        level = cascade.index(record.to_model)
        rejected = record.reason == Trigger.VERIFIER_REJECTED
        self.state.keep(Scope(record.scope), role, record.node, level, for_next=rejected)

    def check_models(self) -> None:
        """Check every model before anything is spent (unknown provider or model, unpriced under a USD
        budget: ModelError / UnpricedModelError), and order each cascade cheapest first (stable)."""
        for model in self.routing.all_models():
            self.check_model(model)

        def nominal(model: str) -> float:  # a 1,000-token prompt and a 200-token answer
            price = self.price(model)
            return price.input_per_token * 1000 + price.output_per_token * 200 + price.per_second

        self._cascades = {r: sorted(c, key=nominal) for r, c in self._cascades.items()}
        self.entry = self._cascades[None][0]

    def cascade(self, role: str | None) -> list[str]:
        return list(self._cascades.get(role) or self._cascades[None])

    # ------------------------------------------------------------------------------ decisions
    def affordable(
        self,
        model: str,
        messages: Sequence[dict[str, Any]],
        tools: Sequence[dict[str, Any]] | None,
        max_tokens: int | None,
    ) -> str | None:
        """Why the budget cannot pay a call of ``model`` now (None when it can): its worst case with at
        least ``min_tokens`` of completion, priced at its own price."""
        try:
            prompt = self.count_prompt_tokens(model, messages, tools)
            plan = self.plan_call(model, prompt, max_tokens)
        except (BudgetExceeded, ModelError, UnpricedModelError) as exc:
            return str(exc)
        need = min(max_tokens or self.default_max_tokens, self.policy.min_tokens)
        if plan.cap < need:
            return f"the budget pays only {plan.cap} completion tokens of {model} (needs {need})"
        return None

    def _trigger(
        self, role: str | None, reply: ModelReply, kwargs: Mapping[str, Any]
    ) -> tuple[Trigger, str] | None:
        """The signal in ``reply`` that asks for a stronger model, if any (and enabled)."""
        on = set(self.policy.on)
        structured = isinstance(kwargs.get("response_format"), Mapping)
        if (
            Trigger.PARSE_FAILED in on
            and structured
            and not reply.tool_calls
            and not _has_json(reply.content)
        ):
            return Trigger.PARSE_FAILED, "no JSON object in the reply"
        if Trigger.CANNOT_ANSWER in on and role == "solver" and not reply.tool_calls:
            text = _answer_text(reply.content)
            if not text.strip() or _CANNOT_ANSWER.match(text):
                return Trigger.CANNOT_ANSWER, f"answer {text.strip()[:60]!r}"
        threshold = self._threshold(reply)
        confidence = reply.confidence
        if (
            Trigger.LOW_CONFIDENCE in on
            and threshold is not None
            and confidence is not None
            and confidence < threshold
        ):
            return Trigger.LOW_CONFIDENCE, f"confidence {reply.confidence:.2f} < {threshold:g}"
        return None

    def _threshold(self, reply: ModelReply) -> float | None:
        """The confidence below which ``reply`` escalates: a move's own threshold, and for a move only when
        the tool calls left are few enough (``moves_when_tools_left``)."""
        policy = self.policy
        if not reply.tool_calls:
            return policy.min_confidence
        if policy.moves_when_tools_left is not None:
            left = self.ledger.available("tool_calls")
            if left > policy.moves_when_tools_left:
                return None
        return policy.min_confidence if policy.min_confidence_moves is None else policy.min_confidence_moves

    def _observe(self, role: str | None, node: str, level: int, reply: ModelReply) -> None:
        """A verifier that rejects an answer escalates the solver's next call(s)."""
        if role != "verifier" or Trigger.VERIFIER_REJECTED not in self.policy.on:
            return
        found = _json_object(reply.content)
        decision = str(found.get("decision", "")).upper() if found else ""
        if not decision or decision == "SUCCESS":
            return
        cascade = self.cascade("solver")
        current = (
            self.state.start("solver", "act", len(cascade)) if self.policy.scope is not Scope.STEP else 0
        )
        if current + 1 >= len(cascade):
            return
        target = current + 1
        self.state.keep(self.policy.scope, "solver", node, target, for_next=True)
        self.state.add(
            Escalation(
                role="solver",
                node=node,
                from_model=cascade[current],
                to_model=cascade[target],
                reason=Trigger.VERIFIER_REJECTED,
                scope=self.policy.scope,
                detail=f"verifier decision {decision}",
            )
        )

    def _fields(self, model: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """The request fields for ``model``: a response format that only a grammar-constrained provider
        serves (the grounded or forced final answer a node asked the entry model for) is left out for a
        model without a grammar, and log-probabilities are asked of remote models when the policy says so."""
        fields = dict(kwargs)
        provider = provider_for(model)
        rf = fields.get("response_format")
        if not provider.grammar and isinstance(rf, Mapping):
            spec: Any = rf.get("json_schema")
            if isinstance(spec, Mapping) and spec.get("name") in GRAMMAR_FORMATS:
                del fields["response_format"]
        if self.policy.request_logprobs and not provider.in_process:
            fields["logprobs"] = True
            # llama.cpp's OpenAI-compatible server sends log-probabilities only when top_logprobs is given too
            fields.setdefault("top_logprobs", 1)
        return fields

    def _start(
        self,
        role: str | None,
        node: str,
        messages: Sequence[dict[str, Any]],
        tools: Sequence[dict[str, Any]] | None,
        max_tokens: int | None,
    ) -> tuple[list[str], int]:
        cascade = self.cascade(role)
        level = self.state.start(role, node, len(cascade))
        while level > 0:  # an escalation kept from earlier: still only if the budget can pay for it
            why = self.affordable(cascade[level], messages, tools, max_tokens)
            if why is None:
                break
            # an escalation kept from an earlier call (its scope), which this call cannot pay for
            self._refuse(role, node, cascade[level - 1], cascade[level], KEPT, why)
            level -= 1
        return cascade, level

    def _refuse(self, role: str | None, node: str, weak: str, strong: str, reason: str, why: str) -> None:
        self.state.add(
            Escalation(
                role=role or "default",
                node=node,
                from_model=weak,
                to_model=strong,
                reason=reason,
                scope=self.policy.scope,
                refused=True,
                detail=f"refused: {why}"[:300],
            )
        )

    def _next(
        self,
        role: str | None,
        node: str,
        cascade: list[str],
        level: int,
        signal: tuple[Trigger, str],
        call: tuple[Sequence[dict[str, Any]], Sequence[dict[str, Any]] | None, int | None],
        discarded: ModelReply | None,
    ) -> Escalation | None:
        """Move one model up for ``signal``: the record of it, or None (top of the cascade, or refused)."""
        reason, detail = signal
        if level + 1 >= len(cascade) or reason not in self.policy.on:
            return None
        weak, strong = cascade[level], cascade[level + 1]
        why = self.affordable(strong, *call)
        if why is not None:
            self._refuse(role, node, weak, strong, reason, why)
            return None
        if reason is not Trigger.MODEL_FAILED:
            self.state.keep(self.policy.scope, role, node, level + 1)
        return Escalation(
            role=role or "default",
            node=node,
            from_model=weak,
            to_model=strong,
            reason=reason,
            scope=self.policy.scope,
            detail=detail[:300],
            discarded_usd=discarded.usd if discarded is not None else 0.0,
        )

    # ---------------------------------------------------------------------------------- calls
    def complete(
        self,
        model: str,
        messages: Sequence[dict[str, Any]],
        *,
        tools: Sequence[dict[str, Any]] | None = None,
        max_tokens: int | None = None,
        node: str | None = None,
        prompt_tokens: int | None = None,
        **kwargs: Any,
    ) -> ModelReply:
        if model != self.entry:
            return super().complete(
                model,
                messages,
                tools=tools,
                max_tokens=max_tokens,
                node=node,
                prompt_tokens=prompt_tokens,
                **kwargs,
            )
        chain = _Chain(self, messages, tools, max_tokens, node, kwargs)
        try:
            while True:
                gateway, current, prompt, fields = chain.target()
                call = gateway.complete if gateway is not None else super().complete
                try:
                    reply = self._stepped(
                        call,
                        current,
                        fields,
                        (gateway or self).api_base,
                        prompt,
                        tools=tools,
                        max_tokens=max_tokens,
                        node=node,
                        prompt_tokens=prompt_tokens if current == model else None,
                    )
                except ModelError as exc:
                    fallback = chain.failed(exc)  # raises when no model is left and no reply was set aside
                    if fallback is not None:
                        return fallback
                    continue
                if chain.served(reply) and self._check(chain, reply):
                    return reply
        finally:
            chain.close()

    def _stepped(
        self,
        call: Callable[..., ModelReply],
        model: str,
        fields: Mapping[str, Any],
        api_base: str | None,
        *args: Any,
        **kwargs: Any,
    ) -> ModelReply:
        """``call(model, *args, **kwargs, **fields)``, asked again with the next of :func:`format_steps` while
        a remote server rejects the response format it was sent (each attempt charged)."""
        steps = format_steps(model, fields, api_base)
        for i, request in enumerate(steps):
            try:
                reply = call(model, *args, **kwargs, **request)
            except ModelError as exc:
                if i + 1 < len(steps) and rejected_request(exc):
                    continue
                raise
            format_worked(model, fields, api_base, i)
            return reply
        raise AssertionError("format_steps is never empty")

    async def _astepped(
        self,
        call: Callable[..., Any],
        model: str,
        fields: Mapping[str, Any],
        api_base: str | None,
        *args: Any,
        **kwargs: Any,
    ) -> ModelReply:
        """:meth:`_stepped` for an async ``call``."""
        steps = format_steps(model, fields, api_base)
        for i, request in enumerate(steps):
            try:
                reply = await call(model, *args, **kwargs, **request)
            except ModelError as exc:
                if i + 1 < len(steps) and rejected_request(exc):
                    continue
                raise
            format_worked(model, fields, api_base, i)
            return reply
        raise AssertionError("format_steps is never empty")

    def _check(self, chain: _Chain, reply: ModelReply) -> bool:
        """The answer check (``answer_check``): True when ``reply`` stands, False to escalate it. A check the
        budget cannot pay, or that cannot be made, leaves the answer."""
        check = chain.check(reply)
        if check is None:
            return True
        model, prompt, fields = check
        call = partial(Gateway.complete, self)
        try:
            verdict = self._stepped(
                call, model, fields, self.api_base, prompt, max_tokens=CHECK_MAX_TOKENS, node="answer_check"
            )
        except (BudgetExceeded, ModelError):
            return True
        return chain.checked(reply, verdict)

    async def _acheck(self, chain: _Chain, reply: ModelReply) -> bool:
        check = chain.check(reply)
        if check is None:
            return True
        model, prompt, fields = check
        call = partial(Gateway.acomplete, self)
        try:
            verdict = await self._astepped(
                call, model, fields, self.api_base, prompt, max_tokens=CHECK_MAX_TOKENS, node="answer_check"
            )
        except (BudgetExceeded, ModelError):
            return True
        return chain.checked(reply, verdict)

    async def acomplete(
        self,
        model: str,
        messages: Sequence[dict[str, Any]],
        *,
        tools: Sequence[dict[str, Any]] | None = None,
        max_tokens: int | None = None,
        node: str | None = None,
        prompt_tokens: int | None = None,
        **kwargs: Any,
    ) -> ModelReply:
        if model != self.entry:
            return await super().acomplete(
                model,
                messages,
                tools=tools,
                max_tokens=max_tokens,
                node=node,
                prompt_tokens=prompt_tokens,
                **kwargs,
            )
        chain = _Chain(self, messages, tools, max_tokens, node, kwargs)
        try:
            while True:
                gateway, current, prompt, fields = chain.target()
                call = gateway.acomplete if gateway is not None else super().acomplete
                try:
                    reply = await self._astepped(
                        call,
                        current,
                        fields,
                        (gateway or self).api_base,
                        prompt,
                        tools=tools,
                        max_tokens=max_tokens,
                        node=node,
                        prompt_tokens=prompt_tokens if current == model else None,
                    )
                except ModelError as exc:
                    fallback = chain.failed(exc)  # raises when no model is left and no reply was set aside
                    if fallback is not None:
                        return fallback
                    continue
                if chain.served(reply) and await self._acheck(chain, reply):
                    return reply
        finally:
            chain.close()

    def _served(self, record: Escalation | None, reply: ModelReply | None) -> None:
        """Record an escalation once the stronger model has answered (or failed: then it cost a request)."""
        if record is None:
            return
        if reply is not None:
            record.usd = reply.usd
        else:
            failed = "the sample failed" if record.resample else "the stronger model failed too"
            record.detail = f"{record.detail}; {failed}"[:300]
        self.state.add(record)

    def failover_guard(
        self,
        candidates: Sequence[str],
        messages: Sequence[dict[str, Any]],
        tools: Sequence[dict[str, Any]] | None,
        max_tokens: int | None,
        node: str,
    ) -> Ledger | None:
        """Before a call that may fail over: hold the worst case among ``candidates`` (the model about to
        be called and those it may fall back to) in a carved child ledger, so that a fallback to a pricier
        model is paid from what was held and can never overspend (nor be starved by a parallel branch).

        The worst case is, per dimension, the largest reservation any candidate's call needs, with one
        request per candidate. Candidates the budget cannot hold are left out of the failover (recorded as
        refused). None when no fallback is left to guard.
        """
        plans: list[tuple[str, dict[str, float]]] = []
        for model in candidates:
            try:
                plan = self.plan_call(model, self.count_prompt_tokens(model, messages, tools), max_tokens)
            except (BudgetExceeded, ModelError, UnpricedModelError) as exc:
                if plans:
                    self._refuse(None, node, plans[-1][0], model, Trigger.MODEL_FAILED, f"no failover: {exc}")
                break
            plans.append((model, plan.amounts))
        while len(plans) > 1:
            worst: dict[str, float] = {}
            for _model, amounts in plans:
                for dim, amount in amounts.items():
                    worst[dim] = max(worst.get(dim, 0.0), amount)
            worst["model_requests"] = float(len(plans))
            # only what a limit applies to needs holding (whole tokens and requests, rounded up)
            limited = {
                dim: (amount if dim == "usd" else float(math.ceil(amount - 1e-9)))
                for dim, amount in worst.items()
                if amount > 0 and self.ledger.available(dim) != math.inf
            }
            if not limited:
                return None
            if self.ledger.can_afford(limited):
                return self.ledger.child(Budget.model_validate(limited), name="failover", carve=True)
            dropped = plans.pop()
            self._refuse(
                None,
                node,
                plans[-1][0],
                dropped[0],
                Trigger.MODEL_FAILED,
                "no failover: the budget cannot hold its worst case",
            )
        return None


class _Chain:
    """One routed call in progress: which model to call now, on which ledger, and what its reply means."""

    def __init__(
        self,
        gw: RoutedGateway,
        messages: Sequence[dict[str, Any]],
        tools: Sequence[dict[str, Any]] | None,
        max_tokens: int | None,
        node: str | None,
        kwargs: Mapping[str, Any],
    ) -> None:
        self.gw = gw
        self.call = (messages, tools, max_tokens)
        self.kwargs = kwargs
        self.role, self.node = role_of(node, kwargs.get("response_format")), node or ""
        self.cascade, self.level = gw._start(self.role, self.node, messages, tools, max_tokens)
        self.pending: Escalation | None = None
        self.guard: Ledger | None = None
        self.guard_gateway: Gateway | None = None
        self.discarded: ModelReply | None = None  # the last reply set aside for a stronger model
        self._compact: list[dict[str, Any]] | None = None
        self.resamples = 0  # fresh samples asked of the model at ``resample_level`` (``resample``)
        self.resample_level = -1

    def prompt(self, level: int) -> list[dict[str, Any]]:
        """The messages a call at ``level`` sends: compact above the cheapest model with ``prompt: compact``."""
        messages = self.call[0]
        if level == 0 or self.gw.policy.prompt != "compact":
            return list(messages)
        if self._compact is None:
            self._compact = compact_prompt(messages)
        return self._compact

    def at(self, level: int) -> tuple[Sequence[dict[str, Any]], Sequence[dict[str, Any]] | None, int | None]:
        """The call as a model at ``level`` would make it (its prompt, the tools, max_tokens)."""
        return self.prompt(level), self.call[1], self.call[2]

    def target(self) -> tuple[Gateway | None, str, list[dict[str, Any]], dict[str, Any]]:
        """(the Gateway to call on, None for the run's own; the model; its prompt; its request fields)."""
        current = self.cascade[self.level]
        failover = Trigger.MODEL_FAILED in self.gw.policy.on and self.level + 1 < len(self.cascade)
        if self.guard is None and failover:
            self.guard = self.gw.failover_guard(self.cascade[self.level :], *self.call, self.node)
            if self.guard is not None:
                self.guard_gateway = Gateway.spawn(self.gw, self.guard)
        fields = self.gw._fields(current, self.kwargs)
        if self.resamples and self.level == self.resample_level:  # a fresh sample, not the same reply again
            floor = self.gw.policy.resample_temperature
            fields["temperature"] = max(float(fields.get("temperature") or 0.0), floor)
            if isinstance(fields.get("seed"), int):
                fields["seed"] += self.resamples
        return self.guard_gateway, current, self.prompt(self.level), fields

    def failed(self, exc: ModelError) -> ModelReply | None:
        """The model failed: None to try the next one (failover); else the weaker model's reply that was set
        aside for it (an escalation never leaves a call worse off); else ``exc`` is raised."""
        self.gw._served(self.pending, None)
        self.pending = self.gw._next(
            self.role,
            self.node,
            self.cascade,
            self.level,
            (Trigger.MODEL_FAILED, str(exc)),
            self.at(self.level + 1),
            None,
        )
        if self.pending is not None:
            self.level += 1
            return None
        if self.discarded is not None:
            self.gw._observe(self.role, self.node, self.level, self.discarded)
            return self.discarded
        raise exc

    def served(self, reply: ModelReply) -> bool:
        """A reply came: True when it is the answer, False to call again (one model up, or a resample)."""
        self.close()  # the failover hold is no longer needed: what it did not spend goes back
        self.gw._served(self.pending, reply)
        signal = self.gw._trigger(self.role, reply, self.kwargs)
        self.pending = None
        if signal is not None:
            if self._resample(signal, reply):
                return False
            self.pending = self.gw._next(
                self.role, self.node, self.cascade, self.level, signal, self.at(self.level + 1), reply
            )
            self.discarded = reply
        if self.pending is None:
            self.gw._observe(self.role, self.node, self.level, reply)
            return True
        self.level += 1
        return False

    def _resample(self, signal: tuple[Trigger, str], reply: ModelReply) -> bool:
        """``resample``: True when ``reply``'s low confidence is answered by asking the same model again
        (only below the top of the cascade, only while samples are left and the budget can pay for one)."""
        policy = self.gw.policy
        reason, detail = signal
        if reason is not Trigger.LOW_CONFIDENCE or self.level + 1 >= len(self.cascade):
            return False
        if self.level != self.resample_level:
            self.resample_level, self.resamples = self.level, 0
        if self.resamples >= policy.resample:
            return False
        model = self.cascade[self.level]
        if self.gw.affordable(model, *self.at(self.level)) is not None:
            return False
        self.resamples += 1
        self.discarded = reply
        self.pending = Escalation(
            role=self.role or "default",
            node=self.node,
            from_model=model,
            to_model=model,
            reason=reason,
            scope=policy.scope,
            detail=f"resample {self.resamples} of {policy.resample}: {detail}"[:300],
            discarded_usd=reply.usd,
            resample=True,
        )
        return True

    def check(self, reply: ModelReply) -> tuple[str, list[dict[str, Any]], dict[str, Any]] | None:
        """The answer check due on ``reply`` (model, prompt, request fields), or None: only for an answer
        of the solver below the top of the cascade, with ``answer_check`` on, when the budget can pay it."""
        policy = self.gw.policy
        if not policy.answer_check or Trigger.ANSWER_REJECTED not in policy.on:
            return None
        if self.role != "solver" or reply.tool_calls or self.level + 1 >= len(self.cascade):
            return None
        answer = _answer_text(reply.content).strip()
        if not answer:
            return None
        model = self.cascade[self.level]
        prompt = [  # compact: the budget policy and stale budget blocks say nothing about an answer's truth
            *compact_prompt(self.call[0]),
            {"role": "assistant", "content": reply.content or ""},
            {"role": "user", "content": CHECK_PROMPT.format(answer=answer[:200])},
        ]
        if self.gw.affordable(model, prompt, None, CHECK_MAX_TOKENS) is not None:
            return None
        kept = {k: v for k, v in self.kwargs.items() if k not in ("response_format", "tool_choice")}
        return model, prompt, {**self.gw._fields(model, kept), "response_format": CHECK_FORMAT}

    def checked(self, reply: ModelReply, verdict: ModelReply) -> bool:
        """The check's verdict on ``reply``: True when the answer stands (SUCCESS, or a verdict that cannot be
        read), False to call the next model up (answer_rejected), unless the budget cannot pay for it."""
        found = _json_object(verdict.content)
        decision = str(found.get("decision", "")).upper() if found else ""
        if not decision or decision == "SUCCESS":
            return True
        reason = str(found.get("reason", "")) if found else ""
        signal = (Trigger.ANSWER_REJECTED, f"check said {decision}: {reason}")
        self.pending = self.gw._next(
            self.role, self.node, self.cascade, self.level, signal, self.at(self.level + 1), reply
        )
        if self.pending is None:
            return True
        self.pending.discarded_usd += verdict.usd
        self.discarded = reply
        self.level += 1
        return False

    def close(self) -> None:
        if self.guard is not None:
            self.guard.close()
        self.guard, self.guard_gateway = None, None


def _answer_text(content: str | None) -> str:
    """The answer in a reply: a final-answer JSON object's ``answer`` field, a JSON string, else the text."""
    found = _json_object(content)
    if found and isinstance(found.get("answer"), str):
        return str(found["answer"])
    try:
        value = json.loads(content or "")
    except json.JSONDecodeError:
        return content or ""
    return value if isinstance(value, str) else content or ""


def _json_object(content: str | None) -> dict[str, Any] | None:
    if not content:
        return None
    try:
        value = json.loads(content)
    except json.JSONDecodeError:
        value = first_json_object(content)
    return value if isinstance(value, dict) else None


def _has_json(content: str | None) -> bool:
    """Whether the reply holds JSON: a whole JSON value (a grammar may ask for a string), or an object in it."""
    try:
        json.loads(content or "")
    except json.JSONDecodeError:
        return _json_object(content) is not None
    return True


def make_gateway(
    ledger: Ledger,
    pricing: Pricing,
    *,
    retries: int | None = None,
    api_base: str | None = None,
    routing: Routing | None = None,
) -> Gateway:
    """The Gateway a run calls its models through: a :class:`RoutedGateway` when ``routing`` is given."""
    options: dict[str, Any] = {"api_base": api_base} | ({} if retries is None else {"retries": retries})
    if routing is None:
        return Gateway(ledger, pricing, **options)
    return RoutedGateway(ledger, pricing, routing=routing, **options)


#: What :func:`check_model` raises for a model a run would refuse.
MODEL_CHECK_ERRORS = (ModelError, UnpricedModelError, ValueError, ImportError)


def check_model(
    model: str,
    pricing: Pricing | None = None,
    budget: Budget | None = None,
    *,
    api_base: str | None = None,
    routing: Routing | None = None,
) -> str:
    """The check a run makes on its model before it spends anything, made apart from a run (a task file's
    ``model`` or ``memory.model``, a benchmark's models): one of :data:`MODEL_CHECK_ERRORS`, or the model
    the run would start on. Nothing is called: the Gateway is built on a fresh Ledger."""
    gateway = make_gateway(Ledger(budget), pricing or Pricing(), api_base=api_base, routing=routing)
    return checked_entry(gateway, model)


def checked_entry(gateway: Gateway, model: str) -> str:
    """Refuse, before anything is spent, a model that cannot be called or priced under the budget (with
    routing, every model of every cascade: ModelError / UnpricedModelError); the model the run starts on."""
    if isinstance(gateway, RoutedGateway):
        gateway.check_models()
        return gateway.entry
    gateway.check_model(model)
    return model
