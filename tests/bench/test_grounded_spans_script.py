"""benchmarks/grounded_spans.py: the ceiling of a grounded answer and the EM of a uniform pick, the figures
benchmarks/README.md quotes for the bundled 50 questions (so the README cannot go stale when the grounded
answer's spans change)."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.scripts import load_script

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def script() -> ModuleType:
    return load_script("benchmarks/grounded_spans.py", "grounded_spans")


def _all_row(
    script: ModuleType, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str
) -> str:
    monkeypatch.setattr(sys, "argv", ["grounded_spans.py", *args])
    script.main()
    out = capsys.readouterr().out
    (row,) = [line for line in out.splitlines() if line.startswith("| all |")]
    return row


def test_the_figures_the_benchmarks_readme_quotes(
    script: ModuleType, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    gold = _all_row(script, capsys, monkeypatch)
    searches = _all_row(script, capsys, monkeypatch, "--observations", "searches")
    assert gold == "| all | 50 | 35 | 7 | 17 | 8.17 (0.163) |"
    assert searches == "| all | 50 | 22 | 5 | 12 | 5.96 (0.119) |"
    readme = (ROOT / "benchmarks" / "README.md").read_text(encoding="utf-8")
    assert "| all | 50 | 35 / 22 | 5 | **5.96 (0.119)** |" in readme
    assert re.search(r"among the\s+spans a grounded answer may pick for 35 of these 50 questions", readme)
