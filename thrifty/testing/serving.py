"""A real HTTP server for tests: an ASGI app (``thrifty.serve.create_app(...)``, or an application's own)
served by uvicorn on 127.0.0.1 in a thread. Needs the ``serve`` extra (uvicorn)::

    from thrifty.serve import ServeSettings, create_app
    from thrifty.testing.serving import served

    with served(create_app(ServeSettings(token="t"))) as (base, server):
        httpx.get(base + "/runs", headers={"Authorization": "Bearer t"})
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

__all__ = ["served"]


@contextlib.contextmanager
def served(app: Any, log_level: str = "warning", start_timeout: float = 30.0) -> Iterator[tuple[str, Any]]:
    """``app`` on a real uvicorn server on a free port of 127.0.0.1 in a thread: yields its base URL and the
    uvicorn ``Server`` (set ``should_exit`` to stop it as SIGTERM does: connections closed, then the app's
    shutdown). Stops the server on exit; RuntimeError if it has not started within ``start_timeout``
    seconds."""
    import uvicorn

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level=log_level))
    failed: list[BaseException] = []

    def run() -> None:
        try:
            server.run()
        except BaseException as exc:  # uvicorn exits its thread with SystemExit when startup fails
            failed.append(exc)

    thread = threading.Thread(target=run, daemon=True, name="uvicorn-test")
    thread.start()
    deadline = time.monotonic() + start_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            thread.join(10)
            why = f" ({type(failed[0]).__name__}: {failed[0]})" if failed else ""
            raise RuntimeError(f"the test server on 127.0.0.1:{port} did not start{why}")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", server
    finally:
        server.should_exit = True
        thread.join(60)
