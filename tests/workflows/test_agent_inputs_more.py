"""More of what the Python API refuses up front, naming the argument and its fix, before anything is spent:
an empty memory scope, durable-run arguments of the wrong shape, roles and models of the wrong shape, an
on_trace the run could not call; and a priced model's refusal that states the amount in its own unit."""

from __future__ import annotations

import asyncio
import warnings
from pathlib import Path
from typing import Any

import pytest

from thrifty import Agent, Budget
from thrifty.memory import Memory
from thrifty.testing import ScriptedModel, reply


def _memory() -> Memory:
    return Memory("sqlite://", embedder=None, router="low")


# ------------------------------------------------------------------------------------------- memory scope
def test_an_empty_memory_scope_is_refused_not_taken_for_the_shared_default() -> None:
    """Before the fix memory_scope={} became {'agent_id': 'default'}: another user's memory was recalled."""
    mem = _memory()
    mem.remember("The vault code is 7391.", scope={"agent_id": "default"})
    script = ScriptedModel([reply("x")])
    with pytest.raises(
        ValueError, match=r"memory_scope: a memory scope sets at least one of user_id, agent_id"
    ):
        Agent(script.model, memory=mem, memory_scope={})
    with pytest.raises(
        ValueError, match=r"memory_scope: a memory scope sets at least one of user_id, agent_id"
    ):
        Agent(script.model, memory=mem).run("What is the vault code?", memory_scope={})
    assert script.requests == []
    # no scope given at all still means the agent's default scope
    assert Agent(script.model, memory=mem).memory is not None


def test_a_memory_budget_without_memory_is_refused_like_a_memory_scope() -> None:
    with pytest.raises(ValueError, match=r"memory_budget is given but memory is not .*drop memory_budget"):
        Agent(ScriptedModel([reply("x")]).model, memory_budget=Budget(memory_ops=2))
    with pytest.raises(ValueError, match=r"memory_budget is given but memory is not"):
        Agent(ScriptedModel([reply("x")]).model, memory_budget={"memory_ops": 2})


# ------------------------------------------------------------------------------------ durable arguments
def _start(agent: Agent, how: str, **kw: Any) -> Any:
    if how == "run":
        return agent.run("q", **kw)
    if how == "arun":
        return asyncio.run(agent.arun("q", **kw))
    if how == "stream":
        return list(agent.stream("q", **kw))
    return agent.astream("q", **kw)


@pytest.mark.parametrize("how", ["run", "arun", "stream", "astream"])
@pytest.mark.parametrize("checkpoint", [5, b"pb.db", 1.5])
def test_a_checkpoint_that_is_not_a_path_or_url_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str, checkpoint: object
) -> None:
    """Before the fix checkpoint=5 wrote a file './5' and checkpoint=b'...' a folder named "b'...'"."""
    monkeypatch.chdir(tmp_path)
    script = ScriptedModel([reply("x")])
    with pytest.raises(
        TypeError, match=rf"checkpoint must be a path or URL .*got {type(checkpoint).__name__}"
    ):
        _start(Agent(script.model), how, run_id="j", checkpoint=checkpoint)
    assert list(tmp_path.iterdir()) == [] and script.requests == []


@pytest.mark.parametrize("how", ["run", "arun", "stream", "astream"])
@pytest.mark.parametrize("run_id", ["", "   "])
def test_an_empty_run_id_is_refused_not_replaced_by_a_new_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str, run_id: str
) -> None:
    monkeypatch.chdir(tmp_path)
    script = ScriptedModel([reply("x")])
    with pytest.raises(ValueError, match=r"run_id is empty: give the id of a durable run"):
        _start(Agent(script.model), how, run_id=run_id)
    assert list(tmp_path.iterdir()) == [] and script.requests == []


def test_an_empty_checkpoint_is_refused() -> None:
    with pytest.raises(ValueError, match=r"checkpoint is empty"):
        Agent(ScriptedModel([reply("x")]).model).run("q", run_id="j", checkpoint=" ")


