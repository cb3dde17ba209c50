"""Summaries, files and the `agent bench` commands (mounted here the way the main CLI mounts them)."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from thrifty.bench.cli import bench_app
from thrifty.bench.report import summarize, write_report

app = typer.Typer()
app.add_typer(bench_app, name="bench")
cli = CliRunner()


def rec(
    strategy: str, em: float, f1: float, usd: float, tokens: int, calls: int, stop: str, **kw: Any
) -> dict[str, Any]:
    return {
        "strategy": strategy,
        "budget": kw.get("budget", 3),
        "question_id": kw.get("qid", "q"),
        "seed": 0,
        "em": em,
        "f1": f1,
        "stop_reason": stop,
        "usage": {"usd": usd, "total_tokens": tokens, "tool_calls": calls, "seconds": kw.get("seconds", 1.0)},
        "model": kw.get("model", "sim/default"),
        "simulated": kw.get("model", "sim/default").startswith("sim/"),
        "dataset": "mini",
    }


RECORDS = [
    rec("A", 1.0, 1.0, 0.002, 100, 2, "completed", qid="q1", seconds=1.0),
    rec("A", 0.0, 0.5, 0.004, 300, 3, "budget_exhausted:tool_calls", qid="q2", seconds=3.0),
    rec("B", 0.0, 0.0, 0.001, 50, 1, "completed", qid="q1"),
    rec("A", 1.0, 1.0, 0.010, 900, 9, "completed", qid="q1", budget=10),
]


def test_summary_by_hand() -> None:
    a3, a10, b3 = summarize(RECORDS)
    assert (a3.strategy, a3.budget, a10.budget, b3.strategy) == (
        "A",
        3,
        10,
        "B",
    )  # first-seen order, budgets up
    assert a3.n == 2 and a3.em == 0.5 and a3.f1 == 0.75
    assert a3.em_se == pytest.approx(0.5)  # stdev([1, 0]) / sqrt(2)
    assert a3.tool_calls == 2.5 and a3.tokens == 200 and a3.usd == pytest.approx(0.003) and a3.seconds == 2.0
    assert a3.cost_of_pass == pytest.approx(0.006)
    assert a3.e3 == pytest.approx(0.25 / 200)
    assert a3.budget_stop_share == 0.5 and a3.errors == 0
    assert math.isinf(b3.cost_of_pass) and b3.e3 == 0.0


def test_files_and_simulated_labels(tmp_path: Path) -> None:
    _rows, files = write_report(RECORDS, tmp_path)
    assert set(files) == {"csv", "json", "md", "plot"}
    assert "| A | 3 | 2 | 0.500 ± 0.500 |" in files["md"].read_text()
    assert files["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = list(csv.DictReader(files["csv"].open()))
    assert [(r["strategy"], r["budget"]) for r in table] == [("A", "3"), ("A", "10"), ("B", "3")]
    assert table[2]["cost_of_pass"] == "inf"
    doc = json.loads(files["json"].read_text())
    assert doc["simulated"] is True and doc["title"].startswith("SIMULATED model")
    assert doc["rows"][2]["cost_of_pass"] is None and doc["rows"][0]["em"] == 0.5

    real = [rec("A", 1.0, 1.0, 0.002, 100, 2, "completed", model="local/smollm2")]
    doc = json.loads(write_report(real, tmp_path / "real", plot=False)[1]["json"].read_text())
    assert doc["simulated"] is False and "SIMULATED" not in doc["title"]


def test_cascade_runs_add_escalation_and_resample_columns(tmp_path: Path) -> None:
    cascade = [
        {**rec("A", 1.0, 1.0, 0.002, 100, 2, "completed", qid="q1"), "escalations": 1, "resamples": 2},
        {**rec("A", 0.0, 0.0, 0.004, 300, 3, "completed", qid="q2"), "escalations": 0, "resamples": 1},
    ]
    (row,) = summarize(cascade)
    assert row.escalations == 0.5 and row.resamples == 1.5
    md = write_report(cascade, tmp_path, plot=False)[1]["md"].read_text()
    assert "| budget stop | escalations | resamples |" in md and "| 0% | 0.50 | 1.50 |" in md
    doc = json.loads((tmp_path / "summary.json").read_text())
    assert doc["rows"][0]["escalations"] == 0.5 and doc["rows"][0]["resamples"] == 1.5
    # Runs without a cascade keep the table as it was.
    (plain,) = summarize(RECORDS[:2])
    assert plain.escalations is None and plain.resamples is None
    assert "escalations" not in write_report(RECORDS[:2], tmp_path / "plain", plot=False)[1]["md"].read_text()


def test_the_terminal_table_and_the_markdown_show_the_same_cells() -> None:
    """One column list serves both: the rich table's cells are the markdown's (the ± spaced there)."""
    from thrifty.bench.report import render_table, to_markdown

    cascade = [{**rec("A", 1.0, 1.0, 0.002, 100, 2, "completed", qid="q1"), "escalations": 1, "resamples": 2}]
    for records in (RECORDS[:2], cascade):
        rows = summarize(records)
        table = render_table(rows, "t")
        md_rows = [line for line in to_markdown(rows, "t").splitlines() if line.startswith("| ")]
        md_head, md_cells = md_rows[0], md_rows[1:]
        assert len(table.columns) == md_head.count(" | ") + 1
        for i, line in enumerate(md_cells):
            cells = [c.strip() for c in line.strip("| ").split(" | ")]
            shown = [str(list(col.cells)[i]) for col in table.columns]
            assert [c.replace(" ± ", "±") for c in cells] == shown


def test_a_narrow_terminal_cuts_neither_names_nor_figures() -> None:
    """At 80 columns the strategy name is whole and no figure is replaced by an ellipsis."""
    from rich.console import Console

    from thrifty.bench.report import render_table

    rows = summarize([{**r, "strategy": "self_consistency_long_name"} for r in RECORDS[:2]])
    console = Console(width=80, record=True, file=io.StringIO())
    console.print(render_table(rows, "t"))
    text = console.export_text()
    assert "self_consistency_long_name" in text
    assert "…" not in text


def test_report_command(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in RECORDS) + "\n{truncated line\n")
    res = cli.invoke(app, ["bench", "report", str(path), "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    assert "SIMULATED model" in res.stdout and "cost-of-pass" in res.stdout
    assert (tmp_path / "out" / "plot.png").exists() and (tmp_path / "out" / "summary.csv").exists()
    assert cli.invoke(app, ["bench", "report", str(tmp_path / "nope.jsonl")]).exit_code == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--strategies", "react,nope"], "unknown strategy 'nope'"),
        (
            ["--strategies", "react,bats:max_attemps=2"],
            "strategy 'bats:max_attemps=2': 'max_attemps' is not an option of strategy 'bats' "
            "(fix: check the spelling; the options of bats are: max_attempts)",
        ),
        (["--strategies", "value_tree:k=0"], "option 'k' of strategy 'value_tree'"),
        (["--budgets", "3,0"], "at least 1"),
        (["--budgets", "x"], "not a whole number"),
        (["--data", "missing.jsonl"], "not found"),
        (["--model", "sim/x=1"], "unknown parameter 'x'"),
        (["--model", "nosuchprovider/m"], "unknown provider"),
        (["--shard", "2/2"], "K must be 0 .. N-1"),
        (["--shard", "half"], "is not K/N"),
    ],
)
def test_bad_input_exits_2(args: list[str], message: str) -> None:
    res = cli.invoke(app, ["bench", "hotpotqa", "--model", "sim/default", *args])
    assert res.exit_code == 2, res.output
    assert message in " ".join(res.output.split())


def test_sim_run_writes_everything_and_resumes(hotpot_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = [
        "bench", "hotpotqa", "--model", "sim/p=0.9", "--data", str(hotpot_file), "--strategies",
        "react,react_tracker", "--budgets", "2,4", "--out", str(out), "--quiet", "--price-in", "1", "--price-out", "4",
    ]  # fmt: skip
    res = cli.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert {p.name for p in out.iterdir()} == {
        "results.jsonl",
        "summary.csv",
        "summary.json",
        "summary.md",
        "plot.png",
    }
    lines = (out / "results.jsonl").read_text().splitlines()
    assert len(lines) == 12 and all(json.loads(line)["simulated"] for line in lines)
    assert all(json.loads(line)["usage"]["tokens_usd"] > 0 for line in lines)
    assert "SIMULATED model" in res.stdout
    again = cli.invoke(app, args)
    assert again.exit_code == 0 and (out / "results.jsonl").read_text().splitlines() == lines


def test_overhead_runs_and_reports(tmp_path: Path) -> None:
    from thrifty.bench.overhead import run_overhead

    result = run_overhead(steps=3, repeats=1, warmup=0)
    assert set(result.us_per_step) == {
        "thrifty",
        "thrifty_no_tracker",
        "thrifty_tool_timeout",
        "thrifty_store",
        "langgraph",
        "langgraph_one_node",
        "loop",
    }
    assert result.store_added_us_per_step is not None
    assert result.bare_langgraph in ("langgraph", "langgraph_one_node")
    assert all(v > 0 for v in result.us_per_step.values()) and result.ledger_us > 0
    data = result.to_dict()
    assert set(data["goals"]) == {"adds < 1 ms/step", "<= 1.5x bare LangGraph"}
    assert any("goal" in line for line in result.lines())


def test_overhead_framework_only_reading_bypasses_litellm_and_restores_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from thrifty.bench.overhead import run_overhead
    from thrifty.models._litellm import get_litellm

    litellm = get_litellm()
    original = litellm.completion
    calls: list[str] = []

    def counting(*args: object, **kwargs: object) -> object:
        calls.append(str(kwargs.get("model")))
        return original(*args, **kwargs)

    monkeypatch.setattr(litellm, "completion", counting)
    result = run_overhead(steps=2, repeats=1, warmup=0, with_litellm=False)
    assert calls == []  # no variant went through LiteLLM
    assert litellm.completion is counting  # put back afterwards
    assert not result.with_litellm and any("FRAMEWORK ONLY" in line for line in result.lines())
    run_overhead(steps=2, repeats=1, warmup=0)
    assert len(calls) == 2 * 7  # 2 calls per variant, 7 variants


def test_overhead_differences_and_ratios_are_paired_by_round() -> None:
    from thrifty.bench.overhead import OverheadResult

    result = OverheadResult(
        steps=20,
        repeats=3,
        samples={
            "thrifty": [1500.0, 3000.0, 2400.0],
            "langgraph": [1400.0, 2000.0, 2500.0],
            "langgraph_one_node": [1000.0, 2000.0, 1600.0],
            "loop": [1000.0, 1500.0, 2000.0],
        },
        ledger_us=20.0,
        compile_us=1000.0,
    )
    # Medians would say 2400 - 1500 = 900; paired by round the differences are 500, 1500, 400.
    assert result.added_us_per_step == 500.0
    assert result.bare_langgraph == "langgraph_one_node"  # medians 1600 < 2000
    assert result.bare_added_us_per_step == 0.0  # one-node graph minus loop by round: 0, 500, -400
    assert result.ratio_vs_langgraph == 1.5  # 1.5, 1.5, 1.5
    assert result.spread["thrifty"] == (1500.0, 3000.0)
    assert result.goals == {"adds < 1 ms/step": True, "<= 1.5x bare LangGraph": True}
    assert result.goals_on_minimums == {"adds < 1 ms/step": True, "<= 1.5x bare LangGraph": True}
    data = result.to_dict()
    assert data["added_us_per_step"] == 500.0 and data["us_per_step"]["thrifty"] == 2400.0
    assert data["bare_added_us_per_step"] == 0.0
    assert any(line.startswith("  bare LangGraph adds over the loop") for line in result.lines())


def test_inference_needs_a_local_model() -> None:
    from thrifty.bench.inference import run_inference

    with pytest.raises(ValueError, match="local/"):
        run_inference("sim/default")


def test_save_result_writes_json_and_optionally_the_printed_lines(tmp_path: Path) -> None:
    from thrifty.bench.report import save_result

    class Result:
        def to_dict(self) -> dict:
            return {"x": 1}

        def lines(self) -> list[str]:
            return ["a", "b"]

    path = save_result(Result(), tmp_path / "new", "bench")
    assert path == tmp_path / "new" / "bench.json" and json.loads(path.read_text()) == {"x": 1}
    assert not (tmp_path / "new" / "bench.txt").exists()
    save_result(Result(), tmp_path / "new", "bench", text=True)
    assert (tmp_path / "new" / "bench.txt").read_text() == "a\nb\n"


def test_a_report_without_matplotlib_skips_the_plot_with_a_note(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import importlib.util

    from thrifty.bench import cli as bench_cli

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name, *a)
    )
    record = {
        "strategy": "react",
        "budget": 3,
        "question_id": "q1",
        "seed": 0,
        "em": 1.0,
        "f1": 1.0,
        "model": "sim/default",
        "usage": {"tool_calls": 1, "total_tokens": 10, "usd": 0.001},
    }
    bench_cli._show_report([record], tmp_path, plot=True)
    assert (tmp_path / "summary.md").exists() and not (tmp_path / "plot.png").exists()
    assert "plot.png skipped" in capsys.readouterr().err


def test_overhead_runs_past_a_hundred_steps() -> None:
    """`agent bench overhead --steps 200` ended in an AssertionError: the run's budget held 100 tool calls."""
    from thrifty.bench.overhead import run_overhead

    result = run_overhead(steps=105, repeats=1, warmup=0)
    assert result.us_per_step["thrifty"] > 0
