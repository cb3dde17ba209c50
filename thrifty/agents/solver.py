"""The solver: a budget-aware tool loop (ReAct with the BATS Budget Tracker).

Two plain node functions over the graph state:

* :func:`act` asks the model for its next move — a tool call, or the answer. Spent tools are hidden; when
  the budget can pay only for an answer (no tool left, or tokens / dollars / requests for just one more
  call, or the step limit), it makes a final call with no tools that must answer.
* :func:`observe` runs the requested tools through the ToolRunner and appends their results, each followed
  by the ``<budget>`` block when the tracker is on.

A budget stop keeps the best answer so far: a forced answer when one is affordable, otherwise the last
thing the model proposed.
"""

from __future__ import annotations

import json
import operator
import re
from typing import Annotated, Any, Required, TypedDict, cast

from thrifty.agents import grounding, prompts
from thrifty.agents.answers import strip_preamble, usable_answer
from thrifty.agents.context import RunContext
from thrifty.agents.events import (
    AnswerEvent,
    BudgetSnapshot,
    ObservationEvent,
    RequestedCall,
    StopEvent,
    ToolCallsEvent,
    TraceEvent,
)
from thrifty.agents.records import ChecklistItem, TreeNode
from thrifty.agents.structured import (
    StructuredRole,
    response_format,
    structured_format,
    structured_request,
)
from thrifty.budget import BudgetExceeded, BudgetView, StopKind, stop_reason
from thrifty.models.gateway import ModelError, ModelReply, ToolCall
from thrifty.models.registry import ENUM_CHOICE


def _merge(left: dict[str, Any] | None, right: dict[str, Any] | None) -> dict[str, Any]:
    return {**(left or {}), **(right or {})}


class StepState(TypedDict, total=False):
    """What the agent loop itself reads and writes (react's whole state).

    ``messages`` only grows (the full trajectory stays for the record); ``window_start`` marks where the
    current attempt's context begins, so a verifier's summary can replace the raw trajectory in the prompt.
    LangGraph does work per state channel at every superstep, so react's graph carries only these.
    """

    question: Required[str]  # every run starts with it
    messages: Annotated[list[dict[str, Any]], operator.add]
    window_start: int
    context_note: str | None  # plan / earlier-attempt summaries shown with the question
    step: int
    answer: str | None
    candidate: str | None  # best answer so far (anytime)
    stop_reason: str | None
    error: str | None
    trace: Annotated[list[TraceEvent], operator.add]


class SolverState(StepState, total=False):
    """The state the other built-in graphs share (bats, self-consistency, value tree, custom workflows):
    the agent loop's, plus the planner's, verifier's and judge's."""

    plan: list[ChecklistItem]
    attempt: int
    decision: str | None
    summaries: list[str]
    candidates: list[dict[str, Any]]
    tree: list[TreeNode]  # value-tree search nodes
    extra: Annotated[dict[str, Any], _merge]  # free space for user-defined nodes


FINAL_ANSWER_FORMAT = {
    "type": "json_schema",
    "json_schema": {
        "name": StructuredRole.FINAL_ANSWER.value,
        "schema": {
            "type": "object",
            "properties": {"answer": {"type": "string", "maxLength": 120}},
            "required": ["answer"],
        },
    },
}
OLDER_RESULT_NOTE = "(older result removed to save budget)"
REPEATED_CALL_NOTE = (
    "(You already made this exact call: same result as before. Try a different query, or answer.)"
)

_BULLET = re.compile(r"^(?:[-•]\s+)+")  # a list marker before the answer ("- Paris")
_PARTIAL_ANSWER = re.compile(r'^\{\s*"answer"\s*:\s*"((?:[^"\\]|\\.)*)')


