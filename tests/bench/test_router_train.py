"""`agent memory train-router` on a tiny LongMemEval-format file written here (never LoCoMo): the grid,
resuming it, the weights it writes, and `learned` rows in `agent bench`; bad weights exit 2."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from tests.memory.conversations import locomo_sample
from thrifty.bench.router_grid import grid_done, load_grid
from thrifty.cli import app
from thrifty.memory.learned import CONFIGS, load_weights

runner = CliRunner()


def _longmemeval(path: Path, n: int = 4) -> Path:
    questions = []
    for i in range(n):
        questions.append(
            {
                "question_id": f"q{i}",
                "question_type": "single-session-user",
                "question": f"What is pet {i} called?" if i % 2 else f"When did I adopt pet {i}?",
                "answer": f"Name{i}",
                "question_date": "2023/06/14 (Wed) 08:23",
                "haystack_dates": ["2023/05/21 (Sun) 00:53"],
                "haystack_session_ids": [f"answer_{i}"],
                "haystack_sessions": [
                    [
                        {"role": "user", "content": f"My pet {i} is called Name{i}.", "has_answer": True},
                        {"role": "assistant", "content": "What a lovely name for a pet."},
                        {
                            "role": "user",
                            "content": f"I adopted pet {i} in spring.",
                            "has_answer": i % 2 == 0,
                        },
                    ]
                ],
                "answer_session_ids": [f"answer_{i}"],
            }
        )
    path.write_text(json.dumps(questions), encoding="utf-8")
    return path


def test_train_router_builds_the_grid_trains_and_resumes(tmp_path: Path) -> None:
    data = _longmemeval(tmp_path / "lme.json")
    out = tmp_path / "router.json"
    grid = tmp_path / "grid.jsonl"
    args = ["memory", "train-router", "--data", str(data), "--out", str(out), "--grid", str(grid)]
    args += ["--haystack", "2", "--holdout", "2", "--epochs", "30", "--hidden", "8"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "SIMULATED" in res.output and "held-out questions: 2 questions" in res.output
    records = load_grid([grid])
    assert len(records) == 4 * len(CONFIGS) and len(grid_done(grid)) == 4 * len(CONFIGS)
    assert all(r["simulated"] and r["memory_usd"] > 0 for r in records)
    weights = load_weights(out)
    assert weights.card["questions"] == 2 and weights.card["holdout"].startswith("every 2th")
    assert "SIMULATED" in weights.card["answerer"]
    before = grid.read_text()
    res = runner.invoke(app, args)  # resumed: the grid is complete, nothing reruns
    assert res.exit_code == 0 and grid.read_text() == before
    # the bench runs learned rows with these weights
    locomo = tmp_path / "locomo.json"
    locomo.write_text(json.dumps([locomo_sample()]), encoding="utf-8")
    bench = ["bench", "locomo", "--data", str(locomo), "--embedder", "none", "--no-plot"]
    res = runner.invoke(
        app,
        [*bench, "--routers", "low,learned:0.2", "--router-weights", str(out), "--out", str(tmp_path / "b")],
    )
    assert res.exit_code == 0, res.output
    assert "| learned:0.2 |" in res.output


def test_bad_input_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "thrifty-memory-router", "lay', encoding="utf-8")
    locomo = tmp_path / "locomo.json"
    locomo.write_text(json.dumps([locomo_sample()]), encoding="utf-8")
    res = runner.invoke(
        app,
        ["bench", "locomo", "--data", str(locomo), "--routers", "learned", "--router-weights", str(bad)],
    )
    assert res.exit_code == 2 and "not valid JSON" in res.output and "Traceback" not in res.output
    res = runner.invoke(app, ["memory", "train-router", "--data", str(locomo), "--out", str(tmp_path / "r")])
    assert res.exit_code == 2 and "Traceback" not in res.output  # a LoCoMo file is not LongMemEval
    data = _longmemeval(tmp_path / "lme.json")
    res = runner.invoke(app, ["memory", "train-router", "--data", str(data), "--score", "judge"])
    assert res.exit_code == 2 and "evidence or f1" in res.output
