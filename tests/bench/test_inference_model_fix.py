"""``agent bench inference --model``: a model it cannot time is exit 2 with the fix (the valid models)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from thrifty.bench.inference import run_inference
from thrifty.cli import app

cli = CliRunner()


@pytest.mark.parametrize("model", ["nosuch", "sim/default", "openai/gpt-4o-mini"])
def test_a_model_that_is_not_local_names_the_valid_ones(model: str) -> None:
    res = cli.invoke(app, ["bench", "inference", "--model", model, "--repeats", "1"])
    assert res.exit_code == 2, res.output
    shown = " ".join(res.output.split())
    assert (
        f"error: --model {model!r}: the inference benchmark times llama.cpp, so it needs a local/ model"
        in shown
    )
    assert "(fix: give --model a model of the local catalogue (" in shown and "local/smollm2" in shown
    assert "or local/<path/to/model.gguf> of a GGUF file that exists" in shown
    assert "e.g. --model local/smollm2" in shown and "Traceback" not in shown


def test_a_gguf_path_without_the_prefix_is_shown_with_it(tmp_path: Path) -> None:
    gguf = tmp_path / "m.gguf"
    with pytest.raises(ValueError, match=f"e.g. --model local/{gguf}"):
        run_inference(str(gguf))


def test_a_missing_gguf_file_gets_the_fix(tmp_path: Path) -> None:
    gguf = tmp_path / "absent.gguf"
    with pytest.raises(ValueError, match="not found") as caught:
        run_inference(f"local/{gguf}")
    assert "(fix: give --model a model of the local catalogue" in str(caught.value)