def clean_answer(text: str | None) -> str:
    """The answer as a short string: strips preambles ('Answer:', 'The answer to the question is:'), quotes
    and a JSON ``{"answer": ..}`` shell; "" when the reply holds no answer (a preamble alone, a tool call)."""
    if not text:
        return ""
    text = text.strip()
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            # Cut off by max_tokens mid-JSON: keep what the answer field had so far.
            cut = _PARTIAL_ANSWER.match(text)
            data = {"answer": cut.group(1)} if cut else None
            if re.match(r'^\{\s*"(tool|arguments)"', text):
                return ""  # a cut-off tool call is not an answer either
        if isinstance(data, dict):
            if isinstance(data.get("answer"), str):
                text = data["answer"]
            elif "tool" in data or "arguments" in data:
                return ""  # a tool call written as text is not an answer
    for line in (text or "").splitlines():
        # The first line with an answer on it: a preamble line ("The answer to the question is:") is skipped.
        line = _BULLET.sub("", line.strip(" \t\"'`*"))
        answer = strip_preamble(line).strip(" \"'`*").rstrip(".").strip()
        if answer and not answer.endswith(":"):
            return answer
    return ""


def snapshot(ctx: RunContext, view: BudgetView | None = None) -> BudgetSnapshot:
    """The budget at this moment, for the trace and the live view (``view``: a reading already made)."""
    view = view or BudgetView.read(ctx.ledger, ctx.tool_names)
    return BudgetSnapshot(
        remaining={k: round(v, 6) for k, v in view.remaining.items()},
        ratio=round(view.ratio, 4),
        regime=view.regime.value,
        usd_spent=round(view.usd_spent, 6),
    )


STUCK_AFTER_REPEATS = 2


def repeated_calls(state: StepState) -> int:
    """How many of the latest tool results in this attempt were repeats served from the cache."""
    start = int(state.get("window_start") or 0)
    count = 0
    for message in reversed(list(state.get("messages") or [])[start:]):
        if message.get("role") != "tool":
            continue
        if not str(message.get("content", "")).startswith(REPEATED_CALL_NOTE):
            break
        count += 1
    return count


def _conversation(state: StepState, ctx: RunContext) -> list[dict[str, Any]]:
    system = {
        "role": "system",
        "content": prompts.react_system(ctx.tracker and bool(ctx.tools), ctx.system_extra),
    }
    task_text = prompts.REACT_TASK.format(question=state["question"])
    note = state.get("context_note")
    if note:
        task_text = f"{task_text}\n\n{note}"
    task = {"role": "user", "content": task_text}
    history = list(state.get("messages") or [])[int(state.get("window_start") or 0) :]
    if ctx.keep_observations is not None:
        tool_idx = [i for i, m in enumerate(history) if m.get("role") == "tool"]
        for i in tool_idx[: max(0, len(tool_idx) - ctx.keep_observations)]:
            history[i] = {**history[i], "content": OLDER_RESULT_NOTE}
    return [system, task, *history]


#: Room kept in the context window for the reply when older observations must make way (tokens).
REPLY_ROOM = 128


def _fit_context(
    ctx: RunContext, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None
) -> tuple[list[dict[str, Any]], int | None]:
    """The messages with room left in the model's context window for a reply, and their token count.

    When the prompt would not fit, the oldest tool results are replaced by a short note, one at a time,
    until it does (the latest result always stays): a long run goes on, or answers, instead of stopping
    with an error. The count is None when the window is unknown or the prompt cannot be counted.
    """
    window = ctx.gateway.context_window(ctx.model)
    if not window:
        return messages, None
    room = min(ctx.settings.max_tokens, REPLY_ROOM)
    try:
        count = ctx.gateway.count_prompt_tokens(ctx.model, messages, tools)
        tool_idx = [i for i, m in enumerate(messages) if m.get("role") == "tool"]
        for i in tool_idx[:-1]:  # the latest result is what the model needs next: it stays
            if count + room <= window:
                break
            messages = [*messages[:i], {**messages[i], "content": OLDER_RESULT_NOTE}, *messages[i + 1 :]]
            count = ctx.gateway.count_prompt_tokens(ctx.model, messages, tools)
    except Exception:
        return messages, None
    return messages, count


