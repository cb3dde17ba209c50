"""`agent bench locomo|longmemeval` on small files written here: scoring, records, resuming, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.memory.conversations import locomo_sample
from thrifty.bench.memory import (
    MemBenchConfig,
    locomo_conversations,
    locomo_f1,
    longmemeval_conversations,
    parse_routers,
    run_memory_bench,
    summarize_memory,
)
from thrifty.bench.runner import make_pricing
from thrifty.cli import app

runner = CliRunner()


def test_locomo_f1_follows_the_official_rules() -> None:
    assert locomo_f1("7 May 2023", "7 May 2023", "2") == 1.0
    assert locomo_f1("The painting", "paintings", "4") == 1.0  # articles dropped, Porter stems
    assert locomo_f1("psychology, counseling", "Psychology, counseling certification", "1") == pytest.approx(
        (1.0 + 2 * (1 / 1) * (1 / 2) / (1 + 1 / 2)) / 2
    )
    assert locomo_f1("camping", "camping; hiking later", "3") == 1.0
    assert locomo_f1("No information available.", "a dog", "5") == 1.0
    assert locomo_f1("a dog", "a dog", "5") == 0.0
    assert locomo_f1("", "Pixel", "4") == 0.0


def _config(convs, routers: str = "low,mid,rules:0.1") -> MemBenchConfig:
    model = "memsim/q=1"
    return MemBenchConfig(
        dataset="locomo",
        conversations=convs,
        routers=parse_routers(routers),
        model=model,
        pricing=make_pricing(model, price_in=0.15, price_out=0.6),
        embedder="none",
    )


def test_a_run_scores_recall_and_resumes(tmp_path: Path) -> None:
    data = tmp_path / "locomo.json"
    data.write_text(json.dumps([locomo_sample("a"), locomo_sample("b")]), encoding="utf-8")
    convs = locomo_conversations(data)
    results = tmp_path / "out" / "results.jsonl"
    records = list(run_memory_bench(_config(convs), results))
    assert len(records) == 2 * 3 * 3
    cat = next(r for r in records if r["question_index"] == 1 and r["router"] == "low")
    assert cat["prediction"] == "Pixel" and cat["f1"] == 1.0 and cat["evidence_recall"] == 1.0
    adversarial = next(r for r in records if r["adversarial"])
    assert adversarial["f1"] == 1.0 and adversarial["evidence_recall"] is None
    assert all(r["simulated"] and r["memory_ops"] == 2 and r["memory_usd"] > 0 for r in records)
    assert list(run_memory_bench(_config(convs), results)) == []  # everything done: nothing reruns
    rows = summarize_memory([json.loads(line) for line in results.read_text().splitlines()])
    assert {r["router"] for r in rows} == {"low", "mid", "rules:0.1"}
    low = next(r for r in rows if r["router"] == "low")
    assert low["n"] == 4 and low["evidence_recall"] == 1.0 and low["shares"]["retrieve"]["low"] == 1.0


def test_longmemeval_mixes_a_haystack_and_keeps_the_oracle_setting(tmp_path: Path) -> None:
    questions = []
    for i in range(4):
        questions.append(
            {
                "question_id": f"q{i}",
                "question_type": "single-session-user",
                "question": f"What is pet {i} called?",
                "answer": f"Name{i}",
                "question_date": "2023/06/14 (Wed) 08:23",
                "haystack_dates": ["2023/05/21 (Sun) 00:53"],
                "haystack_session_ids": [f"answer_{i}"],
                "haystack_sessions": [
                    [{"role": "user", "content": f"My pet {i} is called Name{i}.", "has_answer": True}]
                ],
                "answer_session_ids": [f"answer_{i}"],
            }
        )
    path = tmp_path / "lme.json"
    path.write_text(json.dumps(questions), encoding="utf-8")
    mixed = longmemeval_conversations(path, haystack=3)
    oracle = longmemeval_conversations(path, haystack=0)
    assert [len(c.sessions) for c in mixed] == [3] * 4 and [len(c.sessions) for c in oracle] == [1] * 4
    assert "answer_0" in {s.id for s in mixed[0].sessions}
    assert mixed[0].questions[0].evidence_lines == ("user: My pet 0 is called Name0.",)


def test_the_cli_runs_offline_and_refuses_a_bad_file(tmp_path: Path) -> None:
    data = tmp_path / "locomo.json"
    data.write_text(json.dumps([locomo_sample()]), encoding="utf-8")
    out = tmp_path / "out"
    args = [
        "bench",
        "locomo",
        "--data",
        str(data),
        "--routers",
        "low,rules",
        "--embedder",
        "none",
        "--out",
        str(out),
        "--no-plot",
    ]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "SIMULATED" in res.output and "| low |" in res.output and (out / "table.md").exists()
    data.write_text(data.read_text()[:-40], encoding="utf-8")
    res = runner.invoke(app, [*args[:4], "--embedder", "none", "--out", str(tmp_path / "o2")])
    assert res.exit_code == 2 and "truncated" in res.output and "Traceback" not in res.output
    res = runner.invoke(app, ["bench", "locomo", "--data", str(tmp_path / "missing.json")])
    assert res.exit_code == 2 and "no such file" in res.output
    res = runner.invoke(app, ["bench", "locomo", "--data", str(data), "--routers", "fancy"])
    assert res.exit_code == 2
    data.write_text(json.dumps([locomo_sample()]), encoding="utf-8")
    res = runner.invoke(app, [*args, "--conversations", "5-2"])  # ran 0 questions and exited 0
    assert res.exit_code == 2 and "the range 5-2 is empty" in res.output


def test_the_old_low_recall_is_an_option_and_a_bad_filter_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "locomo.json"
    data.write_text(json.dumps([locomo_sample()]), encoding="utf-8")
    base = ["bench", "locomo", "--data", str(data), "--routers", "low", "--embedder", "none", "--no-plot"]
    res = runner.invoke(app, [*base, "--no-stem", "--low-filter", "none", "--out", str(tmp_path / "old")])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, [*base, "--filter-k", "3", "--out", str(tmp_path / "new")])
    assert res.exit_code == 0, res.output
    old = [json.loads(x) for x in (tmp_path / "old" / "results.jsonl").read_text().splitlines()]
    new = [json.loads(x) for x in (tmp_path / "new" / "results.jsonl").read_text().splitlines()]
    assert len(old) == len(new) == len(locomo_sample()["qa"])
    res = runner.invoke(app, [*base, "--low-filter", "sentences", "--out", str(tmp_path / "bad")])
    assert res.exit_code == 2 and "--low-filter" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "bad" / "results.jsonl").exists()
