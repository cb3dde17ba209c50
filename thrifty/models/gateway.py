"""The Gateway: the only way a model is called. Count, cap, reserve, call, settle.

For every call it

1. counts the prompt's tokens (the model's own tokenizer for local models, LiteLLM's counter otherwise);
2. caps ``max_tokens`` to what the budget can still pay for (output / total tokens, dollars, context);
3. reserves the worst case (prompt + capped completion, one request, its dollar price) on the Ledger —
   with the margin learned from what the provider has reported for this model (:class:`UsageRatios`: a
   provider that reports 1.5x the tokens we count is reserved 1.5x), and, for a model priced per second of
   compute, the seconds the call may take (its timeout is capped to them);
4. calls LiteLLM, retrying transient provider errors with tenacity — every attempt is a request and is
   charged, so retries can never overspend; a wait (backoff or the server's ``Retry-After``) that the
   time left cannot pay for is not started;
5. settles the usage the provider reports and releases the rest. If the report still goes past a limit
   (the first over-report of a model, a call that outran its priced seconds), the Ledger records an explicit
   :class:`~thrifty.budget.Overrun`: a limit is never crossed silently.

What a call is charged when it does not end with a readable reply with usage:

* an error the server answered (429, 5xx, 401...): one request, no tokens (the provider did no work);
* a reply lost after the server may have done the work (a read timeout, a connection dropped mid-answer,
  a body that is not JSON): the reserved worst case, as the provider may bill it;
* a reply without usage: the reserved worst case (counted prompt + capped completion), never zero.

Every text that leaves the Gateway (an error, an event's detail) passes :func:`thrifty.redact.redact`.
"""

from __future__ import annotations

import json
import math
import re
import threading
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field

from thrifty.budget import (
    BudgetExceeded,
    Ledger,
    ModelPrice,
    Pricing,
    Reservation,
    StopKind,
    UnpricedModelError,
)
from thrifty.budget.retry import MAX_RETRY_AFTER, RetryPolicy, retry_after
from thrifty.models._litellm import get_litellm
from thrifty.models.registry import BLOCK_REMOTE_ENV, Provider, provider_for
from thrifty.models.settings import DEFAULT_RETRIES
from thrifty.models.stopping import stopping_when
from thrifty.redact import redact

DEFAULT_MAX_TOKENS = 512
_INF = float("inf")
# Per-second pricing: the seconds reserved for a call of a model not yet timed (unless the time budget or
# the dollars left say less), the least such a call must be able to pay for, and the margin over a model's
# typical call once it is known (and the slack added to it).
DEFAULT_CALL_SECONDS = 60.0
FIRST_CALL_SECONDS = 1.0
CALL_SECONDS_MARGIN = 8.0
CALL_SECONDS_SLACK = 1.0
__all__ = [
    "BLOCK_REMOTE_ENV",
    "DEFAULT_MAX_TOKENS",
    "CallPlan",
    "Gateway",
    "ModelError",
    "ModelReply",
    "ToolCall",
    "UsageRatios",
]


class ModelError(RuntimeError):
    """A model call failed for a reason retrying cannot fix (bad model name, auth, bad request...)."""


class ToolCall(BaseModel):
    id: str
    name: str
    arguments: str = Field(description="The raw JSON arguments the model produced (may be malformed).")


class TokenUsage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class ModelReply(BaseModel):
    """What a model call produced and what it cost."""

    model: str
    content: str | None = None
    tool_calls: list[ToolCall] = Field(default_factory=list)
    finish_reason: str | None = None
    usage: TokenUsage = Field(default_factory=TokenUsage)
    usd: float = 0.0
    attempts: int = 1
    elapsed: float = 0.0
    max_tokens: int = 0
    confidence: float | None = Field(
        default=None,
        description="The mean token probability of the reply, when the provider reported log-probabilities.",
    )
    response_format: str | None = Field(
        default=None,
        description="The response format the request that got this reply carried: json_schema, json_object "
        "or none (a cascade may have stepped down the one asked for); None on a reply the Gateway did not make.",
    )

    def assistant_message(self) -> dict[str, Any]:
        """The OpenAI-format assistant message to append to the conversation."""
        msg: dict[str, Any] = {"role": "assistant", "content": self.content}
        if self.tool_calls:
            msg["tool_calls"] = [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                for c in self.tool_calls
            ]
        return msg


