"""The run's trace as typed events: one pydantic model per kind of entry, told apart by ``action``.

Every built-in node reports what it did as one of these (``ctx.emit(event)``). ``RunResult.trace`` holds
them in order, and ``on_trace`` callbacks (the CLI's live view, ``Agent.run(on_trace=...)``) receive each
one as it happens::

    for event in result.trace:
        if isinstance(event, VerdictEvent):
            print(event.attempt, event.answer, event.decision)
        print(event.describe())  # the line the CLI's live view shows

Each built-in kind carries the budget at that moment (``remaining``, ``ratio``, ``regime``, ``usd_spent``).
The JSON form (``agent run --json``) is the trace's wire format: the fields in declaration order, the budget
fields last, and absent optional keys (``sample``, ``budget``) left out.

==============  ========  ==========================================================================
``action``      node      what happened
==============  ========  ==========================================================================
tool_calls      act       the model asked for tools (:class:`ToolCallsEvent`)
observation     observe   a tool ran, or was refused by the budget (:class:`ObservationEvent`)
answer          act/final the model answered, or was made to (:class:`AnswerEvent`)
stop            act       the loop stopped without an answer call (:class:`StopEvent`)
plan            plan      BATS checklist made or extended (:class:`PlanEvent`)
verdict         verify    the verifier's decision on an answer (:class:`VerdictEvent`)
judge           judge     the final choice among candidates (:class:`JudgeEvent`)
expand          expand    one value-tree expansion (:class:`ExpandEvent`)
tree            finalize  the whole value tree and its answer (:class:`TreeEvent`)
vote            vote      self-consistency's majority vote (:class:`VoteEvent`)
escalation      (any)     a call moved up the model cascade, or the budget refused it (:class:`EscalationEvent`)
==============  ========  ==========================================================================

An entry of any other kind (a dict from a user-defined node) becomes a :class:`CustomEvent`, kept as given.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, TypedDict

from pydantic import BaseModel, ConfigDict, Discriminator, Tag, TypeAdapter

from thrifty.agents.records import ChecklistItem, Record, TreeNode


class BudgetSnapshot(TypedDict):
    """The budget fields of an event: what is left per dimension, the smallest remaining fraction, the
    regime it puts the run in, and the dollars spent so far (see ``thrifty.agents.solver.snapshot``)."""

    remaining: dict[str, float]
    ratio: float
    regime: str
    usd_spent: float


BUDGET_FIELDS = ("remaining", "ratio", "regime", "usd_spent")  # the keys of BudgetSnapshot


def shorten(text: Any, n: int) -> str:
    """``text`` on one line, cut to ``n`` characters with an ellipsis."""
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


class EventBase(Record):
    """What every trace entry has: the step, the node that made it, what it did, and (for the built-in
    kinds, always) the budget at that moment."""

    _omit_if_none: ClassVar[tuple[str, ...]] = ("sample",)
    _last: ClassVar[tuple[str, ...]] = (*BUDGET_FIELDS, "sample")

    step: int = 0
    node: str = ""
    action: str
    remaining: dict[str, float] | None = None
    ratio: float | None = None
    regime: str | None = None
    usd_spent: float | None = None
    sample: int | None = None  # self-consistency: the sample (1, 2, ...) this entry belongs to

    def describe(self) -> str:
        """One line for the live view: what the agent just did."""
        return self.action


class BudgetedEvent(EventBase):
    """A built-in kind: the budget fields are always there (pydantic lets a subclass make an optional
    field required; pyright's dataclass rule does not know that, hence the ignores)."""

    remaining: dict[str, float]  # pyright: ignore[reportGeneralTypeIssues]
    ratio: float  # pyright: ignore[reportGeneralTypeIssues]
    regime: str  # pyright: ignore[reportGeneralTypeIssues]
    usd_spent: float  # pyright: ignore[reportGeneralTypeIssues]


# ------------------------------------------------------------------------------------------ solver
class RequestedCall(BaseModel):
    """A tool call the model asked for."""

    tool: str
    arguments: str  # raw JSON, as the model wrote it


class ToolCallsEvent(BudgetedEvent):
    node: str = "act"
    action: Literal["tool_calls"] = "tool_calls"
    calls: list[RequestedCall]
    thought: str  # the text that came with the calls (first 500 characters)
    hidden_tools: list[str]  # tools the budget hid from the model at this step
    tokens: int

    def describe(self) -> str:
        return "calls " + ", ".join(f"{c.tool}({shorten(c.arguments, 60)})" for c in self.calls)


class ObservationEvent(BudgetedEvent):
    _omit_if_none: ClassVar[tuple[str, ...]] = ("sample", "budget")

    node: str = "observe"
    action: Literal["observation"] = "observation"
    tool: str
    arguments: str
    observation: str  # what the model saw (first 600 characters, budget block included)
    ok: bool
    cached: bool
    usd: float
    budget: str | None = None  # the dimension that refused the call, when the budget did

    def describe(self) -> str:
        first = shorten(self.observation.split("\n<budget>")[0], 80)
        return f"{self.tool} → {first}" + (" [cached, free]" if self.cached else "")


class AnswerEvent(BudgetedEvent):
    node: str = "act"  # "final" when the budget or the step limit forced the answer
    action: Literal["answer"] = "answer"
    answer: str
    forced: bool
    tokens: int

    def describe(self) -> str:
        return ("forced answer: " if self.forced else "proposes: ") + self.answer


class StopEvent(BudgetedEvent):
    node: str = "act"
    action: Literal["stop"] = "stop"
    stop_reason: str
    detail: str

    def describe(self) -> str:
        return f"stopped: {self.stop_reason}"


# ------------------------------------------------------------------------------------------ BATS
class PlanEvent(BudgetedEvent):
    _omit_if_none: ClassVar[tuple[str, ...]] = ("sample", "repeated", "exhausted")

    node: str = "plan"
    action: Literal["plan"] = "plan"
    attempt: int
    replan: bool
    valid: bool  # False when the planner's reply was invalid and the fallback plan was used
    items: list[ChecklistItem]
    repeated: list[str] | None = None  # clues the planner gave again (normalised): dropped, not searched
    exhausted: bool | None = None  # True: every clue and phrase of the question was tried; the search ends

    def describe(self) -> str:
        text = ("re-plan: " if self.replan else "plan: ") + "; ".join(
            f"[{i.status}] {i.text}" for i in self.items
        )
        if self.repeated:
            text += f" (repeats dropped: {'; '.join(self.repeated)})"
        return text + (" (nothing left to try)" if self.exhausted else "")


class VerdictEvent(BudgetedEvent):
    node: str = "verify"
    action: Literal["verdict"] = "verdict"
    attempt: int
    answer: str | None
    decision: str  # SUCCESS, CONTINUE or PIVOT
    valid: bool
    overridden: str | None  # why the code overrode the verifier's decision, if it did
    checks: list[dict[str, Any]]  # {constraint, status} per verification condition
    justification: str
    summary: str
    attempt_spent: dict[str, float]
    items: list[ChecklistItem]

    def describe(self) -> str:
        extra = f" ({self.overridden})" if self.overridden else ""
        return f"verifier: '{self.answer}' → {self.decision}{extra}: {shorten(self.justification, 80)}"


class JudgeEvent(BudgetedEvent):
    node: str = "judge"
    action: Literal["judge"] = "judge"
    answer: str | None
    method: str  # verified / only candidate / judge: <reason> / majority vote / no candidates
    candidates: list[dict[str, Any]]  # {answer, decision, attempt, justification}

    def describe(self) -> str:
        return f"judge picks '{self.answer}' ({shorten(self.method, 60)})"


# ------------------------------------------------------------------------------------------ value tree
class ExpandedChild(BaseModel):
    """A child made by one expansion, as the expand event shows it (a few of the node's fields)."""

    id: int
    tool: str | None
    arguments: str | None
    answer: str | None
    progress: float
    value: float
    pruned: bool
    prune_reason: str | None
    verdict: str | None

    @classmethod
    def of(cls, node: TreeNode) -> ExpandedChild:
        return cls(**{name: getattr(node, name) for name in cls.model_fields})


class ExpandEvent(BudgetedEvent):
    node: str = "expand"
    action: Literal["expand"] = "expand"
    expansion: int
    selected: int  # the id of the node expanded
    width: int  # how many actions were asked for
    r: float  # the remaining-budget ratio selection used
    probabilities: dict[int, float]  # selection probability per frontier node id
    children: list[ExpandedChild]
    tree_size: int
    valid: bool

    def describe(self) -> str:
        kids = ", ".join(f"{c.tool}{' ✗' if c.pruned else ''} V={c.value or 0:.2f}" for c in self.children)
        return f"expand node {self.selected} (r={self.r}): {kids or 'no new actions'}"


class TreeEvent(BudgetedEvent):
    node: str = "finalize"
    action: Literal["tree"] = "tree"
    answer: str | None
    method: str
    path: list[int]  # root to the chosen answer's node (empty when the answer came from elsewhere)
    nodes: list[TreeNode]

    def describe(self) -> str:
        answer = f"'{self.answer}'" if self.answer is not None else "no answer"
        return f"tree of {len(self.nodes)} nodes → {answer} ({self.method})"


# ------------------------------------------------------------------------------------------ self-consistency
class VoteEvent(BudgetedEvent):
    node: str = "vote"
    action: Literal["vote"] = "vote"
    answers: list[str | None]
    answer: str | None
    votes: int
    sample_stops: list[str]

    def describe(self) -> str:
        return f"vote {self.answers} → '{self.answer}' ({self.votes} votes)"


# ------------------------------------------------------------------------------------------ routing
class EscalationEvent(EventBase):
    """A call moved from a cheaper to a stronger model (``thrifty.models.routing``), or the budget could
    not pay the stronger model and the escalation was refused (``refused``). ``usd``: what the stronger
    call cost; ``discarded_usd``: what the weaker reply that was set aside cost."""

    action: Literal["escalation"] = "escalation"
    role: str
    from_model: str
    to_model: str
    reason: str
    scope: str
    refused: bool = False
    detail: str = ""
    usd: float = 0.0
    discarded_usd: float = 0.0
    resample: bool = False
    """A fresh sample of the same model (``EscalationPolicy.resample``) instead of a move up."""

    def describe(self) -> str:
        if self.resample:
            return f"resampled {self.role} on {self.from_model} ({self.reason}) ${self.usd:.6f}"
        if self.refused:
            return f"escalation {self.from_model} → {self.to_model} refused ({self.reason}): {shorten(self.detail, 80)}"
        return (
            f"escalated {self.role} {self.from_model} → {self.to_model} ({self.reason}, {self.scope}) "
            f"${self.usd:.6f}"
        )


# ------------------------------------------------------------------------------------------ other
class CustomEvent(EventBase):
    """An entry of a kind the built-in nodes do not make (from a user-defined node), kept as given."""

    model_config = ConfigDict(extra="allow")

    action: str = ""

    @property
    def detail(self) -> Any:
        return (self.model_extra or {}).get("detail")

    def describe(self) -> str:
        return str(self.detail or self.action)

    def _shape(self, data: dict[str, Any]) -> dict[str, Any]:
        given = self.model_fields_set | set(self.model_extra or {})
        return {key: value for key, value in data.items() if key in given}


KINDS: dict[str, type[BudgetedEvent]] = {
    cls.model_fields["action"].default: cls
    for cls in (
        ToolCallsEvent,
        ObservationEvent,
        AnswerEvent,
        StopEvent,
        PlanEvent,
        VerdictEvent,
        JudgeEvent,
        ExpandEvent,
        TreeEvent,
        VoteEvent,
    )
}


def _kind(value: Any) -> str:
    action = value.get("action") if isinstance(value, dict) else getattr(value, "action", None)
    if action == "escalation":
        return action
    return action if action in KINDS else "custom"


TraceEvent = Annotated[
    Annotated[ToolCallsEvent, Tag("tool_calls")]
    | Annotated[ObservationEvent, Tag("observation")]
    | Annotated[AnswerEvent, Tag("answer")]
    | Annotated[StopEvent, Tag("stop")]
    | Annotated[PlanEvent, Tag("plan")]
    | Annotated[VerdictEvent, Tag("verdict")]
    | Annotated[JudgeEvent, Tag("judge")]
    | Annotated[ExpandEvent, Tag("expand")]
    | Annotated[TreeEvent, Tag("tree")]
    | Annotated[VoteEvent, Tag("vote")]
    | Annotated[EscalationEvent, Tag("escalation")]
    | Annotated[CustomEvent, Tag("custom")],
    Discriminator(_kind),
]
"""Any trace entry: the model for its ``action``, or a :class:`CustomEvent` for another kind."""

_ADAPTER: TypeAdapter[TraceEvent] = TypeAdapter(TraceEvent)


def as_event(entry: TraceEvent | dict[str, Any]) -> TraceEvent:
    """The typed event for ``entry`` (a dict is validated; an event is returned as it is)."""
    if isinstance(entry, EventBase):
        return entry  # type: ignore[return-value]
    return _ADAPTER.validate_python(entry)
