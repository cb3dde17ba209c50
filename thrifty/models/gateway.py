"""The Gateway: the only way a model is called. Count, cap, reserve, call, settle.

For every call it

1. counts the prompt's tokens (the model's own tokenizer for local models, LiteLLM's counter otherwise);
2. caps ``max_tokens`` to what the budget can still pay for (output / total tokens, dollars, context);
3. reserves the worst case (prompt + capped completion, one request, its dollar price) on the Ledger;
4. calls LiteLLM, retrying transient provider errors with tenacity — every attempt is a request and is
   charged, so retries can never overspend; a wait (backoff or the server's ``Retry-After``) that the
   time left cannot pay for is not started;
5. settles the usage the provider reports and releases the rest.

What a call is charged when it does not end with a readable reply with usage:

* an error the server answered (429, 5xx, 401...): one request, no tokens (the provider did no work);
* a reply lost after the server may have done the work (a read timeout, a connection dropped mid-answer,
  a body that is not JSON): the reserved worst case, as the provider may bill it;
* a reply without usage: the reserved worst case (counted prompt + capped completion), never zero.

Every text that leaves the Gateway (an error, an event's detail) passes :func:`thrifty.redact.redact`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from email.utils import parsedate_to_datetime
from typing import Any

from pydantic import BaseModel, Field

from thrifty.budget import BudgetExceeded, Ledger, ModelPrice, Pricing, Reservation, UnpricedModelError
from thrifty.budget.retry import RetryPolicy
from thrifty.models._litellm import get_litellm
from thrifty.models.registry import BLOCK_REMOTE_ENV, Provider, provider_for
from thrifty.models.settings import DEFAULT_RETRIES
from thrifty.redact import redact

DEFAULT_MAX_TOKENS = 512
MAX_RETRY_AFTER = 60.0  # a server asking for a longer wait than this (seconds) is not retried
_INF = float("inf")
__all__ = ["BLOCK_REMOTE_ENV", "DEFAULT_MAX_TOKENS", "Gateway", "ModelError", "ModelReply", "ToolCall"]


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

    def assistant_message(self) -> dict[str, Any]:
        """The OpenAI-format assistant message to append to the conversation."""
        msg: dict[str, Any] = {"role": "assistant", "content": self.content}
        if self.tool_calls:
            msg["tool_calls"] = [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                for c in self.tool_calls
            ]
        return msg


def _is_transient(exc: BaseException, in_process: bool = False) -> bool:
    litellm = get_litellm()
    transient = (
        litellm.RateLimitError,
        litellm.APIConnectionError,
        litellm.Timeout,
        litellm.InternalServerError,
        litellm.ServiceUnavailableError,
        litellm.exceptions.BadGatewayError,
    )
    if not isinstance(exc, transient):
        return False
    # LiteLLM wraps any exception raised inside an in-process provider (a bug, a missing script reply, a bad
    # GGUF file) as APIConnectionError; those are not transient, so retrying would only waste budget.
    inner = exc.__context__
    if in_process and isinstance(exc, litellm.APIConnectionError):
        return inner is not None and isinstance(inner, transient)
    return True


def _retry_after(exc: BaseException) -> float | None:
    """The wait (seconds) the server asked for with this error (``Retry-After`` / ``retry-after-ms``)."""
    headers = getattr(exc, "litellm_response_headers", None) or getattr(
        getattr(exc, "response", None), "headers", None
    )
    if not headers:
        return None
    try:
        ms = headers.get("retry-after-ms")
        if ms is not None:
            return max(float(ms) / 1000, 0.0)
        value = headers.get("retry-after")
        if value is None:
            return None
        try:
            return max(float(value), 0.0)
        except ValueError:
            return max(parsedate_to_datetime(value).timestamp() - time.time(), 0.0)
    except (TypeError, ValueError, AttributeError):
        return None


# Raised under the provider's error when the request reached the server but its answer was lost: the
# provider may have done (and may bill) the work.
_LOST_ANSWER = ("ReadTimeout", "ReadError", "RemoteProtocolError", "JSONDecodeError")


def _answer_lost(exc: BaseException) -> bool:
    """Whether ``exc`` says the reply was lost after the server may have done the work (a read timeout, a
    connection dropped mid-answer, a body that does not parse), not an error status the server answered."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if type(cause).__name__ in _LOST_ANSWER:
            return True
        cause = cause.__cause__ or cause.__context__
    return False


