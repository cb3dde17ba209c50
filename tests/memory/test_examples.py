"""The memory examples run as written, and print what the README shows of them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(script: str) -> str:
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / script)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_memory_facts_prints_the_readmes_block() -> None:
    out = _run("memory_facts.py")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "forgotten: 21 items; left: 0" in out
    for line in out.splitlines():
        assert line.rstrip() in readme, line  # every line the README shows of it, as printed today


@pytest.mark.local_model
def test_memory_high_charges_its_model_calls_and_its_write_on_the_ingest_ledger() -> None:
    out = _run("memory_high.py")
    lines = out.splitlines()
    assert lines[0].startswith("tiers: ") and lines[2].startswith("layers: ")
    charges = [
        line.split()[:2] for line in lines if line.startswith("  model ") or line.startswith("  memory ")
    ]
    assert charges[-1] == ["memory", "write:retrieve:low"]  # the write is named as one
    assert all(c == ["model", "local/smollm2"] for c in charges[:-1])
