"""The scripted test model: a LiteLLM provider that plays back fixed replies with fixed token counts.

It makes every behaviour of the Gateway, the Ledger and the graphs testable without a network and with
exact numbers (in the spirit of pydantic-ai's ``TestModel`` / ``FunctionModel``)::

    script = ScriptedModel([call("search", query="Paris"), reply("Paris", prompt_tokens=30)])
    agent = Agent(model=script.model, ...)

Replies are consumed first in, first out. A reply may also be an exception (raised for that attempt, to
test retries) or a function of the request (returning a reply), for behaviour that depends on the prompt.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from thrifty.models._litellm import get_litellm

_registry: dict[str, ScriptedModel] = {}
_registry_lock = threading.Lock()
_call_ids = itertools.count(1)


@dataclass
class ScriptedReply:
    """One model response: text content and/or tool calls, with the usage to report."""

    content: str | None = None
    tool_calls: list[tuple[str, dict[str, Any] | str]] = field(default_factory=list)
    prompt_tokens: int = 10
    completion_tokens: int = 5
    cached_tokens: int = 0
    confidence: float | None = None
    """Reported as token log-probabilities (one token whose probability is this), as providers do when
    asked for ``logprobs``; None: no log-probabilities."""


@dataclass
class ScriptedRequest:
    """What the model was asked: kept so tests can assert on prompts, tools and caps."""

    messages: list[dict[str, Any]]
    params: dict[str, Any]

    @property
    def max_tokens(self) -> int | None:
        return self.params.get("max_tokens")

    @property
    def tool_names(self) -> list[str]:
        return [t["function"]["name"] for t in self.params.get("tools") or []]

    @property
    def last_text(self) -> str:
        return str(self.messages[-1].get("content") or "") if self.messages else ""


Step = ScriptedReply | BaseException | Callable[[ScriptedRequest], ScriptedReply]


def reply(content: str, *, prompt_tokens: int = 10, completion_tokens: int = 5) -> ScriptedReply:
    """A plain text reply (an answer)."""
    return ScriptedReply(content=content, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)


def call(
    tool: str, *, prompt_tokens: int = 10, completion_tokens: int = 5, **arguments: Any
) -> ScriptedReply:
    """A reply that calls one tool with keyword arguments."""
    return ScriptedReply(
        tool_calls=[(tool, arguments)], prompt_tokens=prompt_tokens, completion_tokens=completion_tokens
    )


class ScriptExhausted(RuntimeError):
    """The script ran out of replies: the code under test made more calls than the test expected."""


class ScriptedModel:
    """A FIFO of replies served as the LiteLLM model ``scripted/<name>``."""

    def __init__(self, replies: Iterable[Step] = (), *, name: str | None = None, default: Step | None = None):
        self.name = name or f"script-{uuid.uuid4().hex[:8]}"
        self._queue: deque[Step] = deque(replies)
        self.default = default
        self.requests: list[ScriptedRequest] = []
        self._lock = threading.Lock()
        with _registry_lock:
            _registry[self.name] = self

    @property
    def model(self) -> str:
        return f"scripted/{self.name}"

    def add(self, *steps: Step) -> ScriptedModel:
        with self._lock:
            self._queue.extend(steps)
        return self

    @property
    def remaining(self) -> int:
        return len(self._queue)

    def peek_prompt_tokens(self) -> int | None:
        """Prompt tokens of the next reply, so the Gateway's reservation is exact in tests."""
        with self._lock:
            nxt = self._queue[0] if self._queue else self.default
        return nxt.prompt_tokens if isinstance(nxt, ScriptedReply) else None

    def next_reply(self, request: ScriptedRequest) -> ScriptedReply:
        with self._lock:
            self.requests.append(request)
            if self._queue:
                step: Step | None = self._queue.popleft()
            else:
                step = self.default
        if step is None:
            raise ScriptExhausted(
                f"scripted model '{self.name}' has no reply left for request #{len(self.requests)}; "
                f"last message: {request.last_text[:200]!r}"
            )
        if isinstance(step, BaseException):
            raise step
        if callable(step) and not isinstance(step, ScriptedReply):
            return step(request)
        return step


def get_script(name: str) -> ScriptedModel:
    with _registry_lock:
        script = _registry.get(name)
    if script is None:
        raise ValueError(f"no scripted model named '{name}' (create one with ScriptedModel([...]))")
    return script


def build_response(reply_: ScriptedReply, model_response: Any, model: str) -> Any:
    """Fill a LiteLLM ModelResponse from a scripted reply (OpenAI shapes)."""
    litellm = get_litellm()
    choice = model_response.choices[0]
    message = choice.message
    message.content = reply_.content
    if reply_.tool_calls:
        calls = []
        for tool, args in reply_.tool_calls:
            arguments = args if isinstance(args, str) else json.dumps(args)
            calls.append(
                {
                    "id": f"call_{next(_call_ids)}",
                    "type": "function",
                    "function": {"name": tool, "arguments": arguments},
                }
            )
        message.tool_calls = [litellm.types.utils.ChatCompletionMessageToolCall(**c) for c in calls]
        choice.finish_reason = "tool_calls"
    else:
        choice.finish_reason = "stop"
    if reply_.confidence is not None:
        import math

        from litellm.types.utils import ChatCompletionTokenLogprob, ChoiceLogprobs

        logprob = math.log(max(reply_.confidence, 1e-12))
        choice.logprobs = ChoiceLogprobs(
            content=[ChatCompletionTokenLogprob(token=reply_.content or "", logprob=logprob, top_logprobs=[])]
        )
    usage = litellm.Usage(
        prompt_tokens=reply_.prompt_tokens,
        completion_tokens=reply_.completion_tokens,
        total_tokens=reply_.prompt_tokens + reply_.completion_tokens,
    )
    if reply_.cached_tokens:
        usage.prompt_tokens_details = litellm.types.utils.PromptTokensDetailsWrapper(
            cached_tokens=reply_.cached_tokens
        )
    model_response.usage = usage
    model_response.model = f"scripted/{model}"
    return model_response


def _positional(args: tuple[Any, ...], index: int, default: Any) -> Any:
    """``args[index]``, or ``default`` when fewer arguments were passed."""
    return args[index] if len(args) > index else default


def make_handler() -> Any:
    """The LiteLLM custom handler that serves ``scripted/<name>`` from the ScriptedModel of that name."""
    litellm = get_litellm()

    class ScriptedProvider(litellm.CustomLLM):
        def completion(self, model: str, messages: list, *args: Any, **kwargs: Any) -> Any:
            params = dict(kwargs.get("optional_params") or _positional(args, 7, {}))
            model_response = kwargs.get("model_response") or args[2]
            script = get_script(model)
            reply = script.next_reply(ScriptedRequest(messages=list(messages), params=params))
            cap = params.get("max_tokens")
            if cap is not None and reply.completion_tokens > cap:
                # A real model stops at max_tokens: report what it could have produced.
                reply = dataclasses.replace(reply, completion_tokens=int(cap))
            return build_response(reply, model_response, model)

        async def acompletion(self, model: str, messages: list, *args: Any, **kwargs: Any) -> Any:
            await asyncio.sleep(0)
            return self.completion(model, messages, *args, **kwargs)

    return ScriptedProvider()
