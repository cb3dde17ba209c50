"""benchmarks/paired.py: paired EM differences between two results files (the READMEs' "paired diff")."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tests.scripts import load_script


def _write(path: Path, strategy: str, ems: list[float], budget: int = 5) -> Path:
    with path.open("a", encoding="utf-8") as out:
        for i, em in enumerate(ems):
            record = {"strategy": strategy, "budget": budget, "question_id": f"q{i}", "seed": 0, "em": em}
            out.write(json.dumps(record) + "\n")
    return path


def test_paired_differences_and_their_standard_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = load_script("benchmarks/paired.py", "paired_script")
    new = _write(tmp_path / "new.jsonl", "react", [1, 1, 0, 1])
    _write(new, "bats", [1, 0, 0, 0])
    old = _write(tmp_path / "old.jsonl", "react", [0, 1, 0, 0, 1])  # q4 has no partner: left out
    n, a, b, diff, se = script.paired({"x": 1.0, "y": 1.0, "z": 0.0}, {"x": 0.0, "y": 1.0, "z": 0.0})
    assert (n, a, b, diff) == (3, 2 / 3, 1 / 3, pytest.approx(1 / 3))
    assert se == pytest.approx(math.sqrt(((2 / 3) ** 2 + 2 * (1 / 3) ** 2) / 2 / 3))
    script.main([str(new), str(old)])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| react")]
    assert rows == ["| react | 5 | 4 | 0.75 | 0.25 | +0.50 ± 0.29 | +1.7 |"]  # bats: not in old
    script.main([str(new), str(new), "--against", "react"])
    out = capsys.readouterr().out
    assert "| bats - react | 5 | 4 | 0.25 | 0.75 | -0.50 ± 0.29 | -1.7 |" in out


def test_a_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    script = load_script("benchmarks/paired.py", "paired_script")
    with pytest.raises(SystemExit) as info:
        script.main([str(tmp_path / "nope.jsonl"), str(tmp_path / "nope.jsonl")])
    assert info.value.code == 2