def _round_affordable(ctx: RunContext, prompt_tokens: int, cap: int) -> str | None:
    """The dimension that cannot pay for a tool round *and* a final answer after it, or None.

    A round is this call plus the answer call after the next observation, which will be at least as long.
    """
    left = ctx.ledger.availability()
    credit = ctx.replay_credit()  # a resumed node replaying its calls decides as it did
    if credit:
        left = {dim: value + credit.get(dim, 0.0) for dim, value in left.items()}

    def av(dim: str) -> float:
        return left.get(dim, float("inf"))

    need_prompt = prompt_tokens * 2 + 200
    answer_out = min(cap, 64)
    checks: dict[str, tuple[float, float]] = {
        "model_requests": (2, av("model_requests")),
        "input_tokens": (need_prompt, av("input_tokens")),
        "output_tokens": (cap + answer_out, av("output_tokens")),
        "total_tokens": (need_prompt + cap + answer_out, av("total_tokens")),
    }
    price = ctx.gateway.price(ctx.model)
    usd_need = need_prompt * price.input_per_token + (cap + answer_out) * price.output_per_token
    checks["usd"] = (usd_need, av("usd"))
    typical = ctx.gateway.typical_call_seconds(ctx.model)
    if typical is not None:
        # This call, a tool, and an answer after it: keep time for the answer, or it is lost.
        checks["seconds"] = (2.5 * typical, av("seconds"))
    for dim, (need, have) in checks.items():
        if need > have:
            return dim
    return None


def act(state: StepState, ctx: RunContext) -> dict[str, Any]:
    """Ask the model for the next tool call or the answer."""
    step = int(state.get("step") or 0) + 1
    question = state["question"]
    visible = ctx.visible_tools()
    schemas = ctx.tool_schemas(visible) or None
    # Counted once, for the affordability check and the Gateway.
    messages, prompt_tokens = _fit_context(ctx, _conversation(state, ctx), schemas)
    final_reason: str | None = None
    final_stop: str | None = None

    if ctx.tools and not visible:
        dim = ctx.exhausted_tool_dimension()
        final_reason, final_stop = "The tool budget is spent.", stop_reason(StopKind.BUDGET_EXHAUSTED, dim)
    elif step >= ctx.max_steps:
        final_reason, final_stop = "This is the last step.", stop_reason(StopKind.MAX_STEPS)
    elif repeated_calls(state) >= STUCK_AFTER_REPEATS:
        # The model keeps asking for results it already has: more steps would only spend tokens.
        final_reason, final_stop = "You are repeating the same call.", stop_reason(StopKind.COMPLETED)
    elif visible:
        if prompt_tokens is None:  # the window is unknown, so _fit_context did not count
            try:
                prompt_tokens = ctx.gateway.count_prompt_tokens(ctx.model, messages, schemas)
            except Exception:
                prompt_tokens = None
        short = _round_affordable(ctx, prompt_tokens or 0, ctx.settings.max_tokens)
        if short:
            final_reason = "The budget is nearly spent."
            final_stop = stop_reason(StopKind.BUDGET_EXHAUSTED, short)

    hidden = [name for name in ctx.tool_names if name not in {t.name for t in visible}]
    try:
        if final_reason is not None:
            reply = final_answer_call(ctx, messages, question, final_reason, state.get("messages"))
        else:
            offered = _grounded_tools(ctx, schemas, question, state) if ctx.grounded else schemas
            if ctx.grounded and ctx.json_actions and offered:
                reply = _json_action(ctx, messages, question, state, offered, step)
            else:
                reply = ctx.gateway.complete(
                    ctx.model,
                    _act_messages(ctx, messages, question, state, offered),
                    tools=None if ctx.json_actions else offered,
                    max_tokens=ctx.settings.max_tokens,
                    node="act",
                    prompt_tokens=prompt_tokens,
                    **ctx.model_kwargs(),
                    **(_grounded_act(ctx, visible, question, state) if ctx.grounded else {}),
                )
                if (
                    ctx.grounded
                    and offered
                    and not reply.tool_calls
                    and not grounding.observed(list(state.get("messages") or []))
                ):
                    # tool_choice="required" was ignored: a server without a tool-call template for this
                    # model. Ask for the move as JSON, which such servers enforce, from now on.
                    ctx.json_actions = True
                    reply = _json_action(ctx, messages, question, state, offered, step)
    except BudgetExceeded as exc:
        return _stop(state, ctx, step, exc.stop_reason, f"budget exhausted: {exc}")
    except ModelError as exc:
        return _stop(state, ctx, step, stop_reason(StopKind.ERROR), str(exc), error=str(exc))

    if reply.tool_calls and final_reason is None:
        entry = ToolCallsEvent(
            step=step,
            calls=[RequestedCall(tool=c.name, arguments=c.arguments) for c in reply.tool_calls],
            thought=(reply.content or "")[:500],
            hidden_tools=hidden,
            tokens=reply.usage.total_tokens,
            **snapshot(ctx),
        )
        update: dict[str, Any] = {
            "step": step,
            "messages": [reply.assistant_message()],
            "trace": [ctx.emit(entry)],
        }
        thought = clean_answer(reply.content)
        if usable_answer(thought, question):
            update["candidate"] = thought
        return update
    return _answer(state, ctx, step, reply, final_stop if final_reason else None)


