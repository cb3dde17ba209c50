"""What a run shows of its memory spending: the ``recall`` tool's line in the <budget> block when memory_ops
bind (not tool calls), and ``usage.memory_ops`` in every result, limited or not."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from thrifty import Agent, Budget
from thrifty.agents.events import ObservationEvent
from thrifty.cli import app
from thrifty.memory import Memory
from thrifty.testing import ScriptedModel, call, reply
from thrifty.workflows import RunResult
from thrifty.workflows.runner import run_task
from thrifty.workflows.spec import load_task

from .test_memory_agent import SESSIONS

CAT = "What is the name of Melanie's cat?"


def _memory() -> Memory:
    mem = Memory(embedder="none", router="low")
    mem.ingest(SESSIONS, scope={"user_id": "caroline"})
    return mem


def _blocks(script: ScriptedModel) -> list[str]:
    """The <budget> line of each tool result the model was shown, in order."""
    tool_results = [m["content"] for m in script.requests[-1].messages if m.get("role") == "tool"]
    return [content.splitlines()[-1] for content in tool_results]


def test_the_run_s_memory_ops_bind_the_recall_tool_in_the_budget_block() -> None:
    # It said "recall remaining: unlimited" with one memory op left, less than a recall needs (2).
    script = ScriptedModel([call("recall", query="cat name"), reply("Pixel")])
    agent = Agent(
        script.model,
        memory=_memory(),
        memory_scope={"user_id": "caroline"},
        memory_mode="tool",
        budget=Budget(memory_ops=3),  # no tool_calls limit: only memory_ops bound the recalls
    )
    result = agent.run(CAT)
    assert result.answer == "Pixel"
    [block] = _blocks(script)
    assert "recall used: 1, recall remaining: 0 (memory_ops left: 1, 2 per call)" in block
    assert "unlimited" not in block
    # a recall it cannot pay is a tool at 0: the regime the model and the trace see is CRITICAL
    assert "regime: CRITICAL" in block
    observed = [e for e in result.trace if isinstance(e, ObservationEvent)]
    assert [e.regime for e in observed] == ["CRITICAL"]
    # ... and hidden from the model, as a tool at its per_tool limit is (it was still offered)
    assert "recall" in _offered(script, 0) and "recall" not in _offered(script, 1)


def _offered(script: ScriptedModel, request: int) -> list[str]:
    """The tools the model was offered in its ``request``-th call."""
    return [t["function"]["name"] for t in script.requests[request].params.get("tools") or []]


def test_memory_s_own_cap_binds_the_recall_tool_too() -> None:
    script = ScriptedModel([call("recall", query="cat name"), call("recall", query="a cat"), reply("Pixel")])
    agent = Agent(
        script.model,
        memory=_memory(),
        memory_scope={"user_id": "caroline"},
        memory_mode="tool",
        memory_budget=Budget(memory_ops=4),
    )
    agent.run(CAT)
    first, second = _blocks(script)
    assert "recall remaining: 1 (memory_ops left: 2, 2 per call)" in first and "regime: HIGH" in first
    assert "recall remaining: 0 (memory_ops left: 0, 2 per call)" in second and "CRITICAL" in second
    assert "recall" in _offered(script, 1) and "recall" not in _offered(script, 2)


def test_without_a_memory_limit_the_recall_tool_stays_unlimited() -> None:
    script = ScriptedModel([call("recall", query="cat name"), reply("Pixel")])
    agent = Agent(script.model, memory=_memory(), memory_scope={"user_id": "caroline"}, memory_mode="tool")
    agent.run(CAT)
    assert _blocks(script) == ["<budget>recall used: 1, recall remaining: unlimited, regime: HIGH</budget>"]


def test_usage_counts_memory_ops_when_the_budget_does_not_limit_them() -> None:
    script = ScriptedModel([call("recall", query="cat name"), reply("Pixel")])
    agent = Agent(script.model, memory=_memory(), memory_scope={"user_id": "caroline"}, memory_mode="both")
    result = agent.run(CAT)
    spent = sum(e["units"].get("memory_ops", 0) for e in result.events)
    assert spent == 4  # the recall before the first call and the tool's, 2 each
    assert result.usage.memory_ops == 4 and "memory_ops" not in result.budget
    assert json.loads(result.model_dump_json())["usage"]["memory_ops"] == 4


def test_usage_memory_ops_is_0_without_memory_and_an_older_result_still_loads() -> None:
    result = Agent(ScriptedModel([reply("4")]).model).run("What is 2+2?")
    saved = json.loads(result.model_dump_json())
    assert saved["usage"]["memory_ops"] == 0
    del saved["usage"]["memory_ops"]  # a result written before the field existed
    assert RunResult.model_validate(saved).usage.memory_ops == 0


def _task(tmp_path: Path) -> Path:
    (tmp_path / "chats.jsonl").write_text("".join(json.dumps(s) + "\n" for s in SESSIONS), encoding="utf-8")
    path = tmp_path / "task.yaml"
    path.write_text(
        "question: When did Caroline go to the support group?\nmodel: MODEL\n"
        "budget: {total_tokens: 5000}\noutput: {store: null}\nmemory:\n"
        "  store: mem.db\n  scope: {user_id: caroline}\n  ingest: [chats.jsonl]\n  router: low\n"
        "  embedder: none\n",
        encoding="utf-8",
    )
    return path


def test_a_task_file_run_and_agent_run_json_report_the_memory_ops_spent(tmp_path: Path) -> None:
    path = _task(tmp_path)
    result = run_task(load_task(path, model=ScriptedModel([reply("7 May 2023")]).model), store=False)
    assert result.usage.memory_ops == 3  # the ingest's write and the recall's retrieve and condense
    res = CliRunner().invoke(
        app, ["run", str(path), "--model", ScriptedModel([reply("7 May 2023")]).model, "--json"]
    )
    assert res.exit_code == 0, res.output
    # a second run: the chats are stored already, the write is still paid
    assert json.loads(res.stdout)["usage"]["memory_ops"] == 3
