"""thrifty.testing.serving.served: a real uvicorn server on loopback for an application's tests."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from thrifty.testing.serving import served

pytest.importorskip("uvicorn")


async def hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"hello " + scope["path"].encode()})


async def broken_startup(scope: dict[str, Any], receive: Any, send: Any) -> None:
    assert scope["type"] == "lifespan"
    await receive()
    await send({"type": "lifespan.startup.failed", "message": "no database"})


def test_serves_the_app_on_loopback_and_stops_it_on_exit() -> None:
    with served(hello) as (base, server):
        assert base.startswith("http://127.0.0.1:")
        assert httpx.get(base + "/x", timeout=10).text == "hello /x"
    assert server.should_exit
    with pytest.raises(httpx.ConnectError):
        httpx.get(base + "/x", timeout=2)


def test_an_app_that_cannot_start_is_an_error_not_a_hang() -> None:
    with pytest.raises(RuntimeError, match="did not start"), served(broken_startup, start_timeout=20):
        pass
