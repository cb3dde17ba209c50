"""Memory in agents and task files, driven by the scripted model through the real Gateway."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from thrifty import Agent, Budget
from thrifty.memory import Memory
from thrifty.memory.learned import DEFAULT_WEIGHTS
from thrifty.memory.memory import MEMORY_CLOSE, MEMORY_OPEN
from thrifty.testing import ScriptedModel, call, reply
from thrifty.tools.calculator import calculator
from thrifty.workflows.runner import SetupError, run_task
from thrifty.workflows.spec import TaskFileError, load_task

SESSIONS = [
    {
        "id": "s1",
        "date": "2023-05-08T13:56",
        "turns": [
            {"speaker": "Caroline", "text": "I went to the LGBTQ support group yesterday."},
            {"speaker": "Melanie", "text": "I adopted a grey cat named Pixel."},
        ],
    }
]
QUESTION = "When did Caroline go to the support group?"


def _system(script: ScriptedModel, n: int = 0) -> str:
    return str(script.requests[n].messages[0]["content"])


def test_context_mode_puts_a_delimited_block_before_the_first_call() -> None:
    mem = Memory(embedder="none", router="low")
    mem.ingest(SESSIONS, scope={"user_id": "caroline"})
    script = ScriptedModel([reply("7 May 2023")])
    agent = Agent(
        script.model, memory=mem, memory_budget=Budget(memory_ops=5), budget=Budget(total_tokens=5000)
    )
    result = agent.run(QUESTION, memory_scope={"user_id": "caroline"})
    assert result.answer == "7 May 2023"
    system = _system(script)
    assert MEMORY_OPEN in system and MEMORY_CLOSE in system and "yesterday (7 May 2023)" in system
    [report] = result.memory
    assert report.ran == {"retrieve": "low", "condense": "low"} and report.memory_ops == 2
    assert report.router_ms >= 0 and report.block_tokens > 0
    charges = [e for e in result.events if e["kind"] == "memory"]
    assert [e["ledger"] for e in charges] == ["run/memory", "run/memory"]


def test_another_scope_sees_nothing_and_a_spent_cap_skips_memory_without_ending_the_run() -> None:
    mem = Memory(embedder="none")
    mem.ingest(SESSIONS, scope={"user_id": "caroline"})
    script = ScriptedModel([reply("7 May 2023"), reply("7 May 2023")])
    agent = Agent(script.model, memory=mem, memory_scope={"user_id": "bob"})
    result = agent.run(QUESTION)
    assert MEMORY_OPEN not in _system(script) and result.memory[0].items == 0
    capped = Agent(
        script.model, memory=mem, memory_scope={"user_id": "caroline"}, memory_budget=Budget(memory_ops=1)
    )
    result = capped.run(QUESTION)
    assert result.answer == "7 May 2023" and result.exit_code == 0
    # one op cannot pay for retrieve and condense: nothing starts, nothing is paid for an empty block
    assert result.memory[0].ran == {"retrieve": "skipped", "condense": "skipped"}
    assert result.memory[0].memory_ops == 0


def test_tool_mode_offers_a_recall_tool_charged_to_memory() -> None:
    mem = Memory(embedder="none", router="low")
    mem.ingest(SESSIONS, scope={"user_id": "caroline"})
    script = ScriptedModel([call("recall", query="cat name"), reply("Pixel")])
    agent = Agent(script.model, memory=mem, memory_scope={"user_id": "caroline"}, memory_mode="tool")
    result = agent.run("What is the name of Melanie's cat?")
    assert result.answer == "Pixel" and MEMORY_OPEN not in _system(script)
    observed = json.dumps(script.requests[1].messages)
    assert "Pixel" in observed and "data recalled from past conversations" in observed
    assert result.usage.tool_calls == 1 and len(result.memory) == 1


def test_a_recall_tool_whose_budget_is_spent_says_so() -> None:
    # it answered "(nothing recalled)" as for an empty store, so a model went on asking
    mem = Memory(embedder="none", router="low")
    mem.ingest(SESSIONS, scope={"user_id": "caroline"})
    script = ScriptedModel([call("recall", query="cat name"), call("recall", query="pet"), reply("Pixel")])
    agent = Agent(
        script.model,
        tools=[calculator],  # another tool, so that the run goes on once recall is spent
        memory=mem,
        memory_scope={"user_id": "caroline"},
        memory_mode="tool",
        memory_budget=Budget(memory_ops=2),  # one LOW recall: retrieve and condense
    )
    agent.run("What is the name of Melanie's cat?")
    offered = [[t["function"]["name"] for t in r.params.get("tools") or []] for r in script.requests]
    assert "recall" in offered[0] and "recall" not in offered[1]  # spent: hidden from the model
    # a model that calls it anyway is told why nothing comes back
    observed = [m["content"] for m in script.requests[2].messages if m.get("role") == "tool"]
    assert "Pixel" in observed[0]
    assert "nothing recalled: memory skipped" in observed[1] and "budget" in observed[1]


def _task(tmp_path: Path, memory: str) -> Path:
    (tmp_path / "chats.jsonl").write_text("".join(json.dumps(s) + "\n" for s in SESSIONS), encoding="utf-8")
    path = tmp_path / "task.yaml"
    path.write_text(
        f"question: {QUESTION}\nmodel: MODEL\noutput: {{store: null}}\nmemory:\n{memory}", encoding="utf-8"
    )
    return path


def test_a_task_file_memory_block_ingests_and_recalls(tmp_path: Path) -> None:
    script = ScriptedModel([reply("7 May 2023"), reply("7 May 2023")])
    path = _task(
        tmp_path,
        "  store: mem.db\n  scope: {user_id: caroline}\n  ingest: [chats.jsonl]\n  router: low\n"
        "  lambda: 0.5\n  embedder: none\n  budget: {memory_ops: 4}\n",
    )
    for _ in range(2):  # the second run ingests nothing new
        result = run_task(load_task(path, model=script.model), store=False)
        assert result.answer == "7 May 2023" and result.memory[0].items == 1
    assert "7 May 2023" in _system(script, 1)
    assert Memory(tmp_path / "mem.db", embedder="none").count() == 1


def test_the_cli_summary_reports_each_recall(tmp_path: Path) -> None:
    from rich.console import Console

    from thrifty.cli import render_result

    script = ScriptedModel([reply("7 May 2023")])
    path = _task(
        tmp_path, "  scope: {user_id: caroline}\n  ingest: [chats.jsonl]\n  router: low\n  embedder: none\n"
    )
    result = run_task(load_task(path, model=script.model), store=False)
    console = Console(record=True, width=200)
    render_result(result, console)
    text = console.export_text()
    assert "memory (low): ran retrieve low, condense low; 1 items" in text and "memory ops" in text


@pytest.mark.parametrize(
    ("memory", "message"),
    [
        ("  scope: {team: x}\n", "memory scope sets user_id"),
        ("  scope: {user_id: c}\n  router: fancy\n", "unknown memory router"),
        ("  scope: {user_id: c}\n  router: 'learned:'\n", "unknown memory router"),
        ("  scope: {user_id: c}\n  lambda: 3\n", "lambda"),
        ("  scope: {user_id: c}\n  modes: tool\n", "modes"),
        (
            "  scope: {user_id: c}\n  facts: high\n",
            r"memory\.facts: 'high' needs a model .*set memory\.model",
        ),
        ("  scope: {user_id: c}\n  summaries: some\n", "summaries"),
        ("  scope: {user_id: c}\n  chunk_tokens: 5\n", "chunk_tokens"),
    ],
)
def test_a_bad_memory_block_is_refused_with_its_field(tmp_path: Path, memory: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_task(_task(tmp_path, memory), model="scripted/x")


def test_a_broken_ingest_file_is_refused_naming_it(tmp_path: Path) -> None:
    """At load (what `agent validate` reads too), naming the field; and if it breaks after that, at setup."""
    path = _task(tmp_path, "  scope: {user_id: c}\n  ingest: [chats.jsonl]\n  embedder: none\n")
    chats = tmp_path / "chats.jsonl"
    chats.write_text('{"turns": [', encoding="utf-8")
    with pytest.raises(TaskFileError, match=r"memory\.ingest\.0.*chats\.jsonl, line 1"):
        load_task(path, model=ScriptedModel([]).model)
    chats.write_text('{"turns": [{"speaker": "a", "text": "hi"}]}\n', encoding="utf-8")
    spec = load_task(path, model=ScriptedModel([]).model)
    chats.write_text('{"turns": [', encoding="utf-8")
    with pytest.raises(SetupError, match=r"chats\.jsonl, line 1"):
        run_task(spec, store=False)


def test_a_task_file_memory_block_writes_facts_and_summaries(tmp_path: Path) -> None:
    script = ScriptedModel([reply("7 May 2023")])
    path = _task(
        tmp_path,
        "  store: mem.db\n  scope: {user_id: caroline}\n  ingest: [chats.jsonl]\n  router: low\n"
        "  embedder: none\n  chunk_tokens: 64\n  facts: low\n  summaries: low\n  facts_k: 2\n",
    )
    result = run_task(load_task(path, model=script.model), store=False)
    assert result.answer == "7 May 2023" and result.memory[0].facts >= 1
    assert "Facts (each with the day it holds from" in _system(script, 0)
    stored = Memory(tmp_path / "mem.db", embedder="none")
    assert stored.facts_of({"user_id": "caroline"}) and stored.summaries_of({"user_id": "caroline"})


def test_a_task_file_uses_the_learned_router_and_refuses_bad_weights(tmp_path: Path) -> None:
    script = ScriptedModel([reply("7 May 2023")])
    memory = "  scope: {user_id: caroline}\n  ingest: [chats.jsonl]\n  embedder: none\n  router: learned\n"
    result = run_task(load_task(_task(tmp_path, memory), model=script.model), store=False)
    assert result.memory[0].router == "learned" and result.memory[0].items >= 1
    (tmp_path / "w.json").write_text("{", encoding="utf-8")  # weights relative to the task file
    bad = _task(tmp_path, memory.replace("router: learned", "router: learned:w.json"))
    with pytest.raises(TaskFileError, match=r"memory\.router.*w\.json: not valid JSON"):
        load_task(bad, model=ScriptedModel([]).model)  # refused when the file is read, before a run
    shutil.copy(DEFAULT_WEIGHTS, tmp_path / "w.json")
    task = load_task(bad, model=ScriptedModel([]).model)
    (tmp_path / "w.json").write_text("{", encoding="utf-8")  # broken after loading: the run refuses it
    with pytest.raises(SetupError, match=r"w\.json: not valid JSON"):
        run_task(task, store=False)
