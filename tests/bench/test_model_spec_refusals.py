"""``agent bench --model`` with a model name missing around a cascade's ``>`` is exit 2 with its fix before
anything runs (it ran a one-model "cascade" or raised an IndexError)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from thrifty.cli import app

cli = CliRunner()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("sim/default>", "a model name is missing before or after '>' (fix: "),
        (">sim/default", "a model name is missing before or after '>' (fix: "),
        ("sim/default>>sim/p=0.9", "e.g. 'sim/default>sim/p=0.9'"),
        ("sim/default;verifier=", "role 'verifier' names no model in 'verifier=' (fix: "),
    ],
)
def test_bench_refuses_an_empty_name_in_a_cascade(tmp_path: Path, spec: str, message: str) -> None:
    out = tmp_path / "out"
    args = ["bench", "hotpotqa", "--model", spec, "--limit", "1", "--budgets", "3", "--no-plot", "-q"]
    res = cli.invoke(app, [*args, "--out", str(out)])
    assert res.exit_code == 2, res.output
    shown = " ".join(res.output.split())
    assert f"error: --model {spec!r}: " in shown and message in shown
    assert "Traceback" not in shown and not out.exists()  # refused before the grid started
