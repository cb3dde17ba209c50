"""Defects an audit of long-term memory found: keys stored and recalled as written, and tracebacks from
inside the library on bad arguments (memory never ends a run with one)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from thrifty import Agent, Budget
from thrifty.budget import Ledger
from thrifty.memory import Memory, MemoryStoreError
from thrifty.memory.records import MemoryItem, Scope
from thrifty.testing import ScriptedModel, reply

S = {"user_id": "caroline"}
SK = "sk-proj-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789abcd"
GHP = "ghp_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
PAT = "github_pat_11ABCDEFG0hijklmnopqrs_tuvwxyz0123456789"
AWS = "AKIAIOSFODNN7EXAMPLE"
ENV = "plainvalue-7fQ2xZ9wLm"  # shapeless: masked only as a secret environment variable's value
SECRETS = ("AbCdEfGhIjKl", "A1b2C3d4E5f6", "11ABCDEFG0hij", "IOSFODNN7EXAMPLE", "7fQ2xZ9wLm")


def _leaks(text: str) -> list[str]:
    return [s for s in SECRETS if s in text]


def _stored_bytes(folder: Path) -> str:
    return "".join(p.read_bytes().decode("latin-1") for p in folder.iterdir() if p.name.startswith("mem.db"))


def _session() -> dict[str, Any]:
    return {
        "id": f"s1 {GHP}",
        "date": "2023-05-08",
        "turns": [
            {"speaker": "Caroline", "text": f"My openai key is {SK} and my AWS key id is {AWS}."},
            {"speaker": "Mel", "text": f"I moved to Paris yesterday. My service token is {ENV}, pat {PAT}."},
        ],
    }


@pytest.fixture
def env_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_SERVICE_TOKEN", ENV)


@pytest.mark.usefixtures("env_secret")
def test_no_key_is_stored_recalled_or_shown(tmp_path: Path) -> None:
    mem = Memory(tmp_path / "mem.db", embedder="none", facts="low", summaries="low")
    mem.remember(f"Caroline's keys: {SK}, {GHP}, {AWS}, {PAT}, token {ENV}", scope=S, source=f"note {SK}")
    ingested = mem.ingest([_session()], scope=S, source=f"chat {GHP}:")
    assert ingested.added >= 2
    assert not _leaks(str(ingested.model_dump()))
    got = mem.recall("What are Caroline's openai key, AWS key id and service token?", scope=S, k=5)
    assert got.block and "sk-proj-***" in got.block
    assert not _leaks(got.block)
    assert not _leaks(str([i.model_dump() for i in got.items]))
    assert mem.facts_of(S) and mem.summaries_of(S)
    assert not _leaks(str([i.model_dump() for i in [*mem.facts_of(S), *mem.summaries_of(S)]]))
    mem.close()
    assert not _leaks(_stored_bytes(tmp_path))


@pytest.mark.usefixtures("env_secret")
def test_session_id_in_chunk_header_and_meta_is_masked() -> None:
    mem = Memory(embedder="none", summaries="low")
    mem.ingest([_session()], scope=S)
    items = mem.low.items(Scope.of(S))
    assert items
    for item in items:
        assert "ghp_***" in str(item.meta.get("session")), item.meta
        assert not _leaks(item.text + item.source + str(item.meta))
    turns = next(i for i in items if i.kind == "turns")
    assert turns.text.startswith("[8 May 2023, s1 ghp_***]")


@pytest.mark.usefixtures("env_secret")
def test_items_stored_unmasked_by_an_older_version_are_masked_when_read() -> None:
    mem = Memory(embedder="none")
    raw = MemoryItem(text=f"Caroline's token is {ENV} and key {SK}", scope=Scope.of(S), source=GHP)
    mem.low._insert_new({raw.id: raw})  # as an older version stored it: no mask
    got = mem.recall("What is Caroline's token and key?", scope=S)
    assert got.block and not _leaks(got.block)
    assert not _leaks(str([i.model_dump() for i in mem.low.items(Scope.of(S))]))


@pytest.mark.usefixtures("env_secret")
def test_no_key_reaches_the_models_prompt() -> None:
    mem = Memory(embedder="none")
    mem.remember(f"Caroline's openai key is {SK}; her service token is {ENV}; github {GHP}", scope=S)
    model = ScriptedModel(default=reply("the key is masked", prompt_tokens=50, completion_tokens=5))
    agent = Agent(
        model.model,
        memory=mem,
        memory_scope=S,
        memory_budget=Budget(memory_ops=4),
        budget=Budget(total_tokens=4000),
    )
    agent.run("What is Caroline's openai key?")
    sent = str([r.messages for r in model.requests])
    assert "<memory" in sent and "sk-proj-***" in sent
    assert not _leaks(sent)


@pytest.mark.usefixtures("env_secret")
def test_no_key_reaches_a_high_write_or_a_high_recall_prompt() -> None:
    model = ScriptedModel(default=reply("{}", prompt_tokens=50, completion_tokens=5))
    mem = Memory(
        embedder="none", model=model.model, facts="high", router={"retrieve": "high", "condense": "high"}
    )
    mem.ingest([_session()], scope=S, budget=Budget(total_tokens=100_000))
    mem.recall(f"Is {SK} Caroline's key, or {ENV}?", scope=S, budget=Budget(total_tokens=100_000))
    assert len(model.requests) >= 2
    assert not _leaks(str([r.messages for r in model.requests]))


# ------------------------------------------------------------------------------------- bad arguments
def _mem() -> Memory:
    mem = Memory(embedder="none")
    mem.remember("Caroline likes swordfish sushi", scope=S)
    return mem


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"k": -1, "router": "mid"}, ValueError, "k=-1"),
        ({"k": -1}, ValueError, "k=-1"),
        ({"k": 0}, ValueError, "k=0"),
        ({"k": 2.5}, TypeError, "k=2.5"),
        ({"k": "3"}, TypeError, "k='3'"),
        ({"k": True}, TypeError, "k=True"),
        ({"budget": "4"}, TypeError, "budget='4'"),
        ({"ledger": "x"}, TypeError, "ledger='x'"),
        ({"lam": "0.3"}, TypeError, "lam='0.3'"),
    ],
)
def test_recall_refuses_bad_arguments_before_charging(
    kwargs: dict[str, Any], error: type[Exception], words: str
) -> None:
    mem = _mem()
    ledger = Ledger(Budget(memory_ops=10))
    args = {"ledger": ledger, **kwargs}
    with pytest.raises(error) as caught:
        mem.recall("What does Caroline like?", scope=S, **args)
    assert not isinstance(caught.value, ValidationError)
    assert words in str(caught.value) and "give" in str(caught.value)
    assert ledger.events == []


@pytest.mark.parametrize("query", [None, 5, b"sushi"])
def test_recall_refuses_a_query_that_is_not_text(query: Any) -> None:
    ledger = Ledger(Budget(memory_ops=10))
    with pytest.raises(TypeError, match=r"query=.*give the question as a str"):
        _mem().recall(query, scope=S, ledger=ledger)
    assert ledger.events == []


def test_recall_k_given_is_used() -> None:
    mem = Memory(embedder="none", low_filter="none")
    for n in range(4):
        mem.remember(f"Caroline likes sushi number {n}", scope=S)
    assert len(mem.recall("sushi", scope=S, k=2).items) == 2


@pytest.mark.parametrize("when", ["2023-05-08", date(2023, 5, 8), datetime(2023, 5, 8, tzinfo=UTC)])
def test_remember_takes_a_date_as_text_a_date_or_a_datetime(when: Any) -> None:
    mem = Memory(embedder="none")
    mem.remember("I went to the support group yesterday.", scope=S, when=when)
    item = mem.low.items(Scope.of(S))[0]
    assert "yesterday (7 May 2023)" in item.text
    assert item.valid_from == datetime(2023, 5, 8, tzinfo=UTC)


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"when": "next tuesday"}, ValueError, "when='next tuesday'"),
        ({"when": 20230508}, TypeError, "when=20230508"),
        ({"text": None}, TypeError, "text=None"),
        ({"text": "   "}, ValueError, "text is blank"),
        ({"source": 3}, TypeError, "source=3"),
        ({"ledger": "x"}, TypeError, "ledger='x'"),
    ],
)
def test_remember_refuses_bad_arguments(kwargs: dict[str, Any], error: type[Exception], words: str) -> None:
    mem = Memory(embedder="none")
    args = {"text": "Caroline likes sushi", **kwargs}
    with pytest.raises(error) as caught:
        mem.remember(args.pop("text"), scope=S, **args)
    assert not isinstance(caught.value, ValidationError)
    assert words in str(caught.value)
    assert mem.count() == 0


@pytest.mark.parametrize(
    ("sessions", "words"),
    [(None, "sessions=None"), (b"/tmp/chats.jsonl", "got bytes"), (42, "sessions=42")],
)
def test_ingest_refuses_sessions_that_are_no_sessions(sessions: Any, words: str) -> None:
    mem = Memory(embedder="none")
    ledger = Ledger(Budget(memory_ops=10))
    with pytest.raises(TypeError) as caught:
        mem.ingest(sessions, scope=S, ledger=ledger)
    assert words in str(caught.value) and "give" in str(caught.value)
    assert "sessions[0]" not in str(caught.value)
    assert ledger.events == [] and mem.count() == 0


def test_ingest_takes_one_session_as_a_dict() -> None:
    mem = Memory(embedder="none")
    done = mem.ingest({"date": "2023-05-08", "turns": [{"speaker": "C", "text": "I like sushi."}]}, scope=S)
    assert done.added == 1
    assert "I like sushi." in mem.recall("sushi", scope=S).block


def test_ingest_refuses_a_bad_budget_before_reading() -> None:
    with pytest.raises(TypeError, match="budget='4'"):
        Memory(embedder="none").ingest([_session()], scope=S, budget="4")  # pyright: ignore[reportArgumentType]


@pytest.mark.parametrize(
    "call",
    [
        lambda m: m.recall("sushi", scope=S),
        lambda m: m.remember("more sushi", scope=S),
        lambda m: m.ingest([_session()], scope=S),
        lambda m: m.forget(S),
        lambda m: m.count(),
        lambda m: m.facts_of(S),
        lambda m: m.summaries_of(S),
        lambda m: m.least_recall_cost(S),
    ],
)
def test_a_closed_memory_says_so(call: Any) -> None:
    mem = _mem()
    mem.close()
    with pytest.raises(MemoryStoreError, match="this Memory is closed"):
        call(mem)


def test_a_memory_closed_by_its_with_block_says_so(tmp_path: Path) -> None:
    with Memory(tmp_path / "m.db", embedder="none") as mem:
        mem.remember("Caroline likes sushi", scope=S)
    with pytest.raises(MemoryStoreError, match=r"this Memory is closed.*open a new Memory"):
        mem.recall("sushi", scope=S)


# ------------------------------------------------------------------------------------- ingest messages
def test_a_jsonl_file_with_a_utf8_bom_is_read(tmp_path: Path) -> None:
    path = tmp_path / "chats.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + (json.dumps(_plain()) + "\n").encode())
    done = Memory(embedder="none").ingest(path, scope=S)
    assert done.added == 1 and not done.notes


def _plain() -> dict[str, Any]:
    return {"date": "2023-05-08", "turns": [{"speaker": "C", "text": "I like sushi."}]}


@pytest.mark.parametrize(
    ("content", "words"),
    [("", "no sessions"), ("\n  \n\n", "no sessions"), ('{"turns": []}\n', "1 sessions without turns")],
)
def test_ingesting_nothing_says_so(tmp_path: Path, content: str, words: str) -> None:
    path = tmp_path / "chats.jsonl"
    path.write_text(content, encoding="utf-8")
    done = Memory(embedder="none").ingest(path, scope=S)
    assert done.added == 0
    assert any(n.startswith("nothing stored:") and "chats.jsonl" in n and words in n for n in done.notes)


def test_ingesting_an_empty_list_says_so() -> None:
    done = Memory(embedder="none").ingest([], scope=S)
    assert done.notes == ["nothing stored: the sessions given holds no sessions (empty or blank lines)"]
