"""``agent batch`` result lines count the memory operations a task spent, whether or not its budget limits
them; a results file written before the field existed still resumes."""

from __future__ import annotations

import json
from pathlib import Path

from thrifty.scale.batch import load_batch, load_lines, run_batch
from thrifty.testing import ScriptedModel, reply

SESSION = {
    "id": "s1",
    "date": "2023-05-08T13:56",
    "turns": [{"speaker": "Caroline", "text": "I went to the LGBTQ support group yesterday."}],
}


def register_model() -> None:
    ScriptedModel(name="batch-memory", default=reply("7 May 2023", prompt_tokens=40, completion_tokens=5))


def write_task(folder: Path, name: str, memory: bool) -> Path:
    (folder / "chats.jsonl").write_text(json.dumps(SESSION) + "\n", encoding="utf-8")
    path = folder / f"{name}.yaml"
    block = (
        "memory:\n  store: mem.db\n  scope: {user_id: caroline}\n  ingest: [chats.jsonl]\n  router: low\n"
        "  embedder: none\n"
        if memory
        else ""
    )
    path.write_text(
        f"name: {name}\nquestion: When did Caroline go to the support group?\nmodel: scripted/batch-memory\n"
        f"budget: {{total_tokens: 5000}}\noutput: {{store: null}}\n{block}",
        encoding="utf-8",
    )
    return path


def test_batch_lines_report_the_memory_ops_spent_without_a_memory_ops_limit(tmp_path: Path) -> None:
    register_model()
    jobs = load_batch([write_task(tmp_path, "with-memory", True), write_task(tmp_path, "plain", False)])
    out = tmp_path / "results.jsonl"
    outcome = run_batch(jobs, out, store=False)
    assert outcome.ran == 2
    usage = {line["task"]: line["usage"] for line in load_lines(out)}
    assert usage["with-memory"]["memory_ops"] == 3  # the ingest's write, the recall's retrieve and condense
    assert usage["plain"]["memory_ops"] == 0


def test_a_results_file_without_memory_ops_still_resumes(tmp_path: Path) -> None:
    register_model()
    done, todo = write_task(tmp_path, "done", False), write_task(tmp_path, "todo", True)
    jobs = load_batch([done, todo])
    out = tmp_path / "results.jsonl"
    run_batch(jobs[:1], out, store=False)
    [line] = load_lines(out)
    del line["usage"]["memory_ops"]  # as an older version wrote it
    out.write_text(json.dumps(line) + "\n", encoding="utf-8")
    outcome = run_batch(jobs, out, store=False)
    assert outcome.ran == 1
    assert {ln["task"]: ln["usage"].get("memory_ops") for ln in load_lines(out)} == {"done": None, "todo": 3}
