"""``agent bench ... --out``: a path that cannot hold the results is refused before anything runs (exit 2,
naming --out and the fix), never a traceback after paid runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from thrifty.cli import app

cli = CliRunner()


@pytest.mark.parametrize("where", ["a-file", "under-a-file", "proc"])
def test_a_bad_out_folder_exits_2_before_anything_runs(tmp_path: Path, where: str) -> None:
    if where == "proc" and not Path("/proc/self").is_dir():
        pytest.skip("no /proc here")
    (tmp_path / "afile").write_text("")
    out = {"a-file": tmp_path / "afile", "under-a-file": tmp_path / "afile" / "sub", "proc": Path("/proc/xx")}
    grid = [
        "bench",
        "hotpotqa",
        "--model",
        "sim/default",
        "--limit",
        "1",
        "--budgets",
        "3",
        "--no-plot",
        "-q",
    ]
    res = cli.invoke(app, [*grid, "--out", str(out[where])])
    assert res.exit_code == 2, res.output
    shown = " ".join(res.output.split())
    assert f"error: --out {out[where]}: " in shown and "fix: give a folder you can write" in shown
    assert "Traceback" not in shown and "SIMULATED" not in shown  # refused before the grid started


def test_overhead_refuses_a_file_as_out_before_it_measures(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("")
    res = cli.invoke(app, ["bench", "overhead", "--repeats", "1", "--out", str(tmp_path / "afile")])
    assert res.exit_code == 2 and "--out" in res.output and "Traceback" not in res.output