def is_transient(exc: BaseException, in_process: bool = False) -> bool:
    """A LiteLLM error worth another attempt: a rate limit, a timeout, a 5xx, a dropped connection."""
    litellm = get_litellm()
    transient = (
        litellm.RateLimitError,
        litellm.APIConnectionError,
        litellm.Timeout,
        litellm.InternalServerError,
        litellm.ServiceUnavailableError,
        litellm.exceptions.BadGatewayError,
    )
    if not isinstance(exc, transient) or getattr(exc, "retryable", True) is False:
        return False
    # LiteLLM wraps any exception raised inside an in-process provider (a bug, a missing script reply, a bad
    # GGUF file) as APIConnectionError; those are not transient, so retrying would only waste budget.
    inner = exc.__context__
    if in_process and isinstance(exc, litellm.APIConnectionError):
        return inner is not None and isinstance(inner, transient)
    return True


#: The provider errors worth another attempt (:func:`is_transient`), by the name a run's
#: error gives them: the model's server unreachable, a timeout, a 5xx, a rate limit.
_TRANSIENT_ERRORS = frozenset(
    {
        "APIConnectionError",
        "RateLimitError",
        "Timeout",
        "APITimeoutError",
        "InternalServerError",
        "ServiceUnavailableError",
        "BadGatewayError",
    }
)
#: How a run's error names a failed model call (:meth:`Gateway._model_error`)
_MODEL_FAILED = re.compile(r"model '([^']+)' failed: (\w+):")


def transient_failure(record: Mapping[str, Any]) -> bool:
    """Whether ``record`` is a run that ended in a transient model error (connection refused, a timeout, a
    5xx, a rate limit), which a rerun of a grid or a batch runs again rather than keeping as its result.

    A deterministic failure (a bad request, a model that cannot be used) is a result and is kept. An
    in-process model's ``APIConnectionError`` is LiteLLM's wrapping of an error inside the provider (a bug,
    a bad model file), never the network: kept too, as the Gateway does not retry it either.
    """
    if record.get("stop_reason") != StopKind.ERROR.value:
        return False
    error = record.get("error")
    if not isinstance(error, str):
        return False
    found = _MODEL_FAILED.search(error)
    if found is None or found.group(2) not in _TRANSIENT_ERRORS:
        return False
    if found.group(2) == "APIConnectionError":
        return not provider_for(found.group(1)).in_process
    return True


_retry_after = retry_after  # the server's Retry-After, read as the tools runner reads it

# LiteLLM keywords that would make one charged call cost more than its reservation, with the values that do
# not: LiteLLM's own retries and fallbacks (requests no attempt reserved), several choices (``n``,
# ``best_of``: tokens the cap does not bound), ``max_completion_tokens`` (a cap besides the capped
# ``max_tokens``), ``stream`` (a reply read after the call is settled).
_UNRESERVED: dict[str, tuple[object, ...]] = {
    "num_retries": (0,),
    "max_retries": (0,),
    "fallbacks": ((), []),
    "context_window_fallback_dict": ({},),
    "n": (1,),
    "best_of": (1,),
    "max_completion_tokens": (),
    "stream": (False,),
}


# Raised under the provider's error when the request reached the server but its answer was lost: the
# provider may have done (and may bill) the work.
_LOST_ANSWER = ("ReadTimeout", "ReadError", "RemoteProtocolError", "JSONDecodeError")


def format_kind(response_format: Any) -> str:
    """The kind of an OpenAI ``response_format`` request field: its ``type`` (``json_schema``,
    ``json_object``, ...), ``json_schema`` for a pydantic class (LiteLLM sends its schema), or ``none``."""
    if response_format is None:
        return "none"
    if isinstance(response_format, Mapping):
        return str(response_format.get("type") or "none")
    return "json_schema"


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and the errors under it (``__cause__``, else ``__context__``), each once."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        yield cause
        cause = cause.__cause__ or cause.__context__


def _answer_lost(exc: BaseException) -> bool:
    """Whether ``exc`` says the reply was lost after the server may have done the work (a read timeout, a
    connection dropped mid-answer, a body that does not parse), not an error status the server answered."""
    return any(type(cause).__name__ in _LOST_ANSWER for cause in _causes(exc))


