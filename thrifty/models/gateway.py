"""The Gateway: the only way a model is called. Count, cap, reserve, call, settle.

For every call it

1. counts the prompt's tokens (the model's own tokenizer for local models, LiteLLM's counter otherwise);
2. caps ``max_tokens`` to what the budget can still pay for (output / total tokens, dollars, context);
3. reserves the worst case (prompt + capped completion, one request, its dollar price) on the Ledger;
4. calls LiteLLM, retrying transient provider errors with tenacity — every attempt is a request and is
   charged, so retries can never overspend;
5. settles the usage the provider reports and releases the rest.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, Field

from thrifty.budget import BudgetExceeded, Ledger, ModelPrice, Pricing, Reservation, UnpricedModelError
from thrifty.budget.retry import RetryPolicy
from thrifty.models._litellm import get_litellm
from thrifty.models.registry import BLOCK_REMOTE_ENV, Provider, provider_for
from thrifty.models.settings import DEFAULT_RETRIES

DEFAULT_MAX_TOKENS = 512
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


def _scrub(text: str) -> str:
    """Remove anything that looks like an API key from an error message before it is logged or stored."""
    import re

    return re.sub(r"(sk|key|token)[-_][A-Za-z0-9_\-]{8,}", r"\1-***", text)


class Gateway:
    """Model calls charged to a Ledger.

    ``retries`` is the number of extra attempts on transient errors; ``backoff`` the base of the
    exponential wait between them (seconds; tests use 0).
    """

    def __init__(
        self,
        ledger: Ledger,
        pricing: Pricing | None = None,
        *,
        retries: int = DEFAULT_RETRIES,
        backoff: float = 0.5,
        default_max_tokens: int = DEFAULT_MAX_TOKENS,
    ) -> None:
        self.ledger = ledger
        self.pricing = pricing or Pricing()
        self.retries = retries
        self.backoff = backoff
        self.default_max_tokens = default_max_tokens
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
        try:
            provider.validate(model)
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
        request.update({k: v for k, v in kwargs.items() if v is not None})
        return request

    def _settle(
        self, res: Any, model: str, response: Any, started: float, attempts: int, cap: int
    ) -> ModelReply:
        usage_obj = getattr(response, "usage", None)
        prompt = int(getattr(usage_obj, "prompt_tokens", 0) or 0)
        completion = int(getattr(usage_obj, "completion_tokens", 0) or 0)
        details = getattr(usage_obj, "prompt_tokens_details", None)
        cached = int(getattr(details, "cached_tokens", 0) or 0) if details else 0
        elapsed = self.ledger.clock() - started
        previous = self._call_seconds.get(model)
        self._call_seconds[model] = elapsed if previous is None else 0.7 * previous + 0.3 * elapsed
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
        self.ledger.settle(res, actual)
        choice = response.choices[0]
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

    def _fail(self, res: Reservation, exc: BaseException) -> None:
        """A failed attempt still counts as a request (providers may bill it); tokens are released."""
        self.ledger.settle(
            res, {"model_requests": 1}, ok=False, detail=_scrub(f"{type(exc).__name__}: {exc}")[:300]
        )

    def _retry_policy(self, model: str) -> RetryPolicy:
        """Transient provider errors are retried with exponential backoff, never past the time budget."""
        in_process = provider_for(model).in_process
        return RetryPolicy(
            attempts=self.retries + 1,
            retry=lambda exc: _is_transient(exc, in_process),
            backoff=self.backoff,
            max_wait=max(self.backoff * 8, 0.0),
            before_sleep=self.ledger.check_time,
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
        self.price(model)
        attempts = 0

        def attempt() -> ModelReply:
            nonlocal attempts
            attempts += 1
            res, cap, request = self._begin(model, messages, tools, max_tokens, node, kwargs, prompt_tokens)
            started = self.ledger.clock()
            try:
                response = litellm.completion(**request)
            except BaseException as exc:
                self._fail(res, exc)
                raise
            return self._settle(res, model, response, started, attempts, cap)

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
        self.price(model)
        attempts = 0

        async def attempt() -> ModelReply:
            nonlocal attempts
            attempts += 1
            res, cap, request = self._begin(model, messages, tools, max_tokens, node, kwargs, prompt_tokens)
            started = self.ledger.clock()
            try:
                response = await litellm.acompletion(**request)
            except BaseException as exc:
                self._fail(res, exc)
                raise
            return self._settle(res, model, response, started, attempts, cap)

        try:
            return await self._retry_policy(model).acall(attempt)
        except BudgetExceeded:
            raise
        except Exception as exc:
            raise self._model_error(model, exc) from None

    @staticmethod
    def _model_error(model: str, exc: BaseException) -> ModelError:
        if isinstance(exc, ModelError):
            return exc
        text = _scrub(str(exc)).strip().splitlines()
        first = text[0] if text else type(exc).__name__
        return ModelError(f"model '{model}' failed: {type(exc).__name__}: {first[:400]}")
