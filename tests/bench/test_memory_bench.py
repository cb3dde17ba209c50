"""`agent bench locomo|longmemeval` on small files written here: scoring, records, resuming, bad input."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.memory.conversations import locomo_sample
from thrifty.bench.memory import (
    MemBenchConfig,
    MemBenchError,
    locomo_conversations,
    locomo_f1,
    longmemeval_conversations,
    parse_routers,
    run_memory_bench,
    settings_path,
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


def _cli_args(data: Path, out: Path, *extra: str) -> list[str]:
    return [
        "bench",
        "locomo",
        "--data",
        str(data),
        "--routers",
        "low",
        "--embedder",
        "none",
        "--no-plot",
        "--out",
        str(out),
        *extra,
    ]


@pytest.mark.parametrize(
    "changed",
    [
        ["--model", "memsim/q=0.5"],
        ["--memory-model", "memsim/q=0.5"],
        ["--no-stem"],
        ["--low-filter", "none"],
        ["--chunk-tokens", "64"],
        ["--memory-ops", "3"],
        ["--price-in", "1.0"],
    ],
)
def test_resuming_a_folder_made_with_other_settings_is_refused(tmp_path: Path, changed: list[str]) -> None:
    data = tmp_path / "locomo.json"
    data.write_text(json.dumps([locomo_sample()]), encoding="utf-8")
    out = tmp_path / "out"
    assert runner.invoke(app, _cli_args(data, out)).exit_code == 0
    rows = (out / "results.jsonl").read_text()
    res = runner.invoke(app, _cli_args(data, out, *changed))
    assert res.exit_code == 2 and "was made with other settings" in res.output, res.output
    assert "--out" in res.output and "Traceback" not in res.output
    assert (out / "results.jsonl").read_text() == rows  # nothing added
    res = runner.invoke(app, _cli_args(data, out))  # the same settings resume (nothing left to run)
    assert res.exit_code == 0 and (out / "results.jsonl").read_text() == rows


def test_a_haystack_of_other_sessions_and_rows_without_settings_are_refused(tmp_path: Path) -> None:
    data = tmp_path / "locomo.json"
    data.write_text(json.dumps([locomo_sample()]), encoding="utf-8")
    convs = locomo_conversations(data)
    results = tmp_path / "out" / "results.jsonl"
    list(run_memory_bench(_config(convs, "low"), results))
    fewer = [replace(convs[0], sessions=convs[0].sessions[:1])]  # same conversation id, other sessions
    with pytest.raises(MemBenchError, match=r"other settings: conversation conv-t1"):
        list(run_memory_bench(_config(fewer, "low"), results))
    settings_path(results).unlink()
    with pytest.raises(MemBenchError, match=r"has rows but no results\.settings\.json"):
        list(run_memory_bench(_config(convs, "low"), results))


def test_an_unusable_answer_or_memory_model_is_refused_before_any_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    data = tmp_path / "locomo.json"
    data.write_text(json.dumps([locomo_sample()]), encoding="utf-8")
    for i, model in enumerate(
        [
            ["--model", "nope/x"],
            ["--model", "openai/gpt-4o-mini"],
            ["--memory-model", "nope/y"],
            ["--model", "memsim/q=2"],
            ["--model", "memsim/qq=0.5"],
        ]
    ):
        out = tmp_path / f"o{i}"
        res = runner.invoke(app, [*_cli_args(data, out), "--routers", "low,high", *model])
        assert res.exit_code == 2 and "Traceback" not in res.output, res.output
        wanted = ("unknown provider 'nope'", "OPENAI_API_KEY", "blocked", "q must be within", "use memsim/q=")
        assert any(m in res.output for m in wanted)
        assert "model" in res.output and not (out / "results.jsonl").exists()


def test_a_failed_answer_call_stops_the_run_and_is_not_saved_as_done(tmp_path: Path) -> None:
    from thrifty.testing import ScriptedModel, reply

    data = tmp_path / "locomo.json"
    data.write_text(json.dumps([locomo_sample()]), encoding="utf-8")
    convs = locomo_conversations(data)
    script = ScriptedModel([reply("7 May 2023")], default=RuntimeError("provider down"))
    config = _config(convs, "low")
    config.model = script.model
    results = tmp_path / "out" / "results.jsonl"
    records = []
    with pytest.raises(MemBenchError, match=r"answer model .* failed: .*rerun the same command to resume"):
        for record in run_memory_bench(config, results):
            records.append(record)
    saved = [json.loads(line) for line in results.read_text().splitlines()]
    assert len(records) == len(saved) == 1 and not saved[0]["prediction"].startswith("[error")
    script.default = reply("No information available.")  # the provider is back
    assert len(list(run_memory_bench(config, results))) == len(convs[0].questions) - 1  # the rest, resumed


def test_the_router_grid_refuses_a_grid_of_other_settings(tmp_path: Path) -> None:
    from tests.memory.conversations import SESSIONS

    lme = [
        {
            "question_id": "q0",
            "question_type": "single-session-user",
            "question": "What is the cat called?",
            "answer": "Pixel",
            "question_date": "2023/06/14 (Wed) 08:23",
            "haystack_dates": ["2023/06/09 (Fri) 10:00"],
            "haystack_session_ids": ["s2"],
            "haystack_sessions": [
                [{"role": "user", "content": t["text"], "has_answer": True} for t in SESSIONS[1]["turns"]]
            ],
            "answer_session_ids": ["s2"],
        }
    ]
    data = tmp_path / "lme.json"
    data.write_text(json.dumps(lme), encoding="utf-8")
    grid = tmp_path / "g.grid.jsonl"
    grid.write_text('{"conversation": "0:q0", "question_index": 0, "config": "low+low"}\n', encoding="utf-8")
    args = [
        "memory",
        "train-router",
        "--data",
        str(data),
        "--grid",
        str(grid),
        "--out",
        str(tmp_path / "r.json"),
    ]
    res = runner.invoke(app, [*args, "--haystack", "0"])
    assert res.exit_code == 2 and "has rows but no g.grid.settings.json" in res.output, res.output
    grid.unlink()
    res = runner.invoke(app, [*args, "--haystack", "0", "--epochs", "1", "--holdout", "0"])
    assert (tmp_path / "g.grid.settings.json").exists(), res.output
    res = runner.invoke(app, [*args, "--haystack", "0", "--chunk-turns", "2"])
    assert res.exit_code == 2 and "other settings: chunk_turns" in res.output and "--grid" in res.output
