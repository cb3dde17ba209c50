"""``agent memory train-router --out``/``--grid``: a path the weights or the grid cannot be written to is
refused before the grid runs (exit 2, naming the option and the fix), not a traceback after the whole grid
and the training."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.bench.test_router_train import _longmemeval
from thrifty.cli import app

cli = CliRunner()


def _train(data: Path, *extra: str) -> list[str]:
    return ["memory", "train-router", "--data", str(data), "--haystack", "2", "--epochs", "5", *extra]


@pytest.mark.parametrize("where", ["a-folder", "under-a-file", "proc"])
def test_a_bad_out_path_exits_2_before_the_grid(tmp_path: Path, where: str) -> None:
    if where == "proc" and not Path("/proc/self").is_dir():
        pytest.skip("no /proc here")
    data = _longmemeval(tmp_path / "lme.json")
    (tmp_path / "afile").write_text("")
    (tmp_path / "adir").mkdir()
    out = {
        "a-folder": tmp_path / "adir",
        "under-a-file": tmp_path / "afile" / "x.json",
        "proc": Path("/proc/xx.json"),
    }[where]
    res = cli.invoke(app, _train(data, "--out", str(out)))
    assert res.exit_code == 2, res.output
    shown = " ".join(res.output.split())
    assert f"error: --out {out}: " in shown and "fix: give a file path you can write" in shown
    assert "Traceback" not in shown and "SIMULATED" not in shown  # refused before the grid started
    assert list((tmp_path / "adir").iterdir()) == []  # no grid lines, no settings written


def test_a_folder_as_grid_exits_2_before_the_grid(tmp_path: Path) -> None:
    data = _longmemeval(tmp_path / "lme.json")
    (tmp_path / "g").mkdir()
    res = cli.invoke(app, _train(data, "--out", str(tmp_path / "r.json"), "--grid", str(tmp_path / "g")))
    assert res.exit_code == 2, res.output
    shown = " ".join(res.output.split())
    assert f"error: --grid {tmp_path / 'g'}: is a folder" in shown and "fix: " in shown
    assert "SIMULATED" not in shown and not (tmp_path / "r.json").exists()
    # the default grid (next to --out) that is a folder names --out and how to choose another grid
    (tmp_path / "r.grid.jsonl").mkdir()
    res = cli.invoke(app, _train(data, "--out", str(tmp_path / "r.json")))
    assert res.exit_code == 2, res.output
    shown = " ".join(res.output.split())
    assert f"--out {tmp_path / 'r.json'}: its grid file {tmp_path / 'r.grid.jsonl'}: is a folder" in shown
    assert "--grid router.grid.jsonl" in shown and "SIMULATED" not in shown
