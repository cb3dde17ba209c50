"""A key pasted into a run's question is masked before anything reads it: the model, the checkpoint, the run
store, the trace and the result all get the masked question (the engineering rule: secrets never reach logs,
traces, responses or stores; a model's provider is a third party)."""

from __future__ import annotations

from pathlib import Path

import pytest

from thrifty import Agent, Budget
from thrifty.store.durable import CheckpointError
from thrifty.testing import ScriptedModel, ScriptedReply, ScriptedRequest, call, reply
from thrifty.tools import calculator
from thrifty.workflows.durable import check_same_run

PASTED = "sk-proj-Zq81bcdEFGH2345ijklMNOP"
ENV_KEY = "tok-9f8e7d6c5b4a3210"


def _files_text(folder: Path) -> bytes:
    """Every byte of every file in ``folder`` (the SQLite files and their write-ahead logs)."""
    return b"".join(p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file())


def test_a_key_in_the_question_reaches_no_model_checkpoint_store_or_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MY_SERVICE_TOKEN", ENV_KEY)
    seen: list[str] = []

    def answer(request: ScriptedRequest) -> ScriptedReply:
        seen.append(str(request.messages))
        done = sum(1 for m in request.messages if m.get("role") == "tool")
        return call("calculator", expression="2+2") if done == 0 else reply("4")

    script = ScriptedModel([], default=answer)
    data = tmp_path / "data"
    data.mkdir()
    question = f"My key is {PASTED} and my token {ENV_KEY}; what is 2+2?"
    agent = Agent(script.model, tools=[calculator], budget=Budget(tool_calls=3), store=data / "runs.db")
    result = agent.run(question, run_id="r-secret", checkpoint=data / "ck.db")
    assert result.answer == "4" and len(seen) == 2
    assert result.question == "My key is sk-proj-*** and my token ***; what is 2+2?"
    for text in (*seen, result.model_dump_json(), _files_text(data).decode("latin-1")):
        assert PASTED not in text and ENV_KEY not in text
    assert "sk-proj-***" in seen[0]  # the model is told a key was there, not what it was


def test_a_run_saved_with_its_question_unmasked_still_resumes() -> None:
    """Runs checkpointed before questions were masked hold the question as typed; a resume (whose question is
    masked) is the same run, and a refusal does not print the stored key."""
    typed = f"Is {PASTED} valid?"
    masked = "Is sk-proj-*** valid?"
    row = {"meta": {"question": typed, "strategy": "react", "tools": []}}
    check_same_run(row, "r-1", {"question": masked, "strategy": "react", "tools": []})
    with pytest.raises(CheckpointError) as caught:
        check_same_run(row, "r-1", {"question": "Another question?", "strategy": "react", "tools": []})
    assert PASTED not in str(caught.value) and masked in str(caught.value)


def test_a_streamed_run_starts_with_the_masked_question() -> None:
    script = ScriptedModel([reply("4")])
    events = list(Agent(script.model).stream(f"My key is {PASTED}; what is 2+2?"))
    assert events[0].kind == "start" and events[0].question == "My key is sk-proj-***; what is 2+2?"
    assert all(PASTED not in event.model_dump_json() for event in events)
