"""A fault-injecting reverse proxy for an OpenAI-compatible server, for the remote-path integration tests.

It listens on 127.0.0.1 (a free port) and forwards each request to ``upstream`` unless a fault is queued;
then it answers that request with the fault instead (one fault per request, in order)::

    with FaultProxy("http://127.0.0.1:8080") as proxy:
        proxy.queue("429", "500")          # the next two requests fail, the third goes through
        ... point the client at proxy.url ...
        proxy.requests                     # what it received and what it answered

Faults (:data:`FAULTS`):

``429``               rate limited, no ``Retry-After``
``429-retry-after``   rate limited with ``Retry-After: <retry_after>`` (seconds)
``500`` ``502`` ``503``  server errors with a JSON error body (502 with an HTML body, as gateways send)
``hang``              accept the request and never answer (until the client gives up, ``hang_seconds``
                      pass or the proxy stops), then close the connection
``malformed``         200 with ``application/json`` that is not JSON
``truncated``         200 announcing the upstream body's full length, sending half of it, then closing
``no-usage``          the upstream reply (200) with its ``usage`` removed
``echo-key``          401 whose error message repeats the bearer key the client sent (as real providers
                      do with a key they reject)
``echo-key-500``      the same echo in a 500 (a retried error), so the key is in every attempt's error

Everything is standard library; every thread is a daemon and :meth:`close` wakes any hanging handler, so
nothing outlives the test that started it.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

__all__ = ["FAULTS", "FaultProxy", "Received", "free_port"]

FAULTS = (
    "pass",
    "429",
    "429-retry-after",
    "500",
    "502",
    "503",
    "hang",
    "malformed",
    "truncated",
    "no-usage",
    "echo-key",
    "echo-key-500",
)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Received:
    """One request the proxy received, and what it did with it."""

    method: str
    path: str
    authorization: str
    body: dict[str, Any]
    fault: str
    status: int = 0
    upstream: dict[str, Any] | None = field(default=None, repr=False)  # the upstream's JSON reply, if any
    at: float = field(default_factory=time.monotonic)  # when it arrived (time.monotonic)


class _QuietServer(ThreadingHTTPServer):
    """Keeps a handler's failure (a client that hung up mid-answer) off the test output."""

    errors: list[str]

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        self.errors = [*getattr(self, "errors", []), repr(sys.exc_info()[1])]


def _error_body(message: str, kind: str) -> bytes:
    return json.dumps({"error": {"message": message, "type": kind, "code": None}}).encode()


class FaultProxy:
    """A reverse proxy on 127.0.0.1 that injects one queued fault per request (see the module doc)."""

    def __init__(
        self,
        upstream: str,
        *,
        hang_seconds: float = 30.0,
        retry_after: int = 1,
        upstream_timeout: float = 60.0,
    ) -> None:
        parts = urlsplit(upstream)
        self.upstream_host = parts.hostname or "127.0.0.1"
        self.upstream_port = parts.port or 80
        self.hang_seconds = hang_seconds
        self.retry_after = retry_after
        self.upstream_timeout = upstream_timeout
        self.requests: list[Received] = []
        self._faults: deque[str] = deque()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._server = _QuietServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="faultproxy", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------------------------ control
    @property
    def url(self) -> str:
        """The OpenAI-style base URL to give a client (``http://127.0.0.1:<port>/v1``)."""
        return f"http://127.0.0.1:{self.port}/v1"

    def queue(self, *faults: str) -> None:
        """Answer the next requests with these faults, in order (``"pass"`` forwards one untouched)."""
        for fault in faults:
            if fault not in FAULTS:
                raise ValueError(f"unknown fault {fault!r}; known: {', '.join(FAULTS)}")
        with self._lock:
            self._faults.extend(faults)

    def reset(self) -> None:
        """Forget queued faults and received requests."""
        with self._lock:
            self._faults.clear()
            self.requests.clear()

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._faults)

    def close(self) -> None:
        self._stop.set()  # wakes every hanging handler
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------------ serving
    def _next_fault(self) -> str:
        with self._lock:
            return self._faults.popleft() if self._faults else "pass"

    def _record(self, received: Received) -> None:
        with self._lock:
            self.requests.append(received)

    def _forward(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection(
            self.upstream_host, self.upstream_port, timeout=self.upstream_timeout
        )
        try:
            conn.request(method, path, body=body or None, headers=headers)
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return

            def _send(self, status: int, body: bytes, *, ctype: str = "application/json", extra=()) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for name, value in extra:
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)
                self.wfile.flush()

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else {}
                except ValueError:
                    body = {"_raw": raw.decode(errors="replace")}
                auth = self.headers.get("Authorization", "")
                fault = proxy._next_fault() if self.command == "POST" else "pass"
                received = Received(self.command, self.path, auth, body, fault)
                proxy._record(received)
                key = auth.removeprefix("Bearer ").strip()

                if fault in ("429", "429-retry-after"):
                    extra = [("Retry-After", str(proxy.retry_after))] if fault == "429-retry-after" else []
                    received.status = 429
                    self._send(
                        429, _error_body("Rate limit reached, slow down", "rate_limit_error"), extra=extra
                    )
                    return
                if fault in ("500", "503"):
                    received.status = int(fault)
                    self._send(received.status, _error_body(f"upstream error {fault}", "server_error"))
                    return
                if fault == "502":
                    received.status = 502
                    html = b"<html><head><title>502 Bad Gateway</title></head><body>bad gateway</body></html>"
                    self._send(502, html, ctype="text/html")
                    return
                if fault in ("echo-key", "echo-key-500"):
                    received.status = 401 if fault == "echo-key" else 500
                    message = (
                        f"Incorrect API key provided: {key}. You can find your API key at the dashboard."
                    )
                    self._send(received.status, _error_body(message, "invalid_request_error"))
                    return
                if fault == "hang":
                    # Never answer: wait until the client gives up (its socket closes), time passes, or the
                    # proxy stops.
                    deadline = time.monotonic() + proxy.hang_seconds
                    self.connection.settimeout(0.05)
                    while not proxy._stop.is_set() and time.monotonic() < deadline:
                        try:
                            if self.connection.recv(1, socket.MSG_PEEK) == b"":
                                break  # the client closed the connection
                        except (TimeoutError, BlockingIOError):
                            pass
                        except OSError:
                            break
                    self.close_connection = True
                    return
                if fault == "malformed":
                    received.status = 200
                    self._send(200, b'{"id": "chatcmpl-1", "object": "chat.completion", "choices": [{"ind')
                    return

                headers = {"Content-Type": "application/json"}
                if auth:
                    headers["Authorization"] = auth
                try:
                    status, payload = proxy._forward(self.command, self.path, raw, headers)
                except OSError as exc:
                    received.status = 502
                    self._send(502, _error_body(f"fault proxy: upstream unreachable ({exc})", "proxy_error"))
                    return
                received.status = status
                try:
                    received.upstream = json.loads(payload)
                except ValueError:
                    received.upstream = None
                if fault == "truncated":
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload[: len(payload) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                if fault == "no-usage" and isinstance(received.upstream, dict):
                    stripped = {k: v for k, v in received.upstream.items() if k != "usage"}
                    payload = json.dumps(stripped).encode()
                self._send(status, payload)

            def do_POST(self) -> None:
                try:
                    self._handle()
                except (BrokenPipeError, ConnectionResetError):  # the client gave up: nothing to answer
                    self.close_connection = True

            do_GET = do_POST

        return Handler
