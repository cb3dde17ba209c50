"""Dynamic batching in the transformers provider: concurrent requests for one model share a generate() call,
padding-aware, with each request's own length and usage."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

import litellm

from tests.models.test_hf_model import _cpu_only, hf_provider, tiny_model_dir  # noqa: F401  (fixtures)
from thrifty.models import hf

PROMPTS = [
    "What is the weather in Paris?",
    "Search",
    "Tell me about the budget of the queen of the town of Paris and London please",
    "pa lon se",
]


def _ask(model_dir: str, text: str, max_tokens: int) -> Any:
    return litellm.completion(
        model=f"hf/{model_dir}",
        messages=[{"role": "user", "content": text}],
        max_tokens=max_tokens,
        temperature=0,
    )


@pytest.fixture()
def batcher(tiny_model_dir: str, monkeypatch: pytest.MonkeyPatch) -> hf._Batcher:  # noqa: F811
    monkeypatch.setenv(hf.BATCH_WINDOW_ENV, "0.2")  # long enough for every thread to join on a busy machine
    hf.clear_cache()
    b = hf._batcher(hf._load(tiny_model_dir))
    return b


def test_concurrent_requests_are_batched_and_match_serial_greedy_output(
    tiny_model_dir: str,  # noqa: F811
    batcher: hf._Batcher,
) -> None:
    caps = [12, 5, 9, 16]
    serial = []
    for text, cap in zip(PROMPTS, caps, strict=True):
        serial.append(_ask(tiny_model_dir, text, cap))
    assert batcher.batches == [1, 1, 1, 1]
    batcher.batches.clear()
    with ThreadPoolExecutor(max_workers=4) as pool:
        batched = list(pool.map(lambda a: _ask(tiny_model_dir, *a), zip(PROMPTS, caps, strict=True)))
    assert max(batcher.batches) > 1, batcher.batches  # served together, not one by one
    for one, many, cap in zip(serial, batched, caps, strict=True):
        assert many.usage.completion_tokens <= cap
        assert many.usage.prompt_tokens == one.usage.prompt_tokens
        assert many.choices[0].message.content == one.choices[0].message.content
        assert many.usage.completion_tokens == one.usage.completion_tokens


def test_a_seeded_request_is_served_alone(tiny_model_dir: str, batcher: hf._Batcher) -> None:  # noqa: F811
    def seeded(i: int) -> Any:
        return litellm.completion(
            model=f"hf/{tiny_model_dir}",
            messages=[{"role": "user", "content": PROMPTS[i]}],
            max_tokens=4,
            temperature=0.9,
            seed=i,
        )

    with ThreadPoolExecutor(max_workers=3) as pool:
        list(pool.map(seeded, range(3)))
    assert batcher.batches == [1, 1, 1]


def test_a_bad_batch_setting_is_a_clear_error(tiny_model_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    monkeypatch.setenv(hf.BATCH_WINDOW_ENV, "soon")
    hf.clear_cache()
    with pytest.raises(Exception, match="THRIFTY_HF_BATCH_WINDOW='soon' is not a number"):
        _ask(tiny_model_dir, "hi", 2)
    hf.clear_cache()


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        (hf.MAX_BATCH_ENV, "0", "must be at least 1"),  # served no request: an AssertionError
        (hf.MAX_BATCH_ENV, "0.5", "not a whole number"),  # int(0.5) was 0
        (hf.MAX_BATCH_ENV, "many", "not a whole number"),
        (hf.BATCH_WINDOW_ENV, "inf", "finite number"),  # the first request of a batch waited forever
        (hf.BATCH_WINDOW_ENV, "nan", "finite number"),
        (hf.BATCH_WINDOW_ENV, "-1", "finite number >= 0"),
    ],
)
def test_a_batch_setting_that_cannot_serve_is_refused(
    tiny_model_dir: str,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    value: str,
    says: str,
) -> None:
    monkeypatch.setenv(name, value)
    hf.clear_cache()
    with pytest.raises(Exception, match=re.escape(f"{name}='{value}'") + f".*{re.escape(says)}") as info:
        _ask(tiny_model_dir, "hi", 2)
    assert "fix:" in str(info.value)
    hf.clear_cache()


def test_a_gpu_asked_for_where_there_is_none_stops_before_anything_is_spent(
    tiny_model_dir: str,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Any,
) -> None:
    import torch
    from typer.testing import CliRunner

    from thrifty import Agent, Budget
    from thrifty.cli import app
    from thrifty.workflows.runner import SetupError

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    from thrifty.testing import ScriptedModel, reply

    monkeypatch.setenv(hf.DEVICE_ENV, "cuda")
    cheap = ScriptedModel([reply("x")])
    agent = Agent(models=[cheap.model, f"hf/{tiny_model_dir}"], budget=Budget(model_requests=3))
    with pytest.raises(SetupError, match="CUDA is not available"):
        agent.run("q")
    assert cheap.requests == []
    task = tmp_path / "task.yaml"
    task.write_text(f"question: q\nmodel: hf/{tiny_model_dir}\noutput:\n  store: {tmp_path / 'runs.db'}\n")
    res = CliRunner().invoke(app, ["run", str(task), "--quiet"])
    assert res.exit_code == 2, res.output
    assert "CUDA is not available" in res.output and "Traceback" not in res.output
