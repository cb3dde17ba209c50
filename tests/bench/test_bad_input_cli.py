"""`agent bench` given what a new user types by mistake: each is exit 2 with a message naming the file, field or
option and the fix, before --out is made; never a traceback, never pydantic's wording."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.memory.conversations import locomo_sample
from thrifty.bench.datasets import DatasetError, load_dataset
from thrifty.bench.runner import BenchError, make_pricing, parse_budgets, parse_shard
from thrifty.cli import app

cli = CliRunner()


def bench(data: Path, out: Path, *extra: str) -> list[str]:
    return ["bench", "hotpotqa", "--model", "sim/default", "--data", str(data), "--strategies", "react",
            "--budgets", "3", "--out", str(out), "-q", "--no-plot", *extra]  # fmt: skip


def refused(args: list[str], *words: str) -> str:
    """The output of a command that must be exit 2 with ``words`` in its message (and no traceback)."""
    res = cli.invoke(app, args)
    shown = " ".join(res.output.split())
    assert res.exit_code == 2, (res.exit_code, shown, res.exception)
    assert all(w in shown for w in words), shown
    assert "Traceback" not in shown and "pydantic" not in shown and "validation error" not in shown, shown
    return shown


# ------------------------------------------------------------------------------------------- data files
@pytest.mark.parametrize("line", ["[1, 2]", '"hello"', "3"])
def test_a_data_line_that_is_not_an_object_names_the_line(
    hotpot_file: Path, tmp_path: Path, line: str
) -> None:
    """Before the fix: AttributeError ('list' object has no attribute 'get') and a traceback."""
    data = tmp_path / "data.jsonl"
    data.write_text(hotpot_file.read_text() + line + "\n")
    refused(bench(data, tmp_path / "out"), f"{data}: line 4:", "expected a JSON object", "fix:")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"context": [["only a title"]]}, "'context' must be"),  # was: list index out of range
        ({"context": [5]}, "'context' must be"),  # was: 'int' object is not subscriptable
        ({"context": {"title": 5, "sentences": [["s"]]}}, "'context' must be"),  # was: not iterable
        ({"context": {"title": ["t"], "sentences": "abc"}}, "'context' must be"),  # was: accepted
        ({"context": {"title": ["t", "u"], "sentences": [["s"]]}}, "2 title values but 1 sentences"),
        ({"context": {"title": [""], "sentences": [["s"]]}}, "title #0 is not a non-empty string"),
        ({"supporting_facts": 5}, "'supporting_facts' must be"),  # was: 'int' object is not iterable
        ({"supporting_facts": [5]}, "'supporting_facts' must be"),  # was: not subscriptable
    ],
)
def test_a_malformed_hotpotqa_record_names_the_field(
    hotpot_file: Path, tmp_path: Path, change: dict[str, object], field: str
) -> None:
    records = [json.loads(line) for line in hotpot_file.read_text().splitlines()]
    records[1].update(change)
    data = tmp_path / "data.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    with pytest.raises(DatasetError) as caught:
        load_dataset(data)
    message = str(caught.value)
    assert message.startswith(f"{data}: line 2: not a HotpotQA record: ") and field in message, message
    assert "fix:" in message


def test_passages_that_make_no_corpus_are_exit_2_before_out_is_made(
    hotpot_file: Path, tmp_path: Path
) -> None:
    """Records with empty contexts load as questions but make an empty corpus: that was found only by
    run_grid, after --out was made, as an uncaught CorpusError (a traceback)."""
    records = [json.loads(line) for line in hotpot_file.read_text().splitlines()]
    for record in records:
        record["context"] = {"title": [], "sentences": []}
    data = tmp_path / "data.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    refused(bench(data, tmp_path / "out"), f"{data}:", "no passages")
    assert not (tmp_path / "out").exists()


def test_an_empty_data_file_says_how_to_fix_it(tmp_path: Path) -> None:
    data = tmp_path / "empty.jsonl"
    data.write_text("\n")
    refused(bench(data, tmp_path / "out"), f"{data}: no records", "fix:", "--data")


# ---------------------------------------------------------------------------------------------- options
@pytest.mark.parametrize("budgets", ["3,,5", "3,5,", ",3"])
def test_a_budget_left_out_between_commas_is_refused(budgets: str) -> None:
    """'3,,5' (an empty shell variable?) used to run budgets 3 and 5 without a word."""
    with pytest.raises(BenchError, match=r"--budgets .*a budget is missing.*fix:"):
        parse_budgets(budgets)
    assert parse_budgets(" 3 , 5 ") == [3, 5] and parse_budgets([3, 5]) == [3, 5]
    with pytest.raises(BenchError, match="at least 1"):
        parse_budgets([0])


def test_a_seed_left_out_between_commas_is_refused(hotpot_file: Path, tmp_path: Path) -> None:
    refused(bench(hotpot_file, tmp_path / "out", "--seed", "0,,1"), "--seed", "a seed is missing")
    assert not (tmp_path / "out").exists()


def test_a_shard_with_no_questions_is_refused(hotpot_file: Path, tmp_path: Path) -> None:
    """--shard 1/5 of a 1-question grid ran nothing, printed an empty 'benchmark ·  · 0 questions' table and
    exited 0."""
    args = bench(hotpot_file, tmp_path / "out", "--limit", "1", "--shard", "1/5")
    refused(args, "--shard 1/5: shard 1 has no questions", "fix:")
    assert not (tmp_path / "out").exists()
    for bad in ("x", "3/2"):
        with pytest.raises(BenchError, match=r"^--shard .*fix: e\.g\. --shard 0/2"):
            parse_shard(bad)


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--timeout", "inf"),
        ("--price-in", "inf"),
        ("--price-out", "inf"),
        ("--tool-price", "inf"),
        ("--global-usd", "inf"),
    ],
)
def test_an_infinite_number_names_its_option(
    hotpot_file: Path, tmp_path: Path, option: str, value: str
) -> None:
    """--timeout inf was a traceback mid-grid (a Budget of infinite seconds); the others printed pydantic's
    'validation error for ModelPrice / Pricing / Budget' without naming the option."""
    refused(bench(hotpot_file, tmp_path / "out", option, value), option, "fix:")
    assert not (tmp_path / "out").exists()


def test_make_pricing_names_the_price_that_is_not_finite() -> None:
    with pytest.raises(BenchError, match=r"^--price-out nan: not a price \(fix: "):
        make_pricing("sim/default", price_out=float("nan"))


def test_ray_options_without_ray_name_only_what_was_given(hotpot_file: Path, tmp_path: Path) -> None:
    shown = refused(bench(hotpot_file, tmp_path / "out", "--ray-address", "10.0.0.5:6379"), "--ray-address")
    assert "--gpus-per-worker" not in shown and "fix: add --executor ray" in shown


def test_ray_address_in_the_environment_is_named_not_a_traceback(
    hotpot_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With RAY_ADDRESS set, starting a local Ray raised Ray's ValueError ('When connecting to an existing
    cluster, num_cpus and num_gpus must not be provided') as a traceback."""
    pytest.importorskip("ray")
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")
    refused(bench(hotpot_file, tmp_path / "out", "--executor", "ray"), "RAY_ADDRESS", "--ray-address", "fix:")
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------------ memory bench
@pytest.mark.parametrize(
    ("option", "value"), [("--facts", "maybe"), ("--summaries", "x"), ("--embedder", "bert")]
)
def test_a_bad_memory_choice_names_its_option_before_out_is_made(
    tmp_path: Path, option: str, value: str
) -> None:
    """These were refused only once the run had started (after --out was made), as "memory facts='maybe'" or
    "unknown embedder", naming no option."""
    data = tmp_path / "locomo.json"
    data.write_text(json.dumps([locomo_sample()]), encoding="utf-8")
    out = tmp_path / "out"
    args = ["bench", "locomo", "--data", str(data), "--routers", "low", "--no-plot", "--out", str(out)]
    refused([*args, option, value], f"{option} '{value}': use ")
    assert not out.exists()
