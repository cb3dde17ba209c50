"""A "local web" made from a corpus: each passage a page, a SearXNG-shaped search endpoint over them, served
on 127.0.0.1, so that the real web tools (``web_search`` through ``litellm.search``, ``read_url`` through
httpx and trafilatura) can be benchmarked offline against the in-process BM25 tools, on the same questions.

* ``GET /search?q=...&format=json`` answers like SearXNG: ``{"results": [{"title", "url", "content"}]}``,
  ranked by the same BM25 index the in-process ``search`` tool uses (``content`` is the same snippet).
* ``GET /wiki/<title>`` is the passage as an HTML page (a header, navigation and footer around the text,
  so that main-text extraction has boilerplate to remove, as on a real site).

Use it as a context manager (``with LocalWeb(corpus) as web: web.search_base``) or from ``agent bench
hotpotqa --web`` and ``examples/webqa.py``.
"""

from __future__ import annotations

import html
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from thrifty.tools import Corpus, Tool
from thrifty.tools.search import BM25Index

__all__ = ["LocalWeb", "web_tools"]

_RESULTS = 10
_SNIPPET = 300


def _snippet(text: str) -> str:
    text = " ".join(text.split())
    if len(text) <= _SNIPPET:
        return text
    cut = text[:_SNIPPET]
    return cut[: cut.rfind(" ")].rstrip(" ,;:") + " ..." if " " in cut else cut


def _page(title: str, text: str) -> str:
    t = html.escape(title)
    paragraphs = "".join(f"<p>{html.escape(p)}</p>" for p in text.split("\n") if p.strip())
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{t}</title></head><body>"
        "<header><a href='/'>Local Wiki</a> | <a href='/random'>Random page</a> | Log in</header>"
        f"<nav><ul><li>Main page</li><li>Contents</li><li>About</li></ul></nav>"
        f"<main><article><h1>{t}</h1>{paragraphs}</article></main>"
        "<footer>This page is served by thrifty's local web for benchmarks. Privacy policy. Terms.</footer>"
        "</body></html>"
    )


class LocalWeb:
    """The corpus served over HTTP on 127.0.0.1 (an ephemeral port unless ``port`` is given)."""

    def __init__(self, corpus: Corpus, *, port: int = 0) -> None:
        self.corpus = corpus
        self.index = BM25Index.for_corpus(corpus)
        web = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                status, ctype, body = web.answer(self.path)
                data = body.encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", f"{ctype}; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self.base = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="thrifty-localweb", daemon=True
        )
        self._started = False

    @property
    def search_base(self) -> str:
        """The SearXNG base URL (``api_bases: {searxng: ...}``)."""
        return self.base

    def page_url(self, title: str) -> str:
        return f"{self.base}/wiki/{quote(title, safe='')}"

    def answer(self, path: str) -> tuple[int, str, str]:
        parts = urlsplit(path)
        if parts.path == "/search":
            query = (parse_qs(parts.query).get("q") or [""])[0]
            hits = self.index.search(query, _RESULTS) if query.strip() else []
            results = [
                {"title": p.title, "url": self.page_url(p.title), "content": _snippet(p.text)}
                for p, _ in hits
            ]
            return 200, "application/json", json.dumps({"query": query, "results": results})
        if parts.path.startswith("/wiki/"):
            title = unquote(parts.path.removeprefix("/wiki/"))
            text = self.corpus.text_of(title)
            if text is not None:
                return 200, "text/html", _page(title, text)
        return 404, "text/html", "<html><body><h1>Not found</h1></body></html>"

    def start(self) -> LocalWeb:
        if not self._started:
            self._thread.start()
            self._started = True
        return self

    def close(self) -> None:
        if self._started:
            self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> LocalWeb:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def web_tools(web: LocalWeb, *, k: int = 3, price: float | None = 0.001) -> list[Tool]:
    """``web_search`` (SearXNG provider, through LiteLLM) and ``read_url`` pointed at ``web``; priced like
    the in-process search/read ($0.001 a call) so that the two paths are compared on the same budgets."""
    from thrifty.models.search import LiteLLMSearch
    from thrifty.tools.web import make_read_url
    from thrifty.tools.web_search import make_web_search

    search = make_web_search(
        LiteLLMSearch(), "searxng", k=k, api_bases={"searxng": web.search_base}, price=price, retries=1
    )
    return [search, make_read_url(allow_hosts=["127.0.0.1"], price=price, retries=1)]
