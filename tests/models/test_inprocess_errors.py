"""A provider served in process reports its model errors cleanly whatever ``request_error`` it names (the
README's ``EchoLLM`` sets ``request_error = ValueError``; before, LiteLLM wrapped that as a connection error
whose message was the tuple of its arguments, ``('engine failed', 'loud')``), and once: never retried."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import pytest

from thrifty import Provider, register_provider
from thrifty.budget import Budget, Ledger
from thrifty.models import Gateway, ModelError
from thrifty.models._litellm import get_litellm
from thrifty.models.inprocess import Generation, InProcessProvider

MSG = [{"role": "user", "content": "hello"}]


class _Failing(InProcessProvider):
    model_errors = (ValueError,)

    def generate(self, model: str, messages: Sequence[Any], params: Mapping[str, Any]) -> Generation:
        raise ValueError("engine failed: no such weights")


class _PlainCarrier(_Failing):  # the README's example: a request_error that is not a LiteLLM error
    prefix = "errplain"
    request_error: ClassVar[type[Exception] | None] = ValueError


class _NoCarrier(_Failing):  # request_error left out
    prefix = "errnone"


class _LiteLLMCarrier(_Failing):  # a LiteLLM BadRequestError, as tests/models/test_registry.py names
    prefix = "errlite"
    request_error: ClassVar[type[Exception] | None] = get_litellm().BadRequestError


@pytest.mark.parametrize("handler", [_PlainCarrier, _NoCarrier, _LiteLLMCarrier])
def test_a_model_error_in_process_is_reported_once_with_its_message(handler: type[_Failing]) -> None:
    register_provider(Provider(handler.prefix, handler=handler, in_process=True, free=True), replace=True)
    ledger = Ledger(Budget(model_requests=5))
    with pytest.raises(ModelError) as info:
        Gateway(ledger, retries=3, backoff=0).complete(f"{handler.prefix}/m", MSG, max_tokens=4)
    message = str(info.value)
    assert "engine failed: no such weights" in message
    assert "BadRequestError" in message and "APIConnectionError" not in message
    assert "('engine failed" not in message  # not the tuple of the carrier's arguments
    assert len(ledger.events) == 1  # a bad model is not a network error: not retried