def _spent_tokens(exc: BaseException) -> tuple[int, int] | None:
    """The (prompt, completion) tokens an in-process generation used before it was cut, when ``exc`` (or an
    error under it) says so (:class:`thrifty.models.inprocess.GenerationTimeout`)."""
    for cause in _causes(exc):
        spent = getattr(cause, "spent_tokens", None)
        if isinstance(spent, tuple) and len(spent) == 2 and all(isinstance(n, int) and n >= 0 for n in spent):
            return spent[0], spent[1]
    return None


def _confidence(choice: Any) -> float | None:
    """The mean token probability of a reply (``exp`` of the mean log-probability of its content tokens),
    or None when the provider reported no log-probabilities."""
    logprobs = getattr(choice, "logprobs", None)
    content = getattr(logprobs, "content", None) if logprobs is not None else None
    if content is None and isinstance(logprobs, dict):
        content = logprobs.get("content")
    values: list[float] = []
    for token in content or []:
        value = token.get("logprob") if isinstance(token, dict) else getattr(token, "logprob", None)
        if isinstance(value, int | float) and math.isfinite(value):
            values.append(float(value))
    if not values:
        return None
    return math.exp(sum(values) / len(values))


class UsageRatios:
    """What providers report against what the Gateway counted, per model: the margin to reserve with.

    ``prompt``: reported prompt tokens / counted prompt tokens; ``completion``: reported completion tokens /
    the ``max_tokens`` asked for (a provider may bill more than the cap). The margin is the largest ratio of
    the last ``window`` calls, never below 1 (a reservation is never smaller than the count) nor above
    MAX_MARGIN (a count that is plainly wrong must not make every call unaffordable; what a report beyond it
    costs is recorded as an overrun). Thread-safe; one table is shared by every Gateway of the process
    (:data:`PROCESS_RATIOS`) so that a run learns from the runs before it.
    """

    MAX_MARGIN = 4.0

    def __init__(self, window: int = 64) -> None:
        self.window = window
        self._seen: dict[tuple[str, str], deque[float]] = {}
        self._lock = threading.Lock()

    def observe(self, model: str, part: str, ratio: float) -> None:
        if not math.isfinite(ratio) or ratio <= 0:
            return
        with self._lock:
            seen = self._seen.get((model, part))
            if seen is None:
                seen = self._seen[(model, part)] = deque(maxlen=self.window)
            seen.append(ratio)

    def margin(self, model: str, part: str) -> float:
        with self._lock:
            seen = self._seen.get((model, part))
            top = max(seen) if seen else 1.0
        return min(max(top, 1.0), self.MAX_MARGIN)

    def clear(self) -> None:
        with self._lock:
            self._seen.clear()


PROCESS_RATIOS = UsageRatios()


@dataclass(frozen=True)
class CallPlan:
    """What one call may spend: the capped ``max_tokens``, the reservation, and for a model priced per
    second the seconds reserved (``usd_seconds``: their price) and the timeout that keeps it within them."""

    cap: int
    amounts: dict[str, float]
    prompt_tokens: int  # as counted (the reservation holds them times the learned margin)
    seconds: float = 0.0
    usd_seconds: float = 0.0
    timeout: float | None = None


