"""The shared shell of thrifty's in-process LiteLLM providers (``local/`` llama.cpp, ``hf/`` transformers).

A provider only says how to generate; this class turns the generation into LiteLLM's OpenAI-shaped
response, maps "bad model / missing extra" errors to ``BadRequestError`` (so LiteLLM does not wrap them as
retryable connection errors), and runs the blocking generation in a worker thread for ``acompletion``.

A generation can be stopped early. While ``generate`` runs, :func:`stop_signal` returns the call's
:class:`StopSignal` (:mod:`thrifty.models.stopping`): it fires once the call's ``timeout`` has passed (the
Gateway caps that timeout to the time budget left), the task awaiting ``acompletion`` was cancelled, or the
run is stopping. A provider that checks it between tokens (``local/`` and ``hf/`` do) ends its generation
there; the call then fails with :class:`GenerationTimeout`, a ``litellm.Timeout`` that carries the tokens
the cut generation used, so that the Gateway charges them. A provider that never checks it runs each
generation to its end.
"""

from __future__ import annotations

import asyncio
import threading
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, TypedDict

from thrifty.models._litellm import get_litellm
from thrifty.models.stopping import StopSignal, generating, stop_signal

get_litellm()  # offline: LiteLLM must not fetch its price map
import litellm  # noqa: E402
from litellm.exceptions import BadRequestError, Timeout  # noqa: E402
from litellm.llms.custom_llm import CustomLLM  # noqa: E402

__all__ = [
    "Generation",
    "GenerationTimeout",
    "InProcessProvider",
    "InProcessRequestError",
    "StopSignal",
    "stop_signal",
]


class Generation(TypedDict):
    message: Any  # a litellm.Message (content and/or tool_calls), or the reply's text as a str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int


class GenerationTimeout(Timeout):
    """An in-process generation cut at its deadline, on a cancel or because its run is stopping.
    ``spent_tokens`` (prompt, completion) is what the model did, which the Gateway charges though no reply
    came back; ``retryable`` is False, as the same generation on the same machine would only run out of time
    again."""

    retryable = False

    def __init__(
        self, message: str, model: str, provider: str, prompt_tokens: int, completion_tokens: int
    ) -> None:
        super().__init__(message=message, model=model, llm_provider=provider)
        self.spent_tokens = (prompt_tokens, completion_tokens)


def _timeout_seconds(timeout: Any) -> float | None:
    """LiteLLM's ``timeout`` keyword as seconds: a number, or an httpx.Timeout's read timeout; else None."""
    if isinstance(timeout, bool):
        return None
    if isinstance(timeout, int | float):
        return float(timeout)
    read = getattr(timeout, "read", None)
    return float(read) if isinstance(read, int | float) and not isinstance(read, bool) else None


class InProcessRequestError(BadRequestError):
    """A provider's model error as callers of ``litellm.completion`` see it when the provider names no
    ``request_error`` of its own, or one that is not a LiteLLM ``BadRequestError`` (which LiteLLM would wrap
    as a connection error, its message the tuple of the arguments)."""

    def __init__(self, message: str, model: str, provider: str) -> None:
        super().__init__(message=message, model=model, llm_provider=provider)


class InProcessProvider(CustomLLM, ABC):
    """Subclasses set ``prefix`` and ``model_errors`` (the exceptions of :meth:`generate` that mean a bad
    model or request, reported as they are and never retried) and implement :meth:`generate`.

    ``request_error`` (optional): a LiteLLM ``BadRequestError`` subclass built from ``(message, name)`` that
    carries those errors to the caller; by default (or for a class that is not one, or not built so) an
    :class:`InProcessRequestError` does."""

    prefix: ClassVar[str]
    model_errors: ClassVar[tuple[type[Exception], ...]]
    request_error: ClassVar[type[Exception] | None] = None

    @abstractmethod
    def generate(self, model: str, messages: Sequence[Any], params: Mapping[str, Any]) -> Generation:
        """One blocking generation for ``model`` (with or without the provider prefix)."""

    def completion(
        self,
        model: str,
        messages: list,
        model_response: litellm.ModelResponse,
        optional_params: dict | None = None,
        timeout: Any = None,
        cancelled: threading.Event | None = None,
        **_: Any,
    ) -> litellm.ModelResponse:
        """Generate and fill ``model_response`` in OpenAI format, usage included (LiteLLM passes keywords).

        ``timeout`` (seconds) and ``cancelled`` make the call's :class:`StopSignal` (with the run's stopping
        check the Gateway set); a generation the provider cut on it raises :class:`GenerationTimeout`."""
        name = model.removeprefix(f"{self.prefix}/")
        try:
            with generating(_timeout_seconds(timeout), cancelled) as signal:
                out = self.generate(model, messages, optional_params or {})
        except self.model_errors as exc:
            if isinstance(exc, BadRequestError):
                raise
            error: Exception | None = None
            if self.request_error is not None:
                try:
                    error = self.request_error(str(exc), name)
                except TypeError:  # a carrier that does not take (message, name)
                    error = None
            if not isinstance(error, BadRequestError):
                error = InProcessRequestError(str(exc), f"{self.prefix}/{name}", self.prefix)
            raise error from exc
        if signal.fired:
            raise GenerationTimeout(
                f"generation {signal.why}: cut after {out['completion_tokens']} tokens",
                f"{self.prefix}/{name}",
                self.prefix,
                out["prompt_tokens"],
                out["completion_tokens"],
            )
        choice = model_response.choices[0]
        message = out["message"]
        # Plain text is the common reply: a provider need not import LiteLLM (whose import must be offline).
        choice.message = (
            litellm.Message(content=message, role="assistant") if isinstance(message, str) else message
        )
        # LiteLLM types finish_reason as OpenAI's set of literals; the engine's own reason passes through.
        choice.finish_reason = out["finish_reason"]  # pyright: ignore[reportAttributeAccessIssue]
        # ModelResponse keeps usage as an undeclared (pydantic extra) attribute.
        model_response.usage = litellm.Usage(  # pyright: ignore[reportAttributeAccessIssue]
            prompt_tokens=out["prompt_tokens"],
            completion_tokens=out["completion_tokens"],
            total_tokens=out["prompt_tokens"] + out["completion_tokens"],
        )
        model_response.model = f"{self.prefix}/{name}"
        return model_response

    async def acompletion(self, *args: Any, **kwargs: Any) -> litellm.ModelResponse:
        """Generation is blocking native code, so it runs in a worker thread; cancelling the awaiting task
        fires the call's stop signal, so a provider that checks it stops generating for nobody."""
        cancelled = threading.Event()
        try:
            return await asyncio.to_thread(self.completion, *args, cancelled=cancelled, **kwargs)
        except asyncio.CancelledError:
            cancelled.set()
            raise
