"""LiteLLM's remote path over real HTTP: a llama-cpp-python server (the embedded SmolLM2) on 127.0.0.1, behind
a fault-injecting proxy (tests/models/faultproxy.py), called as ``openai/smollm2`` with ``api_base``.

What is checked, through the real Gateway, an Agent and ``agent run``, with a fake ``OPENAI_API_KEY``:

* a clean call settles exactly the usage the server reported, after reserving the worst case;
* 429 / 5xx are retried, every attempt is charged as a request, ``attempts`` counts them, a request limit
  smaller than the attempts needed stops the call without crossing it, and ``Retry-After`` is honoured
  only while the time budget can pay for the wait;
* a server that hangs is given up when the seconds budget runs out (the request's timeout is the time left);
* a body that is not JSON, a truncated body and a body without usage end typed (ModelError) or are charged
  the reserved worst case, never a traceback;
* the key never appears in an error, an event, the RunResult JSON, the trace or the run store;
* in every test, what was spent stays within every limit, and the proxy saw exactly as many requests as
  the ledger charged.

The server runs once per module (one thread, small context, completions of at most 8 tokens).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("llama_cpp")

from thrifty import Agent, Budget
from thrifty.budget import BudgetExceeded, Ledger, ModelPrice, Pricing
from thrifty.models import Gateway, ModelError
from thrifty.models.gateway import UsageRatios

from .faultproxy import FaultProxy, free_port

pytestmark = pytest.mark.local_model

MODEL = "openai/smollm2"
KEY = "sk-test-thrifty0remote0KEY0123456789abcdef"
MSG = [{"role": "user", "content": "Say hi."}]
PRICE = ModelPrice(input_per_token=1e-6, output_per_token=2e-6)
PRICING = Pricing(models={MODEL: PRICE})
SERVER_DEPS = ("fastapi", "uvicorn", "sse_starlette", "starlette_context", "pydantic_settings")


# ------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """llama-cpp-python's OpenAI-compatible server on a free loopback port, with the embedded model."""
    missing = [m for m in SERVER_DEPS if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"llama_cpp.server needs {', '.join(missing)} (the `dev` extra installs them)")
    from thrifty.models.local import resolve_model_path

    try:
        model_path = resolve_model_path("smollm2")
    except ImportError as exc:
        pytest.skip(str(exc))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [
        sys.executable, "-m", "llama_cpp.server",
        "--model", str(model_path), "--model_alias", "smollm2",
        "--host", "127.0.0.1", "--port", str(port),
        "--n_ctx", "1024", "--n_threads", "1", "--n_threads_batch", "1", "--verbose", "False",
    ]  # fmt: skip
    # Loopback traffic must never go through an HTTP proxy the environment may name (httpx and urllib
    # honour HTTP_PROXY unless NO_PROXY lists the host).
    # The server's log goes to a file (a pipe nobody reads could fill and stall it), read back on failure.
    with pytest.MonkeyPatch.context() as env, tempfile.TemporaryFile() as log:
        for name in ("NO_PROXY", "no_proxy"):
            env.setenv(name, "127.0.0.1,localhost,::1")
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

        def fail(why: str) -> None:
            log.seek(0)
            pytest.fail(f"llama_cpp.server {why}:\n{log.read().decode(errors='replace')[-2000:]}")

        try:
            deadline = time.monotonic() + 60
            while True:
                if proc.poll() is not None:
                    fail(f"exited with {proc.returncode}")
                try:
                    urllib.request.urlopen(f"{base}/v1/models", timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        fail("did not answer within 60 s")
                    time.sleep(0.1)
            # The first completion warms the model up (seconds on CPU); keep that out of the timed tests.
            warm = json.dumps({"model": "smollm2", "messages": MSG, "max_tokens": 1}).encode()
            request = urllib.request.Request(
                f"{base}/v1/chat/completions", data=warm, headers={"Content-Type": "application/json"}
            )
            urllib.request.urlopen(request, timeout=60).close()
            yield base
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


@pytest.fixture(scope="module")
def proxy(server: str) -> Iterator[FaultProxy]:
    with FaultProxy(server, hang_seconds=20) as p:
        yield p


@pytest.fixture(autouse=True)
def fresh(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A fake key in the environment, and for tests that use the proxy: no fault left over, none unused."""
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    if "proxy" not in request.fixturenames:
        yield
        return
    p: FaultProxy = request.getfixturevalue("proxy")
    p.reset()
    p.retry_after = 1
    yield
    assert p.pending == 0, "a queued fault was never served"


def gateway(
    ledger: Ledger,
    proxy: FaultProxy,
    *,
    retries: int = 0,
    backoff: float = 0.0,
    ratios: UsageRatios | None = None,
) -> Gateway:
    return Gateway(ledger, PRICING, retries=retries, backoff=backoff, api_base=proxy.url, ratios=ratios)


def spy_reservations(ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, float]]:
    held: list[dict[str, float]] = []
    reserve = ledger.reserve

    def spy(amounts: Any, **kwargs: Any) -> Any:
        held.append(dict(amounts))
        return reserve(amounts, **kwargs)

    monkeypatch.setattr(ledger, "reserve", spy)
    return held


def assert_within_limits(ledger: Ledger, proxy: FaultProxy | None = None, seconds_slack: float = 0.5) -> None:
    """Every limit holds, nothing is left reserved, and each request the proxy saw was charged."""
    for dim, limit in ledger.limits.items():
        if dim == "seconds":
            assert ledger.elapsed() <= limit + seconds_slack, (dim, ledger.elapsed(), limit)
        else:
            assert ledger.spent[dim] <= limit + 1e-9, (dim, ledger.spent[dim], limit)
    assert all(v == pytest.approx(0, abs=1e-9) for v in ledger.reserved.values()), ledger.reserved
    if proxy is not None:
        posts = [r for r in proxy.requests if r.method == "POST"]
        assert ledger.spent["model_requests"] == len(posts)
        assert all(r.authorization == f"Bearer {KEY}" for r in posts)  # the key did reach the server


def result_within_limits(result: Any, seconds_slack: float = 0.5) -> None:
    """What a RunResult reports spent is within every limit of its budget."""
    assert result.budget
    for dim, limit in result.budget.items():
        used = getattr(result.usage, dim)
        assert used <= limit + (seconds_slack if dim == "seconds" else 1e-9), (dim, used, limit)


def no_key(*texts: str) -> None:
    for text in texts:
        assert KEY not in text
        assert KEY[8:24] not in text  # not even a slice of it


# ----------------------------------------------------------------------------------------- clean call
def test_a_clean_call_settles_exactly_what_the_server_reported(
    proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = Ledger(Budget(usd=0.01, model_requests=2))
    held = spy_reservations(ledger, monkeypatch)
    # A first call: no token ratio learned yet (other tests in the process may have called this model).
    gw = gateway(ledger, proxy, ratios=UsageRatios())
    counted = gw.count_prompt_tokens(MODEL, MSG, None)
    out = gw.complete(MODEL, MSG, max_tokens=6, temperature=0)

    [sent] = proxy.requests
    assert sent.path == "/v1/chat/completions" and sent.body["model"] == "smollm2"
    assert sent.body["max_tokens"] == 6
    reported = sent.upstream["usage"]
    assert out.usage.prompt_tokens == reported["prompt_tokens"]
    assert out.usage.completion_tokens == reported["completion_tokens"] <= 6
    assert out.content and out.attempts == 1
    # Reserved: the worst case (the counted prompt, the whole cap, one request, its price) ...
    assert held == [
        {
            "input_tokens": counted,
            "output_tokens": 6,
            "total_tokens": counted + 6,
            "model_requests": 1,
            "usd": pytest.approx(counted * 1e-6 + 6 * 2e-6),
        }
    ]
    # ... settled: what the server reported, priced.
    usd = reported["prompt_tokens"] * 1e-6 + reported["completion_tokens"] * 2e-6
    assert out.usd == pytest.approx(usd) and ledger.spent["usd"] == pytest.approx(usd)
    assert ledger.spent["input_tokens"] == reported["prompt_tokens"]
    assert ledger.spent["output_tokens"] == reported["completion_tokens"]
    [event] = ledger.events
    assert event.ok and event.units["model_requests"] == 1
    assert_within_limits(ledger, proxy)


# ------------------------------------------------------------------------------ 429 / 5xx and retries
def test_429_and_5xx_are_retried_and_every_attempt_is_charged(proxy: FaultProxy) -> None:
    proxy.queue("429", "500", "502", "503")
    ledger = Ledger(Budget(usd=0.01, model_requests=5, seconds=30))
    out = gateway(ledger, proxy, retries=4).complete(MODEL, MSG, max_tokens=4, temperature=0)

    assert out.attempts == 5 and out.content
    assert [r.status for r in proxy.requests] == [429, 500, 502, 503, 200]
    failed = [e for e in ledger.events if not e.ok]
    assert len(failed) == 4
    names = ["RateLimitError", "InternalServerError", "BadGateway", "ServiceUnavailable"]
    for event, name in zip(failed, names, strict=True):
        assert event.units == {"model_requests": 1.0} and event.usd == 0  # the server did no work
        assert name in event.detail
    assert ledger.spent["model_requests"] == 5
    assert ledger.spent["output_tokens"] == out.usage.completion_tokens  # only the answer's tokens
    assert_within_limits(ledger, proxy)


def test_a_request_limit_smaller_than_the_attempts_needed_stops_without_crossing_it(
    proxy: FaultProxy,
) -> None:
    proxy.queue("503", "503")
    ledger = Ledger(Budget(model_requests=2))
    with pytest.raises(BudgetExceeded) as info:
        gateway(ledger, proxy, retries=5).complete(MODEL, MSG, max_tokens=4, temperature=0)
    assert info.value.dimension == "model_requests"
    assert len(proxy.requests) == 2 and ledger.spent["model_requests"] == 2
    assert_within_limits(ledger, proxy)


def test_retries_exhausted_is_a_typed_model_error(proxy: FaultProxy) -> None:
    proxy.queue("500", "500", "500")
    ledger = Ledger(Budget(model_requests=10))
    with pytest.raises(ModelError, match="InternalServerError"):
        gateway(ledger, proxy, retries=2).complete(MODEL, MSG, max_tokens=4)
    assert ledger.spent["model_requests"] == 3
    assert_within_limits(ledger, proxy)


def test_retry_after_is_honoured_while_the_time_budget_can_pay_for_it(proxy: FaultProxy) -> None:
    proxy.queue("429-retry-after")
    ledger = Ledger(Budget(seconds=20, model_requests=3))
    out = gateway(ledger, proxy, retries=2).complete(MODEL, MSG, max_tokens=2, temperature=0)
    first, second = proxy.requests
    assert out.attempts == 2
    assert second.at - first.at >= 1.0  # waited the server's Retry-After, not the (zero) backoff
    assert_within_limits(ledger, proxy)


def test_a_retry_after_longer_than_the_time_left_is_not_slept_through(proxy: FaultProxy) -> None:
    proxy.retry_after = 5
    proxy.queue("429-retry-after")
    ledger = Ledger(Budget(seconds=2, model_requests=3))
    started = time.monotonic()
    with pytest.raises(BudgetExceeded) as info:
        gateway(ledger, proxy, retries=2).complete(MODEL, MSG, max_tokens=2)
    assert info.value.dimension == "seconds"
    assert time.monotonic() - started < 1.0  # refused at once, not after sleeping
    assert len(proxy.requests) == 1
    assert_within_limits(ledger, proxy)


def test_a_retry_after_of_an_hour_is_not_retried(proxy: FaultProxy) -> None:
    proxy.retry_after = 3600
    proxy.queue("429-retry-after")
    ledger = Ledger(Budget(model_requests=3))  # no time limit: the wait itself would be the problem
    with pytest.raises(ModelError, match="RateLimitError"):
        gateway(ledger, proxy, retries=2).complete(MODEL, MSG, max_tokens=2)
    assert len(proxy.requests) == 1
    assert_within_limits(ledger, proxy)


# -------------------------------------------------------------------------------------------- timeout
def test_a_server_that_hangs_is_given_up_when_the_seconds_budget_is_spent(proxy: FaultProxy) -> None:
    proxy.queue("hang")
    ledger = Ledger(Budget(seconds=1.0, model_requests=5))
    started = time.monotonic()
    with pytest.raises(BudgetExceeded) as info:  # a typed stop: the time ran out, not the server
        gateway(ledger, proxy, retries=3).complete(MODEL, MSG, max_tokens=4)
    waited = time.monotonic() - started
    assert info.value.dimension == "seconds"
    assert 0.9 <= waited < 1.5, waited  # the request's timeout was the time left
    assert len(proxy.requests) == 1  # no retry once the time is spent
    [event] = ledger.events
    assert not event.ok and "Timeout" in event.detail and event.units["model_requests"] == 1
    assert_within_limits(ledger, proxy)


# ------------------------------------------------------------------------- bodies that cannot be read
@pytest.mark.parametrize("fault", ["malformed", "truncated"])
def test_an_unreadable_reply_is_a_typed_error_charged_the_worst_case(
    proxy: FaultProxy, fault: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy.queue(fault, fault)
    ledger = Ledger(Budget(usd=0.01, model_requests=4, output_tokens=100))
    held = spy_reservations(ledger, monkeypatch)
    with pytest.raises(ModelError, match="InternalServerError"):
        gateway(ledger, proxy, retries=1).complete(MODEL, MSG, max_tokens=4)
    assert len(proxy.requests) == 2 and len(held) == 2
    for event, reserved in zip(ledger.events, held, strict=True):
        # The server may have done (and billed) the work: charged what the attempt reserved.
        assert not event.ok and "reply lost" in event.detail
        assert event.units == {k: v for k, v in reserved.items() if k != "usd"}
        assert event.usd == pytest.approx(reserved["usd"])
    assert_within_limits(ledger, proxy)


def test_a_truncated_reply_then_a_good_one(proxy: FaultProxy) -> None:
    proxy.queue("truncated")
    ledger = Ledger(Budget(usd=0.01, model_requests=2))
    out = gateway(ledger, proxy, retries=1).complete(MODEL, MSG, max_tokens=4, temperature=0)
    assert out.attempts == 2 and out.content
    assert_within_limits(ledger, proxy)


def test_a_reply_without_usage_is_charged_the_reserved_worst_case(
    proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy.queue("no-usage")
    ledger = Ledger(Budget(usd=0.01, model_requests=1))
    held = spy_reservations(ledger, monkeypatch)
    out = gateway(ledger, proxy).complete(MODEL, MSG, max_tokens=5, temperature=0)
    [reserved] = held
    assert out.content
    assert out.usage.prompt_tokens == reserved["input_tokens"]
    assert out.usage.completion_tokens == reserved["output_tokens"] == 5
    assert out.usd == pytest.approx(reserved["usd"])
    [event] = ledger.events
    assert event.ok and "no usage reported" in event.detail
    assert_within_limits(ledger, proxy)


# ---------------------------------------------------------------------------------------------- keys
def test_a_key_echoed_by_the_server_never_leaves_the_gateway(proxy: FaultProxy) -> None:
    proxy.queue("echo-key", "echo-key-500", "echo-key-500")
    ledger = Ledger(Budget(model_requests=5))
    with pytest.raises(ModelError) as first:
        gateway(ledger, proxy, retries=2).complete(MODEL, MSG, max_tokens=2)
    assert "AuthenticationError" in str(first.value) and len(proxy.requests) == 1  # 401: not retried
    with pytest.raises(ModelError) as second:
        gateway(ledger, proxy, retries=1).complete(MODEL, MSG, max_tokens=2)
    assert "Incorrect API key provided: ***" in str(second.value)  # the message stays useful
    no_key(str(first.value), str(second.value), *(e.detail for e in ledger.events))
    no_key(json.dumps([e.to_dict() for e in ledger.events]))
    assert_within_limits(ledger, proxy)


# --------------------------------------------------------------------------------------------- async
def test_the_async_path_retries_and_charges_the_same_way(proxy: FaultProxy) -> None:
    proxy.queue("429", "truncated")
    ledger = Ledger(Budget(usd=0.01, model_requests=3))
    gw = gateway(ledger, proxy, retries=2)
    out = asyncio.run(gw.acomplete(MODEL, MSG, max_tokens=3, temperature=0))
    assert out.attempts == 3 and out.content
    assert [e.ok for e in ledger.events] == [False, False, True]
    assert_within_limits(ledger, proxy)


# ------------------------------------------------------------------------------------ Agent, agent run
def test_an_agent_run_through_the_server_survives_faults_and_leaks_nothing(
    proxy: FaultProxy, tmp_path: Path
) -> None:
    from thrifty.store import RunStore

    proxy.queue("429", "echo-key-500")
    store = tmp_path / "runs.db"
    agent = Agent(
        MODEL, api_base=proxy.url, pricing=PRICING, budget=Budget(usd=0.01, model_requests=4, seconds=30),
        max_tokens=8, temperature=0, retries=2, store=store, max_steps=1,
    )  # fmt: skip
    result = agent.run("What is the capital of France?")
    assert result.stop_reason in ("completed", "max_steps"), result.error
    assert result.answer
    assert result.usage.model_requests == len(proxy.requests) >= 3
    assert sum(e["units"].get("model_requests", 0) for e in result.events) == result.usage.model_requests
    assert sum(e["usd"] for e in result.events) == pytest.approx(result.cost.total_usd)
    result_within_limits(result)
    saved = RunStore(store)
    no_key(
        result.model_dump_json(),
        json.dumps([e.model_dump(mode="json") for e in result.trace]),
        json.dumps(saved.get(result.run_id), default=str),
        json.dumps(saved.charges(result.run_id), default=str),
        store.read_bytes().decode("latin-1"),
    )


def test_agent_run_ends_typed_never_a_traceback(proxy: FaultProxy, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from thrifty.cli import app
    from thrifty.workflows.result import RunResult

    task = tmp_path / "task.yaml"
    task.write_text(
        f"question: What is the capital of France?\nmodel: {MODEL}\n"
        f"model_settings:\n  api_base: {proxy.url}\n  max_tokens: 8\n  temperature: 0\n  retries: 1\n"
        f"pricing:\n  models:\n    {MODEL}: {{input_per_token: 0.000001, output_per_token: 0.000002}}\n"
        f"budget:\n  usd: 0.01\n  model_requests: 6\n  seconds: 30\n"
        f"output:\n  store: {tmp_path / 'runs.db'}\n"
    )
    runner = CliRunner()
    # A key echoed in a 401 (not retried), then a body that is not JSON twice (retried once): the run ends
    # with a typed error, no traceback, no key.
    for faults in [("echo-key",), ("malformed", "malformed")]:
        proxy.reset()
        proxy.queue(*faults)
        res = runner.invoke(app, ["run", str(task), "--json"])
        assert res.exit_code == 1 and "Traceback" not in res.output, res.output
        no_key(res.output)
        result = RunResult.model_validate_json(res.stdout)
        assert result.stop_reason == "error" and result.error
        assert result.error.startswith(f"model '{MODEL}' failed: ")
        assert result.usage.model_requests == len(proxy.requests) == len(faults)
        result_within_limits(result)
        no_key((tmp_path / "runs.db").read_bytes().decode("latin-1"))
    # A server that never answers: the run stops on its time budget (exit 4), on time.
    proxy.reset()
    proxy.queue("hang")
    res = runner.invoke(app, ["run", str(task), "--json", "--max-seconds", "2"])
    assert res.exit_code == 4 and "Traceback" not in res.output, res.output
    result = RunResult.model_validate_json(res.stdout)
    assert result.stop_reason == "budget_exhausted:seconds"
    assert result.usage.model_requests == len(proxy.requests) == 1
    result_within_limits(result)


# ------------------------------------------------------------------ a cascade over the server (issue 18)
def test_a_cascade_reads_the_servers_confidence_and_resamples_before_it_escalates(
    proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real model's log-probabilities drive the cascade: the server's reply is below the threshold, so the
    same model is asked again (a fresh sample at temperature 0.7, the next seed), then the stronger model
    serves the call; each call is charged at the price of the model that served it."""
    from thrifty.models.routing import EscalationPolicy, RoutedGateway, Routing, Trigger
    from thrifty.testing import ScriptedModel, reply

    strong = ScriptedModel([reply("Hi.")], name="remote-strong")
    routing = Routing(
        models=[MODEL, strong.model],
        escalation=EscalationPolicy(
            request_logprobs=True, min_confidence=1.0, resample=1, answer_check=False
        ),
    )
    pricing = Pricing(
        models={MODEL: PRICE, strong.model: ModelPrice(input_per_token=2e-5, output_per_token=4e-5)}
    )
    ledger = Ledger(Budget(usd=0.01, model_requests=4))
    # api_base would apply to every model of the run; a cascade names its server with the provider's variable
    monkeypatch.setenv("OPENAI_API_BASE", proxy.url)
    gw = RoutedGateway(ledger, pricing, routing=routing, retries=0, backoff=0)
    gw.check_models()
    out = gw.complete(gw.entry, MSG, node="act", max_tokens=4, temperature=0, seed=3)

    first, second = [r for r in proxy.requests if r.method == "POST"]
    assert first.body["logprobs"] is True and first.body["top_logprobs"] == 1
    assert (first.body["temperature"], first.body["seed"]) == (0, 3)
    assert (second.body["temperature"], second.body["seed"]) == (0.7, 4)
    resample, escalation = gw.state.records
    assert resample.resample and resample.to_model == MODEL and resample.reason == Trigger.LOW_CONFIDENCE
    confidence = float(resample.detail.split("confidence ")[1].split(" ")[0])
    assert 0.0 < confidence < 1.0  # read from the server's log-probabilities
    assert not escalation.resample and escalation.to_model == strong.model
    assert out.model == strong.model and out.content == "Hi."
    assert [e.name for e in ledger.events] == [MODEL, MODEL, strong.model]
    assert ledger.events[-1].usd > ledger.events[0].usd  # the stronger call at its own, higher price
    assert_within_limits(ledger)  # two requests went to the server (above), the third to the strong model