class Gateway:
    """Model calls charged to a Ledger.

    ``retries`` is the number of extra attempts on transient errors; ``backoff`` the base of the
    exponential wait between them (seconds; tests use 0). ``api_base``: the server that remote (not
    in-process) models are called at, e.g. ``http://127.0.0.1:8080/v1`` for an OpenAI-compatible server.
    ``ratios``: where reported-to-counted token ratios are learned (default: one table for the process).
    """

    def __init__(
        self,
        ledger: Ledger,
        pricing: Pricing | None = None,
        *,
        retries: int = DEFAULT_RETRIES,
        backoff: float = 0.5,
        default_max_tokens: int = DEFAULT_MAX_TOKENS,
        api_base: str | None = None,
        ratios: UsageRatios | None = None,
    ) -> None:
        self.ledger = ledger
        self.ratios = PROCESS_RATIOS if ratios is None else ratios
        self.pricing = pricing or Pricing()
        self.retries = retries
        self.backoff = backoff
        self.default_max_tokens = default_max_tokens
        self.api_base = api_base
        self._prices: dict[str, ModelPrice] = {}
        self._call_seconds: dict[str, float] = {}  # moving average of call durations, per model

    def spawn(self, ledger: Ledger) -> Gateway:
        """A Gateway with the same settings on another ledger (a branch, a sample, a sub-agent)."""
        return Gateway(
            ledger,
            self.pricing,
            retries=self.retries,
            backoff=self.backoff,
            default_max_tokens=self.default_max_tokens,
            api_base=self.api_base,
            ratios=self.ratios,
        )

    # ------------------------------------------------------------------------------------ checks
    def check_model(self, model: str) -> ModelPrice:
        """Refuse, before any spending, a model that cannot be called or priced under this budget."""
        if "/" not in model:
            raise ModelError(
                f"model '{model}' has no provider prefix: write it the LiteLLM way, e.g. "
                f"'openai/{model}', or 'local/smollm2' for the embedded local model"
            )
        provider = provider_for(model)
        if self.api_base and provider.in_process:
            raise ModelError(
                f"api_base is for remote models (e.g. 'openai/<name>'); '{model}' runs in this process"
            )
        try:
            provider.validate(model, self.api_base)
        except (ValueError, ImportError) as exc:
            raise ModelError(str(exc)) from None
        price = self.pricing.model_price(model) or provider.default_price(model)
        if price is None:
            if "usd" in self.ledger.remaining():
                raise UnpricedModelError(model)
            price = ModelPrice()
        self._prices[model] = price
        return price

    def typical_call_seconds(self, model: str) -> float | None:
        """How long this model's calls have been taking (a moving average), or None before the first."""
        return self._call_seconds.get(model)

    def price(self, model: str) -> ModelPrice:
        if model not in self._prices:
            self.check_model(model)
        return self._prices[model]

    # ---------------------------------------------------------------------------------- counting
    def count_prompt_tokens(
        self, model: str, messages: Sequence[dict[str, Any]], tools: Sequence[dict] | None
    ) -> int:
        counted = provider_for(model).tokens(model, messages, tools)
        if counted is not None:
            return counted
        litellm = get_litellm()
        try:
            return int(
                litellm.token_counter(
                    model=model, messages=list(messages), tools=list(tools) if tools else None
                )
            )
        except Exception:
            text = json.dumps(list(messages)) + (json.dumps(list(tools)) if tools else "")
            return len(text) // 3 + 1

    def context_window(self, model: str) -> int | None:
        return provider_for(model).window(model)

    def provider(self, model: str) -> Provider:
        """What the registry knows about ``model``'s provider (in process? grammar? ...)."""
        return provider_for(model)

    def plan(self, model: str, prompt_tokens: int, max_tokens: int | None) -> tuple[int, dict[str, float]]:
        """The capped ``max_tokens`` and the worst-case reservation for one call (see :meth:`plan_call`)."""
        plan = self.plan_call(model, prompt_tokens, max_tokens)
        return plan.cap, plan.amounts

    def plan_call(self, model: str, prompt_tokens: int, max_tokens: int | None) -> CallPlan:
        """The capped ``max_tokens``, the worst-case reservation and the timeout for one call.

        The prompt is reserved at the counted tokens times the margin learned for this model, the completion
        at the cap times its margin; a model priced per second also reserves the seconds the call may take.
        Raises BudgetExceeded naming the dimension that cannot pay even a one-token answer.
        """
        price = self.price(model)
        want = max_tokens or self.default_max_tokens
        left = self.ledger.availability()

        def av(dim: str) -> float:
            return left.get(dim, _INF)

        prompt = prompt_tokens * self.ratios.margin(model, "prompt")
        per_token = self.ratios.margin(model, "completion")
        if prompt > av("input_tokens") + 1e-9:
            raise BudgetExceeded("input_tokens", prompt, av("input_tokens"), self.ledger.path)
        if av("model_requests") < 1:
            raise BudgetExceeded("model_requests", 1, av("model_requests"), self.ledger.path)
        if av("seconds") <= 0:
            raise BudgetExceeded("seconds", 0.0, av("seconds"), self.ledger.path)
        typical = self._call_seconds.get(model)
        if typical is not None and av("seconds") < typical:
            # A call cannot be interrupted half-way (a local model least of all): do not start one that the
            # time left cannot pay for, judging by how long this model's calls have taken.
            raise BudgetExceeded("seconds", typical, av("seconds"), self.ledger.path)
        prompt_usd = prompt * price.input_per_token
        seconds, usd_seconds = self._plan_seconds(
            model, price, av("seconds"), av("usd") - prompt_usd, per_token
        )
        caps: list[tuple[float, str]] = [(want, "")]
        caps.append((av("output_tokens") / per_token, "output_tokens"))
        caps.append(((av("total_tokens") - prompt) / per_token, "total_tokens"))
        if price.output_per_token > 0:
            caps.append(
                ((av("usd") - prompt_usd - usd_seconds) / (price.output_per_token * per_token), "usd")
            )
        elif prompt_usd > av("usd") + 1e-12:
            raise BudgetExceeded("usd", prompt_usd, av("usd"), self.ledger.path)
        window = self.context_window(model)
        if window:
            caps.append((window - prompt_tokens, "context_window"))
        cap_value, cap_dim = min(caps, key=lambda c: c[0])
        cap = int(cap_value + 1e-9)  # float error must not cost a token
        if cap < 1:
            if cap_dim == "context_window":
                raise ModelError(f"prompt of {prompt_tokens} tokens does not fit the context of {model}")
            # what one token would cost, in the dimension's own unit (not the cap, which is in tokens)
            one_token: dict[str, tuple[float, float]] = {
                "output_tokens": (per_token, av("output_tokens")),
                "total_tokens": (prompt + per_token, av("total_tokens")),
                "usd": (prompt_usd + usd_seconds + price.output_per_token * per_token, av("usd")),
            }
            requested, available = one_token.get(cap_dim, (1, max(cap_value, 0)))
            raise BudgetExceeded(cap_dim, requested, available, self.ledger.path)
        completion = cap * per_token
        amounts = {
            "input_tokens": prompt,
            "output_tokens": completion,
            "total_tokens": prompt + completion,
            "model_requests": 1,
            "usd": prompt_usd + completion * price.output_per_token + usd_seconds,
        }
        timeout = av("seconds") if av("seconds") != _INF else None
        if seconds:
            # what the call may run before its per-second cost passes what was reserved (a little under it:
            # a timeout fires late)
            timeout = min(timeout or _INF, seconds * 0.9)
        return CallPlan(cap, amounts, prompt_tokens, seconds, usd_seconds, timeout)

    def _plan_seconds(
        self, model: str, price: ModelPrice, seconds_left: float, usd_left: float, per_token: float
    ) -> tuple[float, float]:
        """For a model priced per second: the seconds to reserve and their price (0, 0 otherwise).

        As long as the call may take: a margin over this model's typical call once known, else the time left
        (or DEFAULT_CALL_SECONDS), and never more than the dollars left can pay after the prompt and one
        completion token. A call that cannot pay for the time it is expected to take (twice its typical
        call, or FIRST_CALL_SECONDS for a model not yet timed) is refused: ``usd`` cannot pay for it.
        """
        if price.per_second <= 0:
            return 0.0, 0.0
        typical = self._call_seconds.get(model)
        if typical is None:
            wanted, needed = DEFAULT_CALL_SECONDS, FIRST_CALL_SECONDS
        else:
            wanted, needed = typical * CALL_SECONDS_MARGIN + CALL_SECONDS_SLACK, typical * 2
        wanted = min(wanted, seconds_left)
        needed = min(needed, wanted)
        affordable = (usd_left - price.output_per_token * per_token) / price.per_second
        seconds = min(wanted, affordable)
        if seconds < needed or seconds <= 0:
            raise BudgetExceeded("usd", needed * price.per_second, max(usd_left, 0.0), self.ledger.path)
        return seconds, seconds * price.per_second

    # ------------------------------------------------------------------------------------- calls
    def _request(
        self, model: str, messages: Sequence[dict[str, Any]], plan: CallPlan, kwargs: dict[str, Any]
    ) -> dict:
        request: dict[str, Any] = {
            "model": model,
            "messages": list(messages),
            "max_tokens": plan.cap,
            "num_retries": 0,
        }
        if plan.timeout is not None:  # the time left, or less for a model priced per second
            request["timeout"] = max(plan.timeout, 0.001)
        if self.api_base and not provider_for(model).in_process:
            request["api_base"] = self.api_base
        request.update({k: v for k, v in kwargs.items() if v is not None})
        if plan.timeout is not None and isinstance(kwargs.get("timeout"), int | float):
            # the caller's timeout may be shorter, never longer than what the budget can pay for
            request["timeout"] = max(min(float(kwargs["timeout"]), plan.timeout), 0.001)
        return request

    def _check_call(self, model: str, kwargs: dict[str, Any], max_tokens: int | None = None) -> None:
        """Before anything is reserved: the model is usable, ``max_tokens`` is a whole number of at least 1,
        no keyword makes the call cost more than its reservation (:data:`_UNRESERVED`), and a server named
        for this call only (an ``api_base`` / ``base_url`` keyword the model check never saw) is allowed too."""
        if max_tokens is not None and (
            isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1
        ):
            # 0 used to mean the default cap, and a negative one a budget stop naming no dimension
            raise ModelError(
                f"max_tokens must be a whole number of at least 1 (or None for the default), got {max_tokens!r}"
            )
        for name, allowed in _UNRESERVED.items():
            value = kwargs.get(name)
            if value is not None and value not in allowed:
                raise ModelError(
                    f"the keyword {name}={value!r} would make one call cost more than the Gateway reserves "
                    f"for it; leave it out (retries: Gateway(retries=...), the reply's length: max_tokens)"
                )
        self.price(model)
        endpoint = kwargs.get("api_base") or kwargs.get("base_url")
        if endpoint and endpoint != self.api_base:
            try:
                provider_for(model).validate(model, endpoint)
            except (ValueError, ImportError) as exc:
                raise ModelError(str(exc)) from None

    def _settle(
        self,
        res: Reservation,
        model: str,
        response: Any,
        started: float,
        attempts: int,
        plan: CallPlan,
        key: str | None,
        request: Mapping[str, Any],
    ) -> ModelReply:
        usage_obj = getattr(response, "usage", None)
        prompt = int(getattr(usage_obj, "prompt_tokens", 0) or 0)
        completion = int(getattr(usage_obj, "completion_tokens", 0) or 0)
        details = getattr(usage_obj, "prompt_tokens_details", None)
        cached = int(getattr(details, "cached_tokens", 0) or 0) if details else 0
        elapsed = self.ledger.clock() - started
        previous = self._call_seconds.get(model)
        self._call_seconds[model] = elapsed if previous is None else 0.7 * previous + 0.3 * elapsed
        detail = ""
        if prompt <= 0 and completion <= 0:
            # No usage reported (LiteLLM then says 0 and 0; a real prompt is never 0 tokens). Charging 0 would
            # let the spend pass the limit unseen; the reservation is what the call can have cost at most.
            prompt = math.ceil(res.amounts.get("input_tokens", 0) - 1e-9)
            completion = math.ceil(res.amounts.get("output_tokens", 0) - 1e-9)
            cached = 0
            detail = "no usage reported: charged the reserved worst case"
        else:
            self._learn(model, plan, prompt, completion)
        actual = self._charge(model, prompt, completion, cached, elapsed)
        usd = actual["usd"]
        try:
            sent = format_kind(request.get("response_format"))
            reply = self._reply(model, response, actual, usd, attempts, elapsed, plan.cap, sent)
        except Exception as exc:
            # a reply that cannot be read still cost what the provider reports (or the worst case)
            text = redact(f"unreadable reply: {type(exc).__name__}: {exc}")[:300]
            self.ledger.settle(res, actual, ok=False, detail=f"{detail}; {text}" if detail else text)
            raise
        journal = self.ledger.journal
        if journal is not None and key is not None:
            # a durable run: the reply is written with its charge, to be replayed (free) if the node runs again
            with journal.completing("model", key, reply.model_dump(mode="json")):
                self.ledger.settle(res, actual, detail=detail)
        else:
            self.ledger.settle(res, actual, detail=detail)
        return reply

    @staticmethod
    def _reply(
        model: str,
        response: Any,
        actual: dict[str, float],
        usd: float,
        attempts: int,
        elapsed: float,
        cap: int,
        response_format: str,
    ) -> ModelReply:
        """The reply read from the provider's response (ValueError when it has no choices)."""
        choices = getattr(response, "choices", None)
        if not choices or getattr(choices[0], "message", None) is None:
            raise ValueError("the provider's reply has no choices")
        choice = choices[0]
        message = choice.message
        calls = [
            ToolCall(
                id=str(tc.id or f"call_{i}"),
                name=str(tc.function.name or ""),
                arguments=tc.function.arguments or "{}",
            )
            for i, tc in enumerate(getattr(message, "tool_calls", None) or [])
        ]
        return ModelReply(
            model=model,
            confidence=_confidence(choice),
            content=message.content,
            tool_calls=calls,
            finish_reason=choice.finish_reason,
            usage=TokenUsage(
                prompt_tokens=int(actual["input_tokens"]),
                completion_tokens=int(actual["output_tokens"]),
                cached_tokens=int(actual.get("cached_tokens", 0)),
            ),
            usd=usd,
            attempts=attempts,
            elapsed=elapsed,
            max_tokens=cap,
            response_format=response_format,
        )

    def _replayed(
        self,
        model: str,
        messages: Sequence[dict[str, Any]],
        tools: Sequence[dict[str, Any]] | None,
        max_tokens: int | None,
        node: str | None,
        kwargs: dict[str, Any],
    ) -> tuple[str | None, ModelReply | None]:
        """In a durable run: the call's key, and its reply if it completed before the run resumed."""
        journal = self.ledger.journal
        if journal is None:
            return None, None
        request = {"messages": messages, "tools": tools, "max_tokens": max_tokens, "node": node, **kwargs}
        key = journal.key("model", model, request)
        recorded = journal.replay("model", key)
        return key, None if recorded is None else ModelReply.model_validate(recorded)

    def _learn(self, model: str, plan: CallPlan, prompt: int, completion: int) -> None:
        """Learn how much more (or less) the provider reports than was counted, for the next reservations."""
        if plan.prompt_tokens > 0 and prompt > 0:
            self.ratios.observe(model, "prompt", prompt / plan.prompt_tokens)
        if plan.cap > 0 and completion > 0:
            self.ratios.observe(model, "completion", completion / plan.cap)

    def _fail(self, res: Reservation, exc: BaseException, model: str, started: float) -> None:
        """A failed attempt still counts as a request (providers may bill it). Its tokens are released,
        unless a remote reply was lost after the server may have done the work: then the reserved worst
        case is charged, as the provider may bill it and a limit must not be crossed unseen; or an
        in-process generation was cut (:class:`thrifty.models.inprocess.GenerationTimeout`): then the
        tokens it used are charged."""
        text = redact(f"{type(exc).__name__}: {exc}")[:300]
        in_process = provider_for(model).in_process
        spent = _spent_tokens(exc) if in_process else None
        if not in_process and _answer_lost(exc):
            detail = f"reply lost, charged the reserved worst case: {text}"
            self.ledger.settle(res, None, ok=False, detail=detail[:300])
        elif spent is not None:
            actual = self._charge(model, *spent, 0, self.ledger.clock() - started)
            self.ledger.settle(res, actual, ok=False, detail=text)
        else:
            self.ledger.settle(res, {"model_requests": 1}, ok=False, detail=text)

    def _charge(
        self, model: str, prompt: int, completion: int, cached: int, elapsed: float
    ) -> dict[str, float]:
        """What one request that used these tokens (and seconds) is charged, dollars at the model's price."""
        actual: dict[str, float] = {
            "input_tokens": prompt,
            "output_tokens": completion,
            "total_tokens": prompt + completion,
            "model_requests": 1,
            "usd": self.price(model).cost(prompt, completion, cached, elapsed),
        }
        if cached:
            actual["cached_tokens"] = cached
        return actual

    def _check_wait(self, seconds: float) -> None:
        """Before a wait between attempts: refuse one that would end past the time budget."""
        self.ledger.check_time()
        left = self.ledger.available("seconds")
        if seconds > 0 and seconds >= left:
            raise BudgetExceeded("seconds", seconds, left, self.ledger.path)

    def _retry_policy(self, model: str) -> RetryPolicy:
        """Transient provider errors are retried with exponential backoff (at least the server's
        ``Retry-After``), never past the time budget; a server asking for more than MAX_RETRY_AFTER
        seconds is not retried."""
        in_process = provider_for(model).in_process

        def retry(exc: BaseException) -> bool:
            return is_transient(exc, in_process) and (_retry_after(exc) or 0.0) <= MAX_RETRY_AFTER

        return RetryPolicy(
            attempts=self.retries + 1,
            retry=retry,
            backoff=self.backoff,
            max_wait=max(self.backoff * 8, 0.0),
            wait_hint=_retry_after,
            before_wait=self._check_wait,
        )

    def _begin(
        self,
        model: str,
        messages: Sequence[dict[str, Any]],
        tools: Sequence[dict[str, Any]] | None,
        max_tokens: int | None,
        node: str | None,
        kwargs: dict[str, Any],
        prompt_tokens: int | None = None,
    ) -> tuple[Reservation, CallPlan, dict[str, Any]]:
        """One attempt's count (``prompt_tokens`` if the caller has it), plan and reservation, and the
        LiteLLM request to make with it."""
        prompt = self.count_prompt_tokens(model, messages, tools) if prompt_tokens is None else prompt_tokens
        plan = self.plan_call(model, prompt, max_tokens)
        res = self.ledger.reserve(plan.amounts, kind="model", name=model, node=node)
        request = self._request(model, messages, plan, {**kwargs, "tools": list(tools) if tools else None})
        return res, plan, request

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
        """One charged model call. Raises BudgetExceeded (nothing spent) or ModelError.

        ``prompt_tokens``: the prompt's token count when the caller has just counted these very messages
        and tools (saves tokenizing the prompt twice; a wrong count only shifts the reservation, the
        provider's reported usage is what is charged).
        """
        litellm = get_litellm()
        self._check_call(model, kwargs, max_tokens)
        key, replayed = self._replayed(model, messages, tools, max_tokens, node, kwargs)
        if replayed is not None:
            return replayed
        attempts = 0

        def attempt() -> ModelReply:
            nonlocal attempts
            attempts += 1
            res, plan, request = self._begin(model, messages, tools, max_tokens, node, kwargs, prompt_tokens)
            started = self.ledger.clock()
            try:
                with stopping_when(self.ledger):
                    response = litellm.completion(**request)
                return self._settle(res, model, response, started, attempts, plan, key, request)
            except BaseException as exc:
                if res.open:
                    self._fail(res, exc, model, started)
                raise

        try:
            return self._retry_policy(model).call(attempt)
        except BudgetExceeded:
            raise
        except Exception as exc:
            raise self._model_error(model, exc) from None

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
        """The asyncio twin of :meth:`complete`; reservations make concurrent calls safe."""
        litellm = get_litellm()
        self._check_call(model, kwargs, max_tokens)
        key, replayed = self._replayed(model, messages, tools, max_tokens, node, kwargs)
        if replayed is not None:
            return replayed
        attempts = 0

        async def attempt() -> ModelReply:
            nonlocal attempts
            attempts += 1
            res, plan, request = self._begin(model, messages, tools, max_tokens, node, kwargs, prompt_tokens)
            started = self.ledger.clock()
            try:
                with stopping_when(self.ledger):
                    response = await litellm.acompletion(**request)
                return self._settle(res, model, response, started, attempts, plan, key, request)
            except BaseException as exc:
                if res.open:
                    self._fail(res, exc, model, started)
                raise

        try:
            return await self._retry_policy(model).acall(attempt)
        except BudgetExceeded:
            raise
        except Exception as exc:
            raise self._model_error(model, exc) from None

    def _model_error(self, model: str, exc: BaseException) -> ModelError:
        """The error a caller sees (redacted); a timeout with the time budget spent is a budget stop, and any
        error once the run is stopping (an in-process generation cut for it) is the stop itself."""
        if isinstance(exc, ModelError):
            return exc
        if self.ledger.stopping():
            # the refusal the run's next charge would meet (RunCancelled, ServerStopping...): raised here
            self.ledger.release(self.ledger.reserve({}, kind="model", name=model))
        if isinstance(exc, get_litellm().Timeout):
            self.ledger.check_time()  # raises BudgetExceeded('seconds'): the request ran out of the time left
        text = redact(str(exc)).strip().splitlines()
        first = text[0] if text else type(exc).__name__
        return ModelError(f"model '{model}' failed: {type(exc).__name__}: {first[:400]}")
