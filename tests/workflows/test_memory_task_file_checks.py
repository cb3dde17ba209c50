"""`agent validate` checks a task file's memory files as `agent run` does before spending: the chat files
of ``memory.ingest`` are read and checked, ``memory.store`` must be a usable SQLite file or URL. Each
problem is an issue naming ``memory.ingest.N`` / ``memory.store``, its line and a fix (exit 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from thrifty.cli import app
from thrifty.testing import ScriptedModel, reply
from thrifty.workflows.memory import setup_from_spec
from thrifty.workflows.spec import MemorySpec

SESSION = {"date": "2023-05-08", "turns": [{"speaker": "Caroline", "text": "I went to the group yesterday."}]}


def _task(tmp_path: Path, memory: str, model: str) -> Path:
    (tmp_path / "chats.jsonl").write_text(json.dumps(SESSION) + "\n", encoding="utf-8")
    path = tmp_path / "task.yaml"
    path.write_text(
        f"question: When did Caroline go to the group?\nmodel: {model}\noutput: {{store: null}}\n"
        f"memory:\n  scope: {{user_id: caroline}}\n  embedder: none\n{memory}",
        encoding="utf-8",
    )
    return path


def _invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, " ".join(result.output.split())


def _bad_ingest(tmp_path: Path, kind: str) -> str:
    if kind == "missing":
        return "gone.jsonl"
    if kind == "folder":
        (tmp_path / "chats_dir.jsonl").mkdir()
        return "chats_dir.jsonl"
    if kind == "not utf-8":
        (tmp_path / "latin.jsonl").write_bytes(
            '{"turns": [{"speaker": "Zoë", "text": "café"}]}\n'.encode("latin-1")
        )
        return "latin.jsonl"
    (tmp_path / "bad.jsonl").write_text(json.dumps(SESSION) + '\n{"turns": "none"}\n', encoding="utf-8")
    return "bad.jsonl"


@pytest.mark.parametrize(
    ("kind", "words"),
    [
        ("missing", "no such file"),
        ("folder", "cannot be read"),
        ("not utf-8", "cannot be read"),
        ("malformed", "bad.jsonl, line 2: a session is an object with a 'turns' list"),
    ],
)
@pytest.mark.parametrize("command", ["validate", "run"])
def test_a_bad_ingest_file_is_refused_by_validate_and_run_naming_field_and_line(
    tmp_path: Path, kind: str, words: str, command: str
) -> None:
    model = ScriptedModel([reply("7 May 2023")])
    name = _bad_ingest(tmp_path, kind)
    path = _task(tmp_path, f"  ingest:\n    - chats.jsonl\n    - {name}\n", model.model)
    code, out = _invoke(command, str(path))
    assert code == 2, out
    assert "memory.ingest.1" in out and "task.yaml:9: field" in out and words in out
    assert "fix:" in out and ".jsonl file of UTF-8 JSON lines" in out
    assert model.requests == []  # nothing spent


def _bad_store(tmp_path: Path, kind: str) -> str:
    if kind == "folder":
        (tmp_path / "memdir").mkdir()
        return "memdir"
    if kind == "not sqlite":
        (tmp_path / "notes.txt").write_text("these are my notes, not a database\n", encoding="utf-8")
        return "notes.txt"
    if kind == "unknown url":
        return "nosuchdb://host/db"
    return "'mysql+nosuchdriver://u@h/db'"


@pytest.mark.parametrize(
    ("kind", "words"),
    [
        ("folder", "memory store 'memdir': is a folder"),
        ("not sqlite", "memory store 'notes.txt': is not a SQLite database"),
        ("unknown url", "unknown database type 'nosuchdb'"),
        ("no driver", "memory store 'mysql+nosuchdriver://u@h/db'"),
    ],
)
def test_validate_refuses_a_memory_store_the_run_cannot_open(tmp_path: Path, kind: str, words: str) -> None:
    path = _task(tmp_path, f"  store: {_bad_store(tmp_path, kind)}\n", ScriptedModel([]).model)
    code, out = _invoke("validate", str(path))
    assert code == 2, out
    assert "memory.store" in out and "task.yaml:7: field" in out and words in out and "fix:" in out
    assert "run store" not in out and "output.store: null" not in out


def test_validate_accepts_good_memory_files_and_creates_nothing(tmp_path: Path) -> None:
    path = _task(tmp_path, "  store: data/mem.db\n  ingest: [chats.jsonl]\n", ScriptedModel([]).model)
    code, out = _invoke("validate", str(path))
    assert code == 0, out
    assert not (tmp_path / "data").exists()


def test_the_runs_own_ingest_error_names_the_field(tmp_path: Path) -> None:
    (tmp_path / "bad.jsonl").write_text('{"turns": [', encoding="utf-8")
    spec = MemorySpec.model_validate({"scope": {"user_id": "c"}, "ingest": ["bad.jsonl"], "embedder": "none"})
    with pytest.raises(ValueError, match=r"memory\.ingest\.0: .*bad\.jsonl, line 1"):
        setup_from_spec(spec, tmp_path)