def _grounded_tools(
    ctx: RunContext, schemas: list[dict[str, Any]] | None, question: str, state: StepState
) -> list[dict[str, Any]] | None:
    """The tool schemas with grounded ``query`` / ``title`` arguments (:mod:`thrifty.agents.grounding`)."""
    if not schemas:
        return schemas
    return grounding.grounded_tool_schemas(schemas, question, list(state.get("messages") or [])) or None


def _json_action(
    ctx: RunContext,
    messages: list[dict[str, Any]],
    question: str,
    state: StepState,
    offered: list[dict[str, Any]],
    step: int,
) -> ModelReply:
    """A grounded move asked for as JSON (:func:`thrifty.agents.grounding.action_schema`, through
    :func:`thrifty.agents.structured.structured_request`: the response format the server takes, repaired
    and asked again once if unreadable), for a server that ignores native tools. Returns it as a reply
    holding the tool call, or the answer; an unreadable move as no answer (the run's candidate, or
    "unknown", stands). The calls were charged by the Gateway; the reply's usage is not counted again."""
    history = list(state.get("messages") or [])
    names = [s["function"]["name"] for s in offered]
    may_answer = ' or the answer {"tool": "answer", "answer": ...}' if grounding.observed(history) else ""
    note = {
        "role": "user",
        "content": prompts.JSON_ACTION.format(
            answer=may_answer, tools=grounding.tool_lines(offered), question=question
        ),
    }
    out = structured_request(
        ctx,
        "action",
        grounding.Move,
        [*grounding.plain_messages(messages), note],
        default=grounding.Move(),
        node="act",
        max_tokens=ctx.settings.max_tokens,
        schema=grounding.action_schema(offered, question, history),
    )
    move = out.value
    if move.tool in names:
        call = ToolCall(id=f"call_json_{step}", name=move.tool, arguments=json.dumps(move.arguments))
        return ModelReply(model=ctx.model, content=None, tool_calls=[call])
    answer = (move.answer or "").strip() if move.tool == grounding.ANSWER_ACTION else ""
    return ModelReply(model=ctx.model, content=answer)


