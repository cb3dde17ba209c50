"""The answer check (``escalation.answer_check``) of a cheap model served over HTTP by a server that rejects
``response_format={"type": "json_schema"}`` (llama-cpp-python's server answers 500): the check is asked again
in JSON mode with the schema, then without a format, each request charged, and what worked is remembered for
that model and server. Before, the rejected check was taken as "no check", and a wrong answer stood."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from pydantic import BaseModel

from thrifty.agents.context import RunContext
from thrifty.agents.structured import StructuredReply, structured_request
from thrifty.budget import Budget, Ledger, ModelPrice, Pricing
from thrifty.models.gateway import Gateway
from thrifty.models.routing import EscalationPolicy, RoutedGateway, Routing, Trigger, forget_formats
from thrifty.testing import ScriptedModel, reply
from thrifty.tools import ToolRunner

CHEAP = "openai/cheap-http"
MSG = [{"role": "user", "content": "Who was born first, Morgan Llywelyn or Robert Jordan?"}]


class _Server:
    """An OpenAI-compatible server on 127.0.0.1: rejects ``rejects`` response formats with 500, answers a
    request with a response format (or one asking for JSON) with a FAIL verdict, any other with ``answer``."""

    def __init__(self, rejects: set[str], answer: str = "Robert Jordan") -> None:
        self.rejects, self.answer = rejects, answer
        self.formats: list[str | None] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def _send(self, status: int, payload: dict[str, Any]) -> None:
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                kind = (body.get("response_format") or {}).get("type")
                server.formats.append(kind)
                if kind in server.rejects:
                    self._send(
                        500, {"error": {"message": f"{kind} is not supported", "type": "server_error"}}
                    )
                    return
                asks_json = "Reply with JSON only" in json.dumps(body["messages"])
                content = json.dumps({"decision": "FAIL", "reason": "no"}) if asks_json else server.answer
                self._send(
                    200,
                    {
                        "id": "chatcmpl-1",
                        "object": "chat.completion",
                        "created": 0,
                        "model": body["model"],
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": content},
                                "finish_reason": "stop",
                            }
                        ],
                        "usage": {"prompt_tokens": 40, "completion_tokens": 6, "total_tokens": 46},
                    },
                )

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Server]:
    srv = _Server({"json_schema"})
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")
    monkeypatch.setenv("OPENAI_API_BASE", srv.url)  # a cascade names its server with the provider's variable
    forget_formats()
    yield srv
    forget_formats()
    srv.close()


def _gateway(strong: ScriptedModel) -> RoutedGateway:
    routing = Routing(
        models=[CHEAP, strong.model],
        escalation=EscalationPolicy(answer_check=True, resample=0, min_confidence=0.0),
    )
    pricing = Pricing(
        models={
            CHEAP: ModelPrice(input_per_token=1e-7, output_per_token=2e-7),
            strong.model: ModelPrice(input_per_token=1e-5, output_per_token=2e-5),
        }
    )
    gw = RoutedGateway(
        Ledger(Budget(usd=0.05, model_requests=10)), pricing, routing=routing, retries=0, backoff=0
    )
    gw.check_models()
    return gw


def _cascade(cheap: str, strong: str) -> RoutedGateway:
    """A two-model cascade without the answer check: ``cheap`` first, then ``strong``."""
    routing = Routing(models=[cheap, strong], escalation=EscalationPolicy(answer_check=False))
    pricing = Pricing(
        models={
            cheap: ModelPrice(input_per_token=1e-7, output_per_token=2e-7),
            strong: ModelPrice(input_per_token=1e-5, output_per_token=2e-5),
        }
    )
    gw = RoutedGateway(Ledger(Budget(usd=0.05)), pricing, routing=routing, retries=0, backoff=0)
    gw.check_models()
    return gw


def test_a_check_the_server_rejects_as_json_schema_is_asked_in_json_mode(server: _Server) -> None:
    strong = ScriptedModel([reply("Morgan Llywelyn"), reply("Morgan Llywelyn")], name="check-strong")
    gw = _gateway(strong)
    out = gw.complete(gw.entry, MSG, node="act", max_tokens=16)
    # the answer, the check rejected as json_schema, the check in JSON mode (FAIL): the strong model answers
    assert server.formats == [None, "json_schema", "json_object"]
    assert out.model == strong.model and out.content == "Morgan Llywelyn"
    [record] = gw.state.records
    assert record.reason == Trigger.ANSWER_REJECTED and record.to_model == strong.model
    # every request is charged, the rejected one too
    assert [(e.name, e.node) for e in gw.ledger.events] == [
        (CHEAP, "act"),
        (CHEAP, "answer_check"),
        (CHEAP, "answer_check"),
        (strong.model, "act"),
    ]
    # the format that worked is remembered for this model and server: the next check goes straight to it
    gw.complete(gw.entry, MSG, node="act", max_tokens=16)
    assert server.formats[3:] == [None, "json_object"]


def test_a_check_rejected_in_json_mode_too_is_asked_without_a_format(server: _Server) -> None:
    server.rejects = {"json_schema", "json_object"}
    strong = ScriptedModel([reply("Morgan Llywelyn")], name="check-strong-2")
    gw = _gateway(strong)
    out = gw.complete(gw.entry, MSG, node="act", max_tokens=16)
    assert server.formats == [None, "json_schema", "json_object", None]  # the prompt alone asks for JSON
    assert out.model == strong.model
    assert len(gw.ledger.events) == 5  # the answer, three checks, the strong model's answer


def test_the_async_check_steps_down_the_same_way(server: _Server) -> None:
    strong = ScriptedModel([reply("Morgan Llywelyn")], name="check-strong-3")
    gw = _gateway(strong)
    out = asyncio.run(gw.acomplete(gw.entry, MSG, node="act", max_tokens=16))
    assert server.formats == [None, "json_schema", "json_object"]
    assert out.model == strong.model


def test_a_structured_call_escalated_to_a_server_that_rejects_json_schema_steps_down(server: _Server) -> None:
    """A cascade whose first model runs in process and whose next one is served over HTTP: a structured
    call (a plan, a verdict) that escalates is asked again in JSON mode when the server rejects
    ``json_schema``; before, the server's 500 ended the call and the node fell back to its default."""
    cheap = ScriptedModel([], default=RuntimeError("cheap model down"), name="cascade-cheap")
    strong = "openai/strong-http"
    gw = _cascade(cheap.model, strong)
    fmt = {"type": "json_schema", "json_schema": {"name": "plan", "schema": {"type": "object"}}}
    out = gw.complete(gw.entry, MSG, node="plan", max_tokens=16, response_format=fmt)
    assert out.model == strong and server.formats == ["json_schema", "json_object"]
    assert [e.name for e in gw.ledger.events].count(strong) == 2  # the rejected request is charged too
    asyncio.run(gw.acomplete(gw.entry, MSG, node="plan", max_tokens=16, response_format=fmt))
    assert server.formats[2:] == ["json_object"]  # remembered for this model and server


