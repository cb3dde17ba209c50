"""Write-time layers: facts with validity times (LOW rules, HIGH model) and session summaries."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path
from typing import Any, cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from thrifty.budget import Budget, Ledger
from thrifty.memory import ChatSession, ChatTurn, Memory, Scope
from thrifty.memory.facts import extract_facts, summarize
from thrifty.memory.memory import WriteLevel
from thrifty.memory.temporal import event_day, parse_when
from thrifty.testing import ScriptedModel, reply

from .conversations import SESSIONS

CAROLINE = {"user_id": "caroline"}
EARLY = {
    "id": "s0",
    "date": "2023-04-01T09:00",
    "turns": [
        {
            "speaker": "Caroline",
            "text": "My favourite colour is teal. I live in Boston with my cat.",
            "id": "D0:1",
        }
    ],
}
LATE = {
    "id": "s3",
    "date": "2023-08-01T09:00",
    "turns": [
        {
            "speaker": "Caroline",
            "text": "My favourite colour is blue now. I moved to Berlin last month!",
            "id": "D3:1",
        },
        {"speaker": "Melanie", "text": "Wow, Berlin! What do you do there?", "id": "D3:2"},
    ],
}


def _texts(mem: Memory, **kw: Any) -> list[str]:
    return [f.text for f in mem.facts_of(CAROLINE, **kw)]


def test_low_facts_are_first_person_sentences_rewritten_and_dated() -> None:
    session = ChatSession(
        "s2",
        (
            ChatTurn(
                "Caroline", "I adopted a grey cat named Pixel two days ago. Do you like cats?", ref="D2:2"
            ),
            ChatTurn("Melanie", "I think that's lovely. My daughter plays the violin.", ref="D2:3"),
            ChatTurn("assistant", "I recommend a harness for walking the cat outside.", ref="D2:4"),
            ChatTurn("Melanie", "Ok!", ref="D2:5"),
        ),
        date=parse_when("2023-06-09T10:00"),
    )
    facts = extract_facts(session, Scope(**CAROLINE), "chat:s2")
    assert [f.text for f in facts] == [
        "Caroline adopted a grey cat named Pixel two days ago (7 June 2023).",
        "Melanie's daughter plays the violin.",
    ]
    assert facts[0].valid_from is not None and facts[0].valid_from.date().isoformat() == "2023-06-07"
    assert facts[1].valid_from == session.date and facts[1].valid_to is None
    assert (
        facts[0].meta["refs"] == ["D2:2"] and facts[0].meta["kind"] == "fact" and facts[0].meta["key"] == ""
    )
    assert event_day("We met last Friday", session.date) is not None
    assert event_day("We met last year", session.date) is None


def test_a_later_fact_on_the_same_subject_and_attribute_closes_the_earlier(tmp_path: Path) -> None:
    mem = Memory(embedder="none", facts="low")
    first = mem.ingest([EARLY, *SESSIONS], scope=CAROLINE)
    assert first.layers["fact"] >= 5 and first.closed == 0
    later = mem.ingest([LATE], scope=CAROLINE)
    assert later.closed == 2  # favourite colour and home
    by_key = {f.meta["key"]: f for f in mem.facts_of(CAROLINE) if f.valid_to is not None}
    assert set(by_key) == {"caroline|favourite colour", "caroline|home"}
    assert all(
        f.valid_to is not None and f.valid_to.date().isoformat() == "2023-08-01" for f in by_key.values()
    )
    current = _texts(mem, current=True)
    assert (
        "Caroline's favourite colour is blue now." in current
        and "Caroline's favourite colour is teal." not in current
    )
    # Ingesting again adds and closes nothing; the order of arrival does not matter.
    again = mem.ingest([EARLY, LATE, *SESSIONS], scope=CAROLINE)
    assert (again.added, again.closed) == (0, 0)
    reverse = Memory(embedder="none", facts="low")
    reverse.ingest([LATE], scope=CAROLINE)
    reverse.ingest([*SESSIONS, EARLY], scope=CAROLINE)
    chain = lambda m: [(f.text, f.valid_from, f.valid_to) for f in m.facts_of(CAROLINE)]  # noqa: E731
    assert chain(reverse) == chain(mem)


def test_facts_are_recalled_beside_chunks_with_their_dates_and_forgotten() -> None:
    mem = Memory(embedder="none", facts="low", summaries="low")
    mem.ingest([EARLY, *SESSIONS, LATE], scope=CAROLINE)
    got = mem.recall("What is Caroline's favourite colour?", scope=CAROLINE, router="low")
    assert got.report.facts >= 2 and got.report.memory_ops == 3  # retrieve, facts lookup, condense
    assert "- [1 April 2023 until 1 August 2023, replaced] Caroline's favourite colour is teal." in got.block
    assert "- [1 August 2023] Caroline's favourite colour is blue now." in got.block
    assert "[1 April 2023, s0]\nCaroline: My favourite colour is teal." in got.block  # the raw turns too
    assert all(i.kind != "summary" for i in got.items)  # summaries are a layer for condense, not retrieved
    # A budget of two operations keeps the second for condense: facts are skipped, the block still comes.
    tight = mem.recall("favourite colour", scope=CAROLINE, router="low", budget=Budget(memory_ops=2))
    assert tight.block and tight.report.facts == 0 and any("facts skipped" in n for n in tight.report.notes)
    n = mem.count(CAROLINE)
    assert n == 4 + len(mem.facts_of(CAROLINE)) + len(mem.summaries_of(CAROLINE))
    assert mem.forget(CAROLINE).removed == n
    assert mem.facts_of(CAROLINE) == [] and mem.summaries_of(CAROLINE) == [] and mem.count() == 0


def test_low_summaries_are_extractive_one_per_session() -> None:
    mem = Memory(embedder="none", summaries="low")
    report = mem.ingest(SESSIONS, scope=CAROLINE)
    assert report.layers == {"turns": 2, "summary": 2} and report.tiers["s1"] == {"summaries": "low"}
    first = mem.summaries_of(CAROLINE)[0].text
    assert first.startswith("[summary of s1, 8 May 2023] Caroline: Hey Mel!")
    assert "yesterday (7 May 2023)" in first
    long = ChatSession("x", tuple(ChatTurn("A", f"Sentence {i} is about cats and dogs.") for i in range(40)))
    assert len(summarize(long)) <= 640


def _notes_reply(facts: list[dict[str, str]], summary: str) -> str:
    return "Here you are:\n```json\n" + json.dumps({"facts": facts, "summary": summary}) + "\n```"


def test_high_facts_and_summary_come_from_one_charged_model_call_per_session() -> None:
    script = ScriptedModel(
        default=reply(
            _notes_reply(
                [
                    {
                        "subject": "Caroline",
                        "attribute": "pet",
                        "text": "Caroline has a cat named Pixel",
                        "date": "2023-06-07",
                    }
                ],
                "Caroline and Melanie talk about family.",
            ),
            prompt_tokens=120,
            completion_tokens=40,
        )
    )
    mem = Memory(embedder="none", model=script.model, facts="high", summaries="high")
    ledger = Ledger(Budget(total_tokens=10_000))
    report = mem.ingest(SESSIONS, scope=CAROLINE, ledger=ledger)
    assert len(script.requests) == 2 and report.tiers == {
        "s1": {"facts": "high", "summaries": "high"},
        "s2": {"facts": "high", "summaries": "high"},
    }
    model_events = [e for e in ledger.events if e.kind == "model"]
    assert len(model_events) == 2 and all(e.node == "memory" for e in model_events)
    assert ledger.used()["total_tokens"] == 2 * 160 and ledger.used()["memory_ops"] == 1
    facts = mem.facts_of(CAROLINE)
    assert [f.meta["tier"] for f in facts] == ["high"]  # the same fact from both sessions is stored once
    assert facts[0].text == "Caroline has a cat named Pixel." and facts[0].valid_to is None
    assert (
        mem.summaries_of(CAROLINE)[0].text
        == "[summary of s1, 8 May 2023] Caroline and Melanie talk about family."
    )
    # Ingesting again asks the model nothing and spends nothing on it.
    again = mem.ingest(SESSIONS, scope=CAROLINE, ledger=ledger)
    assert (
        len(script.requests) == 2
        and again.added == 0
        and again.tiers["s1"] == {"facts": "stored", "summaries": "stored"}
    )


def test_a_high_write_the_budget_cannot_pay_falls_back_to_low_and_says_so() -> None:
    script = ScriptedModel(default=reply(_notes_reply([], "x"), prompt_tokens=100, completion_tokens=10))
    mem = Memory(embedder="none", model=script.model, facts="high", summaries="low")
    ledger = Ledger(Budget(total_tokens=50, memory_ops=1))
    report = mem.ingest(SESSIONS, scope=CAROLINE, ledger=ledger)
    assert not script.requests and report.tiers["s1"] == {"facts": "low", "summaries": "low"}
    assert any("HIGH write not affordable: LOW rules used" in n for n in report.notes)
    assert report.layers["fact"] >= 3 and not ledger.overruns
    assert ledger.used().get("total_tokens", 0) == 0 and ledger.used()["memory_ops"] == 1


def test_an_unreadable_or_failed_high_reply_falls_back_to_low() -> None:
    script = ScriptedModel(default=reply("no json here, sorry", prompt_tokens=10, completion_tokens=5))
    mem = Memory(embedder="none", model=script.model, facts="high")
    report = mem.ingest(SESSIONS[:1], scope=CAROLINE)
    assert len(script.requests) == 1 and report.tiers["s1"] == {"facts": "low"}
    assert any("HIGH write failed (ValueError)" in n for n in report.notes)
    assert [f.meta["tier"] for f in mem.facts_of(CAROLINE)] == ["low"] * len(mem.facts_of(CAROLINE))


def test_a_high_reply_without_a_summary_keeps_its_facts_and_takes_the_low_summary() -> None:
    facts = [{"subject": "Caroline", "text": "Caroline went to a support group", "date": "2023-05-07"}]
    script = ScriptedModel(default=reply(_notes_reply(facts, "  "), prompt_tokens=10, completion_tokens=5))
    mem = Memory(embedder="none", model=script.model, facts="high", summaries="high")
    report = mem.ingest(SESSIONS[:1], scope=CAROLINE)
    assert report.tiers["s1"] == {"facts": "high", "summaries": "low"}
    assert any("has no summary: LOW summary used" in n for n in report.notes)
    assert [f.meta["tier"] for f in mem.facts_of(CAROLINE)] == ["high"]
    assert [s.meta["tier"] for s in mem.summaries_of(CAROLINE)] == ["low"]


def test_high_condense_reads_the_session_summaries() -> None:
    script = ScriptedModel(default=reply("notes", prompt_tokens=30, completion_tokens=5))
    mem = Memory(embedder="none", model=script.model, summaries="low")
    mem.ingest(SESSIONS, scope=CAROLINE)
    got = mem.recall(
        "When did Caroline adopt Pixel?", scope=CAROLINE, router={"retrieve": "low", "condense": "high"}
    )
    assert got.report.ran["condense"] == "high"
    prompt = script.requests[-1].messages[-1]["content"]
    assert "Session summaries:\n[summary of s" in prompt


def test_write_options_are_checked() -> None:
    with pytest.raises(ValueError, match="facts='high' needs a model"):
        Memory(embedder="none", facts="high")
    with pytest.raises(ValueError, match="use none, low or high"):
        Memory(embedder="none", summaries="medium")  # pyright: ignore[reportArgumentType]


def _fact_writer(db: str, who: int) -> None:
    mem = Memory(db, embedder="none", facts="low", summaries="low")
    for r in range(6):
        mem.ingest([EARLY, *SESSIONS, LATE] if (r + who) % 2 else [LATE, EARLY, *SESSIONS], scope=CAROLINE)
    mem.close()


def test_two_processes_writing_facts_duplicate_nothing_and_agree_on_validity(tmp_path: Path) -> None:
    db = str(tmp_path / "facts.db")
    Memory(db, embedder="none").close()
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_fact_writer, args=(db, who)) for who in (1, 2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(180)
    assert [p.exitcode for p in procs] == [0, 0]
    shared = Memory(db, embedder="none")
    alone = Memory(embedder="none", facts="low", summaries="low")
    alone.ingest([EARLY, *SESSIONS, LATE], scope=CAROLINE)
    assert shared.count(CAROLINE) == alone.count(CAROLINE)
    chain = lambda m: [(f.text, f.valid_from, f.valid_to) for f in m.facts_of(CAROLINE)]  # noqa: E731
    assert chain(shared) == chain(alone)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    ops=st.integers(min_value=1, max_value=3),
    tokens=st.integers(min_value=1, max_value=600),
    prompt=st.integers(min_value=1, max_value=300),
    layers=st.sampled_from(
        [
            cast(tuple[WriteLevel, WriteLevel], pair)
            for pair in [("high", "high"), ("high", "low"), ("low", "high"), ("none", "high")]
        ]
    ),
    routers=st.lists(st.sampled_from(["low", "mid", "high", "rules"]), min_size=1, max_size=4),
)
def test_ingest_and_recall_with_layers_never_overspend(
    ops: int, tokens: int, prompt: int, layers: tuple[WriteLevel, WriteLevel], routers: list[str]
) -> None:
    facts = [{"subject": "Caroline", "attribute": "pet", "text": "Caroline has a cat named Pixel"}]
    script = ScriptedModel(
        default=reply(_notes_reply(facts, "cats"), prompt_tokens=prompt, completion_tokens=30)
    )
    mem = Memory(embedder="none", model=script.model, facts=layers[0], summaries=layers[1])
    run = Ledger(Budget(total_tokens=10_000))
    cap = run.child(Budget(memory_ops=ops, total_tokens=tokens), name="memory")
    try:
        mem.ingest(SESSIONS, scope=CAROLINE, ledger=cap)
    except Exception as exc:  # only the write itself may be refused, and then nothing is stored
        assert type(exc).__name__ == "BudgetExceeded" and mem.count() == 0
    for router in routers:
        mem.recall("What is the name of Caroline's cat?", scope=CAROLINE, ledger=cap, router=router)
    spent = cap.used()
    assert spent.get("memory_ops", 0) <= ops and spent.get("total_tokens", 0) <= tokens
    assert not cap.overruns and not run.overruns


def test_a_store_another_process_holds_gets_no_layer_written_half_way(tmp_path: Path) -> None:
    import sqlite3

    from thrifty.memory.memory import MemoryStoreError

    db = tmp_path / "held.db"
    mem = Memory(db, embedder="none", facts="low", summaries="low", busy_timeout=0.2)
    holder = sqlite3.connect(db, timeout=0.1)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(MemoryStoreError, match="nothing was written"):
            mem.ingest([EARLY, *SESSIONS, LATE], scope=CAROLINE)
    finally:
        holder.rollback()
        holder.close()
    assert mem.count() == 0
    done = mem.ingest([EARLY, *SESSIONS, LATE], scope=CAROLINE)
    assert done.added == mem.count() and done.closed == 2