def _answer_format(ctx: RunContext, question: str, history: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The grounded answer's ``response_format`` (:func:`thrifty.agents.grounding.answer_format`) in the
    kind this model and server take (:func:`thrifty.agents.structured.structured_format`: a server that
    knows only ``json_object``, such as llama-cpp-python's, gets the schema that way)."""
    fmt = grounding.answer_format(question, history)
    kind = structured_format(ctx)
    if fmt is None or kind == "json_schema":
        return fmt
    return response_format(kind, "grounded_answer", fmt["json_schema"]["schema"])


def _grounded_act(ctx: RunContext, visible: list[Any], question: str, state: StepState) -> dict[str, Any]:
    """Extra request fields of a grounded step: a tool call first, then answers drawn from observed spans."""
    history = list(state.get("messages") or [])
    extra: dict[str, Any] = {}
    if visible and not grounding.observed(history):
        extra["tool_choice"] = "required"  # look before answering
    else:
        answer = _answer_format(ctx, question, history)
        if answer is not None:
            extra["response_format"] = answer
            extra.update(_choice(ctx))
    return extra


def _act_messages(
    ctx: RunContext,
    messages: list[dict[str, Any]],
    question: str,
    state: StepState,
    offered: list[dict[str, Any]] | None,
) -> list[dict[str, Any]]:
    """What an act call sends: the conversation (as plain text for a server without tool calls), or, for
    a grounded answer with no tool left to call on a grammar-constrained provider, its focused prompt
    (:func:`_focused`)."""
    if ctx.grounded and not offered and ctx.gateway.provider(ctx.model).grammar:
        focused = _focused(ctx, question, list(state.get("messages") or []))
        if focused is not None:
            return focused
    return grounding.plain_messages(messages) if ctx.json_actions else messages


def _focused(ctx: RunContext, question: str, history: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """The focused prompt of a grounded answer (:func:`thrifty.agents.grounding.focused_messages`) when
    ``ModelSettings.answer_context`` asks for it; None to send the conversation."""
    if ctx.settings.answer_context != "focused":
        return None
    return grounding.focused_messages(question, history)


def _choice(ctx: RunContext) -> dict[str, Any]:
    """The request field that has a grounded answer chosen by the model's likelihood of each whole span
    (``ModelSettings.answer_choice``), on a provider that can score them; {} otherwise."""
    if ctx.settings.answer_choice == "likelihood" and ctx.gateway.provider(ctx.model).enum_likelihood:
        return {ENUM_CHOICE: "likelihood"}
    return {}


def final_answer_call(
    ctx: RunContext,
    messages: list[dict[str, Any]],
    question: str,
    reason: str,
    history: list[dict[str, Any]] | None = None,
) -> ModelReply:
    """The last call of a run: no tools, a short completion, and it must answer.

    ``history``: the run's messages, whose observations ground the answer when grounding is on (default:
    ``messages``). Raises BudgetExceeded when even that cannot be paid for.
    """
    extra: dict[str, Any] = {}
    focused: list[dict[str, Any]] | None = None
    max_tokens = min(ctx.settings.max_tokens, 64)
    if ctx.gateway.provider(ctx.model).grammar:
        # Small local models imitate the tool-call JSON they saw; a grammar makes the last call an answer.
        extra["response_format"] = FINAL_ANSWER_FORMAT
        if ctx.grounded:
            observed = history if history is not None else messages
            grounded = _answer_format(ctx, question, observed)
            if grounded is not None:
                extra["response_format"] = grounded
                extra.update(_choice(ctx))
                focused = _focused(ctx, question, observed)
                if extra.get(ENUM_CHOICE):
                    max_tokens = ctx.settings.max_tokens  # scoring the spans is paid from the reply's tokens
    final = [
        *(grounding.plain_messages(messages) if ctx.json_actions else messages),
        {"role": "user", "content": prompts.FINAL_ANSWER.format(reason=reason, question=question)},
    ]
    final = focused or final
    return ctx.gateway.complete(
        ctx.model,
        final,
        max_tokens=max_tokens,
        node="final",
        **ctx.model_kwargs(),
        **extra,
    )


def answer_usable(answer: str, question: str, ctx: RunContext) -> bool:
    """Whether a model's final answer may stand: :func:`thrifty.agents.answers.usable_answer` (not empty,
    "unknown", a bare preamble or the question), and on a grounded run
    :func:`thrifty.agents.grounding.usable_answer` too."""
    return usable_answer(answer, question) and (not ctx.grounded or grounding.usable_answer(answer))


def _answer(
    state: StepState, ctx: RunContext, step: int, reply: ModelReply, forced_stop: str | None
) -> dict[str, Any]:
    answer = clean_answer(reply.content)
    if not answer_usable(answer, state["question"], ctx):
        answer = (
            ""  # a preamble, an empty phrase, "unknown" or the question never replaces a better candidate
        )
    answer = answer or state.get("candidate") or "unknown"
    reason = forced_stop or stop_reason(StopKind.COMPLETED)
    entry = AnswerEvent(
        step=step,
        node="final" if forced_stop else "act",
        answer=answer,
        forced=forced_stop is not None,
        tokens=reply.usage.total_tokens,
        **snapshot(ctx),
    )
    return {
        "step": step,
        "messages": [{"role": "assistant", "content": reply.content or ""}],
        "answer": answer,
        "candidate": answer,
        "stop_reason": reason,
        "trace": [ctx.emit(entry)],
    }


def _stop(
    state: StepState, ctx: RunContext, step: int, reason: str, detail: str, error: str | None = None
) -> dict[str, Any]:
    entry = StopEvent(step=step, stop_reason=reason, detail=detail, **snapshot(ctx))
    update: dict[str, Any] = {
        "step": step,
        "answer": state.get("candidate"),
        "stop_reason": reason,
        "trace": [ctx.emit(entry)],
    }
    if error:
        update["error"] = error
    return update


def _refusal(exc: BudgetExceeded) -> str:
    """Why a tool call was not run, as the model reads it: a budget spent, or a batch of more items than
    the calls left."""
    counted = exc.dimension == "tool_calls" or exc.dimension.startswith("tool:")  # a batch's items
    if counted and exc.available > 0 and exc.requested > exc.available:
        return f"this call needs {exc.requested:g} {exc.dimension}, only {exc.available:g} left."
    return f"the budget for {exc.dimension} is spent."


def observe(state: StepState, ctx: RunContext) -> dict[str, Any]:
    """Run the tool calls of the last assistant message; each result carries the budget block."""
    last = (state.get("messages") or [])[-1]
    new_messages: list[dict[str, Any]] = []
    entries: list[TraceEvent] = []
    for call in last.get("tool_calls") or []:
        name = call["function"]["name"]
        arguments = call["function"].get("arguments") or "{}"
        try:
            obs = ctx.runner.run(name, arguments, node="observe")
            content = f"{REPEATED_CALL_NOTE}\n{obs.content}" if obs.cached else obs.content
            ok, cached, usd, refused_by = obs.ok, obs.cached, obs.usd, None
        except BudgetExceeded as exc:
            content = f"Not run: {_refusal(exc)} Use another tool or answer."
            ok, cached, usd, refused_by = False, False, 0.0, exc.dimension
        view = BudgetView.read(ctx.ledger, ctx.tool_names)
        if ctx.tracker:
            content = f"{content}\n{view.block()}"
        new_messages.append(
            {"role": "tool", "tool_call_id": call.get("id", ""), "name": name, "content": content}
        )
        entries.append(
            ctx.emit(
                ObservationEvent(
                    step=state.get("step", 0),
                    tool=name,
                    arguments=arguments,
                    observation=content[:600],
                    ok=ok,
                    cached=cached,
                    usd=usd,
                    budget=refused_by,
                    **snapshot(ctx, view),
                )
            )
        )
    return {"messages": new_messages, "trace": entries}


def route_after_act(state: StepState) -> str:
    """'observe' when the model asked for tools, 'end' once there is an answer or a stop."""
    if state.get("stop_reason"):
        return "end"
    last = (state.get("messages") or [{}])[-1]
    return "observe" if last.get("tool_calls") else "end"


def agent_step(state: StepState, ctx: RunContext) -> tuple[dict[str, Any], bool]:
    """One agent step: the model call (:func:`act`) and, if it asked for tools, their results (:func:`observe`).

    Returns the state update and whether the loop goes on (False once there is an answer or a stop).
    """
    update = act(state, ctx)
    messages = update.get("messages") or []
    if update.get("stop_reason") or not (messages and messages[-1].get("tool_calls")):
        return update, False
    seen = cast(
        StepState, {**state, "messages": [*(state.get("messages") or []), *messages], "step": update["step"]}
    )
    observed = observe(seen, ctx)
    update["messages"] = [*messages, *observed["messages"]]
    update["trace"] = [*update.get("trace", []), *observed["trace"]]
    return update, True


def _apply(state: dict[str, Any], update: dict[str, Any]) -> None:
    """Fold a node's update into a local state copy, honouring the add-reducers."""
    for key, value in update.items():
        if key in ("messages", "trace"):
            state[key] = list(state.get(key) or []) + list(value)
        else:
            state[key] = value


def solve(state: SolverState, ctx: RunContext) -> dict[str, Any]:
    """The whole solver loop as one node: agent steps until the model proposes an answer or must stop.

    Used by graphs that treat one attempt as a step (bats, self-consistency, custom workflows).
    Returns the update (new messages and trace entries, answer, stop reason) for the outer graph.
    """
    local: dict[str, Any] = dict(state)
    local["answer"] = None
    local["stop_reason"] = None
    start_messages = len(local.get("messages") or [])
    start_trace = len(local.get("trace") or [])
    go_on = True
    while go_on:
        update, go_on = agent_step(cast(StepState, local), ctx)
        _apply(local, update)
    return {
        "messages": local["messages"][start_messages:],
        "trace": local["trace"][start_trace:],
        "step": local.get("step", 0),
        "answer": local.get("answer"),
        "candidate": local.get("candidate"),
        "stop_reason": local.get("stop_reason"),
        "error": local.get("error"),
    }