class _Decision(BaseModel):
    decision: str
    reason: str


ASK_JSON = [{"role": "user", "content": "Is Robert Jordan right? Reply with JSON only."}]


def _structured(gw: Gateway, model: str) -> StructuredReply[_Decision]:
    ctx = RunContext(ledger=gw.ledger, gateway=gw, runner=ToolRunner([], gw.ledger), model=model)
    return structured_request(
        ctx, "verdict", _Decision, ASK_JSON, default=_Decision(decision="?", reason=""), node="verify"
    )


def test_a_structured_reply_escalated_in_a_cascade_reports_the_format_that_got_it(server: _Server) -> None:
    """The cascade stepped the strong model down to JSON mode; the reply says so (it said json_schema, the
    format asked for), and the structured call does not step the cascade down a second time."""
    cheap = ScriptedModel([], default=RuntimeError("cheap model down"), name="structured-cheap")
    gw = _cascade(cheap.model, "openai/strong-http")
    out = _structured(gw, gw.entry)
    assert out.ok and out.value.decision == "FAIL", out.label()
    assert out.format == "json_object" and server.formats == ["json_schema", "json_object"]


def test_a_cascade_that_rejects_every_format_is_not_stepped_down_again_by_the_structured_call(
    server: _Server,
) -> None:
    server.rejects = {"json_schema", "json_object", None}
    gw = _cascade(CHEAP, "openai/strong-http")
    out = _structured(gw, gw.entry)
    assert not out.ok and out.error and out.error.startswith("model error"), out.label()
    # JSON mode first (LiteLLM does not know the cheap model's name), then none, once per model of the
    # cascade: 4 requests (the structured call used to step the whole cascade down once more: 6)
    assert server.formats == ["json_object", None] * 2
    assert gw.ledger.spent["model_requests"] == 4


def test_a_structured_call_to_one_server_steps_down_and_reports_json_mode(server: _Server) -> None:
    gw = Gateway(Ledger(Budget(usd=0.05)), retries=0, backoff=0, api_base=server.url)
    out = _structured(gw, "openai/gpt-4o-mini")  # LiteLLM says it takes json_schema; this server does not
    assert out.ok and out.format == "json_object" and server.formats == ["json_schema", "json_object"]
    again = _structured(gw, "openai/gpt-4o-mini")  # remembered: straight to JSON mode
    assert again.ok and again.format == "json_object" and server.formats[2:] == ["json_object"]
