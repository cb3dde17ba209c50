"""read_url and web_search against local hostile servers (127.0.0.1): failures that can never succeed are
final (one charge, a message saying what is wrong), pages declaring their charset in a <meta> or as UTF-16
are decoded, and Python API arguments given as a str where a list belongs are refused with the fix."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import trustme

from tests.tools.webserver import WebServer, html
from thrifty.budget import Budget, Ledger
from thrifty.models.search import LiteLLMSearch
from thrifty.tools import Observation, ToolRunner
from thrifty.tools.mcp import MCPServerConfig
from thrifty.tools.web import make_read_url
from thrifty.tools.web_search import make_web_search

LATIN1 = "<html><head>{meta}</head><body><p>Caf\xe9 cr\xe8me br\xfbl\xe9e is a dessert served widely.</p></body></html>"
UTF16 = "<html><body><p>Hello world, a paragraph of text long enough to be the main text.</p></body></html>"


def _reply(path: str) -> bytes:
    def ok(body: bytes, content_type: str) -> bytes:
        head = f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
        return head.encode() + body

    if path.startswith("/redir_badv6"):
        return b"HTTP/1.1 302 Found\r\nLocation: http://[::1\r\nContent-Length: 0\r\n\r\n"
    if path.startswith("/redir_ctrl"):
        return b"HTTP/1.1 302 Found\r\nLocation: http://exa mple.com/\x01\r\nContent-Length: 0\r\n\r\n"
    if path.startswith("/utf16"):
        return ok(UTF16.encode("utf-16"), "text/html; charset=utf-16")
    if path.startswith("/latin1_equiv"):
        meta = '<meta http-equiv="Content-Type" content="text/html; charset=iso-8859-1">'
        return ok(LATIN1.format(meta=meta).encode("latin-1"), "text/html")
    if path.startswith("/latin1"):
        return ok(LATIN1.format(meta="<meta charset=iso-8859-1>").encode("latin-1"), "text/html")
    return b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 1_000_000 + b"\r\nContent-Length: 2\r\n\r\nhi"  # /bigheader


def _handle(conn: socket.socket) -> None:
    with conn:
        try:
            data = b""
            while b"\r\n\r\n" not in data:
                got = conn.recv(4096)
                if not got:
                    return
                data += got
            path = data.split(b"\r\n")[0].decode().split(" ")[1]
            conn.sendall(_reply(path))
        except OSError:
            pass


@pytest.fixture(scope="module")
def raw_server() -> Iterator[str]:
    """A server that writes raw HTTP (malformed Location headers, a 1 MB header), one thread a connection."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(20)
    port = listener.getsockname()[1]

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=_handle, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        listener.close()


def _read(url: str) -> Observation:
    tool = make_read_url(allow_private=True, timeout=10.0)  # retries=1: a retried failure is 2 attempts
    with ToolRunner([tool], Ledger(Budget())) as runner:
        return runner.run("read_url", {"url": url})


