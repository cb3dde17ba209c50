"""`agent bench` given bad or stale input: results files made with other settings, damaged result lines,
repeated question ids, an interrupted grid's runs still in flight, options that would be misread."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from thrifty.bench.datasets import DatasetError, load_dataset
from thrifty.bench.runner import (
    BenchConfig,
    BenchError,
    BudgetRule,
    load_results,
    make_pricing,
    parse_budgets,
    parse_strategies,
    run_grid,
)
from thrifty.cli import app
from thrifty.tools import make_search_tools

cli = CliRunner()


MODEL = "sim/p=0.9,q=1"


def grid(hotpot_file: Path, **kw: Any) -> BenchConfig:
    kw.setdefault("budgets", [3])
    kw.setdefault("pricing", make_pricing(MODEL))
    return BenchConfig(
        dataset=load_dataset(hotpot_file), strategies=parse_strategies("react"), model=MODEL, **kw
    )


# ------------------------------------------------------------------- a results file of other settings
@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"temperature": 1.5}, "--temperature was 0.7 there, 1.5 now"),
        ({"max_tokens": 50}, "--max-tokens was 256 there, 50 now"),
        ({"answer_context": "conversation"}, "--answer-context was focused there, conversation now"),
        ({"rule": BudgetRule(tokens_per_call=None)}, "--tokens-per-call: the total_tokens limit at budget 3"),
        ({"rule": BudgetRule(timeout=30)}, "--timeout: the seconds limit at budget 3 was none there, 30 now"),
    ],
)
def test_a_results_file_of_other_settings_is_refused_before_anything_runs(
    hotpot_file: Path, tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    """Rerunning with another setting used to skip every run as done and report the old runs as the new
    setting's results."""
    path = tmp_path / "results.jsonl"
    assert len(run_grid(grid(hotpot_file), path, progress=False)) == 3
    before = path.read_text()
    with pytest.raises(BenchError) as info:
        run_grid(grid(hotpot_file, **change), path, progress=False)
    assert message in str(info.value) and "another --out folder" in str(info.value)
    assert path.read_text() == before
    # the same settings resume (nothing left to run); another budget runs alongside
    assert len(run_grid(grid(hotpot_file), path, progress=False)) == 3
    assert len(run_grid(grid(hotpot_file, budgets=[5]), path, progress=False)) == 6


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"search_k": 5}, "--k was 3 there, 5 now"),
        (
            {"pricing": make_pricing(MODEL, tool_price=0.01)},
            "--tool-price (search) was 0.001 there, 0.01 now",
        ),
        (
            {"pricing": make_pricing(MODEL, price_in=0.15, price_out=0.6)},
            "--price-in/--price-out (sim/p=0.9,q=1, $ per 1M tokens in/out) was unset there, 0.15/0.6 now",
        ),
    ],
)
def test_a_results_file_of_other_tools_or_prices_is_refused(
    hotpot_file: Path, tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    """--k, the tools (--web) and the prices were not recorded, so a rerun with another of them reported the
    old runs as its own."""
    path = tmp_path / "results.jsonl"
    run_grid(grid(hotpot_file), path, progress=False)
    assert load_results(path)[0]["setup"] == {
        "k": 3,
        "tools": {"read": 0.001, "search": 0.001},
        "model_prices": {},
    }
    with pytest.raises(BenchError) as info:
        run_grid(grid(hotpot_file, **change), path, progress=False)
    assert message in str(info.value), str(info.value)
    assert len(run_grid(grid(hotpot_file), path, progress=False)) == 3  # the same setup resumes


def test_a_results_file_of_the_other_tools_is_refused(hotpot_file: Path, tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    run_grid(grid(hotpot_file), path, progress=False)
    config = grid(hotpot_file)
    corpus = config.dataset.corpus()
    assert corpus is not None
    config.tools = make_search_tools(corpus, k=3)[:1]  # search only, as a grid of other tools
    with pytest.raises(BenchError, match=r"--web \(the tools\) was read, search there, search now"):
        run_grid(config, path, progress=False)


def test_a_results_file_of_another_dataset_is_refused(hotpot_file: Path, tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    run_grid(grid(hotpot_file), path, progress=False)
    other = tmp_path / "other.jsonl"
    other.write_text(hotpot_file.read_text())
    config = grid(hotpot_file)
    config.dataset = load_dataset(other)
    with pytest.raises(BenchError, match="--data was 'mini' there, 'other' now"):
        run_grid(config, path, progress=False)


def test_the_cli_refuses_other_settings_with_exit_2(hotpot_file: Path, tmp_path: Path) -> None:
    base = ["bench", "hotpotqa", "--model", "sim/default", "--data", str(hotpot_file), "--budgets", "3"]
    base += ["--strategies", "react", "--out", str(tmp_path), "-q", "--no-plot"]
    assert cli.invoke(app, base).exit_code == 0
    res = cli.invoke(app, [*base, "--temperature", "0.2"])
    assert res.exit_code == 2, res.output
    assert "other settings" in res.output and "Traceback" not in res.output


# ---------------------------------------------------------------------------- damaged result lines
def test_damaged_or_foreign_lines_are_skipped_not_a_crash(hotpot_file: Path, tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    run_grid(grid(hotpot_file), path, progress=False)
    good = len(load_results(path))
    with path.open("ab") as fh:
        fh.write(b"\xff\xfe not utf-8\n")
        for odd in (
            {"strategy": "react", "budget": 3, "question_id": "x1", "em": "yes"},
            {"strategy": "react", "budget": 3, "question_id": "x2", "usage": [1]},
            {"strategy": "react", "budget": 3, "question_id": "x3", "usage": {"usd": "lots"}},
            {"strategy": "react", "budget": 3, "question_id": "x4", "usage": {"per_tool": {"search": "2"}}},
        ):
            fh.write(json.dumps(odd).encode() + b"\n")
    assert len(load_results(path)) == good
    res = cli.invoke(app, ["bench", "report", str(path), "--no-plot"])
    assert res.exit_code == 0, res.output
    # the grid resumes over the same file: nothing left to run, no crash
    assert len(run_grid(grid(hotpot_file), path, progress=False)) == good


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\xff\xfe\n", "no benchmark results"),
        (b'{"strategy": "react", "budget": 3, "question_id": "q", "em": "yes"}\n', "no benchmark results"),
    ],
)
def test_report_of_a_file_without_results_exits_2(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "results.jsonl"
    path.write_bytes(content)
    res = cli.invoke(app, ["bench", "report", str(path), "--no-plot"])
    assert res.exit_code == 2, res.output
    assert message in res.output and isinstance(res.exception, SystemExit)


def test_report_of_a_folder_says_so(tmp_path: Path) -> None:
    res = cli.invoke(app, ["bench", "report", str(tmp_path), "--no-plot"])
    assert res.exit_code == 2
    assert "is a folder" in res.output and "results.jsonl" in res.output


# ------------------------------------------------------------------------------------ repeated ids
def test_a_data_file_with_a_repeated_id_is_refused(hotpot_file: Path, tmp_path: Path) -> None:
    lines = hotpot_file.read_text().splitlines()
    path = tmp_path / "twice.jsonl"
    path.write_text("\n".join([*lines, lines[0]]) + "\n")
    with pytest.raises(DatasetError, match=r"line 4: id 'q1' is also the id of line 1 \(fix:"):
        load_dataset(path)
    qa = tmp_path / "qa.json"
    qa.write_text(
        json.dumps(
            [{"id": "a", "question": "x?", "answer": "y"}, {"id": "a", "question": "z?", "answer": "w"}]
        )
    )
    with pytest.raises(DatasetError, match="item 1: id 'a' is also the id of item 0"):
        load_dataset(qa)


def test_json_lines_in_a_json_file_get_a_fix(tmp_path: Path) -> None:
    path = tmp_path / "qa.json"
    path.write_text('{"question": "x?", "answer": "y"}\n{"question": "z?", "answer": "w"}\n')
    with pytest.raises(DatasetError, match=r"line 2: invalid JSON.*\(fix: .*\.jsonl\)"):
        load_dataset(path)


# ---------------------------------------------------------------------------------- interruptions
def test_runs_ending_after_an_interruption_are_not_recorded(
    hotpot_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C with runs in flight on other threads: the grid stops them at their next call and waits for
    them; cancelled, they are not saved as finished runs: the resumed grid runs them again."""
    from thrifty.bench import runner as bench_runner

    release = threading.Event()
    entered = threading.Semaphore(0)
    real = bench_runner.GridWorker._execute

    def slow(self: Any, *job: Any) -> Any:
        if job[2].id != "q1":  # q2 and q3 are still running when the grid is interrupted
            entered.release()
            release.wait(10)
        return real(self, *job)

    monkeypatch.setattr(bench_runner.GridWorker, "_execute", slow)
    path = tmp_path / "results.jsonl"
    config = grid(hotpot_file, concurrency=3)

    def interrupt(record: dict[str, Any]) -> None:
        entered.acquire(timeout=10)
        entered.acquire(timeout=10)
        threading.Timer(0.2, release.set).start()  # the runs in flight go on once Ctrl-C is pressed
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_grid(config, path, progress=False, on_result=interrupt)
    release.set()
    for thread in threading.enumerate():
        if thread.name.startswith("run"):
            thread.join(10)
    assert [r["question_id"] for r in load_results(path)] == ["q1"]
    monkeypatch.setattr(bench_runner.GridWorker, "_execute", real)
    assert len(run_grid(grid(hotpot_file), path, progress=False)) == 3


# ------------------------------------------------------------------------------- misread options
def test_a_tracker_option_that_is_not_true_or_false_is_refused() -> None:
    with pytest.raises(BenchError, match="tracker must be true or false"):
        parse_strategies("react:tracker=maybe")
    assert parse_strategies("react:tracker=false")[0].tracker is False


@pytest.mark.parametrize(
    ("args", "option"), [(["--global-usd", "0"], "--global-usd"), (["--seed", "a"], "--seed")]
)
def test_a_bad_option_value_names_the_option(tmp_path: Path, args: list[str], option: str) -> None:
    res = cli.invoke(app, ["bench", "hotpotqa", "--model", "sim/default", "--out", str(tmp_path), *args])
    assert res.exit_code == 2
    assert option in res.output


# ------------------------------------------------------------------------------------ --escalate
BENCH = [
    "bench",
    "hotpotqa",
    "--model",
    "sim/default",
    "--budgets",
    "3",
    "--strategies",
    "react",
    "--limit",
    "1",
]


def test_a_malformed_escalate_is_refused_with_one_model_too(hotpot_file: Path, tmp_path: Path) -> None:
    """It was accepted silently when --model named one model (a task file's bad `escalation:` is refused
    whatever its models)."""
    res = cli.invoke(
        app, [*BENCH, "--data", str(hotpot_file), "--out", str(tmp_path), "-q", "--escalate", "foo"]
    )
    assert res.exit_code == 2, res.output
    assert "--escalate 'foo': use step, node or run" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "results.jsonl").exists()


def test_escalation_options_with_one_model_get_a_note(hotpot_file: Path, tmp_path: Path) -> None:
    base = [*BENCH, "--data", str(hotpot_file), "-q", "--no-plot"]
    res = cli.invoke(
        app, [*base, "--out", str(tmp_path / "a"), "--escalate", "run", "--min-confidence", "0.3"]
    )
    assert res.exit_code == 0, res.output
    assert "note: --escalate and --min-confidence have no effect with one model (sim/default)" in res.output
    res = cli.invoke(app, [*base, "--out", str(tmp_path / "b")])
    assert res.exit_code == 0, res.output
    assert "no effect" not in res.output


# -------------------------------------------------------------------------------------- --budgets
@pytest.mark.parametrize("budgets", ["99999999999999999999", "3,10001"])
def test_absurd_budgets_are_refused(hotpot_file: Path, tmp_path: Path, budgets: str) -> None:
    args = ["bench", "hotpotqa", "--model", "sim/default", "--data", str(hotpot_file), "--out", str(tmp_path)]
    res = cli.invoke(app, [*args, "--budgets", budgets, "-q", "--no-plot"])
    assert res.exit_code == 2, res.output
    assert "--budgets" in res.output and "more than 10,000 tool calls" in res.output
    assert "fix: give budgets from 1 to 10000" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "results.jsonl").exists()


def test_budget_messages_name_the_option_and_the_fix() -> None:
    assert parse_budgets("1,10000") == [1, 10000]
    for bad in ("", "x", "0", "3,3", "2.5", "10001"):
        with pytest.raises(BenchError, match=r"^--budgets: .*\(fix: "):
            parse_budgets(bad)
    for value in (float("inf"), float("nan"), True, 2.5):
        with pytest.raises(BenchError, match="--budgets"):
            parse_budgets([value])  # pyright: ignore[reportArgumentType]


def test_a_result_line_with_a_budget_or_seed_that_is_not_whole_is_skipped(
    hotpot_file: Path, tmp_path: Path
) -> None:
    """`"budget": 3.7` was read as a budget-3 run: the grid skipped a run as done and reported the line."""
    path = tmp_path / "results.jsonl"
    run_grid(grid(hotpot_file), path, progress=False)
    good = load_results(path)
    with path.open("a") as fh:
        for odd in ({"budget": 3.7}, {"budget": True}, {"budget": "3"}, {"seed": 0.5}):
            fh.write(json.dumps({**good[0], "question_id": "x", **odd}) + "\n")
    assert load_results(path) == good
