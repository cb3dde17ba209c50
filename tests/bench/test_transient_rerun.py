"""A grid run during a model outage can be completed by rerunning it: a run that failed on a transient model
error (connection refused, a timeout, a 5xx, a rate limit) runs again on resume, its new line counting in
place of the failed one; a run that failed deterministically (a bad request) stays a result and is skipped."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from thrifty.bench.datasets import load_dataset
from thrifty.bench.runner import (
    BenchConfig,
    load_results,
    make_pricing,
    parse_strategies,
    run_grid,
    transient_failure,
)
from thrifty.cli import app
from thrifty.models._litellm import get_litellm
from thrifty.models.scripted import ScriptedReply, ScriptedRequest
from thrifty.testing import ScriptedModel, reply

MODEL = "openai/outage-test"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Chat(BaseHTTPRequestHandler):
    """A minimal OpenAI chat-completions server: every call answers 'Lyonsford'."""

    requests = 0

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).requests += 1
        body = {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 0,
            "model": "outage-test",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "Lyonsford"},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 20, "completion_tokens": 3, "total_tokens": 23},
        }
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


class _Server:
    """The model's server on ``port``: down until :meth:`start`."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.httpd: ThreadingHTTPServer | None = None

    def start(self) -> None:
        _Chat.requests = 0
        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), _Chat)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()


@pytest.fixture
def outage(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Server]:
    """An OpenAI-compatible model at 127.0.0.1 whose server is not running yet (connection refused)."""
    port = _free_port()
    monkeypatch.setenv("OPENAI_API_BASE", f"http://127.0.0.1:{port}/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-key")
    server = _Server(port)
    yield server
    server.stop()


def _config(hotpot_file: Path, model: str) -> BenchConfig:
    return BenchConfig(
        dataset=load_dataset(hotpot_file).head(2),
        strategies=parse_strategies("react"),
        budgets=[3],
        model=model,
        pricing=make_pricing(model, price_in=1.0, price_out=1.0),
    )


def _key(r: dict[str, Any]) -> tuple[Any, ...]:
    return (r["strategy"], r["budget"], r["question_id"], r["seed"])


def test_runs_that_met_a_refused_connection_run_again_on_resume(
    hotpot_file: Path, tmp_path: Path, outage: _Server
) -> None:
    path = tmp_path / "results.jsonl"
    first = run_grid(_config(hotpot_file, MODEL), path, progress=False)
    assert len(first) == 2 and all(r["stop_reason"] == "error" for r in first)
    assert all(f"model '{MODEL}' failed: " in r["error"] and transient_failure(r) for r in first)

    outage.start()  # the server is back: the rerun runs the failed questions again
    second = run_grid(_config(hotpot_file, MODEL), path, progress=False)
    assert _Chat.requests >= 2
    assert sorted(map(_key, second)) == sorted(map(_key, first))  # each question once, the newest wins
    assert all(r["stop_reason"] == "completed" and r["error"] is None for r in second)
    assert [r["answer"] for r in second] == ["Lyonsford", "Lyonsford"]
    assert len(path.read_text().splitlines()) == 4  # the failed lines stay, superseded
    assert load_results(path) == second
    asked = _Chat.requests
    assert run_grid(_config(hotpot_file, MODEL), path, progress=False) == second  # all done: nothing runs
    assert _Chat.requests == asked


def test_the_report_counts_a_rerun_question_once(hotpot_file: Path, tmp_path: Path, outage: _Server) -> None:
    out = tmp_path / "out"
    args = [
        "bench",
        "hotpotqa",
        "--data",
        str(hotpot_file),
        "--limit",
        "1",
        "--model",
        MODEL,
        "--strategies",
        "react",
    ]
    args += ["--budgets", "3", "--price-in", "1", "--price-out", "1", "--no-plot", "-q", "--out", str(out)]
    cli = CliRunner()
    res = cli.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "1 (1 err)" in res.output
    assert "| react | 3 | 1 (1 err) |" in (out / "summary.md").read_text()
    outage.start()
    res = cli.invoke(app, args)  # the rerun runs the failed question again: one run, no error
    assert res.exit_code == 0, res.output
    assert _Chat.requests >= 1 and "err" not in res.output
    assert "| react | 3 | 1 | 1.000 " in (out / "summary.md").read_text()


def _failing(errors: dict[str, BaseException]) -> Any:
    """A scripted model that raises ``errors[question]`` while it is in the dict, else answers."""

    def step(request: ScriptedRequest) -> ScriptedReply:
        text = json.dumps(request.messages)
        for question, exc in errors.items():
            if question in text:
                raise exc
        return reply("Lyonsford")

    return step


def test_a_transient_error_reruns_but_a_bad_request_is_kept(hotpot_file: Path, tmp_path: Path) -> None:
    litellm = get_litellm()
    items = load_dataset(hotpot_file).items
    errors: dict[str, BaseException] = {
        items[0].question: litellm.RateLimitError("slow down", llm_provider="scripted", model="m"),
        items[1].question: litellm.BadRequestError("bad request", llm_provider="scripted", model="m"),
    }
    script = ScriptedModel(default=_failing(errors))
    path = tmp_path / "results.jsonl"
    first = {r["question_id"]: r for r in run_grid(_config(hotpot_file, script.model), path, progress=False)}
    assert "RateLimitError" in first[items[0].id]["error"] and transient_failure(first[items[0].id])
    assert "BadRequestError" in first[items[1].id]["error"] and not transient_failure(first[items[1].id])

    errors.clear()  # both would succeed now: only the transient failure is run again
    calls = len(script.requests)
    second = {r["question_id"]: r for r in run_grid(_config(hotpot_file, script.model), path, progress=False)}
    assert len(script.requests) == calls + 1
    assert second[items[0].id]["stop_reason"] == "completed" and second[items[0].id]["answer"] == "Lyonsford"
    assert second[items[1].id] == first[items[1].id]  # a deterministic failure is a result: skipped


@pytest.mark.parametrize(
    ("error", "stop", "transient"),
    [
        ("model 'openai/x' failed: APIConnectionError: litellm.APIConnectionError: refused", "error", True),
        ("ModelError: model 'openai/x' failed: InternalServerError: Connection error.", "error", True),
        ("model 'openai/x' failed: Timeout: litellm.Timeout: timed out", "error", True),
        ("model 'openai/x' failed: ServiceUnavailableError: 503", "error", True),
        ("model 'openai/x' failed: RateLimitError: 429", "error", True),
        ("model 'openai/x' failed: BadRequestError: context too long", "error", False),
        ("model 'openai/x' failed: AuthenticationError: bad key", "error", False),
        # an in-process model's APIConnectionError wraps an error inside it, not the network
        (
            "model 'local/smollm2' failed: APIConnectionError: litellm.APIConnectionError: boom",
            "error",
            False,
        ),
        ("model 'openai/x' failed: RateLimitError: 429", "completed", False),
        ("ValueError: the strategy broke", "error", False),
        (None, "error", False),
    ],
)
def test_which_failures_are_transient(error: str | None, stop: str, transient: bool) -> None:
    assert transient_failure({"stop_reason": stop, "error": error}) is transient