# ---------------------------------------------------------------------------------------- roles, models
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"roles": "verifier"}, r"roles must be a dict of role -> model or list of models .*got str"),
        ({"roles": {"verifier": 5}}, r"roles\['verifier'\] must be a model name, a model object .*got int"),
        ({"roles": {"verifier": None}}, r"roles\['verifier'\] must be .*got NoneType"),
        ({"roles": {"verifier": [None]}}, r"roles\['verifier'\]\[0\] must be a model name .*got NoneType"),
        (
            {"models": "scripted/x"},
            r"models must be a list of models, cheapest first .*models=\['scripted/x'\]",
        ),
        ({"models": [None]}, r"models\[0\] must be a model name .*got NoneType"),
    ],
)
def test_roles_and_models_of_the_wrong_shape_are_named(kwargs: dict[str, Any], message: str) -> None:
    """Before the fix: AttributeError ('str' has no 'items'), "'int' object is not iterable", or a str
    split into one model per character."""
    with pytest.raises(TypeError, match=message):
        Agent(ScriptedModel([reply("x")]).model, **kwargs)


def test_roles_and_models_of_the_right_shape_still_route() -> None:
    cheap, strong = ScriptedModel([reply("x")]), ScriptedModel([reply("y")])
    agent = Agent(models=(cheap.model, strong.model), roles={"verifier": strong.model})
    assert agent.routing is not None
    assert agent.routing.models == [cheap.model, strong.model]


# -------------------------------------------------------------------------------------------- on_trace
async def _async_trace(event: object) -> None:
    return None


class _AsyncCallable:
    async def __call__(self, event: object) -> None:
        return None


@pytest.mark.parametrize("how", ["run", "arun"])
@pytest.mark.parametrize("callback", [_async_trace, _AsyncCallable()])
def test_an_async_on_trace_is_refused_not_left_unawaited(how: str, callback: Any) -> None:
    """Before the fix it was called, never awaited (a RuntimeWarning), and never ran."""
    script = ScriptedModel([reply("x")])
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        with pytest.raises(TypeError, match=r"on_trace must be a plain function \(def\), not an async def"):
            _start(Agent(script.model), how, on_trace=callback)
    assert script.requests == []


@pytest.mark.parametrize("how", ["run", "arun"])
def test_an_on_trace_that_cannot_take_the_event_is_refused(how: str) -> None:
    """Before the fix the run ended 'error' at its first event."""
    script = ScriptedModel([reply("x")])
    with pytest.raises(TypeError, match=r"on_trace must take one argument \(the trace event\)"):
        _start(Agent(script.model), how, on_trace=lambda: None)
    with pytest.raises(TypeError, match=r"on_trace must take one argument"):
        _start(Agent(script.model), how, on_trace=lambda a, b: None)
    assert script.requests == []


def test_an_on_trace_taking_the_event_still_runs() -> None:
    events: list[object] = []
    result = Agent(ScriptedModel([reply("x")]).model).run("q", on_trace=events.append)
    assert result.stop_reason == "completed" and events
    assert Agent(ScriptedModel([reply("x")]).model).run("q", on_trace=lambda e, *more: None).answer == "x"


# ------------------------------------------------------------------------------ a refusal's amount
def _refusal(result: Any) -> str:
    return " ".join(str(getattr(event, "detail", "")) for event in result.trace)


def test_a_model_call_the_dollars_left_cannot_pay_states_dollars() -> None:
    """Before the fix: "cannot pay 1 usd: only 0 left" (a cap in tokens under the name usd)."""
    script = ScriptedModel([reply("x")])
    pricing = {"models": {script.model: {"input_per_token": 1e-6, "output_per_token": 0.02}}}
    result = Agent(script.model, pricing=pricing, budget=Budget(usd=0.01)).run("q")
    assert result.stop_reason == "budget_exhausted:usd" and script.requests == []
    detail = _refusal(result)
    assert "cannot pay 0.02" in detail and "usd: only 0.01 left" in detail, detail


def test_a_model_call_the_tokens_left_cannot_pay_states_tokens() -> None:
    script = ScriptedModel([reply("x")])
    result = Agent(script.model, budget=Budget(total_tokens=5)).run("What is the capital of France, please?")
    assert result.stop_reason == "budget_exhausted:total_tokens" and script.requests == []
    detail = _refusal(result)
    assert "total_tokens: only 5 left" in detail and "cannot pay 1 total_tokens" not in detail, detail
