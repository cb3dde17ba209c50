"""A small HTTP server on 127.0.0.1 for the web tool tests: each route is a function of the request.

A route returns ``(status, headers, body)``; ``body`` may be bytes or an iterator of bytes (sent as it
comes, for slow or endless pages). ``hits`` counts requests per path.
"""

from __future__ import annotations

import ssl
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

Reply = tuple[int, dict[str, str], bytes | Iterable[bytes]]
Route = Callable[["Request"], Reply]


class Request:
    def __init__(self, method: str, path: str, headers: dict[str, str], body: bytes) -> None:
        parts = urlsplit(path)
        self.method = method
        self.path = parts.path
        self.query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        self.headers = headers
        self.body = body


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up, or refuses the TLS certificate after the server's side of the handshake
        (the tests that check it is refused), is expected: not an error of the server."""
        error = sys.exc_info()[1]
        if isinstance(error, ssl.SSLError | ConnectionError):
            return
        super().handle_error(request, client_address)


class WebServer:
    """Serves ``routes`` on 127.0.0.1 (a free port); with ``tls`` (a server-side SSL context) over HTTPS."""

    def __init__(self, routes: dict[str, Route], *, tls: ssl.SSLContext | None = None) -> None:
        self.routes = routes
        self.hits: Counter[str] = Counter()
        self.requests: list[Request] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                request = Request(
                    self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body
                )
                server.hits[request.path] += 1
                server.requests.append(request)
                route = server.routes.get(request.path)
                status, headers, payload = (
                    route(request) if route else (404, {"Content-Type": "text/plain"}, b"not found")
                )
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                if isinstance(payload, bytes):
                    self.send_header("Content-Length", str(len(payload)))
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                self.send_header("Connection", "close")
                self.end_headers()
                try:
                    for chunk in payload:
                        self.wfile.write(chunk)
                        self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    pass
                self.close_connection = True

            do_GET = _serve
            do_POST = _serve

        self.httpd = _Server(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.base = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> WebServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def url(self, path: str) -> str:
        return f"{self.base}{path}"


def html(body: str, status: int = 200, **headers: str) -> Reply:
    return status, {"Content-Type": "text/html; charset=utf-8", **headers}, body.encode()


def drip(chunk: bytes, every: float, count: int) -> Iterator[bytes]:
    """A body sent one chunk every ``every`` seconds (a slow page)."""
    for _ in range(count):
        yield chunk
        time.sleep(every)