class Gateway:
    """Model calls charged to a Ledger.

    ``retries`` is the number of extra attempts on transient errors; ``backoff`` the base of the
    exponential wait between them (seconds; tests use 0). ``api_base``: the server that remote (not
    in-process) models are called at, e.g. ``http://127.0.0.1:8080/v1`` for an OpenAI-compatible server.
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
    ) -> None:
        self.ledger = ledger
        self.pricing = pricing or Pricing()
        self.retries = retries
        self.backoff = backoff
        self.default_max_tokens = default_max_tokens
        self.api_base = api_base
        self._prices: dict[str, ModelPrice] = {}
        self._call_seconds: dict[str, float] = {}  # moving average of call durations, per model

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
        """The capped ``max_tokens`` and the worst-case reservation for one call.

        Raises BudgetExceeded naming the dimension that cannot pay even a one-token answer.
        """
        price = self.price(model)
        want = max_tokens or self.default_max_tokens
        caps: list[tuple[float, str]] = [(want, "")]
        left = self.ledger.availability()

        def av(dim: str) -> float:
            return left.get(dim, _INF)

        if prompt_tokens > av("input_tokens"):
            raise BudgetExceeded("input_tokens", prompt_tokens, av("input_tokens"), self.ledger.path)
        caps.append((av("output_tokens"), "output_tokens"))
        caps.append((av("total_tokens") - prompt_tokens, "total_tokens"))
        if price.output_per_token > 0:
            left_usd = av("usd") - prompt_tokens * price.input_per_token
            caps.append((left_usd / price.output_per_token, "usd"))
        elif prompt_tokens * price.input_per_token > av("usd"):
            raise BudgetExceeded("usd", prompt_tokens * price.input_per_token, av("usd"), self.ledger.path)
        window = self.context_window(model)
        if window:
            caps.append((window - prompt_tokens, "context_window"))
        if av("model_requests") < 1:
            raise BudgetExceeded("model_requests", 1, av("model_requests"), self.ledger.path)
        typical = self._call_seconds.get(model)
        if typical is not None and av("seconds") < typical:
            # A call cannot be interrupted half-way (a local model least of all): do not start one that the
            # time left cannot pay for, judging by how long this model's calls have taken.
            raise BudgetExceeded("seconds", typical, av("seconds"), self.ledger.path)
        cap_value, cap_dim = min(caps, key=lambda c: c[0])
        cap = int(cap_value + 1e-9)  # float error must not cost a token
        if cap < 1:
            if cap_dim == "context_window":
                raise ModelError(f"prompt of {prompt_tokens} tokens does not fit the context of {model}")
            raise BudgetExceeded(cap_dim, 1, max(cap_value, 0), self.ledger.path)
        usd = prompt_tokens * price.input_per_token + cap * price.output_per_token
        amounts = {
            "input_tokens": prompt_tokens,
            "output_tokens": cap,
            "total_tokens": prompt_tokens + cap,
            "model_requests": 1,
            "usd": usd,
        }
        return cap, amounts

    # ------------------------------------------------------------------------------------- calls
    def _request(
        self, model: str, messages: Sequence[dict[str, Any]], cap: int, kwargs: dict[str, Any]
    ) -> dict:
        request: dict[str, Any] = {
            "model": model,
            "messages": list(messages),
            "max_tokens": cap,
            "num_retries": 0,
        }
        seconds_left = self.ledger.available("seconds")
        if seconds_left != float("inf"):
            request["timeout"] = max(seconds_left, 0.001)
        if self.api_base and not provider_for(model).in_process:
            request["api_base"] = self.api_base
        request.update({k: v for k, v in kwargs.items() if v is not None})
        return request

    def _check_call(self, model: str, kwargs: dict[str, Any]) -> None:
        """Before anything is reserved: the model is usable, and a server named for this call only (an
        ``api_base`` / ``base_url`` keyword the model check never saw) is allowed too."""
        self.price(model)
        endpoint = kwargs.get("api_base") or kwargs.get("base_url")
        if endpoint and endpoint != self.api_base:
            try:
                provider_for(model).validate(model, endpoint)
            except (ValueError, ImportError) as exc:
                raise ModelError(str(exc)) from None

    def _settle(
        self, res: Reservation, model: str, response: Any, started: float, attempts: int, cap: int
    ) -> ModelReply:
        choices = getattr(response, "choices", None)
        if not choices or getattr(choices[0], "message", None) is None:
            raise ValueError("the provider's reply has no choices")  # _fail charges it
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
            prompt = int(res.amounts.get("input_tokens", 0))
            completion = int(res.amounts.get("output_tokens", 0))
            cached = 0
            detail = "no usage reported: charged the reserved worst case"
        usd = self.price(model).cost(prompt, completion, cached, elapsed)
        actual = {
            "input_tokens": prompt,
            "output_tokens": completion,
            "total_tokens": prompt + completion,
            "model_requests": 1,
            "usd": usd,
        }
        if cached:
            actual["cached_tokens"] = cached
        self.ledger.settle(res, actual, detail=detail)
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
            content=message.content,
            tool_calls=calls,
            finish_reason=choice.finish_reason,
            usage=TokenUsage(prompt_tokens=prompt, completion_tokens=completion, cached_tokens=cached),
            usd=usd,
            attempts=attempts,
            elapsed=elapsed,
            max_tokens=cap,
        )

    def _fail(self, res: Reservation, exc: BaseException, model: str) -> None:
        """A failed attempt still counts as a request (providers may bill it). Its tokens are released,
        unless a remote reply was lost after the server may have done the work: then the reserved worst
        case is charged, as the provider may bill it and a limit must not be crossed unseen."""
        text = redact(f"{type(exc).__name__}: {exc}")[:300]
        if not provider_for(model).in_process and _answer_lost(exc):
            detail = f"reply lost, charged the reserved worst case: {text}"
            self.ledger.settle(res, None, ok=False, detail=detail[:300])
        else:
            self.ledger.settle(res, {"model_requests": 1}, ok=False, detail=text)

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
            return _is_transient(exc, in_process) and (_retry_after(exc) or 0.0) <= MAX_RETRY_AFTER

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
    ) -> tuple[Reservation, int, dict[str, Any]]:
        """One attempt's count (``prompt_tokens`` if the caller has it), cap and reservation, and the
        LiteLLM request to make with it."""
        prompt = self.count_prompt_tokens(model, messages, tools) if prompt_tokens is None else prompt_tokens
        cap, amounts = self.plan(model, prompt, max_tokens)
        res = self.ledger.reserve(amounts, kind="model", name=model, node=node)
        request = self._request(model, messages, cap, {**kwargs, "tools": list(tools) if tools else None})
        return res, cap, request

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
        self._check_call(model, kwargs)
        attempts = 0

        def attempt() -> ModelReply:
            nonlocal attempts
            attempts += 1
            res, cap, request = self._begin(model, messages, tools, max_tokens, node, kwargs, prompt_tokens)
            started = self.ledger.clock()
            try:
                response = litellm.completion(**request)
                return self._settle(res, model, response, started, attempts, cap)
            except BaseException as exc:
                if res.open:
                    self._fail(res, exc, model)
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
        self._check_call(model, kwargs)
        attempts = 0

        async def attempt() -> ModelReply:
            nonlocal attempts
            attempts += 1
            res, cap, request = self._begin(model, messages, tools, max_tokens, node, kwargs, prompt_tokens)
            started = self.ledger.clock()
            try:
                response = await litellm.acompletion(**request)
                return self._settle(res, model, response, started, attempts, cap)
            except BaseException as exc:
                if res.open:
                    self._fail(res, exc, model)
                raise

        try:
            return await self._retry_policy(model).acall(attempt)
        except BudgetExceeded:
            raise
        except Exception as exc:
            raise self._model_error(model, exc) from None

    def _model_error(self, model: str, exc: BaseException) -> ModelError:
        """The error a caller sees (redacted); a timeout with the time budget spent is a budget stop."""
        if isinstance(exc, ModelError):
            return exc
        if isinstance(exc, get_litellm().Timeout):
            self.ledger.check_time()  # raises BudgetExceeded('seconds'): the request ran out of the time left
        text = redact(str(exc)).strip().splitlines()
        first = text[0] if text else type(exc).__name__
        return ModelError(f"model '{model}' failed: {type(exc).__name__}: {first[:400]}")
