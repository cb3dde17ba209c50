"""A task file's memory in a run: its ingest charged to the run, its fields checked before the run, its
store's failures reported as setup errors naming the field, and its cost in the CLI summary."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from thrifty.cli import app, render_result
from thrifty.testing import ScriptedModel, reply
from thrifty.workflows.runner import SetupError, run_task
from thrifty.workflows.spec import TaskFileError, load_task

from .conversations import SESSIONS, write_jsonl

QUESTION = "When did Caroline go to the LGBTQ support group?"
NOTES = json.dumps(
    {"facts": [{"subject": "Caroline", "text": "Caroline went to a support group"}], "summary": "x"}
)
runner = CliRunner()


def _task(tmp_path: Path, memory: str, budget: str = "{total_tokens: 100000}", model: str = "MODEL") -> Path:
    write_jsonl(tmp_path / "chats.jsonl")
    path = tmp_path / "task.yaml"
    path.write_text(
        f"question: {QUESTION}\nmodel: {model}\nbudget: {budget}\noutput: {{store: null}}\nmemory:\n{memory}",
        encoding="utf-8",
    )
    return path


def _high(memory_model: str, cap: str) -> str:
    return (
        "  store: mem.db\n  scope: {user_id: caroline}\n  ingest: [chats.jsonl]\n  router: low\n"
        f"  embedder: none\n  facts: high\n  summaries: high\n  model: {memory_model}\n  budget: {cap}\n"
    )


def test_a_task_files_ingest_is_capped_by_the_memory_budget_and_counted_in_the_run(tmp_path: Path) -> None:
    """The audit's repro: memory.budget total_tokens 100, HIGH writes of 1,300 tokens each: none may run
    (before the fix three ran outside every ledger and the run reported 55 tokens)."""
    memory = ScriptedModel(default=reply(NOTES, prompt_tokens=1000, completion_tokens=300))
    answer = ScriptedModel([reply("7 May 2023", prompt_tokens=40, completion_tokens=5)])
    path = _task(tmp_path, _high(memory.model, "{memory_ops: 4, total_tokens: 100}"), "{total_tokens: 1000}")
    result = run_task(load_task(path, model=answer.model), store=False)
    assert result.answer == "7 May 2023" and result.exit_code == 0
    assert memory.requests == []  # not one HIGH write: its worst case does not fit the memory cap
    ingest = result.memory[-1]
    assert ingest.router == "ingest" and ingest.ran == {"write": "done", "facts": "low", "summaries": "low"}
    assert any("HIGH write not affordable" in n for n in ingest.notes) and ingest.memory_ops == 1
    writes = [e for e in result.events if e["kind"] == "memory" and e["detail"].startswith("added=")]
    assert [e["ledger"] for e in writes] == ["run/memory"]  # the write is the run's, on memory's ledger
    assert sum(e["units"].get("memory_ops", 0) for e in result.events) <= 4
    assert result.usage.total_tokens == 45 and not result.overruns


def test_a_task_files_high_ingest_calls_are_in_the_runs_usage(tmp_path: Path) -> None:
    memory = ScriptedModel(default=reply(NOTES, prompt_tokens=300, completion_tokens=100))
    answer = ScriptedModel([reply("7 May 2023", prompt_tokens=40, completion_tokens=5)])
    path = _task(tmp_path, _high(memory.model, "{memory_ops: 6}"))
    result = run_task(load_task(path, model=answer.model), store=False)
    assert len(memory.requests) == len(SESSIONS)
    assert result.usage.total_tokens == len(SESSIONS) * 400 + 45  # was 45: the ingest went around the run
    assert result.memory[-1].ran["facts"] == "high" and result.memory[-1].model_tokens == len(SESSIONS) * 400


def test_an_ingest_the_memory_ops_cap_cannot_pay_is_skipped_with_a_note_and_the_run_goes_on(
    tmp_path: Path,
) -> None:
    answer = ScriptedModel([reply("7 May 2023")])
    memory = (
        "  scope: {user_id: caroline}\n  ingest: [chats.jsonl]\n  embedder: none\n  budget: {memory_ops: 1}\n"
    )
    path = _task(tmp_path, memory.replace("[chats.jsonl]", "[chats.jsonl, again.jsonl]"))
    (tmp_path / "again.jsonl").write_text(json.dumps({**SESSIONS[0], "id": "s3"}) + "\n", encoding="utf-8")
    result = run_task(load_task(path, model=answer.model), store=False)
    assert result.exit_code == 0 and result.answer == "7 May 2023"
    ingest = result.memory[-1]
    assert ingest.memory_ops == 1 and ingest.items == 2
    assert any(n.startswith("ingest of again.jsonl not written") for n in ingest.notes)


@pytest.mark.parametrize(
    ("memory", "field", "message"),
    [
        ("  scope: {user_id: c}\n  embedder: bert\n", "memory.embedder", "auto"),
        ("  scope: {user_id: c}\n  model: nope/nothing\n", "memory.model", "unknown provider 'nope'"),
    ],
)
def test_validate_checks_the_memory_embedder_and_model(
    tmp_path: Path, memory: str, field: str, message: str
) -> None:
    path = _task(tmp_path, memory, model="local/smollm2")
    res = runner.invoke(app, ["validate", str(path)])
    assert res.exit_code == 2 and f"field '{field}'" in res.output and message in res.output, res.output
    assert "Traceback" not in res.output
    with pytest.raises(TaskFileError, match=field):
        load_task(path, check_models=True)


def test_run_task_names_memory_model_and_a_missing_minilm(tmp_path: Path, monkeypatch) -> None:
    path = _task(tmp_path, "  scope: {user_id: c}\n  model: nope/nothing\n  embedder: none\n")
    with pytest.raises(SetupError, match=r"^memory\.model: unknown provider 'nope'"):
        run_task(load_task(path, model=ScriptedModel([]).model), store=False)
    monkeypatch.setattr("thrifty.memory.embed.minilm_available", lambda: False)
    path = _task(tmp_path, "  scope: {user_id: c}\n  embedder: minilm\n")
    with pytest.raises(SetupError, match=r"^memory\.embedder: the minilm embedder is not installed"):
        run_task(load_task(path, model=ScriptedModel([]).model), store=False)
    with pytest.raises(TaskFileError, match=r"memory\.embedder.*not installed"):
        load_task(path, model=ScriptedModel([]).model, check_models=True)


def test_the_unknown_field_fix_lists_lambda_as_it_is_written(tmp_path: Path) -> None:
    with pytest.raises(TaskFileError, match=r"the fields here are: .*router, lambda, budget") as err:
        load_task(_task(tmp_path, "  scope: {user_id: c}\n  modes: tool\n"), model="scripted/x")
    assert "lambda_" not in str(err.value)


@pytest.mark.parametrize(
    ("store", "shown"),
    [
        ("/proc/memory.db", "/proc/memory.db"),
        ("postgresql://u:s3cr3t@localhost:1/db", "postgresql+psycopg://u:***@"),
    ],
)
def test_a_store_that_cannot_be_opened_is_a_setup_error_naming_memory_store(
    tmp_path: Path, store: str, shown: str
) -> None:
    if store.startswith("postgresql"):
        pytest.importorskip("psycopg")
    path = _task(tmp_path, f"  store: '{store}'\n  scope: {{user_id: c}}\n  embedder: none\n")
    with pytest.raises(SetupError, match=r"^memory\.store: memory store .*cannot open") as err:
        run_task(load_task(path, model=ScriptedModel([]).model), store=False)
    assert shown in str(err.value) and "s3cr3t" not in str(err.value)
    res = runner.invoke(app, ["run", str(path), "--model", ScriptedModel([]).model, "-q"])
    assert res.exit_code == 2 and "memory.store" in res.output and "internal error" not in res.output
    assert "s3cr3t" not in res.output


def test_the_spent_table_shows_memory_operations_only_when_the_budget_sets_them(tmp_path: Path) -> None:
    memory = "  scope: {user_id: caroline}\n  ingest: [chats.jsonl]\n  router: low\n  embedder: none\n"
    shown = []
    for budget in ("{total_tokens: 5000, memory_ops: 5}", "{total_tokens: 5000}"):
        script = ScriptedModel([reply("7 May 2023")])
        result = run_task(load_task(_task(tmp_path, memory, budget), model=script.model), store=False)
        console = Console(record=True, width=200)
        render_result(result, console)
        shown.append(console.export_text())
    row = next(line for line in shown[0].splitlines() if "memory operations" in line)
    cells = [cell.strip() for cell in row.split("│")[1:4]]
    assert cells == ["memory operations", "3", "5"]  # the ingest's write and the recall's 2, of 5
    assert "memory operations" not in shown[1]
    # the ingest's line says what it added, not a block or a router it does not have
    ingest = next(line for line in shown[0].splitlines() if line.startswith("memory (ingest)"))
    assert "items added" in ingest and "block tokens" not in ingest and "router" not in ingest


def test_the_task_files_pricing_reaches_memory(tmp_path: Path) -> None:
    memory = ScriptedModel(default=reply(NOTES, prompt_tokens=1000, completion_tokens=0))
    answer = ScriptedModel([reply("7 May 2023")])
    path = _task(tmp_path, _high(memory.model, "{memory_ops: 6}"))
    text = path.read_text(encoding="utf-8")
    prices = f"pricing:\n  models:\n    {memory.model}: {{input_per_token: 0.000002}}\n"
    path.write_text(text + prices, encoding="utf-8")
    result = run_task(load_task(path, model=answer.model), store=False)
    assert result.memory[-1].usd == pytest.approx(len(SESSIONS) * 1000 * 2.0 / 1e6)


def test_a_task_files_memory_is_closed_after_its_run_and_after_a_setup_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # each run_task opens the task's Memory (its store engine); a server running many tasks leaked them
    from thrifty.memory import Memory

    closed: list[Memory] = []
    monkeypatch.setattr(Memory, "close", lambda self: closed.append(self))
    memory = "  scope: {user_id: caroline}\n  ingest: [chats.jsonl]\n  router: low\n  embedder: none\n"
    run_task(
        load_task(_task(tmp_path, memory), model=ScriptedModel([reply("7 May 2023")]).model), store=False
    )
    assert len(closed) == 1
    broken = (
        _task(tmp_path, memory).read_text()
        + f"mcp_servers:\n  - name: gone\n    command: ['{sys.executable}', -c, 'raise SystemExit(3)']\n"
    )
    (tmp_path / "task.yaml").write_text(broken, encoding="utf-8")
    with pytest.raises(SetupError, match="mcp_servers"):
        run_task(load_task(tmp_path / "task.yaml", model=ScriptedModel([]).model), store=False)
    assert len(closed) == 2
