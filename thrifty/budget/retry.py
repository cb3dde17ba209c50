"""Retries that the budget pays for: tenacity's schedule, entered only once an attempt has failed.

Every attempt of a model or tool call is reserved and charged by the caller (the function passed in), so
retrying never overspends. Most calls succeed the first time, and tenacity's machinery (a retry state, a
future and an attempt manager per attempt: ~20-30 µs here) is not needed for them: the first attempt runs
directly, and only when it fails with an error worth retrying does tenacity take over. It then sees that
failure as its own attempt 1 (the exception is replayed, not re-run), so the waits, the stop rule and the
``before_sleep`` hook behave exactly as if tenacity had run every attempt.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
    wait_none,
)

T = TypeVar("T")


MAX_RETRY_AFTER = 60.0  # a server asking for a longer wait than this (seconds) is not retried


def _never(exc: BaseException) -> bool:
    return False


def final_failure(exc: BaseException) -> str | None:
    """Why a request can never succeed however often it is sent, or None (a refused or dropped connection,
    a timeout: worth another attempt). Final: a TLS certificate that does not verify, a redirect to a
    malformed URL, response headers too large to read, a request that cannot be sent (a URL that is not
    http:// or https://, a malformed one) and a host name that does not resolve."""
    import httpx  # here: the budget layer imports it only when a request has failed

    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and len(seen) < 8 and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    for cause in seen:
        text = " ".join(str(cause).split())[:300]
        if isinstance(cause, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in text:
            detail = getattr(cause, "verify_message", None) or text
            return f"its TLS certificate does not verify ({detail})"
        if "Invalid URL in location header" in text:
            return (
                f"it redirects to a malformed URL ({text.removeprefix('Invalid URL in location header: ')})"
            )
        if "Receive buffer too long" in text:
            return "its response headers are too large to read"
        if isinstance(cause, httpx.UnsupportedProtocol):
            return f"the URL is not an http:// or https:// URL ({text})"
        if isinstance(cause, httpx.InvalidURL | httpx.LocalProtocolError):
            return f"the request cannot be sent ({text})"
        if isinstance(cause, socket.gaierror):
            return f"the host name does not resolve ({text})"
    return None


def retry_after(exc: BaseException) -> float | None:
    """The wait (seconds) a failure asks for: its own ``retry_after`` attribute (set by a tool or a search
    backend that read it), else the ``Retry-After`` / ``retry-after-ms`` header of the HTTP response it
    carries (LiteLLM's errors, httpx's); None when it says nothing.

    >>> class RateLimited(Exception):
    ...     retry_after = 2.5
    >>> retry_after(RateLimited()), retry_after(ValueError("no response"))
    (2.5, None)
    """
    own = getattr(exc, "retry_after", None)
    if isinstance(own, int | float) and not isinstance(own, bool):
        return max(float(own), 0.0)
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


@dataclass(frozen=True)
class RetryPolicy:
    """Up to ``attempts`` tries while ``retry(exc)`` says the failure is worth another one.

    ``backoff``: the first wait in seconds, doubling after each failure up to ``max_wait`` (0: no wait).
    ``before_sleep``: called before each wait (e.g. to stop when the time budget is spent: whatever it
    raises ends the retries).
    ``wait_hint``: how long the failure itself asks to wait (a 429's ``Retry-After``), or None; the wait
    is at least that long.
    ``before_wait``: like ``before_sleep``, but given the wait about to start (seconds), so that a wait the
    time budget cannot pay for is refused instead of slept through.

    >>> attempts = []
    >>> def flaky() -> str:
    ...     attempts.append(1)
    ...     if len(attempts) < 3:
    ...         raise ConnectionError("try again")
    ...     return "ok"
    >>> RetryPolicy(attempts=3, retry=lambda exc: isinstance(exc, ConnectionError)).call(flaky), len(attempts)
    ('ok', 3)
    """

    attempts: int = 1
    retry: Callable[[BaseException], bool] = _never
    backoff: float = 0.0
    max_wait: float = 0.0
    before_sleep: Callable[[], None] | None = None
    wait_hint: Callable[[BaseException], float | None] | None = None
    before_wait: Callable[[float], None] | None = None

    def _again(self, exc: Exception) -> bool:
        return self.attempts > 1 and self.retry(exc)

    def _tenacity(self) -> dict[str, Any]:
        hook, wait_hook, hint = self.before_sleep, self.before_wait, self.wait_hint
        base = (
            wait_exponential(multiplier=self.backoff, max=self.max_wait) if self.backoff > 0 else wait_none()
        )

        def wait(state: RetryCallState) -> float:
            seconds = float(base(state))
            failure = (
                state.outcome.exception() if state.outcome is not None and state.outcome.failed else None
            )
            if hint is not None and failure is not None:
                seconds = max(seconds, hint(failure) or 0.0)
            return seconds

        def before_sleep(state: RetryCallState) -> None:
            if hook is not None:
                hook()
            if wait_hook is not None:
                wait_hook(state.upcoming_sleep)

        return {
            "stop": stop_after_attempt(self.attempts),
            "retry": retry_if_exception(self.retry),
            "wait": wait,
            "before_sleep": before_sleep,
            "reraise": True,
        }

    def call(self, fn: Callable[[], T]) -> T:
        """``fn()``, retried under this policy; the last failure is raised as is."""
        try:
            return fn()
        except Exception as exc:
            if not self._again(exc):
                raise
            failed: list[Exception] = [exc]

        def attempt() -> T:
            if failed:  # tenacity's attempt 1 is the one that already failed
                raise failed.pop()
            return fn()

        return Retrying(**self._tenacity())(attempt)

    async def acall(self, fn: Callable[[], Awaitable[T]]) -> T:
        """The asyncio twin of :meth:`call` (waits with ``asyncio.sleep``)."""
        try:
            return await fn()
        except Exception as exc:
            if not self._again(exc):
                raise
            failed: list[Exception] = [exc]

        async def attempt() -> T:
            if failed:
                raise failed.pop()
            return await fn()

        return await AsyncRetrying(**self._tenacity())(attempt)
