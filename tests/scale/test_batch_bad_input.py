"""`agent batch` given what a new user types by mistake, or a results file or run store that fails: a clear
message naming the file or option and the fix, no traceback, no secret, and no finished task lost."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from thrifty.cli import app
from thrifty.scale.batch import load_batch, load_lines, run_batch

from .test_batch import register_model, write_tasks

cli = CliRunner()


def test_a_results_line_cut_by_a_crash_does_not_swallow_the_next_result(tmp_path: Path) -> None:
    """The next result was appended to the cut line, so it was unreadable: lost, and run (paid for) again by
    the rerun."""
    register_model()
    jobs = load_batch(write_tasks(tmp_path, count=2))
    out = tmp_path / "results.jsonl"
    out.write_text('{"file": "/elsewhere/old.yaml", "usage": {"usd": 0.1')  # no newline: cut mid-write
    outcome = run_batch(jobs, out)
    assert outcome.ran == 2
    assert sorted(line["task"] for line in load_lines(out)) == ["sum-0", "sum-1"]
    assert run_batch(jobs, out).ran == 0  # the rerun has nothing left to run


def test_a_run_store_that_fails_keeps_the_result_and_the_batch_goes_on(tmp_path: Path) -> None:
    """A store that could not be opened raised BatchError after the task had run: its result (paid for) was not
    written, the batch stopped with exit 2 'bad input (nothing ran)' and the later tasks never ran. The
    message also showed the store URL as given, password included."""
    register_model()
    good = write_tasks(tmp_path, count=2)
    bad = tmp_path / "bad_store.yaml"
    bad.write_text(
        good[0]
        .read_text()
        .replace("name: sum-0", "name: sum-bad")
        .replace(f"store: {tmp_path / 'runs.db'}", "store: postgresql://bob:hunter2secret@127.0.0.1:1/runs")
    )
    out = tmp_path / "results.jsonl"
    res = cli.invoke(app, ["batch", str(good[0]), str(bad), str(good[1]), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert sorted(line["task"] for line in load_lines(out)) == ["sum-0", "sum-1", "sum-bad"]
    warning = " ".join(res.stderr.split())
    assert f"warning: {bad}: run " in warning and "is not recorded: run store" in warning, warning
    assert f"its result is kept in {out}" in warning and "fix:" in warning
    assert "hunter2secret" not in res.output and "Traceback" not in res.output


def test_a_run_store_failure_is_kept_in_the_outcome(tmp_path: Path) -> None:
    register_model()
    task = write_tasks(tmp_path, count=1)[0]
    (tmp_path / "store_dir").mkdir()
    task.write_text(task.read_text().replace(str(tmp_path / "runs.db"), str(tmp_path / "store_dir")))
    outcome = run_batch(load_batch([task]), tmp_path / "results.jsonl", concurrency=2)
    assert outcome.ran == 1 and len(outcome.store_errors) == 1
    assert outcome.store_errors[0].startswith(f"{task}: run ") and "is a folder" in outcome.store_errors[0]


def test_a_pattern_that_matched_nothing_is_named_as_such(tmp_path: Path) -> None:
    """The shell passes `tasks/*.yaml` on as typed when nothing matches; the message said 'no such file'."""
    register_model()
    good = write_tasks(tmp_path, count=1)[0]
    pattern = str(tmp_path / "tasks" / "*.yaml")
    res = cli.invoke(app, ["batch", pattern, str(good), "--out", str(tmp_path / "r.jsonl")])
    assert res.exit_code == 2, res.output
    shown = " ".join(res.output.split())
    assert f"{pattern}: no file matches this pattern" in shown and "fix:" in shown, shown
    assert "1 of 2 task files cannot run: nothing ran" in shown
    assert not (tmp_path / "r.jsonl").exists()


def test_an_infinite_global_usd_names_the_option(tmp_path: Path) -> None:
    """--global-usd inf was a traceback (pydantic's ValidationError for Budget), exit 1."""
    register_model()
    task = write_tasks(tmp_path, count=1)[0]
    res = cli.invoke(app, ["batch", str(task), "--global-usd", "inf", "--out", str(tmp_path / "r.jsonl")])
    assert res.exit_code == 2, (res.output, res.exception)
    assert "--global-usd" in res.output and "Traceback" not in res.output and "pydantic" not in res.output
    assert not (tmp_path / "r.jsonl").exists()


def test_ray_address_without_ray_names_no_option_batch_lacks(tmp_path: Path) -> None:
    """The message named --gpus-per-worker, which `agent batch` does not have."""
    task = write_tasks(tmp_path, count=1)[0]
    res = cli.invoke(app, ["batch", str(task), "--ray-address", "10.0.0.5:6379"])
    assert res.exit_code == 2
    shown = " ".join(res.output.split())
    assert "--ray-address is for --executor ray" in shown and "--gpus-per-worker" not in shown, shown


def test_the_results_file_keeps_one_line_per_task(tmp_path: Path) -> None:
    """A sanity check of the fixed cut-line case through the command: every line is whole JSON."""
    register_model()
    tasks = write_tasks(tmp_path, count=2)
    out = tmp_path / "results.jsonl"
    out.write_bytes(b'{"file": "x"')
    res = cli.invoke(app, ["batch", *map(str, tasks), "--out", str(out)])
    assert res.exit_code == 0, res.output
    lines = out.read_text().splitlines()
    assert lines[0] == '{"file": "x"' and [json.loads(line)["task"] for line in lines[1:]] == [
        "sum-0",
        "sum-1",
    ]
