"""Runs with several models: the Agent and task-file APIs, the escalation trace, bad input, and the property
that no escalation or failover takes a run past a limit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from thrifty import Agent, Budget
from thrifty.agents.events import AnswerEvent, EscalationEvent
from thrifty.budget import ModelPrice, Pricing
from thrifty.cli import app
from thrifty.models.scripted import ScriptedReply
from thrifty.testing import ScriptedModel, call, reply
from thrifty.tools import Corpus, make_search_tools
from thrifty.workflows.result import RunResult
from thrifty.workflows.runner import SetupError, execute
from thrifty.workflows.spec import load_task

TOOLS = make_search_tools(
    Corpus([("Paris", "Paris is in France."), ("Berlin", "Berlin is in Germany.")]), k=1
)
CHEAP = ModelPrice(input_per_token=1e-6, output_per_token=2e-6)
MID = ModelPrice(input_per_token=5e-6, output_per_token=10e-6)
STRONG = ModelPrice(input_per_token=20e-6, output_per_token=40e-6)


def test_agent_with_a_cascade_escalates_and_the_trace_shows_it() -> None:
    weak = ScriptedModel([call("search", query="france"), reply("unknown")])
    big = ScriptedModel([reply("Paris")])
    pricing = Pricing(models={weak.model: CHEAP, big.model: STRONG})
    agent = Agent(models=[weak.model, big.model], tools=TOOLS, budget=Budget(usd=0.1), pricing=pricing)
    result = agent.run("What is the capital of France?")
    assert result.answer == "Paris"
    assert result.model == f"{weak.model}>{big.model}"
    escalations = [e for e in result.trace if isinstance(e, EscalationEvent)]
    assert [(e.reason, e.from_model, e.to_model) for e in escalations] == [
        ("cannot_answer", weak.model, big.model)
    ]
    assert escalations[0].usd > 0 and escalations[0].discarded_usd > 0
    # the escalation comes before the answer it produced
    kinds = [type(e).__name__ for e in result.trace]
    assert kinds.index("EscalationEvent") < kinds.index("AnswerEvent")
    assert isinstance(result.trace[-1], AnswerEvent)
    by_model = {e["name"] for e in result.events if e["kind"] == "model"}
    assert by_model == {weak.model, big.model}
    assert (
        json.loads(result.model_dump_json())["trace"][kinds.index("EscalationEvent")]["action"]
        == "escalation"
    )


def test_on_trace_is_told_of_escalations_live() -> None:
    weak, big = ScriptedModel([reply("unknown")]), ScriptedModel([reply("Paris")])
    seen: list[str] = []
    agent = Agent(models=[weak.model, big.model], tools=TOOLS)
    agent.run("What is the capital of France?", on_trace=lambda e: seen.append(e.action))
    assert seen == ["escalation", "answer"]


def test_per_role_models_in_bats() -> None:
    plan = json.dumps({"exploration": ["france"], "verification": []})
    verdict = json.dumps({"decision": "SUCCESS", "trajectory_summary": "Paris"})
    solver = ScriptedModel([call("search", query="france"), reply("Paris")])
    planner = ScriptedModel([reply(plan)])
    verifier = ScriptedModel([reply(verdict)], default=reply(json.dumps({"index": 0})))
    agent = Agent(
        solver.model,
        roles={"planner": planner.model, "verifier": verifier.model, "judge": verifier.model},
        tools=TOOLS,
        strategy="bats",
    )
    result = agent.run("What is the capital of France?")
    assert result.answer == "Paris", result.error
    assert len(planner.requests) == 1 and len(verifier.requests) >= 1
    assert all(r.params.get("response_format") is None or r.tool_names for r in solver.requests)


def test_unknown_role_in_the_agent_api_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="unknown role 'boss'"):
        Agent(roles={"boss": "openai/gpt-4o"})


def test_unknown_model_in_a_cascade_is_a_setup_error_before_spending() -> None:
    weak = ScriptedModel([reply("x")])
    agent = Agent(models=[weak.model, "nosuch/model"])
    with pytest.raises(SetupError, match="unknown provider"):
        agent.run("q")
    assert weak.requests == []


def test_unpriced_model_under_a_usd_budget_is_a_setup_error() -> None:
    weak = ScriptedModel([reply("x")])
    from thrifty.models import Provider, register_provider

    register_provider(Provider("unpriced", in_process=True), replace=True)
    with pytest.raises(SetupError, match="unpriced/big"):
        execute(
            "q",
            model=weak.model,
            budget=Budget(usd=1),
            routing=Agent(models=[weak.model, "unpriced/big"]).routing,
        )


# ------------------------------------------------------------------------------------------ task files
def _task(tmp_path: Path, body: str) -> Path:
    (tmp_path / "passages.jsonl").write_text(
        json.dumps({"title": "Paris", "text": "Paris is in France."}) + "\n"
    )
    path = tmp_path / "task.yaml"
    path.write_text(
        "question: What is the capital of France?\ncorpus: passages.jsonl\ntools: [search, read]\n"
        f"output:\n  store: {tmp_path / 'runs.db'}\n{body}"
    )
    return path


def test_task_file_with_a_cascade_runs_and_reports_the_escalation(tmp_path: Path) -> None:
    weak, big = ScriptedModel([reply("I cannot answer")]), ScriptedModel([reply("Paris")])
    path = _task(
        tmp_path,
        f"models: [{weak.model}, {big.model}]\nescalation:\n  scope: run\n  min_confidence: 0.4\n"
        "  min_confidence_moves: 0.3\n  moves_when_tools_left: 2\n"
        f"pricing:\n  models:\n    {weak.model}: {{input_per_token: 1.0e-6, output_per_token: 2.0e-6}}\n"
        f"    {big.model}: {{input_per_token: 2.0e-5, output_per_token: 4.0e-5}}\nbudget:\n  usd: 0.05\n",
    )
    spec = load_task(path)
    assert spec.routing() is not None and spec.escalation.scope == "run"
    assert (spec.escalation.min_confidence_moves, spec.escalation.moves_when_tools_left) == (0.3, 2)
    res = CliRunner().invoke(app, ["run", str(path), "--json"])
    assert res.exit_code == 0, res.output
    result = RunResult.model_validate_json(res.stdout)
    assert result.answer == "Paris"
    [event] = [e for e in result.trace if isinstance(e, EscalationEvent)]
    assert event.scope == "run" and event.reason == "cannot_answer"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("models: [scripted/a, nosuch/b]\n", "nosuch"),
        ("roles:\n  boss: scripted/a\n", "unknown role 'boss'"),
        ("models: [scripted/a, openai]\n", "provider prefix"),
        ("escalation:\n  scope: forever\n", "scope"),
        ("escalation:\n  min_confidence_moves: 2\n", "min_confidence_moves"),
        ("escalation:\n  moves_when_tools_left: -1\n", "moves_when_tools_left"),
        ("escalation:\n  prompt: short\n", "prompt"),
        ("escalation:\n  answer_check: maybe\n", "answer_check"),
    ],
)
def test_bad_routing_in_a_task_file_exits_2(tmp_path: Path, body: str, message: str) -> None:
    ScriptedModel([], name="a")
    res = CliRunner().invoke(app, ["run", str(_task(tmp_path, body)), "--quiet"])
    assert res.exit_code == 2, res.output
    assert message in res.output
    assert "Traceback" not in res.output


def test_unpriced_model_in_a_task_cascade_under_usd_exits_2(tmp_path: Path) -> None:
    from thrifty.models import Provider, register_provider

    register_provider(Provider("unpriced", in_process=True), replace=True)
    ScriptedModel([], name="cheap-one")
    path = _task(tmp_path, "models: [scripted/cheap-one, unpriced/big]\nbudget:\n  usd: 1\n")
    res = CliRunner().invoke(app, ["run", str(path), "--quiet"])
    assert res.exit_code == 2, res.output
    assert "unpriced/big" in res.output


# ------------------------------------------------------------------------------------------ property
def _reply(kind: str, p: int, c: int) -> ScriptedReply | ValueError:
    if kind == "fail":
        return ValueError("server down")
    if kind == "search":
        return ScriptedReply(
            tool_calls=[("search", {"query": "paris"})], prompt_tokens=p, completion_tokens=c
        )
    content, confidence = {
        "answer": ("Paris", None),
        "unsure": ("Paris", 0.1),
        "unknown": ("unknown", None),
        "badjson": ("{not json", None),
        "verdict_no": (json.dumps({"decision": "CONTINUE"}), None),
        "verdict_ok": (json.dumps({"decision": "SUCCESS", "trajectory_summary": "ok"}), None),
        "check_fail": (json.dumps({"decision": "FAIL", "reason": "not supported"}), None),
        "plan": (json.dumps({"exploration": ["france"], "verification": []}), None),
    }[kind]
    return ScriptedReply(content=content, prompt_tokens=p, completion_tokens=c, confidence=confidence)


steps = st.builds(
    _reply,
    st.sampled_from(
        [
            "fail",
            "search",
            "answer",
            "unsure",
            "unknown",
            "badjson",
            "verdict_no",
            "verdict_ok",
            "check_fail",
            "plan",
        ]
    ),
    st.integers(1, 400),
    st.integers(1, 300),
)
budgets = st.builds(
    Budget,
    usd=st.none() | st.floats(0.0005, 0.05),
    tool_calls=st.none() | st.integers(1, 6),
    total_tokens=st.none() | st.integers(200, 6000),
    output_tokens=st.none() | st.integers(50, 2000),
    model_requests=st.none() | st.integers(1, 12),
)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    strategy=st.sampled_from(["react", "bats", "self_consistency"]),
    scope=st.sampled_from(["step", "node", "run"]),
    prompt=st.sampled_from(["full", "compact"]),
    answer_check=st.booleans(),
    resample=st.integers(0, 2),
    scripts=st.lists(st.lists(steps, max_size=12), min_size=3, max_size=3),
    budget=budgets,
)
def test_no_escalation_or_failover_takes_a_run_past_a_limit(
    strategy: str,
    scope: str,
    prompt: str,
    answer_check: bool,
    resample: int,
    scripts: list[list[ScriptedReply | ValueError]],
    budget: Budget,
) -> None:
    fallback = ScriptedReply(content="Paris", prompt_tokens=50, completion_tokens=20)
    models = [ScriptedModel(s, default=fallback) for s in scripts]
    prices = [CHEAP, MID, STRONG]
    pricing = Pricing(models={m.model: price for m, price in zip(models, prices, strict=True)})
    options: dict = {"samples": 2} if strategy == "self_consistency" else {}
    agent = Agent(
        models=[m.model for m in models],
        escalation={
            "scope": scope,
            "min_confidence": 0.5,
            "prompt": prompt,
            "answer_check": answer_check,
            "resample": resample,
        },
        tools=TOOLS,
        budget=budget,
        pricing=pricing,
        strategy=strategy,
        max_steps=8,
        **options,
    )
    result = agent.run("What is the capital of France?")
    assert result.overruns == [], result.overruns
    spent = {
        "usd": result.usage.usd,
        "tool_calls": result.usage.tool_calls,
        "total_tokens": result.usage.total_tokens,
        "output_tokens": result.usage.output_tokens,
        "model_requests": result.usage.model_requests,
    }
    for dim, limit in budget.limits().items():
        assert spent[dim] <= limit + 1e-9, (dim, spent[dim], limit, result.stop_reason)
    # every call charged at the price of the model that served it
    for event in result.events:
        if event["kind"] == "model" and event["ok"]:
            price = pricing.models[event["name"]]
            units = event["units"]
            expected = (
                units.get("input_tokens", 0) * price.input_per_token
                + units.get("output_tokens", 0) * price.output_per_token
            )
            assert event["usd"] == pytest.approx(expected, rel=1e-6, abs=1e-12)
    for e in result.trace:
        if isinstance(e, EscalationEvent) and e.resample:
            assert e.to_model == e.from_model != models[-1].model  # the top model is never resampled
        elif isinstance(e, EscalationEvent) and not e.refused:
            assert [m.model for m in models].index(e.to_model) == [m.model for m in models].index(
                e.from_model
            ) + 1
