"""README Python blocks marked ``<!-- output checked -->`` run as written (a fresh interpreter in an empty
folder that sees the repository's ``tests`` and ``examples``, offline) and print exactly the output block that
follows them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MARK = "<!-- output checked -->"
BLOCK = re.compile(
    re.escape(MARK) + r"\n```python\n(?P<code>.*?)```\n\n?```(?:text)?\n(?P<out>.*?)```", re.DOTALL
)


def blocks() -> list[tuple[int, str, str]]:
    text = (ROOT / "README.md").read_text("utf-8")
    found = [(text[: m.start()].count("\n") + 1, m["code"], m["out"]) for m in BLOCK.finditer(text)]
    assert len(found) == text.count(f"\n{MARK}\n"), (
        "a marked block is not a ```python block followed by its output"
    )
    return found


def test_the_marked_blocks_are_found() -> None:
    assert len(blocks()) >= 3


@pytest.mark.parametrize(
    ("line", "code", "out"), [pytest.param(*b, id=f"README line {b[0]}") for b in blocks()]
)
def test_a_marked_readme_block_prints_what_the_readme_shows(
    line: int, code: str, out: str, tmp_path: Path
) -> None:
    for name in ("tests", "examples"):  # what a block may name by a relative path; files it writes stay here
        (tmp_path / name).symlink_to(ROOT / name)
    env = {
        **os.environ,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "HF_HUB_OFFLINE": "1",
        "PYTHONHASHSEED": "random",
    }
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, f"README line {line}: {done.stderr[-2000:]}"
    assert done.stdout == out, f"README line {line} shows another output"