@pytest.fixture(scope="module")
def untrusted_tls() -> ssl.SSLContext:
    """A server context whose certificate is issued by a CA the client does not trust."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    trustme.CA().issue_cert("127.0.0.1").configure_cert(context)
    return context


def test_a_certificate_that_does_not_verify_is_final(untrusted_tls: ssl.SSLContext) -> None:
    with WebServer({"/": lambda _r: html("<p>hello</p>")}, tls=untrusted_tls) as srv:
        obs = _read(srv.url("/"))
    assert not obs.ok and obs.attempts == 1
    assert "cannot be read: its TLS certificate does not verify" in obs.content
    assert "Unreachable" not in obs.content


@pytest.mark.parametrize("path", ["/redir_badv6", "/redir_ctrl"])
def test_a_malformed_redirect_is_final(raw_server: str, path: str) -> None:
    obs = _read(raw_server + path)
    assert not obs.ok and obs.attempts == 1
    assert f"{raw_server}{path} cannot be read: it redirects to a malformed URL" in obs.content
    assert "Unreachable" not in obs.content


def test_response_headers_too_large_are_final(raw_server: str) -> None:
    obs = _read(raw_server + "/bigheader")
    assert not obs.ok and obs.attempts == 1
    assert "cannot be read: its response headers are too large to read" in obs.content


def _search(**options: Any) -> Observation:
    tool = make_web_search(LiteLLMSearch(), **options)  # retries=2: a retried failure is 3 attempts
    with ToolRunner([tool], Ledger(Budget())) as runner:
        return runner.run("web_search", {"query": "thrifty"})


def test_search_failures_that_cannot_pass_are_final(raw_server: str, untrusted_tls: ssl.SSLContext) -> None:
    with WebServer({"/search": lambda _r: html("{}")}, tls=untrusted_tls) as srv:
        tls = _search(provider="searxng", api_bases={"searxng": srv.url("/")}, timeout=10.0)
    assert not tls.ok and tls.attempts == 1
    assert "searxng: its TLS certificate does not verify" in tls.content
    big = _search(provider="searxng", api_bases={"searxng": raw_server + "/bigheader"}, timeout=10.0)
    assert not big.ok and big.attempts == 1
    assert "searxng: its response headers are too large to read" in big.content


def test_a_default_providers_host_that_does_not_resolve_is_final(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_dns(*_args: object, **_kwargs: object) -> Any:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)  # offline: the provider's host is never reached
    obs = _search(timeout=10.0)
    assert not obs.ok and obs.attempts == 1
    assert "duckduckgo: the host name does not resolve" in obs.content


@pytest.mark.parametrize("base", ["ftp://127.0.0.1/", "localhost:8080"])
def test_an_api_base_that_is_not_http_is_refused_at_once(base: str) -> None:
    with pytest.raises(ValueError, match=r"api_bases\.searxng is .*not an http:// or https:// URL \(fix: "):
        make_web_search(LiteLLMSearch(), "searxng", api_bases={"searxng": base})
    with pytest.raises(TypeError, match=r"api_bases\.searxng is the int 5, not a URL \(fix: "):
        not_a_url: Any = {"searxng": 5}
        make_web_search(LiteLLMSearch(), "searxng", api_bases=not_a_url)


@pytest.mark.parametrize("path", ["/latin1", "/latin1_equiv"])
def test_a_meta_charset_is_honoured(raw_server: str, path: str) -> None:
    obs = _read(raw_server + path)
    assert obs.ok, obs.content
    assert "Caf\xe9 cr\xe8me br\xfbl\xe9e" in obs.content and "\ufffd" not in obs.content


def test_a_declared_utf16_page_is_read(raw_server: str) -> None:
    obs = _read(raw_server + "/utf16")
    assert obs.ok, obs.content
    assert "Hello world, a paragraph of text" in obs.content


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (
            lambda: MCPServerConfig("calc", command=["python"], tools="add"),  # type: ignore[arg-type]
            TypeError,
            r"MCP server 'calc': tools must be a list .* \(fix: tools=\['add'\]\)",
        ),
        (
            lambda: make_read_url(allow_hosts="127.0.0.1"),  # type: ignore[arg-type]
            TypeError,
            r"read_url: allow_hosts must be a list .* \(fix: allow_hosts=\['127.0.0.1'\]\)",
        ),
    ],
)
def test_a_str_where_a_list_belongs_is_refused(
    make: Callable[[], object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        make()


def test_a_str_command_is_split_like_a_task_files() -> None:
    config = MCPServerConfig("calc", command="python 'my server.py' --flag")  # type: ignore[arg-type]
    assert tuple(config.command) == ("python", "my server.py", "--flag")


def test_web_search_fallbacks_and_timeout_are_checked() -> None:
    from thrifty.models.search import LiteLLMSearch
    from thrifty.tools.web_search import make_web_search

    with pytest.raises(TypeError, match=r"fix: fallbacks=\['tavily'\]"):
        make_web_search(LiteLLMSearch(), "duckduckgo", fallbacks="tavily")
    for bad in (-1, 0, float("nan")):
        with pytest.raises(ValueError, match="timeout must be a positive number of seconds"):
            make_web_search(LiteLLMSearch(), "duckduckgo", timeout=bad)
