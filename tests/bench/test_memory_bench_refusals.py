"""A memory benchmark refused for a bad option leaves nothing behind that would refuse the corrected rerun."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.memory.conversations import locomo_sample
from thrifty.cli import app

runner = CliRunner()


def _args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["bench", "locomo", "--data", str(data), "--routers", "low", "--embedder", "none", "--no-plot",
            "--out", str(out), *extra]  # fmt: skip


@pytest.mark.parametrize("bad", [["--chunk-tokens", "5"], ["--facts", "medium"], ["--summaries", "x"]])
def test_a_bad_memory_option_writes_no_settings_and_the_corrected_run_goes_on(
    tmp_path: Path, bad: list[str]
) -> None:
    """Before the fix the refused run had written results.settings.json with its bad option, so the same
    command without it was refused as 'made with other settings' (exit 2) in a folder with no rows."""
    data = tmp_path / "locomo.json"
    data.write_text(json.dumps([locomo_sample()]), encoding="utf-8")
    out = tmp_path / "out"
    res = runner.invoke(app, _args(data, out, *bad))
    assert res.exit_code == 2 and "Traceback" not in res.output, res.output
    assert "other settings" not in res.output and not (out / "results.settings.json").exists()
    res = runner.invoke(app, _args(data, out))
    assert res.exit_code == 0, res.output
    assert len((out / "results.jsonl").read_text().splitlines()) == len(locomo_sample()["qa"])
